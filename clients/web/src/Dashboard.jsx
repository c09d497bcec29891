// The live dashboard (`/dashboard`): every server the collab server knows, refreshed each
// second from its `GET /api/servers` (collab/dashboard.py), and a live tail of relay events.
//
// Rates are computed here from two answers' counters; each server keeps the last
// HISTORY samples for its small charts. A server that stops answering shows as down
// (collab itself too: the fetch fails) and as up again once it answers: nothing to reload.
// The tail speaks the relays' own protocol through clients/js/relay-client.js (which
// reconnects and resubscribes by itself), with the page's token when auth is on.
import { useEffect, useMemo, useRef, useState } from "react";
import { RelayClient } from "../../js/relay-client.js";
import { apiFetch, token } from "./api.js";

const REFRESH_MS = 1000;
const HISTORY = 60; // samples per chart: a minute
const TAIL = 200; // events kept in the tail

const number = (value) => (value == null ? "—" : Number(value).toLocaleString("en"));
const rate = (value) =>
  value == null ? "—" : value >= 100 ? Math.round(value).toLocaleString("en") : value.toFixed(1);
const bytes = (value) => {
  if (value == null) return "—";
  const units = ["B", "kB", "MB", "GB"];
  let i = 0;
  while (value >= 1000 && i < units.length - 1) {
    value /= 1000;
    i += 1;
  }
  return `${value.toFixed(value >= 10 || i === 0 ? 0 : 1)} ${units[i]}`;
};

/** Per-second rate of a counter between two samples (null if unknown or reset). */
function perSecond(now, before, key, seconds) {
  if (!before || now[key] == null || before[key] == null || seconds <= 0) return null;
  const delta = now[key] - before[key];
  return delta >= 0 ? delta / seconds : null;
}

/** A server's key: relays by URL (their name may only be learnt later), collab by kind. */
const keyOf = (server) => server.url ?? `collab:${server.name}`;

function Sparkline({ values, label }) {
  const width = 160;
  const height = 36;
  const points = values.map((v) => v ?? 0);
  const max = Math.max(1, ...points);
  const step = width / Math.max(1, HISTORY - 1);
  const offset = width - step * (points.length - 1);
  const line = points
    .map((v, i) => `${(offset + i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`)
    .join(" ");
  return (
    <svg className="sparkline" width={width} height={height} role="img" aria-label={label}>
      {points.length > 1 && <polyline points={line} fill="none" strokeWidth="1.5" />}
    </svg>
  );
}

function Chart({ title, samples, field, format }) {
  const last = samples.length ? samples[samples.length - 1][field] : null;
  return (
    <div className="chart" data-chart={field}>
      <div className="chart-head">
        <span>{title}</span>
        <strong data-value={last ?? ""}>{format(last)}</strong>
      </div>
      <Sparkline values={samples.map((s) => s[field])} label={title} />
    </div>
  );
}

function ServerCard({ server, samples, rates, onTail }) {
  const state = !server.up ? "down" : server.ready ? "ready" : "not ready";
  const unit = server.kind === "collab" ? "rooms" : "channels";
  return (
    <section
      className="server-card"
      data-server={server.name}
      data-kind={server.kind}
      data-state={state}
    >
      <header>
        <h2>{server.name}</h2>
        <span className={`state state-${state.replace(" ", "-")}`}>{state}</span>
      </header>
      <p className="server-url">{server.url ?? "this server"}</p>
      {server.error && <p className="error server-error">{server.error}</p>}
      <dl className="server-facts">
        <dt>connections</dt>
        <dd data-field="connections">{number(server.up ? server.connections : null)}</dd>
        <dt>{unit}</dt>
        <dd data-field={unit}>{number(server.up ? server[unit] : null)}</dd>
        {server.storage && (
          <>
            <dt>storage</dt>
            <dd data-field="storage">{server.storage}</dd>
          </>
        )}
        {server.redis && (
          <>
            <dt>redis</dt>
            <dd data-field="redis">{server.redis}</dd>
          </>
        )}
        <dt>{server.kind === "collab" ? "updates in" : "events in"}</dt>
        <dd data-field="messages_in">{number(server.up ? server.messages_in : null)}</dd>
      </dl>
      <div className="charts">
        <Chart title={`${server.kind === "collab" ? "updates" : "events"} in /s`} samples={samples} field="in" format={rate} />
        <Chart title="messages out /s" samples={samples} field="out" format={rate} />
        <Chart title="bytes out /s" samples={samples} field="bytes" format={bytes} />
      </div>
      <h3>Busiest {unit}</h3>
      {server.up && server.busiest?.length ? (
        <table className="busiest">
          <thead>
            <tr>
              <th>{server.kind === "collab" ? "room" : "channel"}</th>
              <th>{server.kind === "collab" ? "clients" : "followers"}</th>
              <th>{server.kind === "collab" ? "updates/s" : "events/s"}</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {server.busiest.map((row) => (
              <tr key={row.name} data-name={row.name}>
                <td>{row.name}</td>
                <td>{number(row.connections)}</td>
                <td>{rate(rates[row.name])}</td>
                <td>
                  <button
                    type="button"
                    className="link-button"
                    onClick={() => onTail(server, server.kind === "collab" ? `diagram:${row.name}` : row.name)}
                  >
                    tail
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p className="muted">none</p>
      )}
    </section>
  );
}

/** The servers, polled; each with its recent samples and per-room/channel rates. */
function useServers() {
  const [view, setView] = useState({ servers: [], reachable: null, error: null, at: null });
  const memory = useRef(new Map()); // key -> {last, samples, counts}
  useEffect(() => {
    let stopped = false;
    let timer = null;
    const tick = async () => {
      try {
        const response = await apiFetch("/api/servers", { cache: "no-store" });
        const body = await response.json().catch(() => ({}));
        if (response.status === 401) {
          throw new Error("auth is on: open this page as /dashboard?token=… with a token");
        }
        if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
        const now = performance.now() / 1000;
        const servers = body.servers.map((server) => {
          const key = keyOf(server);
          const kept = memory.current.get(key) ?? { last: null, at: null, samples: [], counts: {} };
          const seconds = kept.at == null ? 0 : now - kept.at;
          const sample = server.up
            ? {
                in: perSecond(server, kept.last, "messages_in", seconds),
                out: perSecond(server, kept.last, "frames_out", seconds),
                bytes: perSecond(server, kept.last, "bytes_out", seconds),
              }
            : { in: null, out: null, bytes: null };
          const rates = {};
          const counts = {};
          for (const row of server.busiest ?? []) {
            counts[row.name] = row.count;
            const before = kept.counts[row.name];
            if (before != null && seconds > 0 && row.count >= before) {
              rates[row.name] = (row.count - before) / seconds;
            }
          }
          const samples = [...kept.samples, sample].slice(-HISTORY);
          memory.current.set(key, {
            last: server.up ? server : null,
            at: now,
            samples,
            counts: server.up ? counts : {},
          });
          return { server, samples, rates };
        });
        if (!stopped) setView({ servers, reachable: true, error: null, at: new Date() });
      } catch (error) {
        if (!stopped) {
          setView((old) => ({
            ...old,
            reachable: false,
            error: error.message,
            at: new Date(),
            // collab unreachable: everything it reported on is unknown now
            servers: old.servers.map((s) => ({ ...s, server: { ...s.server, up: false, ready: false } })),
          }));
        }
      }
      if (!stopped) timer = setTimeout(tick, REFRESH_MS);
    };
    tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, []);
  return view;
}

/** One relay client per WebSocket URL, connected on first use, retried until it connects. */
function useTail() {
  const [events, setEvents] = useState([]);
  const [subscriptions, setSubscriptions] = useState([]); // [{url, server, channel, status}]
  const clients = useRef(new Map());
  useEffect(
    () => () => {
      for (const entry of clients.current.values()) entry.client.close();
    },
    [],
  );
  const update = (url, channel, status) =>
    setSubscriptions((list) =>
      list.map((s) => (s.url === url && s.channel === channel ? { ...s, status } : s)),
    );

  const clientFor = (url, server) => {
    let entry = clients.current.get(url);
    if (entry) return entry;
    const client = new RelayClient(url, { token: token() ?? undefined, batch: true });
    const add = (item) => setEvents((list) => [{ ...item, server, at: new Date() }, ...list].slice(0, TAIL));
    client.on("event", (message) =>
      add({
        id: `${url} ${message.room} ${message.epoch} ${message.offset}`,
        channel: message.room,
        event: message.event,
        offset: message.offset,
        data: message.data,
      }),
    );
    // the relay could not replay what was missed (say, it restarted without its history)
    client.on("gap", ({ channel, epoch, offset }) =>
      add({ id: `${url} gap ${channel} ${epoch} ${offset}`, channel, event: "gap", offset, data: "events missed" }),
    );
    const mark = (status) =>
      setSubscriptions((list) => list.map((s) => (s.url === url && s.status !== "connecting" ? { ...s, status } : s)));
    client.on("close", ({ willReconnect }) => mark(willReconnect ? "reconnecting" : "closed"));
    client.on("open", () => mark("live")); // subscriptions are renewed right after
    entry = { client, ready: null };
    entry.ready = (async () => {
      // the first connection must succeed before the client reconnects by itself
      for (;;) {
        try {
          await client.connect();
          return;
        } catch (error) {
          if (error.code === "CLOSED") throw error;
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
      }
    })();
    clients.current.set(url, entry);
    return entry;
  };

  const subscribe = async (url, server, channel) => {
    setSubscriptions((list) =>
      list.some((s) => s.url === url && s.channel === channel)
        ? list
        : [...list, { url, server, channel, status: "connecting" }],
    );
    const entry = clientFor(url, server);
    try {
      await entry.ready;
      await entry.client.subscribe(channel);
      update(url, channel, "live");
    } catch (error) {
      update(url, channel, `refused: ${error.message}`);
    }
  };
  const unsubscribe = (url, channel) => {
    setSubscriptions((list) => list.filter((s) => !(s.url === url && s.channel === channel)));
    clients.current.get(url)?.client.unsubscribe(channel).catch(() => {});
  };
  return { events, subscriptions, subscribe, unsubscribe };
}

function eventsUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/events`;
}

function Tail({ servers, tail, chosen, setChosen }) {
  const [channel, setChannel] = useState("");
  const [filter, setFilter] = useState("");
  const targets = servers.map(({ server }) => ({
    label: server.name,
    url: server.ws_url ?? eventsUrl(),
  }));
  const target = targets.find((t) => t.url === chosen) ?? targets[0];
  const shown = useMemo(
    () => tail.events.filter((e) => !filter || e.channel.includes(filter)),
    [tail.events, filter],
  );
  const submit = (event) => {
    event.preventDefault();
    const name = channel.trim();
    if (target && name) tail.subscribe(target.url, target.label, name);
  };
  return (
    <section className="tail" id="tail">
      <h2>Live events</h2>
      <form className="tail-form" onSubmit={submit}>
        <select
          aria-label="server"
          value={target?.url ?? ""}
          onChange={(event) => setChosen(event.target.value)}
        >
          {targets.map((t) => (
            <option key={t.url} value={t.url}>
              {t.label}
            </option>
          ))}
        </select>
        <input
          aria-label="channel"
          placeholder="channel, e.g. adapter:a1 or diagram:plan"
          value={channel}
          onChange={(event) => setChannel(event.target.value)}
        />
        <button type="submit">Subscribe</button>
        <input
          aria-label="filter"
          placeholder="show channels containing…"
          value={filter}
          onChange={(event) => setFilter(event.target.value)}
        />
      </form>
      <ul className="tail-subscriptions">
        {tail.subscriptions.map((s) => (
          <li key={`${s.url} ${s.channel}`} data-channel={s.channel} data-status={s.status}>
            {s.server} · {s.channel} <em>{s.status}</em>{" "}
            <button type="button" className="link-button" onClick={() => tail.unsubscribe(s.url, s.channel)}>
              ×
            </button>
          </li>
        ))}
      </ul>
      <ol className="tail-events">
        {shown.map((e) => (
          <li key={e.id} data-channel={e.channel} data-event={e.event}>
            <time>{e.at.toLocaleTimeString()}</time> <span className="muted">{e.server}</span>{" "}
            <strong>{e.channel}</strong> #{e.offset} <code>{e.event}</code>{" "}
            <span className="tail-data">{JSON.stringify(e.data).slice(0, 240)}</span>
          </li>
        ))}
      </ol>
    </section>
  );
}

export function Dashboard() {
  const view = useServers();
  const tail = useTail();
  const [chosen, setChosen] = useState(null);
  const onTail = (server, channel) => {
    const url = server.ws_url ?? eventsUrl();
    setChosen(url);
    tail.subscribe(url, server.name, channel);
  };
  return (
    <main className="dashboard" data-reachable={String(view.reachable)}>
      <header className="dashboard-head">
        <h1>inkwire dashboard</h1>
        <span className="muted">
          {view.reachable === false
            ? `cannot read the servers (${view.error}), retrying…`
            : view.at
              ? `updated ${view.at.toLocaleTimeString()}`
              : "loading…"}
        </span>
        <a href="/">diagrams</a>
      </header>
      <div className="server-grid">
        {view.servers.map(({ server, samples, rates }) => (
          <ServerCard key={keyOf(server)} server={server} samples={samples} rates={rates} onTail={onTail} />
        ))}
      </div>
      <Tail servers={view.servers} tail={tail} chosen={chosen} setChosen={setChosen} />
    </main>
  );
}
