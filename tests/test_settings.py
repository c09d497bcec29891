"""The settings: one model, four sources, errors that name their place, the docs' table.

In-process: the sources are resolved and ``inkwire config`` is run through
``collab.cli.main``; the servers that prove a key reaches its server run in
this loop (tests/conftest.py's ``make_server``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, get_args

import anyio
import pytest
from pydantic import SecretStr

from collab.cli import main
from collab.config import Config
from relays.app import RelaySettings
from relays.catalogs import SERVICES
from service import build
from service.docs import table, updated
from service.settings import Leaf, Settings, leaves, value_at
from service.sources import LEAVES, Flag, SettingsError, effective, resolve
from tests.conftest import ROOT
from tests.yclient import peer

DOCS = ROOT / "docs" / "configuration.md"


def write(tmp_path: Path, text: str, name: str = "inkwire.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(*args: Any, **kwargs: Any) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        resolve(*args, **kwargs)
    return caught.value.problems


# --- the docs' table ------------------------------------------------------------------


def test_the_docs_table_is_the_model() -> None:
    text = DOCS.read_text()
    assert updated(text) == text, (
        "docs/configuration.md's table is stale: "
        "run .venv/bin/python -m service.docs docs/configuration.md"
    )
    rows = table().splitlines()[2:]
    keys = {re.match(r"\| `([^`]+)`", row).group(1) for row in rows}  # type: ignore[union-attr]
    generic = {
        ".".join(("relays", "NAME", leaf.path[2]))
        if len(leaf.path) == 3 and leaf.path[0] == "relays"
        else leaf.dotted
        for leaf in leaves()
    }
    assert keys == generic


def test_the_deployments_keys_are_on_every_server() -> None:
    wanted = {
        "enabled",
        "host",
        "port",
        "max_connections",
        "message_rate_limit",
        "broadcast_queue_size",
        "ping_interval",
        "ping_timeout",
        "close_timeout",
        "channels",
    }
    for prefix in ["collab", *(f"relays.{c.service}" for c in SERVICES)]:
        have = {leaf.path[-1] for leaf in leaves() if leaf.dotted.startswith(prefix + ".")}
        assert wanted <= have, prefix
    assert "collab.collaboration.max_users_per_room" in {leaf.dotted for leaf in leaves()}
    assert "collab.collaboration.cursor_throttle_ms" in {leaf.dotted for leaf in leaves()}
    assert list(Settings().relays.servers()) == [c.service for c in SERVICES]


def test_env_names_are_unique_and_keep_the_old_ones() -> None:
    names = [leaf.env for leaf in leaves()]
    assert len(names) == len(set(names))
    by_key = {leaf.dotted: leaf.env for leaf in leaves()}
    assert by_key["collab.auth_secret"] == "INKWIRE_COLLAB_SECRET"
    assert by_key["relays.auth_secret"] == "INKWIRE_RELAY_SECRET"
    assert by_key["redis"] == "INKWIRE_REDIS_URL"
    assert by_key["relays.session-buddy.port"] == "INKWIRE_RELAYS_SESSION_BUDDY_PORT"


def test_the_examples_in_the_docs_are_valid(tmp_path: Path) -> None:
    example = re.search(r"```yaml\n(.*?)```", DOCS.read_text(), re.S)
    assert example is not None
    resolved = resolve(write(tmp_path, example.group(1)), environ={})
    assert resolved.settings.relays.dhruva.max_connections == 1000
    assert not resolved.settings.relays.session_buddy.enabled
    readme = re.search(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert readme is not None
    resolved = resolve(write(tmp_path, readme.group(1), "readme.yaml"), environ={})
    assert resolved.settings.collab.host == "0.0.0.0" and not resolved.notes


# --- precedence, for every key ----------------------------------------------------------


def samples(leaf: Leaf) -> list[Any]:
    """Three distinct valid values of a key, as they would be written in the file."""
    default = value_at(Settings(), leaf.path)
    annotation = str(leaf.field.annotation)
    if leaf.path == ("redis",):
        return ["redis://127.0.0.1:1/0", "redis://127.0.0.1:2/0", "redis://127.0.0.1:3/0"]
    if leaf.path[-1] == "port":
        return [20001, 20002, 20003]
    if leaf.path[-1] == "dashboard_relays":
        return [[f"http://127.0.0.1:{port}"] for port in (20001, 20002, 20003)]
    if "Literal" in annotation:
        return (list(get_args(leaf.field.annotation)) * 3)[:3]
    if isinstance(default, bool):
        return [not default, default, not default]
    if "bool" in annotation:
        return [True, False, True]
    if "list" in annotation:
        return [["a"], ["b"], ["c"]]
    if "int" in annotation:
        return [2, 3, 4]
    if "float" in annotation:
        return [2.5, 3.5, 4.5]
    return ["one", "two", "three"]


ORDINARY = [leaf for leaf in leaves() if leaf.path[0] != "tls"]


@pytest.mark.parametrize("leaf", ORDINARY, ids=lambda leaf: leaf.dotted)
def test_flags_beat_env_beat_file_beat_defaults(tmp_path: Path, leaf: Leaf) -> None:
    file_value, env_value, flag_value = samples(leaf)
    if leaf.path[-1] == "port":  # the three must differ from one another
        env_value, flag_value = 20002, 20003
    nested: dict[str, Any] = {}
    node = nested
    for part in leaf.path[:-1]:
        node = node.setdefault(part, {})
    node[leaf.path[-1]] = file_value
    extra: dict[str, Any] = {}
    if leaf.path == ("workers",):
        extra = {"redis": "redis://127.0.0.1:9/0"}  # workers above 1 need it
    config = write(tmp_path, json.dumps({**nested, **extra}))  # JSON is YAML
    env = {leaf.env: _as_env(env_value)}
    flag = {leaf.path: Flag(flag_value, f"--set {leaf.dotted}=...")}

    def got(resolved: Any) -> Any:
        value = value_at(resolved.settings, leaf.path)
        return value.get_secret_value() if isinstance(value, SecretStr) else value

    if leaf.path != ("redis",):
        assert resolve(environ={}).origins[leaf.path] == "default"
    from_file = resolve(config, environ={})
    assert got(from_file) == file_value
    assert from_file.origins[leaf.path].startswith(f"file {config}:")
    from_env = resolve(config, environ=env)
    assert got(from_env) == env_value
    assert from_env.origins[leaf.path] == f"env ${leaf.env}"
    from_flag = resolve(config, flags=flag, environ=env)
    assert got(from_flag) == flag_value
    assert from_flag.origins[leaf.path] == f"flag --set {leaf.dotted}=..."


def _as_env(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(value) + "]"
    return str(value)


def test_set_and_named_flags_on_the_command_line(tmp_path: Path, capsys: Any) -> None:
    config = write(tmp_path, "collab:\n  port: 4000\nrelays:\n  dhruva:\n    port: 9000\n")
    with pytest.raises(SystemExit) as done:
        main(["config", "show", "--json", "--config", str(config), "--set", "collab.port=4001"])
    assert done.value.code == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["collab.port"] == {"value": 4001, "origin": "flag --set collab.port=4001"}
    assert shown["relays.dhruva.port"] == {"value": 9000, "origin": f"file {config}:5"}
    assert shown["relays.fastblocks.port"] == {"value": 8684, "origin": "default"}


# --- errors name the file, the line and the key ---------------------------------------


def test_unknown_keys_and_wrong_types_name_file_line_and_key(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "collab:\n"
        "  port: '3043'\n"
        "  prot: 1\n"
        "  collaboration:\n"
        "    cursor_throttle: 3\n"
        "relays:\n"
        "  dhruva:\n"
        "    max_connections: many\n"
        "  nosuch:\n"
        "    port: 1\n"
        "tls: {certfile: 1}\n",
    )
    found = problems(config, environ={})
    assert f"{config}:2: collab.port: Input should be a valid integer, not str '3043'" in found
    assert f"{config}:3: collab.prot: unknown key (did you mean 'port'?)" in found
    assert (
        f"{config}:5: collab.collaboration.cursor_throttle: unknown key "
        "(did you mean 'cursor_throttle_ms'?)"
    ) in found
    assert any(p.startswith(f"{config}:8: relays.dhruva.max_connections: ") for p in found)
    assert any(p.startswith(f"{config}:9: relays.nosuch: unknown key") for p in found)
    assert any(
        p.startswith(f"{config}:11: tls.certfile: Input should be a valid string") for p in found
    )
    assert len(found) == 6
    lines = [int(p.split(":")[1]) for p in found]
    assert lines == sorted(lines)  # in the file's order


def test_a_websocket_section_is_pointed_to_where_its_keys_go(tmp_path: Path) -> None:
    config = write(tmp_path, "relays:\n  dhruva:\n    websocket:\n      port: 8693\n")
    assert problems(config, environ={}) == [
        f"{config}:3: relays.dhruva.websocket: unknown key: a deployment's `websocket:` keys "
        "go straight under `collab:` or `relays.NAME:` (docs/configuration.md)"
    ]


def test_a_key_written_twice_bad_yaml_and_a_missing_file(tmp_path: Path) -> None:
    twice = write(tmp_path, "relays:\n  dhruva: {port: 1}\n  dhruva: {port: 2}\n", "twice.yaml")
    assert problems(twice, environ={}) == [
        f"{twice}:3: relays.dhruva: written twice (first on line 2)"
    ]
    bad = write(tmp_path, "collab:\n  port: [1\n", "bad.yaml")
    (problem,) = problems(bad, environ={})
    assert problem.startswith(f"{bad}:3: not valid YAML")
    listed = write(tmp_path, "- collab\n", "list.yaml")
    assert problems(listed, environ={}) == [
        f"{listed}:1: the settings file must be a mapping of keys"
    ]
    (missing,) = problems(tmp_path / "nope.yaml", environ={})
    assert missing.startswith(f"{tmp_path / 'nope.yaml'}: cannot read the settings file")
    assert resolve(write(tmp_path, "", "empty.yaml"), environ={}).settings == Settings()


def test_env_and_flag_errors_name_their_variable_and_flag(tmp_path: Path) -> None:
    assert problems(environ={"INKWIRE_COLLAB_PORT": "x"}) == [
        "$INKWIRE_COLLAB_PORT: collab.port: Input should be a valid integer, not str 'x'"
    ]
    (problem,) = problems(flags={("collab", "grace"): Flag(-1.0, "--grace -1")}, environ={})
    assert problem.startswith("--grace -1: collab.grace: Input should be greater than or equal")
    assert problems(environ={"INKWIRE_CONFIG": str(tmp_path / "gone.yaml")})[0].startswith(
        f"{tmp_path / 'gone.yaml'}: cannot read"
    )


def test_keys_that_go_together_are_judged_together(tmp_path: Path) -> None:
    config = write(tmp_path, "collab:\n  db: ':memory:'\ntls:\n  certfile: cert.pem\n")
    found = problems(config, environ={"INKWIRE_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert f"tls.certfile (file {config}:4): TLS needs both tls.certfile and tls.keyfile" in found
    assert (
        f"collab.db (file {config}:2): the nodes of a cluster share their db; :memory: cannot be"
    ) in found
    assert problems(flags={("workers",): Flag(2, "--workers 2")}, environ={}) == [
        "workers (flag --workers 2): workers share rooms and channels through Redis: set redis"
    ]
    # the key in one source and its partner in another: fine together
    both = resolve(
        write(tmp_path, "workers: 2\n", "w.yaml"), environ={"INKWIRE_REDIS_URL": "redis://h/0"}
    )
    assert both.settings.workers == 2


def test_keys_without_an_equivalent_are_said_so(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "collab:\n  ping_timeout: 20\nrelays:\n  dhruva:\n"
        "    channels: ['adapter:{adapter_id}', 'adapter:a1', registry, adapters]\n",
    )
    notes = resolve(config, environ={}).notes
    assert notes[0] == (
        f"collab.ping_timeout (file {config}:2): has no effect "
        "(inkwire never closes a client for being silent)"
    )
    assert len(notes) == 2 and "'adapters' is not a dhruva channel" in notes[1]


def test_config_check_and_show(tmp_path: Path, capsys: Any) -> None:
    config = write(
        tmp_path,
        "collab:\n  auth_secret: hunter2\n  ping_timeout: 5\nrelays:\n  akosha: {enabled: false}\n",
    )
    with pytest.raises(SystemExit) as done:
        main(["config", "check", "--config", str(config)])
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert f"{config}: OK, 6 servers enabled:" in out and "akosha" not in out
    assert "note: collab.ping_timeout" in out
    with pytest.raises(SystemExit) as done:
        main(["config", "show", "--config", str(config)])
    out = capsys.readouterr().out
    assert "hunter2" not in out
    assert re.search(rf"collab.auth_secret = '\*+' +# file {re.escape(str(config))}:2", out)
    assert re.search(r"collab.grace = 30.0 +# default", out)
    clash = write(tmp_path, "relays:\n  dhruva: {port: 3042}\n", "clash.yaml")
    with pytest.raises(SystemExit) as done:
        main(["config", "check", "--config", str(clash)])
    assert done.value.code == 2
    assert "relays.dhruva.port (file" in capsys.readouterr().err
    bad = write(tmp_path, "collab: {port: x}\n", "bad.yaml")
    with pytest.raises(SystemExit) as done:
        main(["config", "check", "--config", str(bad)])
    assert done.value.code == 2
    assert f"inkwire: {bad}:1: collab.port" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [["serve"], ["relay", "dhruva"], ["relay", "all"], ["up"], ["deploy", "systemd"]],
    ids=" ".join,
)
def test_a_bad_file_stops_every_command_before_it_starts(
    tmp_path: Path, capsys: Any, command: list[str]
) -> None:
    bad = write(tmp_path, "relays:\n  dhruva:\n    prot: 1\n")
    with pytest.raises(SystemExit) as done:
        main([*command, "--config", str(bad)])
    assert done.value.code == 2
    assert capsys.readouterr().err == (
        f"inkwire: {bad}:3: relays.dhruva.prot: unknown key (did you mean 'port'?)\n"
    )


def test_secrets_never_show(tmp_path: Path) -> None:
    resolved = resolve(
        environ={"INKWIRE_COLLAB_SECRET": "s3cret-a", "INKWIRE_RELAY_SECRET": "s3cret-b"}
    )
    shown = repr(effective(resolved)) + repr(resolved.settings)
    assert "s3cret" not in shown
    assert build.collab_config(resolved.settings).auth_secret == "s3cret-a"
    relay = resolved.settings.relays.dhruva
    assert build.relay_settings(resolved.settings, relay).auth_secret == "s3cret-b"


# --- what each key drives --------------------------------------------------------------


def test_defaults_are_what_the_servers_always_had() -> None:
    settings = Settings()
    assert build.collab_config(settings) == Config()
    assert build.events_relay_settings(settings.collab) == RelaySettings()
    for relay in settings.relays.servers().values():
        assert build.relay_settings(settings, relay) == RelaySettings()


def test_the_deployments_keys_reach_their_settings(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "collab:\n"
        "  max_connections: 7\n  message_rate_limit: 50\n  broadcast_queue_size: 99\n"
        "  ping_interval: 0\n  close_timeout: 3\n"
        "  collaboration: {max_users_per_room: 4, cursor_throttle_ms: 100}\n"
        "relays:\n  history_size: 5\n"
        "  dhruva: {max_connections: 8, message_rate_limit: 10, broadcast_queue_size: 11,"
        " ping_interval: 12, close_timeout: 13}\n",
    )
    settings = resolve(config, environ={}).settings
    collab = build.collab_config(settings)
    assert (collab.max_connections, collab.max_lag, collab.keepalive_interval) == (7, 99, None)
    assert (collab.close_timeout, collab.max_users, collab.awareness_interval) == (3, 4, 0.1)
    events = build.events_relay_settings(settings.collab)
    assert (events.max_connections, events.rate_limit, events.rate_burst) == (7, 50, 100)
    assert (events.hub.max_lag, events.close_timeout) == (99, 3)
    relay = build.relay_settings(settings, settings.relays.dhruva)
    assert dataclasses.replace(relay, hub=None) == dataclasses.replace(  # type: ignore[arg-type]
        RelaySettings(),
        hub=None,
        max_connections=8,
        rate_limit=10,
        rate_burst=20,
        keepalive_interval=12,
        close_timeout=13,
    )
    assert (relay.hub.max_lag, relay.hub.history_size) == (11, 5)


@pytest.mark.anyio
async def test_collab_max_connections_refuses_with_1013(make_server: Any, tmp_path: Path) -> None:
    settings = resolve(
        write(tmp_path, "collab: {max_connections: 2, grace: 1}\n"), environ={}
    ).settings
    async with make_server(build.collab_config(settings)) as server:
        url = server.yjs_url + "/full"
        async with peer(url, 1), peer(url + "2", 2):
            async with peer(url, 3, sync=False) as third:
                with anyio.fail_after(5):
                    await third.closed.wait()
            assert (third.close_code, third.close_reason) == (
                1013,
                "server full: too many connections",
            )
        async with peer(url, 4) as later:  # room for it again
            assert later.ws.close_code is None


def test_every_leaf_is_reachable() -> None:
    settings = Settings()
    for path in LEAVES:
        value_at(settings, path)  # no AttributeError: the walk and the model agree


def test_json_log_lines(capsys: Any) -> None:
    import logging

    from service import logs

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logs.setup("info", "json", service="dhruva", worker=2)
        logging.getLogger("inkwire.test").info("hello %s", "there")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("inkwire.test").exception("failed")
        logging.getLogger("inkwire.test").debug("not at INFO")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["message"] == "hello there" and first["level"] == "INFO"
    assert (first["service"], first["worker"], first["logger"]) == ("dhruva", 2, "inkwire.test")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert "ValueError: boom" in second["exc_info"]


def test_the_dashboard_shows_the_relays_up_runs_unless_told_otherwise(tmp_path: Path) -> None:
    from service.up import with_dashboard_relays

    config = write(tmp_path, "relays:\n  akosha:\n    enabled: false\n")
    settings = resolve(config, environ={}).settings
    assert build.collab_config(settings).dashboard_relays == ()  # `inkwire serve`: none
    shown = build.collab_config(with_dashboard_relays(settings)).dashboard_relays
    assert shown == tuple(f"http://127.0.0.1:{c.port}" for c in SERVICES if c.service != "akosha")
    told = write(
        tmp_path, "collab:\n  dashboard_relays: ['http://relay.example:9000/']\n", "b.yaml"
    )
    settings = resolve(told, environ={}).settings
    assert with_dashboard_relays(settings).collab.dashboard_relays == ["http://relay.example:9000"]
    with pytest.raises(SettingsError, match="dashboard_relays"):
        resolve(write(tmp_path, "collab:\n  dashboard_relays: ['ftp://x']\n", "c.yaml"), environ={})
