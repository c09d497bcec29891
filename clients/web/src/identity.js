// Who this browser is: a name asked once, a colour picked once, both remembered.

const KEY = "inkwire.identity";

// The hues Excalidraw draws collaborators in (see presence.js): a colour picked
// from these is shown exactly as chosen.
export const COLORS = Array.from({ length: 37 }, (_, i) => `hsl(${i * 10}, 100%, 83%)`);

const randomId = () =>
  Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");

/** The stored identity, or null on a first visit. */
export function loadIdentity() {
  try {
    const value = JSON.parse(localStorage.getItem(KEY));
    if (value && typeof value.name === "string" && value.name && typeof value.id === "string") {
      return { id: value.id, name: value.name, color: value.color || COLORS[0] };
    }
  } catch {
    // unreadable: ask again
  }
  return null;
}

export function saveIdentity(name) {
  const previous = loadIdentity();
  const identity = {
    id: previous?.id || randomId(),
    name: name.trim().slice(0, 64),
    color: previous?.color || COLORS[Math.floor(Math.random() * COLORS.length)],
  };
  localStorage.setItem(KEY, JSON.stringify(identity));
  return identity;
}
