"""Where each setting comes from: flags > environment > file > defaults.

Each source is read into a nested dict of its own and validated on its own, in
pydantic's strict mode, so an error names the place the bad value was written:
``inkwire.yaml:12: relays.dhruva.prot: unknown key (did you mean 'port'?)``,
``$INKWIRE_COLLAB_PORT: collab.port: Input should be a valid integer``. Then
the three are merged, validated once more, and :func:`check` judges what needs
several keys at once. :class:`Resolved` keeps, per key, which source won, for
``inkwire config show``.

Why not pydantic-settings' own sources: they merge everything into one dict
before validating, so neither the winning source of a key nor the file's line
of a bad value survives, and its YAML source reads with ``yaml.safe_load``,
which silently keeps the last of two equal keys. PyYAML's node tree gives both
the lines and the duplicates; pydantic does the typing, the constraints and
the messages.

Environment values and ``--set KEY=VALUE`` are read as YAML scalars (``3042``
is a number, ``true`` a boolean, ``null`` nothing, ``[a, b]`` a list), except
for text keys (secrets, paths, hosts), which are taken as written.
"""

from __future__ import annotations

import difflib
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from relays.catalogs import BY_NAME
from service import CONFIG_ENV
from service.settings import Leaf, Settings, leaves, value_at
from storage.urls import redact

LEAVES: dict[tuple[str, ...], Leaf] = {leaf.path: leaf for leaf in leaves()}
BY_DOTTED: dict[str, Leaf] = {leaf.dotted: leaf for leaf in LEAVES.values()}


class SettingsError(Exception):
    """Settings that cannot start a server: one line per problem, each naming where."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class Flag:
    """A value given on the command line, and how it was written (for messages)."""

    value: Any
    written: str  # e.g. "--port 3043" or "--set collab.port=3043"


@dataclass
class Resolved:
    """The effective settings, where each key came from, and notes worth a warning."""

    settings: Settings
    origins: dict[tuple[str, ...], str]  # key path -> "default" | "file X:12" | "env $V" | flag
    config_file: Path | None
    notes: list[str] = field(default_factory=list)

    def origin(self, dotted: str) -> str:
        return self.origins[BY_DOTTED[dotted].path]


# --- the file -------------------------------------------------------------------------


@dataclass
class FileSource:
    path: Path
    data: dict[str, Any]
    lines: dict[tuple[str | int, ...], int]  # key path -> 1-based line of the key

    def where(self, loc: tuple[str | int, ...]) -> str:
        """``file:line`` of the deepest part of ``loc`` the file has."""
        for end in range(len(loc), 0, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return f"{self.path}:{line}"
        return str(self.path)


def read_file(path: Path) -> FileSource:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError([f"{path}: cannot read the settings file: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise SettingsError([f"{path}: not UTF-8 text: {exc.reason}"]) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise SettingsError([f"{path}{line}: not valid YAML: {exc.problem or exc}"]) from exc
    except yaml.YAMLError as exc:
        raise SettingsError([f"{path}: not valid YAML: {exc}"]) from exc
    if data is None:
        return FileSource(path, {}, {})
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise SettingsError([f"{path}:1: the settings file must be a mapping of keys"])
    lines: dict[tuple[str | int, ...], int] = {}
    problems: list[str] = []
    _index(node, (), lines, problems, path)
    if problems:
        raise SettingsError(problems)
    return FileSource(path, data, lines)


def _index(
    node: yaml.Node,
    prefix: tuple[str | int, ...],
    lines: dict[tuple[str | int, ...], int],
    problems: list[str],
    path: Path,
) -> None:
    """Record the line of every key (and list item); report keys written twice."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            name = key_node.value
            here = (*prefix, name)
            if here in lines:
                problems.append(
                    f"{path}:{key_node.start_mark.line + 1}: {_dotted(here)}: written twice "
                    f"(first on line {lines[here]})"
                )
                continue
            lines[here] = key_node.start_mark.line + 1
            _index(value_node, here, lines, problems, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*prefix, i)] = item.start_mark.line + 1
            _index(item, (*prefix, i), lines, problems, path)


# --- environment and flags --------------------------------------------------------


def parse_text(leaf: Leaf, text: str) -> Any:
    """A value written as text (environment, ``--set``), read the way the key wants."""
    if leaf.text_valued:
        return text if text != "" or "None" not in str(leaf.field.annotation) else None
    try:
        return yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        return text  # validation then says what the key wants


def from_env(environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    return {leaf.path: leaf.env for leaf in LEAVES.values() if leaf.env in environ}


def parse_set(item: str) -> tuple[tuple[str, ...], Any]:
    """``KEY=VALUE`` of ``--set``: the key's path and its value."""
    dotted, sep, text = item.partition("=")
    leaf = BY_DOTTED.get(dotted.strip())
    if not sep or leaf is None:
        hint = _suggest(dotted.strip(), list(BY_DOTTED)) if sep else " (write KEY=VALUE)"
        raise SettingsError([f"--set {item}: unknown key{hint}"])
    return leaf.path, parse_text(leaf, text)


# --- putting them together ----------------------------------------------------------


def resolve(
    config_file: Path | str | None = None,
    flags: Mapping[tuple[str, ...], Flag] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Resolved:
    """The effective settings: ``flags`` > ``environ`` > ``config_file`` > defaults.

    ``config_file`` None: ``$INKWIRE_CONFIG`` if set, else no file.
    Raises :class:`SettingsError` naming every problem and where it was written.
    """
    environ = os.environ if environ is None else environ
    flags = flags or {}
    if config_file is None and environ.get(CONFIG_ENV):
        config_file = environ[CONFIG_ENV]
    path = Path(config_file) if config_file is not None else None
    file = read_file(path) if path is not None else None
    problems: list[str] = []

    if file is not None:
        found = [(file.where(tuple(e["loc"])), e) for e in _errors(file.data)]
        for where, error in sorted(found, key=lambda item: _line(item[0])):
            loc = tuple(error["loc"])
            problems.append(f"{where}: {_dotted(loc)}: {_message(error, loc)}")

    env_names = from_env(environ)
    env_data: dict[str, Any] = {}
    for leaf_path, name in env_names.items():
        _put(env_data, leaf_path, parse_text(LEAVES[leaf_path], environ[name]))
    for error in _errors(env_data):
        loc = tuple(error["loc"])
        leaf_path = _leaf_of(loc)
        where = f"${env_names[leaf_path]}" if leaf_path in env_names else "environment"
        problems.append(f"{where}: {_dotted(loc)}: {_message(error, loc)}")

    flag_data: dict[str, Any] = {}
    for leaf_path, flag in flags.items():
        _put(flag_data, leaf_path, flag.value)
    for error in _errors(flag_data):
        loc = tuple(error["loc"])
        given = flags.get(_leaf_of(loc))
        where = given.written if given is not None else "flags"
        problems.append(f"{where}: {_dotted(loc)}: {_message(error, loc)}")
    if problems:
        raise SettingsError(problems)

    merged: dict[str, Any] = {}
    for layer in (file.data if file else {}, env_data, flag_data):
        _merge(merged, layer)
    settings = Settings.model_validate(merged)  # each layer passed alone: so does the whole
    origins: dict[tuple[str, ...], str] = {}
    for leaf_path in LEAVES:
        if leaf_path in flags:
            origins[leaf_path] = f"flag {flags[leaf_path].written}"
        elif leaf_path in env_names:
            origins[leaf_path] = f"env ${env_names[leaf_path]}"
        elif file is not None and leaf_path in file.lines:
            origins[leaf_path] = f"file {file.where(leaf_path)}"
        else:
            origins[leaf_path] = "default"
    resolved = Resolved(settings, origins, path)
    problems, resolved.notes = check(resolved)
    if problems:
        raise SettingsError(problems)
    return resolved


def _line(where: str) -> int:
    tail = where.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _errors(data: dict[str, Any]) -> list[Any]:
    try:
        Settings.model_validate(data)
    except ValidationError as exc:
        return list(exc.errors())
    return []


def _message(error: Any, loc: tuple[str | int, ...]) -> str:
    if error["type"] == "extra_forbidden":
        if loc[-1] == "websocket":
            return (
                "unknown key: a deployment's `websocket:` keys go straight under `collab:` "
                "or `relays.NAME:` (docs/configuration.md)"
            )
        parent = _leaf_parent_keys(loc[:-1])
        return f"unknown key{_suggest(str(loc[-1]), parent)}"
    message = str(error["msg"])
    if error["type"] in ("int_type", "float_type", "bool_type", "string_type", "list_type"):
        message += f", not {type(error['input']).__name__} {error['input']!r}"
    return message


def _leaf_parent_keys(loc: tuple[str | int, ...]) -> list[str]:
    depth = len(loc)
    return sorted(
        {str(p[depth]) for p in LEAVES if len(p) > depth and p[:depth] == tuple(map(str, loc))}
    )


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f"; expected one of: {', '.join(choices)}" if 0 < len(choices) <= 16 else ""


def _leaf_of(loc: tuple[str | int, ...]) -> tuple[str, ...]:
    for end in range(len(loc), 0, -1):
        prefix = tuple(str(p) for p in loc[:end])
        if prefix in LEAVES:
            return prefix
    return ()


def _dotted(loc: tuple[str | int, ...]) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else p for p in loc).replace(".[", "[")


def _put(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        data = data.setdefault(part, {})
    data[path[-1]] = value


def _merge(into: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for name, value in layer.items():
        if isinstance(value, dict) and isinstance(into.get(name), dict):
            _merge(into[name], value)
        else:
            into[name] = value


# --- checks across keys ---------------------------------------------------------------


def check(resolved: Resolved) -> tuple[list[str], list[str]]:
    """(problems that stop the start, notes worth a warning), each naming its key's origin."""
    s = resolved.settings
    problems: list[str] = []
    notes: list[str] = []

    def at(dotted: str) -> str:
        origin = resolved.origin(dotted)
        return f"{dotted} ({origin})" if origin != "default" else dotted

    if (s.tls.certfile is None) != (s.tls.keyfile is None):
        given = "tls.certfile" if s.tls.certfile else "tls.keyfile"
        problems.append(f"{at(given)}: TLS needs both tls.certfile and tls.keyfile")
    elif s.tls.certfile is not None and s.tls.keyfile is not None:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                s.tls.certfile, s.tls.keyfile
            )
        except (OSError, ssl.SSLError) as exc:
            problems.append(f"{at('tls.certfile')}: cannot load the certificate and key: {exc}")
    if s.redis is not None and s.collab.db == ":memory:":
        problems.append(
            f"{at('collab.db')}: the nodes of a cluster share their db; :memory: cannot be"
        )
    if s.redis is not None and s.relays.db is not None:
        problems.append(f"{at('relays.db')}: with redis the relays keep history in Redis")
    if s.workers is not None and s.workers > 1 and s.redis is None:
        problems.append(
            f"{at('workers')}: workers share rooms and channels through Redis: set redis"
        )
    for name, section in [("collab", s.collab), *s.relays.servers().items()]:
        prefix = "collab" if name == "collab" else f"relays.{name}"
        if section.ping_timeout is not None:
            notes.append(
                f"{at(prefix + '.ping_timeout')}: has no effect (inkwire never closes a client "
                "for being silent)"
            )
        catalog = BY_NAME["excalidraw" if name == "collab" else name]
        for channel in section.channels or ():
            if not (channel in catalog.channels or catalog.is_channel(channel)):
                notes.append(
                    f"{at(prefix + '.channels')}: {channel!r} is not a {catalog.service} "
                    f"channel (its channels: {', '.join(catalog.channels)}); "
                    "`channels` changes nothing"
                )
    return problems, notes


def port_clashes(resolved: Resolved) -> list[str]:
    """Enabled servers given one port (a problem for ``inkwire up``, which starts them all;
    ``inkwire serve`` alone may well take a relay's port)."""
    taken: dict[int, str] = {}
    problems = []
    for server in resolved.settings.servers():
        if server.port == 0:
            continue  # the system picks a free one for each
        other = taken.get(server.port)
        dotted = _key(server.service, "port")
        if other is not None:
            origin = resolved.origin(dotted)
            problems.append(f"{dotted} ({origin}): port {server.port} is also {other}'s")
        taken[server.port] = server.service
    return problems


def _key(service: str, name: str) -> str:
    return f"collab.{name}" if service == "collab" else f"relays.{service}.{name}"


def effective(resolved: Resolved) -> list[tuple[str, str, str]]:
    """(key, value as YAML, origin) for every key; secrets redacted."""
    rows = []
    for leaf_path, leaf in LEAVES.items():
        value = value_at(resolved.settings, leaf_path)
        if leaf.secret:
            text = "null" if value is None else "'********'"
        elif leaf.path[-1] == "db" and isinstance(value, str):
            text = yaml.safe_dump(redact(value), default_flow_style=True).strip()
            text = text.removesuffix("\n...").strip()
        else:
            text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20).strip()
            text = text.removesuffix("\n...").strip()
        rows.append((leaf.dotted, text, resolved.origins[leaf_path]))
    return rows
