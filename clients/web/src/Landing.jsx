import { useEffect, useState } from "react";
import { DIAGRAM_NAME, listDiagrams } from "./api.js";

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

export function Landing() {
  const [diagrams, setDiagrams] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    listDiagrams({ limit: RECENT }) // the server sorts, last edited first
      .then(setDiagrams)
      .catch((e) => setError(e.message));
  }, []);
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
      <h2>Recent diagrams</h2>
      {error && <p className="error">Could not list diagrams: {error}</p>}
      {diagrams === null && !error && <p>Loading…</p>}
      {diagrams?.length === 0 && <p>None yet.</p>}
      {diagrams?.length > 0 && (
        <table className="diagrams">
          <thead>
            <tr>
              <th>Diagram</th>
              <th>Elements</th>
              <th>Last edit</th>
            </tr>
          </thead>
          <tbody>
            {diagrams.map((d) => (
              <tr key={d.id}>
                <td>
                  <a href={`/d/${encodeURIComponent(d.id)}`}>{d.id}</a>
                </td>
                <td>{d.elements}</td>
                <td>{d.last_edit ? new Date(d.last_edit).toLocaleString() : "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </main>
  );
}
