// Images: bytes over HTTP, metadata in the doc's `files` map.
//
// A pasted image's bytes are PUT to the server, which stores them and records
// {mimeType, created, size, sha256} in `files`; peers see the metadata arrive
// and fetch the bytes. The Yjs document never carries image data.
import { CaptureUpdateAction, newElementWith } from "@excalidraw/excalidraw";
import { apiFetch, fileUrl } from "./api.js";

function dataUrlToBlob(dataURL) {
  const comma = dataURL.indexOf(",");
  const header = dataURL.slice(5, comma); // "image/png;base64"
  const mimeType = header.split(";")[0];
  const body = dataURL.slice(comma + 1);
  if (!header.endsWith(";base64")) return new Blob([decodeURIComponent(body)], { type: mimeType });
  const binary = atob(body);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return new Blob([bytes], { type: mimeType });
}

function blobToDataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

export class FileSync {
  constructor(doc, api, diagram, { onError = console.error } = {}) {
    this.api = api;
    this.diagram = diagram;
    this.onError = onError;
    this.files = doc.getMap("files");
    this.seen = new Set(); // file ids uploaded, being fetched, or present
    this.observer = (event) => {
      for (const id of event.keysChanged) if (this.files.has(id)) this.fetch(id);
    };
    this.files.observe(this.observer);
    for (const id of this.files.keys()) this.fetch(id);
  }

  destroy() {
    this.destroyed = true;
    this.files.unobserve(this.observer);
  }

  /** Excalidraw's onChange files: upload the ones this canvas added. */
  onChange(files) {
    for (const [id, file] of Object.entries(files)) {
      if (this.seen.has(id) || this.files.has(id)) continue;
      this.seen.add(id);
      this.uploadUntilDone(file, 0);
    }
  }

  // A refusal (too big, a type the server does not take) is told once and not
  // retried: the image stays on this canvas only. Anything else (offline, the
  // server restarting) is retried with a growing pause, so an image pasted
  // while offline reaches the others once the server is back.
  async uploadUntilDone(file, failures) {
    if (this.destroyed) return;
    try {
      await this.upload(file);
      this.markSaved(file.id);
    } catch (error) {
      if (error.status >= 400 && error.status < 500) {
        this.onError(`image not shared: ${error.message}`);
        return;
      }
      const pause = Math.min(30_000, 1000 * 2 ** failures);
      setTimeout(() => this.uploadUntilDone(file, failures + 1), pause);
    }
  }

  /** The image elements showing an uploaded file are "saved", as on excalidraw.com. */
  markSaved(id) {
    let changed = false;
    const elements = this.api.getSceneElementsIncludingDeleted().map((element) => {
      if (element.type !== "image" || element.fileId !== id || element.status === "saved") {
        return element;
      }
      changed = true;
      return newElementWith(element, { status: "saved" });
    });
    if (changed) this.api.updateScene({ elements, captureUpdate: CaptureUpdateAction.NEVER });
  }

  /** Remote image elements whose file we lack: its metadata may already be here. */
  elementsArrived(elements) {
    for (const element of elements) {
      if (element.type === "image" && element.fileId && this.files.has(element.fileId)) {
        this.fetch(element.fileId);
      }
    }
  }

  async upload(file) {
    const blob = dataUrlToBlob(file.dataURL);
    const response = await apiFetch(fileUrl(this.diagram, file.id), {
      method: "PUT",
      headers: { "content-type": file.mimeType },
      body: blob,
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw Object.assign(new Error(body.error || `HTTP ${response.status}`), {
        status: response.status,
      });
    }
  }

  fetch(id) {
    if (this.seen.has(id) || this.api.getFiles()[id]) return;
    this.seen.add(id);
    const meta = this.files.get(id) || {};
    apiFetch(fileUrl(this.diagram, id))
      .then(async (response) => {
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const dataURL = await blobToDataUrl(await response.blob());
        this.api.addFiles([
          {
            id,
            mimeType: meta.mimeType || response.headers.get("content-type"),
            dataURL,
            created: meta.created || Date.now(),
          },
        ]);
      })
      .catch((error) => {
        this.seen.delete(id);
        this.onError(`image ${id} could not be loaded: ${error.message}`);
      });
  }
}
