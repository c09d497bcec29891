// Presence: this browser's awareness state out, everyone else's in as
// Excalidraw collaborators (name label, pointer, selection outline).
//
// Awareness state: {user: {id, name, color}, pointer: {x, y, tool}, button,
// selectedElementIds}. JSON clients joining through /events may send a colour
// string or Excalidraw's {background, stroke}; both are shown.

export const POINTER_INTERVAL = 33; // ms: about 30 pointer updates a second

// Excalidraw 0.18 draws a collaborator (pointer, name label, selection, avatar)
// in a colour it hashes from the collaborator's `id`, one of 37 pastel hues,
// and ignores `color`. So the id handed to Excalidraw is chosen to hash to
// the hue nearest the user's colour: everyone then sees the colour they chose.

function excalidrawHue(id) {
  let hash = 0; // Excalidraw's hashToInteger, kept exactly (float after the shift)
  for (let i = 0; i < id.length; i++) hash = (hash << 5) - hash + id.charCodeAt(i);
  return (Math.abs(hash) % 37) * 10;
}

/** The hue (0-359) of a "#rgb", "#rrggbb" or "hsl(h, ...)" colour, or null. */
export function hueOf(color) {
  if (typeof color !== "string") return null;
  const hsl = color.match(/^hsla?\(\s*(-?[\d.]+)/i);
  if (hsl) return ((Number(hsl[1]) % 360) + 360) % 360;
  let hex = color.match(/^#([0-9a-f]{3}|[0-9a-f]{6})$/i)?.[1];
  if (!hex) return null;
  if (hex.length === 3) hex = [...hex].map((c) => c + c).join("");
  const [r, g, b] = [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255);
  const max = Math.max(r, g, b);
  const delta = max - Math.min(r, g, b);
  if (delta === 0) return 0;
  const sector = max === r ? ((g - b) / delta) % 6 : max === g ? (b - r) / delta + 2 : (r - g) / delta + 4;
  return (sector * 60 + 360) % 360;
}

const drawnIds = new Map();

/** An id Excalidraw will draw in (about) `color`: `id` itself, or `id~n`. */
export function drawnId(id, color) {
  const hue = hueOf(color);
  if (hue === null) return id;
  const key = `${id} ${color}`;
  if (!drawnIds.has(key)) {
    const wanted = (Math.round(hue / 10) % 37) * 10;
    let found = id;
    for (let n = 0; n < 2000 && excalidrawHue(found) !== wanted; n++) found = `${id}~${n}`;
    drawnIds.set(key, found);
  }
  return drawnIds.get(key);
}

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
    const color = colorOf(state.user);
    collaborators.set(String(clientId), {
      id: drawnId(String(state.user.id ?? clientId), color?.background),
      socketId: String(clientId),
      username: String(state.user.name ?? "anonymous"),
      color,
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
