"""A real nginx (Debian's) with ngx_http_ipr_module loaded, for the tests."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from agent_helpers import DEADLINE, SECRET, free_port

ROOT = Path(__file__).resolve().parents[1]
# IPR_NGINX_ASAN=1: the module built with AddressSanitizer, nginx run with
# libasan preloaded, and any ASan report fails the test that caused it.
ASAN = os.environ.get("IPR_NGINX_ASAN") == "1"
MODULE = ROOT / "var" / ("nginx_module_asan" if ASAN else "nginx_module") / "ngx_http_ipr_module.so"


def build_module() -> Path:
    """Build the module once per test run (`make test` has usually done it)."""
    if not MODULE.exists() or any(p.stat().st_mtime > MODULE.stat().st_mtime
                                  for p in (ROOT / "nginx_module").glob("*.[ch]")):
        env = {**os.environ}
        if ASAN:
            env.update(IPR_CFLAGS="-fsanitize=address -fno-omit-frame-pointer -g",
                       IPR_LDFLAGS="-fsanitize=address")
        subprocess.run([str(ROOT / "nginx_module" / "build.sh"), str(MODULE.parent)], check=True, env=env)
    return MODULE


def asan_env(workdir: Path) -> dict:
    if not ASAN:
        return {}
    lib = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    # Leak checking is off: nginx frees its pools by exiting, by design.
    return {"LD_PRELOAD": lib, "ASAN_OPTIONS": f"log_path={workdir}/asan:detect_leaks=0"}


class Nginx:
    """nginx -c <generated conf> in the foreground, with ``http`` inserted in its http block."""

    def __init__(self, workdir: Path, http: str, server: str = "", workers: int = 1,
                 host: str = "127.0.0.1", daemon: bool = False):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "html").mkdir(exist_ok=True)
        self.port = free_port()
        self.host = host
        # A binary upgrade needs a daemonized master: nginx ignores SIGUSR2
        # while its parent is still the process that started it.
        self.daemon = daemon
        self.key = self.dir / "ipr.key"
        self.key.write_text(f"# ipr key for the tests\n1:{SECRET.hex()}\n")
        self.key.chmod(0o600)
        temp = "\n".join(f"    {k}_temp_path {self.dir}/{k};" for k in
                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(f"""
load_module {build_module()};
{"env LD_PRELOAD; env ASAN_OPTIONS;  # kept across a binary upgrade's exec" if ASAN else ""}
worker_processes {workers};
user root;  # the test files live in root-only temporary directories
daemon {"on" if daemon else "off"};
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log off;
{temp}
{http.replace('KEYFILE', str(self.key))}
    server {{
        listen {host}:{self.port};
        root {self.dir}/html;
{server}
    }}
}}
""")
        self.proc = None

    def test_config(self) -> subprocess.CompletedProcess:
        return subprocess.run([nginx_binary(), "-t", "-c", str(self.conf)], capture_output=True, text=True,
                              env={**os.environ, **asan_env(self.dir)})

    def master_pid(self) -> int:
        return int((self.dir / "nginx.pid").read_text())

    def start(self) -> Nginx:
        if self.daemon:
            subprocess.run([nginx_binary(), "-c", str(self.conf)], check=True,
                           env={**os.environ, **asan_env(self.dir)})
            self.proc = None
            return self._wait_ready()
        self.proc = subprocess.Popen([nginx_binary(), "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     env={**os.environ, **asan_env(self.dir)},
                                     stderr=open(self.dir / "stderr.log", "wb"), start_new_session=True)
        return self._wait_ready()

    def _wait_ready(self) -> Nginx:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError((self.dir / "stderr.log").read_text() + self.error_log())
            try:
                urllib.request.urlopen(f"http://{self.host}:{self.port}/__ready", timeout=2)
            except urllib.error.HTTPError:
                return self  # any HTTP answer: it is serving
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start: " + self.error_log())

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> int | None:
        """Graceful stop (SIGQUIT): workers finish and flush."""
        if self.daemon:
            code = None
            pid_file = self.dir / "nginx.pid"
            if pid_file.exists():
                pid = self.master_pid()
                os.kill(pid, signal.SIGQUIT)
                deadline = time.monotonic() + DEADLINE
                while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
        elif self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
        else:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                code = self.proc.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                code = self.proc.wait(DEADLINE)
        reports = sorted(self.dir.glob("asan.*"))
        if reports:
            raise AssertionError("AddressSanitizer:\n" + "\n".join(p.read_text() for p in reports))
        return code


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def connected_udp_sockets(port: int) -> int:
    """UDP sockets on this host connected to 127.0.0.1:port (the agents' sockets)."""
    count = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state = fields[2], fields[3]
        if state == "01" and remote == "0100007F:%04X" % port:
            count += 1
    return count
