import { CaptureUpdateAction, Excalidraw, exportToBlob } from "@excalidraw/excalidraw";
import "@excalidraw/excalidraw/index.css";
import { useCallback, useEffect, useRef, useState } from "react";
import { readAuthMessage } from "y-protocols/auth";
import { WebsocketProvider } from "y-websocket";
import * as Y from "yjs";
import { download, setLocked, token, tokenClaims, yjsUrl } from "./api.js";
import { ElementsBinding } from "./binding.js";
import { FileSync } from "./files.js";
import { HistoryPanel } from "./HistoryPanel.jsx";
import { loadIdentity, saveIdentity } from "./identity.js";
import { peopleIn, Presence } from "./presence.js";

// Closes after which reconnecting cannot help: no valid token (4001), and
// y-websocket's own rule, 44xx (a forbidden diagram, a bad name, a full room).
const finalClose = (event) => event.code === 4001 || (event.code >= 4400 && event.code < 4500);

/** One live editing session: the doc, its connection and the bindings on it. */
function connect(diagram, api, identity, callbacks) {
  const { onStatus, onPeople, onError, onLocked, onRefused, onClosed } = callbacks;
  const doc = new Y.Doc();
  const access = token();
  // disableBc: tabs of one browser would otherwise sync over BroadcastChannel,
  // around the server (and its storage and access checks).
  const provider = new WebsocketProvider(yjsUrl(), diagram, doc, {
    disableBc: true,
    params: access ? { token: access } : {},
    shouldReconnect: (event) => !finalClose(event),
  });
  provider.on("closed", ({ code, reason }) => onClosed(code, reason));
  const files = new FileSync(doc, api, diagram, { onError });
  const binding = new ElementsBinding(doc, api, { files, onError });
  const presence = new Presence(provider.awareness, api, identity);

  // A locked diagram (meta.locked) takes no edits: the editor goes read-only.
  const meta = doc.getMap("meta");
  const lockChanged = () => onLocked(meta.get("locked") === true);
  meta.observe(lockChanged);
  // The server refused an edit (locked under us, or a read-only token): this
  // tab's copy has diverged from the diagram's, so it starts over from the server's.
  provider.messageHandlers[2] = (_encoder, decoder) =>
    readAuthMessage(decoder, doc, (_doc, reason) => onRefused(reason));

  let everConnected = false;
  const report = () => {
    if (!navigator.onLine) onStatus("offline");
    else if (provider.wsconnected) onStatus("connected");
    else onStatus(everConnected ? "reconnecting" : "connecting");
  };
  provider.on("status", ({ status }) => {
    everConnected ||= status === "connected";
    report();
  });
  window.addEventListener("online", report);
  window.addEventListener("offline", report);
  const people = () => onPeople(peopleIn(provider.awareness));
  provider.awareness.on("change", people);
  people();
  report();

  return {
    doc,
    provider,
    binding,
    presence,
    files,
    destroy() {
      window.removeEventListener("online", report);
      window.removeEventListener("offline", report);
      binding.destroy();
      files.destroy();
      presence.destroy();
      provider.destroy();
      doc.destroy();
    },
  };
}

function NamePrompt({ onName }) {
  const [name, setName] = useState("");
  return (
    <div className="modal-backdrop">
      <form
        className="modal name-prompt"
        onSubmit={(event) => {
          event.preventDefault();
          if (name.trim()) onName(name);
        }}
      >
        <h2>Who are you?</h2>
        <p>Others in this diagram see this name next to your pointer.</p>
        <input
          autoFocus
          value={name}
          maxLength={64}
          onChange={(event) => setName(event.target.value)}
          aria-label="your name"
          placeholder="your name"
        />
        <button type="submit" disabled={!name.trim()}>
          Join
        </button>
      </form>
    </div>
  );
}

const STATUS_TEXT = {
  connecting: "connecting…",
  connected: "connected",
  reconnecting: "reconnecting…",
  offline: "offline: edits sync when back",
};

function StatusBadge({ status, people, locked, readOnly }) {
  return (
    <div
      className="status-badge"
      data-status={status}
      data-people={people}
      data-locked={locked}
      data-read-only={readOnly}
      role="status"
    >
      <span className="dot" />
      {STATUS_TEXT[status]} · {people} {people === 1 ? "person" : "people"}
      {locked && " · locked"}
      {readOnly && " · view only"}
    </div>
  );
}

const CLOSE_TEXT = {
  4001: "This link has no valid access token (or it expired): ask whoever shared it for a new one.",
  4403: "This link's access token does not open this diagram.",
  4429: "This diagram is full: too many people are in it right now.",
};

function Closed({ code, reason }) {
  return (
    <div className="modal-backdrop">
      <div className="modal" role="alertdialog" data-close-code={code}>
        <h2>Cannot open this diagram</h2>
        <p>{CLOSE_TEXT[code] || `The server closed the connection (${code}): ${reason}`}</p>
        <a href="/">All diagrams</a>
      </div>
    </div>
  );
}

export function Editor({ diagram }) {
  const [identity, setIdentity] = useState(loadIdentity);
  const [api, setApi] = useState(null);
  const [status, setStatus] = useState("connecting");
  const [people, setPeople] = useState(1);
  const [showHistory, setShowHistory] = useState(false);
  const [message, setMessage] = useState(null);
  const [locked, setLockedState] = useState(false);
  const [generation, setGeneration] = useState(0); // a new one starts a fresh session
  const [closed, setClosed] = useState(null); // {code, reason}: the server will not have us
  // a token that may not edit: the server refuses edits, the editor does not offer them
  const [readOnly] = useState(() => tokenClaims()?.publish === false);
  const session = useRef(null);

  useEffect(() => {
    document.title = `${diagram} · inkwire`;
  }, [diagram]);

  useEffect(() => {
    if (!api || !identity) return undefined;
    const live = connect(diagram, api, identity, {
      onStatus: setStatus,
      onPeople: setPeople,
      onError: setMessage,
      onLocked: setLockedState,
      onClosed: (code, reason) => setClosed({ code, reason }),
      onRefused: (reason) => {
        setMessage(`Your last change was not saved: ${reason}. Showing the diagram as saved.`);
        api.updateScene({ elements: [], captureUpdate: CaptureUpdateAction.NEVER });
        setGeneration((n) => n + 1);
      },
    });
    session.current = live;
    // A handle for tests and the console; nothing in the app reads it.
    window.inkwire = { api, diagram, ...live };
    return () => {
      session.current = null;
      live.destroy();
    };
    // identity changes go to presence below, without reconnecting
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [api, diagram, identity !== null, generation]);

  useEffect(() => {
    if (identity) session.current?.presence.setIdentity(identity);
  }, [identity]);

  useEffect(() => {
    if (!message) return undefined;
    const timer = setTimeout(() => setMessage(null), 8000);
    return () => clearTimeout(timer);
  }, [message]);

  const onChange = useCallback((elements, appState, files) => {
    const live = session.current;
    if (!live) return;
    live.binding.onChange(elements);
    live.presence.onSelection(appState.selectedElementIds);
    live.files.onChange(files);
  }, []);

  const onPointerUpdate = useCallback((payload) => {
    session.current?.presence.onPointerUpdate(payload);
  }, []);

  const exportPng = useCallback(async () => {
    const blob = await exportToBlob({
      elements: api.getSceneElements(),
      appState: { ...api.getAppState(), exportBackground: true },
      files: api.getFiles(),
      mimeType: "image/png",
    });
    download(blob, `${diagram}.png`);
  }, [api, diagram]);

  return (
    <div className="editor">
      <Excalidraw
        excalidrawAPI={setApi}
        onChange={onChange}
        onPointerUpdate={onPointerUpdate}
        isCollaborating
        viewModeEnabled={locked || readOnly}
        name={diagram}
        renderTopRightUI={() => (
          <div className="top-right">
            <StatusBadge status={status} people={people} locked={locked} readOnly={readOnly} />
            <button
              className="tool-button"
              disabled={readOnly}
              onClick={() =>
                setLocked(diagram, !locked, identity?.name).catch((e) => setMessage(e.message))
              }
            >
              {locked ? "Unlock" : "Lock"}
            </button>
            <button className="tool-button" onClick={() => setShowHistory((v) => !v)}>
              History
            </button>
            <button className="tool-button" onClick={exportPng} disabled={!api}>
              Export PNG
            </button>
          </div>
        )}
      />
      {showHistory && api && (
        <HistoryPanel diagram={diagram} api={api} onClose={() => setShowHistory(false)} />
      )}
      {message && (
        <div className="toast" role="alert" onClick={() => setMessage(null)}>
          {message}
        </div>
      )}
      {!identity && <NamePrompt onName={(name) => setIdentity(saveIdentity(name))} />}
      {closed && <Closed {...closed} />}
    </div>
  );
}
