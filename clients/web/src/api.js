// The server's REST API (collab/api.py), as the web app uses it.

const enc = encodeURIComponent;

export const DIAGRAM_NAME = /^[A-Za-z0-9._-]{1,128}$/;

export const fileUrl = (diagram, id) => `/api/diagrams/${enc(diagram)}/files/${enc(id)}`;

// The y-websocket base URL (the client appends `/${diagram}`). A deployment that puts the
// Yjs endpoint elsewhere sets window.INKWIRE_YJS_URL before the app runs.
export const yjsUrl = () =>
  window.INKWIRE_YJS_URL ?? `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/yjs`;

// Access: when the server runs with --auth-secret, a link carries a token
// (`/d/{diagram}?token=...`). It is kept for this tab, sent to the API as a
// bearer token and to the Yjs endpoint as `?token=`.
const TOKEN_KEY = "inkwire.token";

export function token() {
  const fromUrl = new URLSearchParams(location.search).get("token");
  if (fromUrl) sessionStorage.setItem(TOKEN_KEY, fromUrl);
  return fromUrl || sessionStorage.getItem(TOKEN_KEY) || null;
}

/**
 * What the token says it allows, read without checking its signature (the
 * server checks): only to show the editor read-only when it may not edit.
 */
export function tokenClaims() {
  const value = token();
  if (!value) return null;
  try {
    const part = value.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch {
    return null;
  }
}

/** fetch, with the token when there is one. */
export function apiFetch(url, options = {}) {
  const value = token();
  if (!value) return fetch(url, options);
  const headers = { ...(options.headers || {}), authorization: `Bearer ${value}` };
  return fetch(url, { ...options, headers });
}

async function json(response) {
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

/**
 * Saved diagrams, last edited first: at most `limit`, names starting with
 * `prefix`, id or title containing `search`; `trash`: the deleted ones instead.
 */
export function listDiagrams({ limit = 100, prefix = "", search = "", trash = false } = {}) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (prefix) query.set("prefix", prefix);
  if (search) query.set("search", search);
  if (trash) query.set("trash", "1");
  return apiFetch(`/api/diagrams?${query}`).then(json);
}

/** The thumbnail's URL (an <img> sends no header: the token rides in the query). */
export function thumbnailUrl(diagram, seq) {
  const query = new URLSearchParams({ v: String(seq) });
  const value = token();
  if (value) query.set("token", value);
  return `/api/diagrams/${enc(diagram)}/thumbnail?${query}`;
}

export const renameDiagram = (diagram, title) =>
  apiFetch(`/api/diagrams/${enc(diagram)}/rename`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ title }),
  }).then(json);

export const deleteDiagram = (diagram) =>
  apiFetch(`/api/diagrams/${enc(diagram)}`, { method: "DELETE" }).then(json);

export const undeleteDiagram = (diagram) =>
  apiFetch(`/api/diagrams/${enc(diagram)}/undelete`, { method: "POST" }).then(json);

/** The diagram as an `.excalidraw` scene, now or at a version (`at`: seq). */
export const exportDiagram = (diagram, at) =>
  apiFetch(`/api/diagrams/${enc(diagram)}${at == null ? "" : `?at=${enc(at)}`}`).then(json);

/** Every version, oldest first (the API pages newest first). */
export async function history(diagram, { maxPages = 20 } = {}) {
  const versions = [];
  let before = null;
  for (let page = 0; page < maxPages; page++) {
    const query = before == null ? "" : `&before=${before}`;
    const body = await apiFetch(`/api/diagrams/${enc(diagram)}/history?limit=500${query}`).then(json);
    versions.push(...body.versions);
    before = body.next_before;
    if (before == null) break;
  }
  return versions.reverse();
}

/** Lock (read-only for everyone) or unlock a diagram. */
export const setLocked = (diagram, locked, user) =>
  apiFetch(`/api/diagrams/${enc(diagram)}/lock`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ locked, user_id: user || "web", reason: "locked in the editor" }),
  }).then(json);

export const restoreVersion = (diagram, seq) =>
  apiFetch(`/api/diagrams/${enc(diagram)}/restore`, {
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

/** Mint a link to this diagram (server with auth; the token must be an editor's). */
export const shareLink = (diagram, access, expiresIn) =>
  apiFetch(`/api/diagrams/${enc(diagram)}/share`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ access, expires_in: expiresIn }),
  }).then(json);
