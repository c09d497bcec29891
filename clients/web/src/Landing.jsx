import { useCallback, useEffect, useState } from "react";
import {
  DIAGRAM_NAME,
  deleteDiagram,
  listDiagrams,
  renameDiagram,
  thumbnailUrl,
  undeleteDiagram,
} from "./api.js";
import { useTheme } from "./theme.js";

const RECENT = 100; // diagrams listed
const freshName = () => `sketch-${Math.random().toString(36).slice(2, 8)}`;
const open = (name) => location.assign(`/d/${encodeURIComponent(name)}`);

function NameForm({ label, initial, check, id }) {
  const [name, setName] = useState(initial);
  const [error, setError] = useState(null);
  const submit = async (event) => {
    event.preventDefault();
    const value = name.trim();
    try {
      const problem = DIAGRAM_NAME.test(value)
        ? await check?.(value)
        : "Use 1–128 letters, digits, “.”, “_” or “-”.";
      if (problem) setError(problem);
      else open(value);
    } catch (e) {
      setError(e.message);
    }
  };
  return (
    <form onSubmit={submit} className="name-form" id={id}>
      <input
        value={name}
        onChange={(event) => setName(event.target.value)}
        aria-label={`${label}: diagram name`}
        placeholder="diagram name"
      />
      <button type="submit">{label}</button>
      {error && <span className="error">{error}</span>}
    </form>
  );
}

const REFRESH = 10_000; // ms: who is in, new thumbnails

function ago(iso) {
  if (!iso) return "never";
  const seconds = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

function Card({ diagram, onChanged, onError }) {
  const [renaming, setRenaming] = useState(false);
  const [title, setTitle] = useState(diagram.title ?? "");
  const href = `/d/${encodeURIComponent(diagram.id)}`;
  const name = diagram.title || diagram.id;
  const act = (work) => work.then(onChanged).catch((e) => onError(e.message));
  return (
    <article className="card" data-id={diagram.id} aria-label={name}>
      <a href={href} className="card-thumb" tabIndex={-1} aria-hidden="true">
        {diagram.thumbnail_seq != null ? (
          <img src={thumbnailUrl(diagram.id, diagram.thumbnail_seq)} alt={`${name}: thumbnail`} />
        ) : (
          <span className="muted">no preview yet</span>
        )}
      </a>
      {renaming ? (
        <form
          className="card-rename"
          onSubmit={(event) => {
            event.preventDefault();
            setRenaming(false);
            act(renameDiagram(diagram.id, title));
          }}
        >
          <input
            autoFocus
            value={title}
            maxLength={200}
            aria-label={`new title of ${diagram.id}`}
            onChange={(event) => setTitle(event.target.value)}
          />
          <button type="submit">Save</button>
        </form>
      ) : (
        <h3>
          <a href={href}>{name}</a>
        </h3>
      )}
      {diagram.title && <div className="muted card-id">{diagram.id}</div>}
      <div className="card-edit">
        edited {ago(diagram.last_edit)}
        {diagram.author && ` by ${diagram.author}`} · {diagram.elements} elements
      </div>
      {diagram.people?.length > 0 && (
        <div className="card-people" aria-label="in it now">
          {diagram.people.map((person, i) => (
            <span key={i} className="person" style={{ background: person.color || "#dee2e6" }}>
              {person.name}
            </span>
          ))}
        </div>
      )}
      <div className="card-actions">
        <button type="button" onClick={() => setRenaming((v) => !v)}>
          Rename
        </button>
        <button type="button" onClick={() => act(deleteDiagram(diagram.id))}>
          Delete
        </button>
      </div>
    </article>
  );
}

export function Landing() {
  useTheme(); // the editor's light or dark, on this page too
  const [diagrams, setDiagrams] = useState(null);
  const [trash, setTrash] = useState(null); // null: not shown
  const [search, setSearch] = useState("");
  const [error, setError] = useState(null);
  const refresh = useCallback(() => {
    listDiagrams({ limit: RECENT, search }) // the server sorts, last edited first
      .then((found) => {
        setDiagrams(found);
        setError(null);
      })
      .catch((e) => setError(e.message));
  }, [search]);
  const refreshTrash = useCallback(() => {
    listDiagrams({ limit: RECENT, trash: true })
      .then(setTrash)
      .catch((e) => setError(e.message));
  }, []);
  useEffect(() => {
    const timer = setTimeout(refresh, search ? 200 : 0); // typing: ask once it pauses
    const every = setInterval(refresh, REFRESH);
    return () => {
      clearTimeout(timer);
      clearInterval(every);
    };
  }, [refresh, search]);
  const changed = () => {
    refresh();
    if (trash !== null) refreshTrash();
  };
  // asked of the server: the list above holds only the most recent diagrams
  const exists = async (name) => {
    const found = await listDiagrams({ prefix: name, limit: 1000 });
    return found.some((d) => d.id === name) ? `“${name}” exists already: open it by name.` : null;
  };
  return (
    <main className="landing">
      <h1>inkwire</h1>
      <p>Draw together: create a diagram and send its link to whoever should join.</p>
      <h2>New diagram</h2>
      <NameForm label="Create" initial={freshName()} check={exists} id="new-diagram" />
      <h2>Open by name</h2>
      <NameForm label="Open" initial="" id="open-diagram" />
      <div className="recent-head">
        <h2>Recent diagrams</h2>
        <input
          type="search"
          value={search}
          onChange={(event) => setSearch(event.target.value)}
          aria-label="search diagrams"
          placeholder="search by name"
        />
      </div>
      {error && <p className="error">Could not list diagrams: {error}</p>}
      {diagrams === null && !error && <p>Loading…</p>}
      {diagrams?.length === 0 && <p>{search ? "Nothing matches." : "None yet."}</p>}
      {diagrams?.length > 0 && (
        <div className="cards">
          {diagrams.map((d) => (
            <Card key={d.id} diagram={d} onChanged={changed} onError={setError} />
          ))}
        </div>
      )}
      <h2>
        <button
          type="button"
          className="link-button"
          onClick={() => (trash === null ? refreshTrash() : setTrash(null))}
        >
          {trash === null ? "Show the trash" : "Hide the trash"}
        </button>
      </h2>
      {trash?.length === 0 && <p>The trash is empty.</p>}
      {trash?.length > 0 && (
        <ul className="trash">
          {trash.map((d) => (
            <li key={d.id} data-id={d.id}>
              {d.title || d.id} <span className="muted">deleted {ago(new Date(d.deleted * 1000))}</span>{" "}
              <button
                type="button"
                onClick={() =>
                  undeleteDiagram(d.id)
                    .then(changed)
                    .catch((e) => setError(e.message))
                }
              >
                Restore {d.id}
              </button>
            </li>
          ))}
        </ul>
      )}
      <p className="muted">Deleted diagrams stay in the trash for 30 days.</p>
    </main>
  );
}
