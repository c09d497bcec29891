// Presence: this browser's awareness state out, everyone else's in as
// Excalidraw collaborators (name label, pointer, selection outline).
//
// Awareness state: {user: {id, name, color}, pointer: {x, y, tool}, button,
// selectedElementIds, userState, following, viewport}. JSON clients joining
// through /events may send a colour string or Excalidraw's {background,
// stroke}; both are shown.
//
// - userState: "active", "idle" (no input for IDLE_AFTER) or "away" (tab
//   hidden), Excalidraw's UserIdleState: it greys out idle pointers and says
//   so in the user list.
// - following: the awareness client id this browser follows (Excalidraw's
//   user list sets appState.userToFollow; api.onUserFollow tells us).
// - viewport: {x, y, zoom}, the scene point at the centre of this browser's
//   canvas and its zoom; sent only while someone follows this browser.

export const POINTER_INTERVAL = 33; // ms: about 30 pointer and viewport updates a second
export const IDLE_AFTER = 60_000; // ms without input before "idle", as on excalidraw.com
const USER_STATES = new Set(["active", "idle", "away"]);

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
      userState: USER_STATES.has(state.userState) ? state.userState : undefined,
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

/** The names of the people whose awareness says they follow `clientId`. */
function followersOf(awareness, clientId) {
  const found = new Map();
  for (const [id, state] of awareness.getStates()) {
    if (id !== clientId && state?.user && state.following === clientId) {
      found.set(String(id), String(state.user.name ?? "anonymous"));
    }
  }
  return found;
}

const finite = (...values) => values.every(Number.isFinite);

/** A function that runs `fn` at most once per `interval` ms, the last call always. */
function throttle(fn, interval) {
  let last = 0;
  let timer = null;
  const run = () => {
    timer = null;
    last = performance.now();
    fn();
  };
  const call = () => {
    const wait = last + interval - performance.now();
    if (wait <= 0) run();
    else timer ??= setTimeout(run, wait);
  };
  call.cancel = () => clearTimeout(timer);
  return call;
}

export class Presence {
  /**
   * @param {object} options idleAfter: ms without input before "idle";
   *   onFollowers(names): who follows this browser now
   */
  constructor(awareness, api, identity, { idleAfter = IDLE_AFTER, onFollowers = () => {} } = {}) {
    this.awareness = awareness;
    this.api = api;
    this.selection = "{}";
    this.lastPointer = 0;
    this.timer = null;
    this.nextPointer = null;
    this.idleAfter = idleAfter;
    this.onFollowers = onFollowers;
    this.followers = "[]";
    this.appliedViewport = null;
    awareness.setLocalStateField("user", identity);
    this.onChange = () => {
      this.api.updateScene({ collaborators: collaboratorsOf(awareness) });
      this.leaderSide();
      this.followerSide();
    };
    awareness.on("change", this.onChange);
    this.sendViewport = throttle(() => this.publishViewport(), POINTER_INTERVAL);
    this.stopScroll = api.onScrollChange(() => {
      if (this.followers !== "[]") this.sendViewport();
    });
    this.stopFollow = api.onUserFollow(({ userToFollow, action }) => {
      const id = Number(userToFollow.socketId);
      if (action === "FOLLOW") this.awareness.setLocalStateField("following", id);
      else if (this.awareness.getLocalState()?.following === id) {
        this.awareness.setLocalStateField("following", null);
      }
      this.appliedViewport = null;
      this.followerSide();
    });
    // idle and away: any input makes us active, a hidden tab away
    this.activity = () => this.touch();
    this.visibility = () => this.touch();
    for (const event of ["pointerdown", "keydown", "wheel"]) {
      window.addEventListener(event, this.activity, { capture: true, passive: true });
    }
    document.addEventListener("visibilitychange", this.visibility);
    this.touch();
    this.onChange();
  }

  destroy() {
    clearTimeout(this.timer);
    clearTimeout(this.idleTimer);
    this.sendViewport.cancel();
    this.stopScroll();
    this.stopFollow();
    for (const event of ["pointerdown", "keydown", "wheel"]) {
      window.removeEventListener(event, this.activity, { capture: true });
    }
    document.removeEventListener("visibilitychange", this.visibility);
    this.awareness.off("change", this.onChange);
  }

  setIdentity(identity) {
    this.awareness.setLocalStateField("user", identity);
  }

  /**
   * Input happened (or the tab's visibility changed): active, or away when
   * hidden. Called on every pointer move, so it only notes the time; one timer
   * checks it.
   */
  touch() {
    this.lastInput = performance.now();
    if (document.visibilityState === "hidden") {
      this.setUserState("away");
      return;
    }
    this.setUserState("active");
    this.idleTimer ??= setTimeout(() => this.checkIdle(), this.idleAfter);
  }

  checkIdle() {
    this.idleTimer = null;
    if (document.visibilityState === "hidden") return;
    const left = this.lastInput + this.idleAfter - performance.now();
    if (left > 0) this.idleTimer = setTimeout(() => this.checkIdle(), left);
    else this.setUserState("idle");
  }

  setUserState(userState) {
    if (this.awareness.getLocalState()?.userState !== userState) {
      this.awareness.setLocalStateField("userState", userState);
    }
  }

  /** Followed by anyone? Then Excalidraw's followedBy is set and the viewport goes out. */
  leaderSide() {
    const followers = followersOf(this.awareness, this.awareness.clientID);
    const key = JSON.stringify([...followers]);
    if (key === this.followers) return;
    this.followers = key;
    this.api.updateScene({ appState: { followedBy: new Set(followers.keys()) } });
    this.onFollowers([...followers.values()]);
    if (followers.size) this.publishViewport();
    else if (this.awareness.getLocalState()?.viewport) {
      this.awareness.setLocalStateField("viewport", null);
    }
  }

  publishViewport() {
    if (this.followers === "[]") return;
    const { scrollX, scrollY, zoom, width, height } = this.api.getAppState();
    const viewport = {
      x: width / 2 / zoom.value - scrollX,
      y: height / 2 / zoom.value - scrollY,
      zoom: zoom.value,
    };
    // Two people following each other must not echo rounding errors back and forth.
    const last = this.awareness.getLocalState()?.viewport;
    const near = (a, b) => Math.abs(a - b) < 0.01;
    if (last && near(last.x, viewport.x) && near(last.y, viewport.y) && near(last.zoom, viewport.zoom)) {
      return;
    }
    this.awareness.setLocalStateField("viewport", viewport);
  }

  /** Following someone: show what they see (their centre, their zoom). */
  followerSide() {
    const followed = this.api.getAppState().userToFollow;
    if (!followed) return;
    const viewport = this.awareness.getStates().get(Number(followed.socketId))?.viewport;
    if (!viewport || !finite(viewport.x, viewport.y, viewport.zoom) || viewport.zoom <= 0) return;
    const key = `${viewport.x} ${viewport.y} ${viewport.zoom}`;
    if (key === this.appliedViewport) return;
    this.appliedViewport = key;
    const { width, height } = this.api.getAppState();
    const zoom = Math.min(30, Math.max(0.1, viewport.zoom));
    this.api.updateScene({
      appState: {
        scrollX: width / 2 / zoom - viewport.x,
        scrollY: height / 2 / zoom - viewport.y,
        zoom: { value: zoom },
      },
    });
  }

  /** Excalidraw's onPointerUpdate, throttled; the last position always goes out. */
  onPointerUpdate({ pointer, button }) {
    this.touch();
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
