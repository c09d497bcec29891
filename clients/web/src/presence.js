// Presence: this browser's awareness state out, everyone else's in as
// Excalidraw collaborators (name label, pointer, selection outline).
//
// Awareness state: {user: {id, name, color}, pointer: {x, y, tool}, button,
// selectedElementIds}. JSON clients joining through /events may send a colour
// string or Excalidraw's {background, stroke}; both are shown.

export const POINTER_INTERVAL = 33; // ms: about 30 pointer updates a second

function colorOf(user) {
  const color = user?.color;
  if (color && typeof color === "object") {
    return { background: color.background || color.stroke, stroke: color.stroke || color.background };
  }
  return typeof color === "string" ? { background: color, stroke: color } : undefined;
}

/** The collaborators Excalidraw shows for every awareness state but ours. */
export function collaboratorsOf(awareness) {
  const collaborators = new Map();
  for (const [clientId, state] of awareness.getStates()) {
    if (clientId === awareness.clientID || !state?.user) continue;
    const pointer = state.pointer;
    collaborators.set(String(clientId), {
      id: String(state.user.id ?? clientId),
      socketId: String(clientId),
      username: String(state.user.name ?? "anonymous"),
      color: colorOf(state.user),
      pointer:
        pointer && Number.isFinite(pointer.x) && Number.isFinite(pointer.y)
          ? { x: pointer.x, y: pointer.y, tool: pointer.tool === "laser" ? "laser" : "pointer" }
          : undefined,
      button: state.button === "down" ? "down" : "up",
      selectedElementIds:
        state.selectedElementIds && typeof state.selectedElementIds === "object"
          ? state.selectedElementIds
          : undefined,
    });
  }
  return collaborators;
}

/** People in the room, this browser included: states that carry a user. */
export const peopleIn = (awareness) =>
  [...awareness.getStates().values()].filter((state) => state?.user).length;

export class Presence {
  constructor(awareness, api, identity) {
    this.awareness = awareness;
    this.api = api;
    this.selection = "{}";
    this.lastPointer = 0;
    this.timer = null;
    this.nextPointer = null;
    awareness.setLocalStateField("user", identity);
    this.onChange = () => this.api.updateScene({ collaborators: collaboratorsOf(awareness) });
    awareness.on("change", this.onChange);
    this.onChange();
  }

  destroy() {
    clearTimeout(this.timer);
    this.awareness.off("change", this.onChange);
  }

  setIdentity(identity) {
    this.awareness.setLocalStateField("user", identity);
  }

  /** Excalidraw's onPointerUpdate, throttled; the last position always goes out. */
  onPointerUpdate({ pointer, button }) {
    this.nextPointer = { pointer: { x: pointer.x, y: pointer.y, tool: pointer.tool }, button };
    const wait = this.lastPointer + POINTER_INTERVAL - performance.now();
    if (wait <= 0) this.sendPointer();
    else this.timer ??= setTimeout(() => this.sendPointer(), wait);
  }

  sendPointer() {
    this.timer = null;
    if (!this.nextPointer) return;
    this.lastPointer = performance.now();
    const state = this.awareness.getLocalState() || {};
    this.awareness.setLocalState({ ...state, ...this.nextPointer });
    this.nextPointer = null;
  }

  /** Excalidraw's onChange appState: share the selection when it changes. */
  onSelection(selectedElementIds) {
    const ids = {};
    for (const [id, selected] of Object.entries(selectedElementIds || {})) if (selected) ids[id] = true;
    const key = JSON.stringify(ids);
    if (key === this.selection) return;
    this.selection = key;
    this.awareness.setLocalStateField("selectedElementIds", ids);
  }
}
