"""``inkwire deploy systemd|supervisor``: the units it prints, run for real where we can.

supervisord (the test extras' ``supervisor``) runs the generated programs in a
temporary directory: every server answers, the one SIGKILLed is restarted by
supervisord and serves again, and stopping supervisord leaves no process
behind. The systemd units pass ``systemd-analyze verify`` where it exists.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from collab.cli import main
from tests.conftest import ROOT
from tests.service_process import (
    alive,
    all_ready,
    env,
    listening_pids,
    seven_on_free_ports,
    stop,
    wait_for,
)

INKWIRE = f"{sys.executable} -m collab.cli"  # this checkout's, whatever is installed


def deploy(*args: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        main(["deploy", *args])
    out = capsys.readouterr()
    assert done.value.code == 0, out.err
    return out.out


def test_systemd_units_are_hardened(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, _ports = seven_on_free_ports(tmp_path, redis="redis://127.0.0.1:6379/0")
    settings = json.loads(config.read_text())
    settings["relays"]["akosha"]["enabled"] = False
    settings.pop("redis")
    config.write_text(json.dumps(settings))
    out = deploy("systemd", "--config", str(config), "--inkwire", INKWIRE, capsys=capsys)
    assert "inkwire-akosha.service" not in out
    units = out.split("# ===== ")[1:]
    assert len(units) == 7  # six servers and inkwire.target
    collab = next(u for u in units if u.startswith("inkwire-collab.service"))
    for line in [
        f"ExecStart={INKWIRE} up --config {config} --only collab",
        "User=inkwire",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "Restart=always",
        "After=network-online.target\n",
        f"ReadWritePaths={tmp_path}",
    ]:
        assert line in collab, line
    with_redis = tmp_path / "redis.yaml"
    with_redis.write_text(json.dumps({**settings, "redis": "redis://127.0.0.1:6379/0"}))
    out = deploy("systemd", "--config", str(with_redis), capsys=capsys)
    assert "After=network-online.target redis.service\n" in out


@pytest.mark.processes
def test_systemd_analyze_verifies_the_units(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the units are not verified here")
    config, _ = seven_on_free_ports(tmp_path, redis="redis://127.0.0.1:6379/0")
    units = tmp_path / "units"
    out = deploy(
        "systemd", "--config", str(config), "--output", str(units), "--inkwire", sys.executable,
        capsys=capsys,
    )  # fmt: skip
    files = sorted(units.iterdir())
    assert [str(f) for f in files] == sorted(out.split())
    verified = subprocess.run(
        [analyze, "verify", *map(str, files)], capture_output=True, text=True, timeout=60
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    complaints = [
        line
        for line in (verified.stdout + verified.stderr).splitlines()
        if "inkwire" in line and ("nknown" in line or "ignoring" in line.lower())
    ]
    assert not complaints, complaints
    # and it does complain about what is wrong: a typo in a unit fails the same check
    broken = units / "inkwire-collab.service"
    broken.write_text(broken.read_text().replace("Restart=always", "Restart=allways"))
    rejected = subprocess.run(
        [analyze, "verify", str(broken)], capture_output=True, text=True, timeout=60
    )
    assert "allways" in rejected.stdout + rejected.stderr


@pytest.mark.processes
@pytest.mark.slow
def test_supervisord_runs_them_and_restarts_a_killed_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    supervisord = Path(sys.executable).parent / "supervisord"
    if not supervisord.is_file():
        pytest.skip("supervisord is not installed (pip install '.[test]')")
    config, ports = seven_on_free_ports(tmp_path)
    settings = json.loads(config.read_text())
    for name in ("fastblocks", "crackerjack", "mahavishnu", "session-buddy"):
        settings["relays"][name]["enabled"] = False  # three servers are enough here
    config.write_text(json.dumps(settings))
    served = [ports["collab"], ports["dhruva"], ports["akosha"]]
    user = psutil.Process().username()
    deploy(
        "supervisor", "--config", str(config), "--output", str(tmp_path), "--user", user,
        "--workdir", str(tmp_path), "--inkwire", INKWIRE, capsys=capsys,
    )  # fmt: skip
    conf = tmp_path / "supervisord.conf"
    conf.write_text(
        f"[supervisord]\nnodaemon=true\nlogfile={tmp_path}/supervisord.log\n"
        f"pidfile={tmp_path}/supervisord.pid\nchildlogdir={tmp_path}\n"
        f"[unix_http_server]\nfile={tmp_path}/supervisor.sock\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        f"[supervisorctl]\nserverurl=unix://{tmp_path}/supervisor.sock\n"
        f"[include]\nfiles={tmp_path}/inkwire.conf\n"
    )
    log = tmp_path / "supervisord.out"
    with log.open("ab") as out:
        manager = subprocess.Popen(
            [str(supervisord), "-c", str(conf)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env(),
        )
    seen: list[int] = []
    try:
        wait_for("the three servers ready", lambda: all_ready(served), log=log)
        holders = listening_pids(ports["collab"])  # `up --only collab` and its worker
        (program,) = [p for p in holders if psutil.Process(p).ppid() == manager.pid]
        seen = [*holders, *(listening_pids(ports["dhruva"]))]
        os.kill(program, signal.SIGKILL)
        wait_for(
            "collab restarted by supervisord",
            lambda: (
                any(
                    psutil.Process(p).ppid() == manager.pid
                    for p in listening_pids(ports["collab"]) - holders
                )
                and all_ready([ports["collab"]])
            ),
            log=tmp_path / "inkwire-collab.log",
        )
        assert all_ready(served)
        seen += list(listening_pids(ports["collab"]))
    finally:
        manager.send_signal(signal.SIGTERM)
        stop(manager, timeout=40)
    wait_for("nothing left running", lambda: not alive(seen), timeout=10, log=log)
    text = (tmp_path / "supervisord.log").read_text()
    assert "exited: inkwire-collab (terminated by SIGKILL" in text
    assert "collab" in (tmp_path / "inkwire-collab.log").read_text()
