// Who this browser is: a generated name and colour on the first visit (so a
// shared link opens straight onto the canvas), changeable later, remembered
// in localStorage.

const KEY = "inkwire.identity";

// The hues Excalidraw draws collaborators in (see presence.js): a colour picked
// from these is shown exactly as chosen.
export const COLORS = Array.from({ length: 37 }, (_, i) => `hsl(${i * 10}, 100%, 83%)`);

const ADJECTIVES = [
  "Amber", "Brave", "Calm", "Dapper", "Eager", "Fuzzy", "Gentle", "Happy", "Jolly", "Keen",
  "Lucky", "Merry", "Nimble", "Plucky", "Quick", "Rosy", "Sunny", "Swift", "Witty", "Zesty",
];
const ANIMALS = [
  "Badger", "Crane", "Dolphin", "Falcon", "Gecko", "Heron", "Ibis", "Koala", "Lynx", "Marmot",
  "Narwhal", "Otter", "Panda", "Quail", "Raven", "Seal", "Tapir", "Walrus", "Yak", "Zebra",
];

const pick = (list) => list[crypto.getRandomValues(new Uint32Array(1))[0] % list.length];

const randomId = () =>
  Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");

/** A name such as "Plucky Otter": friendly, and unlikely to clash in one diagram. */
export const generatedName = () => `${pick(ADJECTIVES)} ${pick(ANIMALS)}`;

function stored() {
  try {
    const value = JSON.parse(localStorage.getItem(KEY));
    if (value && typeof value.name === "string" && value.name && typeof value.id === "string") {
      return { id: value.id, name: value.name, color: value.color || COLORS[0] };
    }
  } catch {
    // unreadable: start afresh
  }
  return null;
}

/** This browser's identity: the stored one, or a generated one (stored at once). */
export function loadIdentity() {
  const found = stored();
  if (found) return found;
  const identity = { id: randomId(), name: generatedName(), color: pick(COLORS) };
  localStorage.setItem(KEY, JSON.stringify(identity));
  return identity;
}

/** Change the name and/or colour; the id stays (it is what peers know us by). */
export function saveIdentity({ name, color }) {
  const previous = loadIdentity();
  const identity = {
    id: previous.id,
    name: (name ?? previous.name).trim().slice(0, 64) || previous.name,
    color: color || previous.color,
  };
  localStorage.setItem(KEY, JSON.stringify(identity));
  return identity;
}
