import { Excalidraw } from "@excalidraw/excalidraw";
import { useEffect, useRef, useState } from "react";
import { download, exportDiagram, history, restoreVersion } from "./api.js";

// The slider runs over the diagram's saved versions; the chosen one is shown
// read-only in a preview over the live canvas, which keeps syncing beneath.

function describe(version) {
  const parts = [];
  if (version.added.length) parts.push(`${version.added.length} added`);
  if (version.changed.length) parts.push(`${version.changed.length} changed`);
  if (version.removed.length) parts.push(`${version.removed.length} removed`);
  return parts.join(", ") || "no element changes";
}

export function HistoryPanel({ diagram, api, onClose }) {
  const [versions, setVersions] = useState(null);
  const [position, setPosition] = useState(0);
  const [scene, setScene] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const preview = useRef(null);

  useEffect(() => {
    history(diagram)
      .then((list) => {
        setVersions(list);
        setPosition(Math.max(0, list.length - 1));
      })
      .catch((e) => setError(e.message));
  }, [diagram]);

  const version = versions?.[position];

  // Fetch the chosen version (the latest request wins when the slider moves fast).
  useEffect(() => {
    if (!version) return undefined;
    let current = true;
    const timer = setTimeout(() => {
      exportDiagram(diagram, version.seq)
        .then((data) => current && setScene({ seq: version.seq, data }))
        .catch((e) => current && setError(e.message));
    }, 120);
    return () => {
      current = false;
      clearTimeout(timer);
    };
  }, [diagram, version]);

  useEffect(() => {
    if (!scene || !preview.current) return;
    preview.current.addFiles(Object.values(api.getFiles()));
    preview.current.updateScene({ elements: scene.data.elements });
    preview.current.scrollToContent(undefined, { fitToContent: true, animate: false });
  }, [scene, api]);

  const restore = async () => {
    setBusy(true);
    try {
      await restoreVersion(diagram, version.seq);
      onClose();
    } catch (e) {
      setError(e.message);
    } finally {
      setBusy(false);
    }
  };

  const save = () => {
    const text = JSON.stringify(scene.data, null, 2);
    download(
      new Blob([text], { type: "application/vnd.excalidraw+json" }),
      `${diagram}@${scene.seq}.excalidraw`,
    );
  };

  const ready = scene && version && scene.seq === version.seq;
  return (
    <div className="history-overlay">
      <div className="history-preview" data-seq={ready ? scene.seq : ""}>
        <Excalidraw
          excalidrawAPI={(instance) => {
            preview.current = instance;
            if (window.inkwire) window.inkwire.preview = instance; // for tests and the console
          }}
          viewModeEnabled
          initialData={{ elements: [], appState: { viewBackgroundColor: "#f8f9fa" } }}
        />
      </div>
      <aside className="history-panel">
        <header>
          <h2>History</h2>
          <button onClick={onClose} aria-label="close history">
            ×
          </button>
        </header>
        {error && <p className="error">{error}</p>}
        {versions === null && !error && <p>Loading versions…</p>}
        {versions?.length === 0 && <p>Nothing saved yet.</p>}
        {versions?.length > 0 && (
          <>
            <input
              type="range"
              className="history-slider"
              min={0}
              max={versions.length - 1}
              value={position}
              onChange={(event) => setPosition(Number(event.target.value))}
              aria-label="version"
            />
            <p className="history-version">
              Version {position + 1} of {versions.length} (#{version.seq})
              <br />
              {new Date(version.time).toLocaleString()} · {version.origin || "unknown"}
              <br />
              {describe(version)}
            </p>
            <div className="history-actions">
              <button onClick={restore} disabled={!ready || busy}>
                Restore this version
              </button>
              <button onClick={save} disabled={!ready}>
                Download .excalidraw
              </button>
            </div>
          </>
        )}
      </aside>
    </div>
  );
}
