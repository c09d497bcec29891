// The binding between one Excalidraw canvas and a diagram's Y.Doc.
//
// The doc holds `elements: Y.Map<id, element JSON>` and `files: Y.Map<fileId,
// metadata>` (the document model: docs/architecture.md). Excalidraw mutates the
// element objects it is given, so nothing is ever shared between the two
// sides: every element crossing the boundary is a copy.
import {
  CaptureUpdateAction,
  reconcileElements,
  restoreElements,
} from "@excalidraw/excalidraw";

const copy = (value) => structuredClone(value);

/** Z-order: the fractional `index`, ties broken by id (the same on every peer). */
export function byIndex(a, b) {
  const ia = a.index ?? "";
  const ib = b.index ?? "";
  if (ia !== ib) return ia < ib ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * Whether `key` is a fractional index Excalidraw can order by (the
 * fractional-indexing format: a length-prefixed integer part, then base-62
 * digits not ending in 0). Peers are not trusted to send one: a bad key makes
 * Excalidraw throw while ordering, so it is dropped and regenerated instead.
 */
export function validIndex(key) {
  if (typeof key !== "string" || !/^[0-9A-Za-z]+$/.test(key)) return false;
  const head = key.charCodeAt(0);
  const size = head >= 97 ? head - 97 + 2 : head <= 90 && head >= 65 ? 90 - head + 2 : 0;
  if (size === 0 || key.length < size) return false;
  if (key.length > size && key.endsWith("0")) return false;
  return key !== `A${"0".repeat(26)}`;
}

/** Excalidraw's own order of two versions of one element: true when `a` wins. */
export function wins(a, b) {
  return a.version > b.version || (a.version === b.version && a.versionNonce < b.versionNonce);
}

export class ElementsBinding {
  /**
   * @param {import("yjs").Doc} doc
   * @param {object} api Excalidraw's imperative API
   * @param {{files?: import("./files.js").FileSync, onError?: (message: string) => void}} options
   */
  constructor(doc, api, { files, onError = console.error } = {}) {
    this.doc = doc;
    this.onError = onError;
    this.api = api;
    this.files = files;
    this.elements = doc.getMap("elements");
    // id -> the version last written to or read from the doc: what is already shared
    this.shared = new Map();
    this.pending = new Set();
    this.scheduled = false;
    this.observer = (event, transaction) => {
      if (transaction.origin === this) return;
      for (const key of event.keysChanged) this.pending.add(key);
      this.schedule();
    };
    this.elements.observe(this.observer);
    for (const key of this.elements.keys()) this.pending.add(key);
    this.schedule();
  }

  destroy() {
    this.elements.unobserve(this.observer);
  }

  /** Excalidraw's onChange: share the elements whose version moved, in one transaction. */
  onChange(elements) {
    let changed = null;
    for (const element of elements) {
      if (this.shared.get(element.id) !== element.version) (changed ??= []).push(element);
    }
    if (changed) this.write(changed);
  }

  write(elements) {
    this.doc.transact(() => {
      for (const element of elements) {
        this.elements.set(element.id, copy(element));
        this.shared.set(element.id, element.version);
      }
    }, this);
  }

  // Everything one received message changed is applied together: observers run
  // per transaction, the microtask after them once per batch.
  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => {
      this.scheduled = false;
      this.applyRemote();
    });
  }

  applyRemote() {
    const keys = [...this.pending];
    this.pending.clear();
    try {
      this.merge(keys);
    } catch (error) {
      // One peer's malformed element must not stop this canvas from syncing.
      this.onError(`could not apply a remote change: ${error.message}`);
    }
  }

  merge(keys) {
    const incoming = [];
    for (const key of keys) {
      const value = this.elements.get(key);
      if (!value || typeof value !== "object" || value.id !== key) continue;
      const element = copy(value);
      if (!validIndex(element.index)) element.index = null;
      incoming.push(element);
    }
    if (incoming.length === 0) return;
    const remote = restoreElements(incoming, null);
    const local = this.api.getSceneElementsIncludingDeleted();
    const localById = new Map(local.map((element) => [element.id, element]));
    const merged = reconcileElements(local, remote, this.api.getAppState());
    merged.sort(byIndex);
    const keep = [];
    for (const element of remote) {
      this.shared.set(element.id, element.version);
      const mine = localById.get(element.id);
      // Our version beat the doc's (a concurrent edit): write it back, so the doc
      // ends up holding what every canvas shows.
      if (mine && wins(mine, element)) keep.push(mine);
    }
    this.api.updateScene({ elements: merged, captureUpdate: CaptureUpdateAction.NEVER });
    if (keep.length) this.write(keep);
    this.files?.elementsArrived(remote);
  }
}
