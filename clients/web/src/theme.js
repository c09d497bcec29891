// Light or dark: the system's setting until the user picks one with
// Excalidraw's toggle; the pick is kept in this browser (localStorage).
import { useCallback, useEffect, useState } from "react";

const KEY = "inkwire.theme";
const dark = () => window.matchMedia?.("(prefers-color-scheme: dark)").matches ?? false;
const system = () => (dark() ? "dark" : "light");

function chosen() {
  const value = localStorage.getItem(KEY);
  return value === "dark" || value === "light" ? value : null;
}

/** [theme, setTheme]: setTheme(t) is the user's choice, remembered in this browser. */
export function useTheme() {
  const [theme, setState] = useState(() => chosen() ?? system());
  useEffect(() => {
    // follow the system while the user has not chosen
    const query = window.matchMedia?.("(prefers-color-scheme: dark)");
    const changed = () => chosen() ?? setState(system());
    query?.addEventListener("change", changed);
    return () => query?.removeEventListener("change", changed);
  }, []);
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
  }, [theme]);
  const setTheme = useCallback((next) => {
    if (next !== "dark" && next !== "light") return;
    localStorage.setItem(KEY, next);
    setState(next);
  }, []);
  return [theme, setTheme];
}
