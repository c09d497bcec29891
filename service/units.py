"""``inkwire deploy systemd|supervisor``: process-manager units for the settings.

One unit (or program) per enabled server, each running ``inkwire up --only NAME``:
the process manager restarts the server and its workers as one, starts them at
boot and stops them with SIGTERM, while inkwire keeps its own log format,
workers and TLS. systemd units are hardened (a dedicated user, a read-only
system, no new privileges, private /tmp and devices, only IP and Unix sockets)
and grouped under ``inkwire.target``; with Redis in the settings they start
after ``redis.service``.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

from service import cli as service_cli
from service.settings import ServerAddress, Settings

TARGET = "inkwire.target"


def run(args: argparse.Namespace) -> int:
    resolved = service_cli.settings_or_exit(args, "deploy")
    if args.config is None and resolved.config_file is None:
        print(
            "inkwire: deploy needs the settings file (--config or $INKWIRE_CONFIG)", file=sys.stderr
        )
        return 2
    config = Path(resolved.config_file or args.config).resolve()
    beside = Path(sys.executable).parent / "inkwire"  # the venv's own script, PATH or not
    executable = (
        args.inkwire
        or (str(beside) if beside.is_file() else None)
        or shutil.which("inkwire")
        or f"{sys.executable} -m collab.cli"
    )
    settings = resolved.settings
    if args.manager == "systemd":
        files = systemd_units(settings, config, executable, args.user, args.workdir)
    else:
        files = {
            "inkwire.conf": supervisor_conf(settings, config, executable, args.user, args.workdir)
        }
    if args.output is not None:
        args.output.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (args.output / name).write_text(text)
            print(args.output / name)
        return 0
    for name, text in files.items():
        print(f"# ===== {name} =====")
        print(text)
    return 0


def _command(executable: str, config: Path, server: ServerAddress) -> str:
    return f"{executable} up --config {shlex.quote(str(config))} --only {server.service}"


def systemd_units(
    settings: Settings, config: Path, executable: str, user: str, workdir: str
) -> dict[str, str]:
    after = "network-online.target" + (" redis.service" if settings.redis else "")
    writable = sorted(
        {
            str(Path(db).parent)
            for db in (settings.collab.db, settings.relays.db)
            if db is not None and db != ":memory:" and Path(db).is_absolute()
            and not Path(db).parent.is_relative_to(workdir)
        }
    )  # fmt: skip
    rw = f"ReadWritePaths={' '.join(writable)}\n" if writable else ""
    units: dict[str, str] = {}
    names = []
    for server in settings.servers():
        name = f"inkwire-{server.service}.service"
        names.append(name)
        units[name] = f"""\
# {server.service}: {server.url} ({"TLS" if server.scheme == "https" else "no TLS"})
# Create the user once: useradd --system --home-dir {workdir} --shell /usr/sbin/nologin {user}
# Secrets: put INKWIRE_COLLAB_SECRET=... / INKWIRE_RELAY_SECRET=... in /etc/inkwire/env (mode 0600).
[Unit]
Description=inkwire {server.service} server (port {server.port})
Documentation=file://{config}
After={after}
Wants=network-online.target
PartOf={TARGET}

[Service]
Type=exec
ExecStart={_command(executable, config, server)}
EnvironmentFile=-/etc/inkwire/env
User={user}
Group={user}
WorkingDirectory={workdir}
StateDirectory={Path(workdir).name if workdir.startswith("/var/lib/") else "inkwire"}
{rw}Restart=always
RestartSec=2
KillSignal=SIGTERM
TimeoutStopSec=20
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
CapabilityBoundingSet={"CAP_NET_BIND_SERVICE" if server.port < 1024 else ""}
AmbientCapabilities={"CAP_NET_BIND_SERVICE" if server.port < 1024 else ""}
UMask=0077

[Install]
WantedBy={TARGET}
"""
    units[TARGET] = f"""\
# All of inkwire's servers: systemctl enable --now {TARGET}
[Unit]
Description=inkwire (every server of {config})
Wants={" ".join(names)}

[Install]
WantedBy=multi-user.target
"""
    return units


def supervisor_conf(
    settings: Settings, config: Path, executable: str, user: str, workdir: str
) -> str:
    programs = []
    sections = []
    for server in settings.servers():
        name = f"inkwire-{server.service}"
        programs.append(name)
        sections.append(f"""\
[program:{name}]
; {server.service}: {server.url}
command={_command(executable, config, server)}
directory={workdir}
user={user}
autostart=true
autorestart=true
startsecs=3
startretries=10
stopsignal=TERM
stopwaitsecs=20
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile={workdir}/{name}.log
stdout_logfile_maxbytes=50MB
stdout_logfile_backups=5
""")
    sections.append(f"[group:inkwire]\nprograms={','.join(programs)}\n")
    return "\n".join(sections)
