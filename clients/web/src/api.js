// The server's REST API (collab/api.py), as the web app uses it.

const enc = encodeURIComponent;

export const DIAGRAM_NAME = /^[A-Za-z0-9._-]{1,128}$/;

export const fileUrl = (diagram, id) => `/api/diagrams/${enc(diagram)}/files/${enc(id)}`;

// The y-websocket base URL (the client appends `/${diagram}`). A deployment that puts the
// Yjs endpoint elsewhere sets window.INKWIRE_YJS_URL before the app runs.
export const yjsUrl = () =>
  window.INKWIRE_YJS_URL ?? `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/yjs`;

async function json(response) {
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

/** Saved diagrams, last edited first: at most `limit`, names starting with `prefix`. */
export function listDiagrams({ limit = 100, prefix = "" } = {}) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (prefix) query.set("prefix", prefix);
  return fetch(`/api/diagrams?${query}`).then(json);
}

/** The diagram as an `.excalidraw` scene, now or at a version (`at`: seq). */
export const exportDiagram = (diagram, at) =>
  fetch(`/api/diagrams/${enc(diagram)}${at == null ? "" : `?at=${enc(at)}`}`).then(json);

/** Every version, oldest first (the API pages newest first). */
export async function history(diagram, { maxPages = 20 } = {}) {
  const versions = [];
  let before = null;
  for (let page = 0; page < maxPages; page++) {
    const query = before == null ? "" : `&before=${before}`;
    const body = await fetch(`/api/diagrams/${enc(diagram)}/history?limit=500${query}`).then(json);
    versions.push(...body.versions);
    before = body.next_before;
    if (before == null) break;
  }
  return versions.reverse();
}

/** Lock (read-only for everyone) or unlock a diagram. */
export const setLocked = (diagram, locked, user) =>
  fetch(`/api/diagrams/${enc(diagram)}/lock`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ locked, user_id: user || "web", reason: "locked in the editor" }),
  }).then(json);

export const restoreVersion = (diagram, seq) =>
  fetch(`/api/diagrams/${enc(diagram)}/restore`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ at: seq }),
  }).then(json);

/** Save a Blob as a file download. */
export function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
