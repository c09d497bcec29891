// Offline-first: the app opens without a connection (a service worker,
// public/sw.js), each diagram's Y.Doc is kept in this browser's IndexedDB
// (y-indexeddb, the standard Yjs provider) so edits made offline survive a
// reload or a browser restart, and the badge counts the elements changed
// here that the server has not been sent yet. When the connection returns,
// y-websocket's sync exchanges what each side lacks: the CRDT merges it with
// what others did meanwhile.
import { IndexeddbPersistence } from "y-indexeddb";

const CACHE = "inkwire-app"; // public/sw.js's
const STATIC = /^\/(assets|excalidraw-assets)\//;

/**
 * Register the service worker and cache the page and what it loaded so far
 * (loaded before the worker controlled the page, so it did not see them).
 */
export async function keepAppOffline() {
  if (!("serviceWorker" in navigator) || !window.caches) return;
  try {
    await navigator.serviceWorker.register("/sw.js");
    const cache = await caches.open(CACHE);
    await cache.add("/"); // every page is this index.html; refreshed on each visit
    const loaded = performance
      .getEntriesByType("resource")
      .map((entry) => new URL(entry.name))
      .filter((url) => url.origin === location.origin && STATIC.test(url.pathname));
    for (const url of loaded) if (!(await cache.match(url))) await cache.add(url);
    document.documentElement.dataset.offlineReady = "true";
  } catch (error) {
    console.warn("inkwire: the app will not open offline:", error);
  }
}

export const databaseName = (diagram) => `inkwire:${diagram}`;

/** The doc kept in IndexedDB, and the count of local changes waiting for the server. */
export class OfflineDoc {
  constructor(doc, provider, diagram, { onPending = () => {} } = {}) {
    this.provider = provider;
    this.onPending = onPending;
    this.key = `inkwire.pending.${diagram}`;
    this.persistence = new IndexeddbPersistence(databaseName(diagram), doc);
    this.pending = new Set(this.load());
    // Local transactions (this canvas's edits, not y-websocket's or
    // y-indexeddb's applied updates) made while not in sync wait to be sent.
    this.observer = (event, transaction) => {
      if (!transaction.local || this.inSync()) return;
      for (const key of event.keysChanged) this.pending.add(`${event.target === this.elements ? "e" : "f"}:${key}`);
      this.save();
    };
    this.elements = doc.getMap("elements");
    this.files = doc.getMap("files");
    this.elements.observe(this.observer);
    this.files.observe(this.observer);
    // Synced after (re)connecting: the sync sent the server all it lacked.
    this.onSync = () => {
      if (this.inSync() && this.pending.size) {
        this.pending.clear();
        this.save();
      }
    };
    provider.on("sync", this.onSync);
    onPending(this.pending.size);
  }

  inSync() {
    return this.provider.wsconnected && this.provider.synced;
  }

  load() {
    try {
      const value = JSON.parse(localStorage.getItem(this.key));
      return Array.isArray(value) ? value.filter((key) => typeof key === "string") : [];
    } catch {
      return [];
    }
  }

  save() {
    if (this.pending.size) localStorage.setItem(this.key, JSON.stringify([...this.pending]));
    else localStorage.removeItem(this.key);
    this.onPending(this.pending.size);
  }

  /** Forget this diagram's local copy (the server refused our edits: start from its). */
  async clear() {
    this.pending.clear();
    this.save();
    await this.persistence.clearData();
  }

  destroy() {
    this.elements.unobserve(this.observer);
    this.files.unobserve(this.observer);
    this.provider.off("sync", this.onSync);
    this.persistence.destroy();
  }
}
