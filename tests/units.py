"""Run an installed systemd unit's service without systemd.

systemd is not PID 1 on the machines the tests run on, so a test reads the
unit file as installed (ExecStartPre, ExecStart, User, Group,
WorkingDirectory, Environment, EnvironmentFile) and starts the command
itself, as the unit's user, with the unit's environment and nothing else:
what the unit would run, minus its sandbox.
"""
from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ipr.env import read_env_file

UNIT_DIR = Path("/lib/systemd/system")


@dataclass
class Unit:
    name: str
    path: Path
    sections: dict[str, dict[str, list[str]]]
    instance: str = ""

    @classmethod
    def read(cls, name: str, unit_dir: Path = UNIT_DIR) -> Unit:
        """``name`` as systemctl takes it: ipr-web, or ipr-ingest@queue."""
        prefix, at, instance = name.partition("@")
        path = unit_dir / (f"{prefix}@.service" if at else f"{name}.service")
        sections: dict[str, dict[str, list[str]]] = {}
        current = None
        logical = ""
        for raw in path.read_text().splitlines():
            line = logical + raw.strip()
            if line.endswith("\\"):  # continued on the next line
                logical = line[:-1] + " "
                continue
            logical = ""
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                current = sections.setdefault(line.strip("[]"), {})
                continue
            key, _, value = line.partition("=")
            current.setdefault(key.strip(), []).append(value.strip())
        return cls(name, path, sections, instance)

    def get(self, key: str, section: str = "Service") -> list[str]:
        return self.sections.get(section, {}).get(key, [])

    def one(self, key: str, default: str | None = None, section: str = "Service") -> str | None:
        values = self.get(key, section)
        return values[-1] if values else default

    def specifiers(self, text: str) -> str:
        table = {"i": self.instance, "H": socket.gethostname(), "%": "%"}
        return re.sub(r"%(.)", lambda m: table.get(m.group(1), m.group(0)), text)

    def environment(self) -> dict[str, str]:
        """Environment= then EnvironmentFile= (which wins), as systemd builds it."""
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        user = self.one("User")
        if user:
            entry = pwd.getpwnam(user)
            env.update(HOME=entry.pw_dir, USER=user, LOGNAME=user, SHELL=entry.pw_shell)
        for value in self.get("Environment"):
            for assignment in shlex.split(self.specifiers(value)):
                name, _, val = assignment.partition("=")
                env[name] = val
        for value in self.get("EnvironmentFile"):
            optional = value.startswith("-")
            path = value.lstrip("-")
            if optional and not os.path.exists(path):
                continue
            env.update(read_env_file(path))
        return env

    def command(self, key: str = "ExecStart") -> list[list[str]]:
        """Each command line of ``key``, with specifiers and $VAR / ${VAR} expanded."""
        env = self.environment()
        commands = []
        for value in self.get(key):
            line = self.specifiers(value.lstrip("-@:+!"))
            words = []
            for word in shlex.split(line):
                if re.fullmatch(r"\$[A-Za-z_][A-Za-z0-9_]*", word):  # $VAR: split on whitespace
                    words.extend(env.get(word[1:], "").split())
                    continue
                words.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), word))
            commands.append(words)
        return commands

    def popen_options(self) -> dict:
        user, group = self.one("User"), self.one("Group")
        options = {"env": self.environment(), "cwd": self.one("WorkingDirectory", "/"),
                   "start_new_session": True}
        if user:
            options["user"] = user
            options["group"] = group or pwd.getpwnam(user).pw_gid
            # The user's groups (initgroups), then SupplementaryGroups=.
            gid = grp.getgrnam(options["group"]).gr_gid if isinstance(options["group"], str) else options["group"]
            extra = [g for value in self.get("SupplementaryGroups") for g in value.split()]
            options["extra_groups"] = os.getgrouplist(user, gid) + [grp.getgrnam(g).gr_gid for g in extra]
        umask = self.one("UMask")
        if umask:
            options["umask"] = int(umask, 8)
        return options


@dataclass
class Service:
    """A unit's ExecStartPre commands run, then its ExecStart running."""
    unit: Unit
    log_path: Path
    process: subprocess.Popen | None = None

    def start(self) -> Service:
        options = self.unit.popen_options()
        self.log = open(self.log_path, "ab")
        for argv in self.unit.command("ExecStartPre"):
            done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **options)
            self.log.write(done.stdout)
            if done.returncode != 0:
                raise RuntimeError(f"{self.unit.name}: ExecStartPre {argv} exited {done.returncode}: "
                                   f"{done.stdout.decode(errors='replace')}")
        [argv] = self.unit.command("ExecStart")
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, **options)
        return self

    def text(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 60) -> int:
        """What systemd does by default: SIGTERM (to the main process only with
        KillMode=mixed, else to every process of the unit), then wait."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        if self.unit.one("KillMode") == "mixed":
            self.process.send_signal(signal.SIGTERM)
        else:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            code = self.process.wait()
        # Whatever of the unit's processes remains is killed, as systemd
        # kills the rest of the control group.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.log.close()
        return code


def wait_for_port(host: str, port: int, deadline: float = 60, service: Service | None = None) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if service is not None and service.process.poll() is not None:
            raise RuntimeError(f"{service.unit.name} exited {service.process.returncode}:\n{service.text()}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {host}:{port} after {deadline} s")
