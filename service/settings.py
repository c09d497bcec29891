"""The settings of every inkwire server, as one model: the shape of ``inkwire.yaml``.

Each key is a pydantic field whose description says what it drives in inkwire
(docs/configuration.md's table is generated from them, and a test keeps it so).
The keys the existing deployments write in their ``websocket:`` sections
(``enabled``, ``host``, ``port``, ``max_connections``, ``message_rate_limit``,
``broadcast_queue_size``, ``ping_interval``, ``ping_timeout``, ``close_timeout``,
``channels``, ``collaboration.*``) are on the collab server and on each relay;
inkwire's own (store, Redis, auth, history, limits) sit beside them.

Every model is strict and closed: a string where a number belongs, or a key
the model does not have, is an error (see :mod:`service.sources` for how it is
reported with the file's line). Checks that need several keys at once (a
certificate without its key, two servers on one port) are not validators here
but :func:`service.sources.check`, run once the sources are merged, so a key
given in one source and its partner in another are judged together.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr
from pydantic.fields import FieldInfo

from collab.dashboard import relay_url
from relays.catalog import Catalog
from relays.catalogs import SERVICES

Port = Annotated[int, Field(ge=0, le=65535)]  # 0: any free port the system picks
Positive = Annotated[int, Field(ge=1)]
Seconds = Annotated[float, Field(ge=0)]


def _forever(value: Any) -> Any:
    return None if value == "forever" else value


SecondsOrForever = Annotated[Seconds | None, BeforeValidator(_forever)]
RelayUrl = Annotated[str, AfterValidator(relay_url)]  # http(s)://HOST:PORT, normalised


def key(
    default: Any = None,
    what: str = "",
    *,
    env: str | None = None,
    deployment: bool = False,
    **constraints: Any,
) -> Any:
    """A settings key: its default, what it drives, and the names it has elsewhere.

    ``env``: the environment variable, when not the generated ``INKWIRE_<PATH>``
    (the variables inkwire read before this file existed keep their names);
    ``deployment``: one of the keys the existing deployments write.
    """
    extra: dict[str, Any] = {"deployment": deployment}
    if env is not None:
        extra["env"] = env
    return Field(default, description=what, json_schema_extra=extra, **constraints)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Collaboration(Section):
    max_users_per_room: Positive = key(
        50,
        "connections one diagram takes; one more is closed with 4429 (room full)",
        deployment=True,
    )
    cursor_throttle_ms: Annotated[float, Field(ge=0)] = key(
        50,
        "at most one awareness (cursor, selection) broadcast per client per this many ms",
        deployment=True,
    )


NO_EQUIVALENT_PING_TIMEOUT = (
    "no equivalent: inkwire never closes a client for being silent (a dead peer is found "
    "when writing to it fails or it falls behind: 4009); accepted, and `config check` and "
    "the start say it has no effect"
)
CHANNELS = (
    "no equivalent: a server's channels are its catalog's; the names listed are checked "
    "against the catalog (`config check` and the start warn about those it does not have) "
    "and change nothing"
)


class Server(Section):
    """The keys every server has: the deployments' ``websocket:`` section."""

    enabled: bool = key(True, "`inkwire up` starts this server", deployment=True)
    host: str = key("127.0.0.1", "address to listen on", deployment=True)
    port: Port = key(0, "TCP port to listen on (0: any free one)", deployment=True)
    max_connections: Positive = key(
        10_000,
        "WebSocket connections the server takes; more are closed with 1013 (server full)",
        deployment=True,
    )
    message_rate_limit: Annotated[float, Field(gt=0)] = key(
        200.0,
        "relay messages a connection may send per second, sustained (bursts of twice that); "
        "past it RATE_LIMITED, then close 4008",
        deployment=True,
    )
    broadcast_queue_size: Positive = key(
        10_000,
        "entries a client may fall behind the broadcast log before it is closed with 4009 "
        "(slow consumer); inkwire queues no copies, so this bounds lag, not memory per message",
        deployment=True,
    )
    ping_interval: Seconds | None = key(
        25.0,
        "seconds of silence before a keepalive message is sent (null or 0: never); "
        "an application message, not a WebSocket ping",
        deployment=True,
    )
    ping_timeout: Seconds | None = key(None, NO_EQUIVALENT_PING_TIMEOUT, deployment=True)
    close_timeout: Seconds = key(
        1.0,
        "seconds the closing handshake may take before the socket is cut",
        deployment=True,
    )
    channels: list[str] | None = key(None, CHANNELS, deployment=True)


class CollabServer(Server):
    """The collab server (``inkwire serve``): Yjs rooms, the REST API, the web app, /events."""

    port: Port = key(3042, "TCP port to listen on (0: any free one)", deployment=True)
    host: str = key("127.0.0.1", "address to listen on", deployment=True)
    max_connections: Positive = key(
        10_000,
        "Yjs connections in all (`/yjs`), and the `/events` relay's; more are closed with "
        "1013 (server full)",
        deployment=True,
    )
    message_rate_limit: Annotated[float, Field(gt=0)] = key(
        200.0,
        "messages per second a JSON client of `/events` may send (bursts of twice that)",
        deployment=True,
    )
    yjs_message_rate_limit: Annotated[float, Field(gt=0)] | None = key(
        300.0,
        "messages per second a Yjs client may send (bursts of twice that; a fast drag sends "
        "~60-120): past it its reading is paused, and one that keeps on is closed with 4008 "
        "(null: no limit)",
    )
    broadcast_queue_size: Positive = key(
        10_000,
        "entries a Yjs client (and an `/events` client) may fall behind before it is closed "
        "with 4009 (slow consumer)",
        deployment=True,
    )
    ping_interval: Seconds | None = key(
        10.0,
        "seconds of silence before a Yjs client gets a keepalive message (null or 0: never); "
        "`/events` keeps its relay's 25 s",
        deployment=True,
    )
    close_timeout: Seconds = key(
        1.0,
        "seconds the closing handshake may take (`/yjs` and `/events`) before the socket is cut",
        deployment=True,
    )
    collaboration: Collaboration = Field(default_factory=Collaboration)
    db: str = key(
        "inkwire.db",
        "SQLite file, or `postgresql://USER@HOST:PORT/DBNAME` (password from `$PGPASSWORD` or "
        "`~/.pgpass`), diagrams autosave to (`:memory:` keeps nothing)",
    )
    compress: bool = key(
        False,
        "zlib-compress saved blobs",
    )
    checkpoint_every: Positive = key(
        500,
        "updates between checkpoints",
    )
    retention: Seconds = key(
        7 * 86400.0,
        "seconds of full-resolution history before it is merged per minute",
    )
    tombstone_retention: SecondsOrForever = key(
        86400.0,
        "seconds a deleted element's tombstone is kept (null or `forever`: forever)",
    )
    grace: Seconds = key(
        30.0,
        "seconds a room stays loaded after its last client left",
    )
    auth_secret: SecretStr | None = key(
        None,
        "HS256 secret of client tokens on `/yjs`, `/api` and `/events` (null: auth off)",
        env="INKWIRE_COLLAB_SECRET",
    )
    web_root: str | None = key(
        None,
        "the built web app to serve (null: clients/web/dist of this checkout)",
    )
    dashboard_relays: list[RelayUrl] | None = key(
        None,
        "relays `/dashboard` shows besides this server, as `http(s)://HOST:PORT` (null: under "
        "`inkwire up`, the enabled relays it runs; under `inkwire serve`, none)",
    )
    max_rooms: Positive = key(10_000, "rooms loaded at once; one more is closed with 1013")
    max_message_size: Positive = key(16 << 20, "bytes in one Yjs frame; a bigger one closes 1009")
    max_file_bytes: Positive = key(4 << 20, "bytes of one image uploaded to the API (413 past it)")


class RelayServer(Server):
    """One service's relay (``inkwire relay NAME``)."""


def _relay(catalog: Catalog) -> Any:
    return Field(
        default_factory=lambda: RelayServer(port=catalog.port),
        alias=catalog.service,
        description=f"the {catalog.service} relay (port {catalog.port})",
    )


fastblocks, crackerjack, mahavishnu, akosha, dhruva, session_buddy = SERVICES


class Relays(Section):
    """The six service relays, and what they share."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False)

    auth_secret: SecretStr | None = key(
        None,
        "HS256 secret of client tokens on every relay (null: auth off)",
        env="INKWIRE_RELAY_SECRET",
    )
    db: str | None = key(
        None,
        "SQLite file or PostgreSQL URL the relays keep their history in, so recovery "
        "survives a restart (null: memory; not with `redis`)",
    )
    history_size: Positive = key(
        1000,
        "events kept per channel for recovery",
    )
    history_age: Seconds = key(
        3600.0,
        "seconds an event stays recoverable",
    )
    max_message_size: Positive = key(1 << 20, "bytes in one client frame; a bigger one closes 1009")
    fastblocks: RelayServer = _relay(fastblocks)
    crackerjack: RelayServer = _relay(crackerjack)
    mahavishnu: RelayServer = _relay(mahavishnu)
    akosha: RelayServer = _relay(akosha)
    dhruva: RelayServer = _relay(dhruva)
    session_buddy: RelayServer = _relay(session_buddy)

    def servers(self) -> dict[str, RelayServer]:
        """Each relay's section by service name, in port order."""
        return {c.service: getattr(self, _attr(c.service)) for c in SERVICES}


class Tls(Section):
    certfile: str | None = key(
        None,
        "PEM certificate chain: with `keyfile`, every server speaks only TLS "
        "(`https://`, `wss://`)",
    )
    keyfile: str | None = key(
        None,
        "PEM private key of `certfile`",
    )


class Log(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = key(
        "INFO",
        "log level",
    )
    format: Literal["text", "json"] = key(
        "text",
        "`text` lines, or one JSON object per line for log shippers",
    )


class Settings(Section):
    """All of ``inkwire.yaml``."""

    collab: CollabServer = Field(default_factory=CollabServer)
    relays: Relays = Field(default_factory=Relays)
    redis: str | None = key(
        None,
        "Redis URL (redis://HOST:PORT/DB) of a cluster: every server runs as a node "
        "sharing rooms and channels through it (null: one node, no Redis)",
        env="INKWIRE_REDIS_URL",
        pattern=r"^rediss?://",
    )
    workers: Positive | None = key(
        None,
        "`inkwire up`: worker processes per server, sharing its port (null: the number of "
        "cores with `redis`, 1 without); more than 1 needs `redis`",
    )
    tls: Tls = Field(default_factory=Tls)
    log: Log = Field(default_factory=Log)

    def servers(self) -> list[ServerAddress]:
        """Every enabled server: what ``inkwire up`` starts and a dashboard would watch."""
        scheme = "https" if self.tls.certfile else "http"
        found = []
        if self.collab.enabled:
            found.append(ServerAddress("collab", self.collab.host, self.collab.port, scheme, "/"))
        for name, relay in self.relays.servers().items():
            if relay.enabled:
                found.append(ServerAddress(name, relay.host, relay.port, scheme, "/"))
        return found


@dataclass(frozen=True)
class ServerAddress:
    """Where one configured server listens."""

    service: str
    host: str
    port: int
    scheme: str  # http or https
    ws_path: str  # the WebSocket route's root: `/yjs/{diagram}` and `/events` for collab

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = "[::1]" if host == "::" else (f"[{host}]" if ":" in host else host)
        return f"{self.scheme}://{host}:{self.port}"


def _attr(name: str) -> str:
    return name.replace("-", "_")


# --- walking the model: one row per key ---------------------------------------------


@dataclass(frozen=True)
class Leaf:
    """One settings key: its dotted path, field and the names it goes by."""

    path: tuple[str, ...]  # as written in the file: ("relays", "session-buddy", "port")
    field: FieldInfo
    model: type[BaseModel]  # the section it belongs to

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    @property
    def extra(self) -> dict[str, Any]:
        extra = self.field.json_schema_extra
        return extra if isinstance(extra, dict) else {}

    @property
    def env(self) -> str:
        name = self.extra.get("env")
        if isinstance(name, str):
            return name
        return "INKWIRE_" + "_".join(self.path).upper().replace("-", "_")

    @property
    def secret(self) -> bool:
        return SecretStr in _types(self.field.annotation)

    @property
    def text_valued(self) -> bool:
        """Read from the environment as the string it is (not parsed as YAML)."""
        return _types(self.field.annotation) - {type(None)} <= {str, SecretStr}


def _types(annotation: Any) -> set[Any]:
    """The types a key's value may have (Annotated and unions unwrapped; list, Literal...
    as their origin)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _types(get_args(annotation)[0])
    if origin in (Union, UnionType):
        return {t for arg in get_args(annotation) for t in _types(arg)}
    return {origin if origin is not None else annotation}


def leaves(model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()) -> Iterator[Leaf]:
    """Every key of ``model``, depth first, in declaration order."""
    for name, field in model.model_fields.items():
        written = field.alias or name
        sub = _submodel(field)
        if sub is not None:
            yield from leaves(sub, (*prefix, written))
        else:
            yield Leaf((*prefix, written), field, model)


def _submodel(field: FieldInfo) -> type[BaseModel] | None:
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def value_at(settings: BaseModel, path: tuple[str, ...]) -> Any:
    """The value of the key at ``path`` (as written in the file) in ``settings``."""
    node: Any = settings
    for part in path:
        node = getattr(node, _attr(part))
    return node


def dump(settings: Settings) -> dict[str, Any]:
    """Every key as written in the file, secrets included: what ``inkwire up`` hands
    its workers (over a pipe, never on a command line)."""

    def reveal(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, dict):
            return {k: reveal(v) for k, v in value.items()}
        if isinstance(value, list):
            return [reveal(v) for v in value]
        return value

    data: dict[str, Any] = reveal(settings.model_dump(by_alias=True))
    return data
