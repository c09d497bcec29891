import { CaptureUpdateAction, Excalidraw, exportToBlob } from "@excalidraw/excalidraw";
import "@excalidraw/excalidraw/index.css";
import { useCallback, useEffect, useRef, useState } from "react";
import { readAuthMessage } from "y-protocols/auth";
import { WebsocketProvider } from "y-websocket";
import * as Y from "yjs";
import {
  download,
  listDiagrams,
  setLocked,
  token,
  tokenClaims,
  undeleteDiagram,
  yjsUrl,
} from "./api.js";
import { ElementsBinding } from "./binding.js";
import { FileSync } from "./files.js";
import { HistoryPanel } from "./HistoryPanel.jsx";
import { ShareDialog } from "./ShareDialog.jsx";
import { OfflineDoc } from "./offline.js";
import { COLORS, loadIdentity, saveIdentity } from "./identity.js";
import { IDLE_AFTER, peopleIn, Presence } from "./presence.js";
import { useTheme } from "./theme.js";

// Closes after which reconnecting cannot help: no valid token (4001), and
// y-websocket's own rule, 44xx (a forbidden diagram, a bad name, a full room).
const finalClose = (event) => event.code === 4001 || (event.code >= 4400 && event.code < 4500);

// `?idle=MS` shortens the idle time (for tests and demos); anything else is the default.
function idleAfter() {
  const value = Number(new URLSearchParams(location.search).get("idle"));
  return Number.isInteger(value) && value >= 100 ? value : IDLE_AFTER;
}

/** One live editing session: the doc, its connection and the bindings on it. */
function connect(diagram, api, identity, callbacks) {
  const { onStatus, onPeople, onError, onLocked, onRefused, onClosed, onFollowers, onPending } =
    callbacks;
  const doc = new Y.Doc();
  const access = token();
  // disableBc: tabs of one browser would otherwise sync over BroadcastChannel,
  // around the server (and its storage and access checks).
  const provider = new WebsocketProvider(yjsUrl(), diagram, doc, {
    disableBc: true,
    params: access ? { token: access } : {},
    shouldReconnect: (event) => !finalClose(event),
    connect: navigator.onLine,
  });
  provider.on("closed", ({ code, reason }) => onClosed(code, reason));
  const offline = new OfflineDoc(doc, provider, diagram, { onPending });
  const files = new FileSync(doc, api, diagram, { onError });
  const binding = new ElementsBinding(doc, api, { files, onError });
  const presence = new Presence(provider.awareness, api, identity, {
    idleAfter: idleAfter(),
    onFollowers,
  });

  // A locked diagram (meta.locked) takes no edits: the editor goes read-only.
  const meta = doc.getMap("meta");
  const lockChanged = () => onLocked(meta.get("locked") === true);
  meta.observe(lockChanged);
  // The server refused an edit (locked under us, or a read-only token): this
  // tab's copy has diverged from the diagram's, so it starts over from the server's
  // (and forgets the copy kept for offline use, which would send the edit again).
  let refused = false;
  provider.messageHandlers[2] = (_encoder, decoder) =>
    readAuthMessage(decoder, doc, (_doc, reason) => {
      if (refused) return;
      refused = true;
      offline.clear().finally(() => onRefused(reason));
    });

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
  // Offline, the socket is let go (a network that went away may leave it
  // half-open for minutes) and edits wait in IndexedDB; online, it reconnects.
  const online = () => {
    provider.connect();
    report();
  };
  const offlineNow = () => {
    provider.disconnect();
    report();
  };
  window.addEventListener("online", online);
  window.addEventListener("offline", offlineNow);
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
    offline,
    destroy() {
      window.removeEventListener("online", online);
      window.removeEventListener("offline", offlineNow);
      binding.destroy();
      files.destroy();
      presence.destroy();
      offline.destroy();
      provider.destroy();
      doc.destroy();
    },
  };
}

const SWATCHES = COLORS.filter((_, i) => i % 4 === 0); // ten hues around the wheel

/** Change this browser's name and colour (opened from the badge). */
function IdentityEditor({ identity, onSave, onClose }) {
  const [name, setName] = useState(identity.name);
  const [color, setColor] = useState(identity.color);
  return (
    <form
      className="identity-editor"
      onSubmit={(event) => {
        event.preventDefault();
        if (name.trim()) onSave({ name, color });
      }}
    >
      <label>
        Your name
        <input
          autoFocus
          value={name}
          maxLength={64}
          onChange={(event) => setName(event.target.value)}
          aria-label="your name"
        />
      </label>
      <div className="swatches" role="radiogroup" aria-label="your colour">
        {SWATCHES.map((swatch) => (
          <button
            key={swatch}
            type="button"
            role="radio"
            aria-checked={swatch === color}
            aria-label={swatch}
            style={{ background: swatch }}
            onClick={() => setColor(swatch)}
          />
        ))}
      </div>
      <div className="identity-actions">
        <button type="submit" disabled={!name.trim()}>
          Save
        </button>
        <button type="button" onClick={onClose}>
          Cancel
        </button>
      </div>
    </form>
  );
}

const STATUS_TEXT = {
  connecting: "connecting…",
  connected: "connected",
  reconnecting: "reconnecting…",
  offline: "offline: edits sync when back",
};

function StatusBadge({ status, people, pending, locked, readOnly, identity, onClick }) {
  return (
    <button
      type="button"
      className="status-badge"
      title={`${STATUS_TEXT[status]}: click to change your name or colour`}
      onClick={onClick}
      data-status={status}
      data-people={people}
      data-pending={pending}
      data-locked={locked}
      data-read-only={readOnly}
      role="status"
    >
      <span className="dot" />
      <span className="me" style={{ background: identity.color }} data-name={identity.name}>
        {identity.name}
      </span>
      {/* connected is the dot alone: the bar is narrow next to Excalidraw's toolbar */}
      {status !== "connected" && `${STATUS_TEXT[status]} · `}
      {people} {people === 1 ? "person" : "people"}
      {pending > 0 && ` · ${pending} ${pending === 1 ? "change" : "changes"} waiting`}
      {locked && " · locked"}
      {readOnly && " · view only"}
    </button>
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
  const [editingIdentity, setEditingIdentity] = useState(false);
  const [followers, setFollowers] = useState([]);
  const [theme, setTheme] = useTheme();
  const themeShown = useRef(theme); // the theme prop now
  themeShown.current = theme;
  const themeSeen = useRef(theme); // appState.theme at the last onChange
  const [api, setApi] = useState(null);
  const [status, setStatus] = useState("connecting");
  const [people, setPeople] = useState(1);
  const [pending, setPending] = useState(0); // elements changed here, not yet sent
  const [showHistory, setShowHistory] = useState(false);
  const [sharing, setSharing] = useState(false);
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

  // A diagram in the trash still opens (links keep working); the editor says so.
  const [inTrash, setInTrash] = useState(false);
  useEffect(() => {
    listDiagrams({ prefix: diagram, trash: true, limit: 1000 })
      .then((found) => setInTrash(found.some((d) => d.id === diagram)))
      .catch(() => {}); // no list (no token for it, offline): no banner
  }, [diagram]);

  useEffect(() => {
    if (!api) return undefined;
    const live = connect(diagram, api, identity, {
      onStatus: setStatus,
      onPeople: setPeople,
      onError: setMessage,
      onLocked: setLockedState,
      onClosed: (code, reason) => setClosed({ code, reason }),
      onFollowers: setFollowers,
      onPending: setPending,
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
  }, [api, diagram, generation]);

  useEffect(() => {
    session.current?.presence.setIdentity(identity);
  }, [identity]);

  useEffect(() => {
    if (!message) return undefined;
    const timer = setTimeout(() => setMessage(null), 8000);
    return () => clearTimeout(timer);
  }, [message]);

  const onChange = useCallback((elements, appState, files) => {
    // Excalidraw's own toggle (main menu, Alt+Shift+D) moves appState.theme away
    // from the prop; a prop change (the system's setting) moves both, and is no choice.
    if (appState.theme !== themeSeen.current) {
      themeSeen.current = appState.theme;
      if (appState.theme !== themeShown.current) setTheme(appState.theme);
    }
    const live = session.current;
    if (!live) return;
    live.binding.onChange(elements);
    live.presence.onSelection(appState.selectedElementIds);
    live.files.onChange(files);
  }, [setTheme]);

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
        theme={theme}
        UIOptions={{ canvasActions: { toggleTheme: true } }}
        viewModeEnabled={locked || readOnly}
        name={diagram}
        renderTopRightUI={() => (
          <div className="top-right">
            {followers.length > 0 && (
              <span className="followed-by" data-followers={followers.join(",")}>
                followed by {followers.join(", ")}
              </span>
            )}
            <StatusBadge
              status={status}
              people={people}
              pending={pending}
              locked={locked}
              readOnly={readOnly}
              identity={identity}
              onClick={() => setEditingIdentity((v) => !v)}
            />
            <button className="tool-button" onClick={() => setSharing(true)}>
              Share
            </button>
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
      {editingIdentity && (
        <IdentityEditor
          identity={identity}
          onClose={() => setEditingIdentity(false)}
          onSave={(change) => {
            setIdentity(saveIdentity(change));
            setEditingIdentity(false);
          }}
        />
      )}
      {inTrash && (
        <div className="trash-banner" role="status" aria-label="in the trash">
          This diagram is in the trash: it leaves the landing page, and is forgotten after 30
          days.{" "}
          <button
            type="button"
            onClick={() =>
              undeleteDiagram(diagram)
                .then(() => setInTrash(false))
                .catch((e) => setMessage(e.message))
            }
          >
            Restore it
          </button>
        </div>
      )}
      {sharing && <ShareDialog diagram={diagram} onClose={() => setSharing(false)} />}
      {closed && <Closed {...closed} />}
    </div>
  );
}
