import { useState } from "react";
import { shareLink, tokenClaims } from "./api.js";

// Without auth the diagram's plain link is the invitation: whoever has it edits.
// With auth the page's own token is never handed on (it may open far more than
// this diagram): an editor asks the server for an edit or a view-only link to
// this diagram alone, with an expiry (collab/share.py says who may).

const EXPIRIES = [
  ["1 hour", 3600],
  ["1 day", 86_400],
  ["7 days", 7 * 86_400],
  ["30 days", 30 * 86_400],
];

async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false; // no clipboard permission: the link is selectable in its field
  }
}

function LinkField({ label, link, note }) {
  const [copied, setCopied] = useState(false);
  return (
    <div className="share-link">
      <label>
        {label}
        <input readOnly value={link} aria-label={label} onFocus={(e) => e.target.select()} />
      </label>
      <button type="button" onClick={async () => setCopied(await copy(link))}>
        {copied ? "Copied" : "Copy"}
      </button>
      {note && <small className="muted">{note}</small>}
    </div>
  );
}

export function ShareDialog({ diagram, onClose }) {
  const claims = tokenClaims();
  const [expiresIn, setExpiresIn] = useState(7 * 86_400);
  const [links, setLinks] = useState({});
  const [error, setError] = useState(null);
  const plain = `${location.origin}/d/${encodeURIComponent(diagram)}`;
  const create = async (access) => {
    setError(null);
    try {
      const made = await shareLink(diagram, access, expiresIn);
      setLinks((all) => ({ ...all, [access]: made }));
    } catch (e) {
      setError(e.message);
    }
  };
  const until = (made) =>
    `${made.access === "edit" ? "Can edit" : "View only"}, until ${new Date(
      made.expires * 1000,
    ).toLocaleString()}${made.capped ? " (your own access ends then)" : ""}`;
  return (
    <div className="modal-backdrop" onClick={(e) => e.target === e.currentTarget && onClose()}>
      <div className="modal share-dialog" role="dialog" aria-label="Share">
        <h2>Share “{diagram}”</h2>
        {!claims && (
          <LinkField
            label="link"
            link={plain}
            note="Anyone with this link can edit: this server runs without access tokens."
          />
        )}
        {claims && claims.publish === false && (
          <p>Your link is view-only: only people who can edit this diagram can create links.</p>
        )}
        {claims && claims.publish !== false && (
          <>
            <label className="share-expiry">
              Links expire after
              <select value={expiresIn} onChange={(e) => setExpiresIn(Number(e.target.value))}>
                {EXPIRIES.map(([text, seconds]) => (
                  <option key={seconds} value={seconds}>
                    {text}
                  </option>
                ))}
              </select>
            </label>
            <div className="share-actions">
              <button type="button" onClick={() => create("edit")}>
                Create edit link
              </button>
              <button type="button" onClick={() => create("view")}>
                Create view-only link
              </button>
            </div>
            {["edit", "view"].map(
              (access) =>
                links[access] && (
                  <LinkField
                    key={access}
                    label={access === "edit" ? "edit link" : "view-only link"}
                    link={location.origin + links[access].path}
                    note={until(links[access])}
                  />
                ),
            )}
          </>
        )}
        {error && <p className="error">{error}</p>}
        <button type="button" onClick={onClose}>
          Close
        </button>
      </div>
    </div>
  );
}
