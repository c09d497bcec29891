import { createRoot } from "react-dom/client";
import { DIAGRAM_NAME } from "./api.js";
import { Dashboard } from "./Dashboard.jsx";
import { Editor } from "./Editor.jsx";
import { Landing } from "./Landing.jsx";
import { keepAppOffline } from "./offline.js";
import "./styles.css";

// Three pages, routed here: the server answers these paths with this app.
function App() {
  if (/^\/dashboard\/?$/.test(location.pathname)) return <Dashboard />;
  const match = location.pathname.match(/^\/d\/([^/]+)\/?$/);
  if (!match) return <Landing />;
  const diagram = decodeURIComponent(match[1]);
  if (!DIAGRAM_NAME.test(diagram)) {
    return (
      <main className="landing">
        <h1>inkwire</h1>
        <p className="error">
          “{diagram}” is not a diagram name: use 1–128 letters, digits, “.”, “_” or “-”.
        </p>
        <a href="/">All diagrams</a>
      </main>
    );
  }
  return <Editor diagram={diagram} />;
}

createRoot(document.getElementById("root")).render(<App />);
// after the first paint: caching the app must not slow its start
window.addEventListener("load", () => setTimeout(keepAppOffline, 1000));
