// The web app's service worker: the app opens without a connection.
//
// Pages (/, /d/..., /dashboard) are all the same index.html: from the network
// when it answers, else the copy cached under "/". Built files (/assets/, hashed
// names) and Excalidraw's fonts (/excalidraw-assets/) never change for a name:
// served from the cache when there, else fetched and cached. Everything else
// (the API, the Yjs socket) is left alone. The page itself caches what it
// loaded before this worker controlled it (clients/web/src/offline.js).
const CACHE = "inkwire-app";
const STATIC = /^\/(assets|excalidraw-assets)\//;

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === "navigate") {
    event.respondWith(
      fetch(request).catch(async () => (await caches.match("/")) ?? Response.error()),
    );
  } else if (STATIC.test(url.pathname)) {
    event.respondWith(
      caches.match(request).then(
        (cached) =>
          cached ??
          fetch(request).then(async (response) => {
            if (response.ok) await (await caches.open(CACHE)).put(request, response.clone());
            return response;
          }),
      ),
    );
  }
});
