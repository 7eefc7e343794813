"""ipr installed the way an operator installs it: the Debian packages built
from this tree with `make deb`, checked by lintian and systemd-analyze,
installed with apt-get, each unit's command started as its unit file says,
and a real request through nginx with the packaged module, the installed
collector and scheduler, to the installed web UI. Then an upgrade, a remove
and a purge.

systemd is not PID 1 here: tests/units.py starts a unit's ExecStart as the
unit's user with the unit's environment, read from the installed unit file.
Where the maintainer scripts call systemd (enable, restart), a stand-in
systemctl records the calls, in a mount namespace of the upgrade only.

The tests change this machine (a package, a user, /etc/ipr, /var/lib/ipr)
and purge it all at the end; they run as root on Debian, else are skipped.
The figures of the closing note print with `-s`.
"""
from __future__ import annotations

import contextlib
import grp
import http.cookiejar
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from units import Service, Unit, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
VENV = Path("/opt/venvs/ipr")
UNITS = ["ipr-collector", "ipr-web", "ipr-scheduler", "ipr-worker", "ipr-beat", "ipr-ingest@"]
ENABLED = ["ipr-collector", "ipr-web", "ipr-scheduler"]
WEB = "http://127.0.0.1:8000"
PASSWORD = "correct horse battery staple 7"

needs_root_on_debian = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("dpkg-buildpackage") or not shutil.which("dh_virtualenv"),
    reason="builds and installs Debian packages: root, debhelper and dh-virtualenv (.ci/run installs them)")


# An operator's shell, not the test run's environment (whose DATABASE_URL
# and REDIS_URL name the tests' own services).
SHELL_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "LANG": "C.UTF-8", "HOME": "/root"}


def run(*argv, check=True, env=None, timeout=900, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                          env={**SHELL_ENV, **(env or {})}, **kwargs)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} exited {done.returncode}:\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def apt(*args) -> subprocess.CompletedProcess:
    return run("apt-get", "-y", "-q", "-o", "Dpkg::Options::=--force-confdef",
               "-o", "Dpkg::Options::=--force-confold", *args,
               env={"DEBIAN_FRONTEND": "noninteractive"})


def installed(package: str) -> bool:
    done = run("dpkg-query", "-W", "-f", "${Status}", package, check=False)
    return done.returncode == 0 and done.stdout.endswith(" installed")


def purge_everything() -> None:
    """Neither package left, even by a run that was killed mid-install."""
    for package in ("ipr", "libnginx-mod-http-ipr"):
        if run("dpkg-query", "-W", package, check=False).returncode != 0:
            continue
        purged = run("apt-get", "purge", "-y", "-q", package, check=False,
                     env={"DEBIAN_FRONTEND": "noninteractive"})
        if purged.returncode != 0:  # half-installed: dpkg alone can remove it
            run("dpkg", "--purge", "--force-remove-reinstreq", package)


def figure(text: str) -> None:
    print(f"\n[figure] {text}", file=sys.stderr)


# --------------------------------------------------------------------------
# Building

@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    """`make deb` into a fresh folder; IPR_TEST_DEBS names a folder of
    packages already built from this tree, to skip the build."""
    prebuilt = os.environ.get("IPR_TEST_DEBS")
    out = Path(prebuilt) if prebuilt else tmp_path_factory.mktemp("dist")
    started = time.monotonic()
    if not prebuilt:
        done = run("make", "-s", "deb", f"DIST={out}", cwd=ROOT, timeout=1800)
        figure(f"make deb: {time.monotonic() - started:.0f} s\n{done.stdout}")
    found = {p.name.split("_")[0]: p for p in out.glob("*.deb")}
    assert {"ipr", "libnginx-mod-http-ipr"} <= set(found), sorted(found)
    return found


@needs_root_on_debian
def test_both_packages_build_and_lintian_finds_no_error(debs):
    report = debs["ipr"].parent / "lintian.txt"  # what `make deb` ran
    if not report.exists():
        report.write_text(run("lintian", "--fail-on", "none", *debs.values(), timeout=600).stdout)
    tags = [line for line in report.read_text().splitlines() if re.match(r"[EWIPX]: ", line)]
    assert any(t.startswith("W: ipr: ") for t in tags), "no lintian report of the ipr package"
    errors = [t for t in tags if t.startswith("E: ")]
    assert not errors, "\n".join(errors)
    figure(f"lintian: {len(errors)} errors, {sum(t.startswith('W: ') for t in tags)} warnings")
    for name, deb in sorted(debs.items()):
        fields = run("dpkg-deb", "-f", deb, "Version", "Installed-Size", "Depends").stdout
        figure(f"{deb.name}: {deb.stat().st_size / 1e6:.1f} MB\n{fields}")


@needs_root_on_debian
def test_the_package_ships_the_compiled_parts(debs):
    """The MRT parser and the collector's receive loop are built with the
    package (never left to their pure-Python twins) and link against the
    system's libcrypto, which the package then depends on."""
    listing = run("dpkg-deb", "-c", debs["ipr"]).stdout
    for module in ("ipr/routing/dumps/_mrt", "collector/_receive"):
        assert re.search(rf"/site-packages/{module}\.cpython-\d+-[\w-]+\.so$", listing, re.M), module
    depends = run("dpkg-deb", "-f", debs["ipr"], "Depends").stdout
    assert re.search(r"\blibssl3\b", depends), depends


@needs_root_on_debian
def test_the_installed_python_runs_the_compiled_parts(install):
    probe = ("import logging, sys; logging.basicConfig(stream=sys.stdout, level=logging.INFO, format='%(message)s'); "
             "from ipr import native; "
             "print(native.compiled('ipr.routing.dumps._mrt', 'MRT parser') is not None, "
             "native.compiled('collector._receive', 'collector receive loop') is not None)")
    # From /, so the installed package is imported, not this checkout.
    out = run(str(VENV / "bin/python"), "-c", probe, env={"IPR_NATIVE": "1"}, cwd="/").stdout
    assert "MRT parser: compiled (ipr.routing.dumps._mrt)" in out, out
    assert "collector receive loop: compiled (collector._receive)" in out, out
    assert out.strip().endswith("True True"), out


@needs_root_on_debian
def test_the_nginx_module_depends_on_the_abi_of_the_nginx_it_was_built_for(debs):
    depends = run("dpkg-deb", "-f", debs["libnginx-mod-http-ipr"], "Depends").stdout
    abi = re.search(r"nginx-abi-[0-9.]+-[0-9]+", depends)
    assert abi, depends
    provides = run("dpkg-query", "-W", "-f", "${Provides}\n", "nginx", check=False).stdout
    assert abi.group(0) in provides, (abi.group(0), provides)
    listing = run("dpkg-deb", "-c", debs["libnginx-mod-http-ipr"]).stdout
    assert "./usr/lib/nginx/modules/ngx_http_ipr_module.so" in listing
    assert "./usr/share/nginx/modules-available/mod-http-ipr.conf" in listing


def test_the_packages_carry_the_version_of_the_tree():
    from ipr_agent import __version__
    for changelog in (ROOT / "debian/changelog", ROOT / "nginx_module/debian/changelog"):
        first = changelog.read_text().splitlines()[0]
        assert re.match(rf"\S+ \({re.escape(__version__)}\) ", first), (changelog, first)


# --------------------------------------------------------------------------
# Installing

@pytest.fixture(scope="module")
def install(debs):
    """Both packages installed with apt-get on a machine without them."""
    purge_everything()
    assert not Path("/etc/ipr").exists() and not Path("/var/lib/ipr").exists()
    started = time.time()
    apt("install", debs["ipr"], debs["libnginx-mod-http-ipr"])
    figure(f"apt-get install of both packages: {time.time() - started:.1f} s, "
           f"installed size {run('du', '-sm', VENV).stdout.split()[0]} MB in {VENV}")
    yield started
    purge_everything()


def stat(path: str) -> tuple[str, str, str]:
    st = os.stat(path)
    return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name, oct(st.st_mode & 0o7777)


@needs_root_on_debian
def test_a_fresh_install_has_its_user_settings_and_data_with_no_edits(install):
    assert run("id", "-un", "ipr").stdout.strip() == "ipr"
    assert stat("/etc/ipr") == ("root", "ipr", "0o750")
    assert stat("/etc/ipr/ipr.env") == ("root", "ipr", "0o640")
    assert stat("/etc/ipr/collector.toml") == ("root", "ipr", "0o640")
    assert stat("/var/lib/ipr") == ("ipr", "ipr", "0o750")
    assert stat("/var/lib/ipr/spool") == ("ipr", "ipr", "0o750")
    assert stat("/var/lib/ipr/secret_key") == ("ipr", "ipr", "0o600")
    assert len(Path("/var/lib/ipr/secret_key").read_text().strip()) >= 50
    # migrated on install, as the ipr user, on SQLite in /var/lib/ipr
    assert stat("/var/lib/ipr/ipr.sqlite3")[0] == "ipr"
    plan = run("ipr", "migrate", "--plan").stdout
    assert "No planned migration operations" in plan, plan
    conffiles = run("dpkg-query", "-W", "-f", "${Conffiles}", "ipr").stdout
    assert "/etc/ipr/ipr.env" in conffiles and "/etc/ipr/collector.toml" in conffiles
    # The embedded default's units are enabled, the Redis ones are not.
    wants = Path("/etc/systemd/system/multi-user.target.wants")
    assert sorted(p.name for p in wants.glob("ipr-*")) == sorted(f"{u}.service" for u in ENABLED)
    assert Path("/etc/nginx/modules-enabled/50-mod-http-ipr.conf").resolve() == \
        Path("/usr/share/nginx/modules-available/mod-http-ipr.conf")
    assert run("nginx", "-t").returncode == 0


@needs_root_on_debian
def test_every_installed_unit_passes_systemd_analyze_verify(install):
    # the templated unit as an instance of it
    names = [u + "x" if u.endswith("@") else u for u in UNITS]
    done = run("systemd-analyze", "verify", *[f"{n}.service" for n in names],
               check=False, cwd="/lib/systemd/system")
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    for name in names:
        unit = Unit.read(name)
        security = run("systemd-analyze", "security", "--offline=yes", "--no-pager", unit.path).stdout
        score = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", security)
        assert score, security
        figure(f"systemd-analyze security {unit.path.stem}: {score.group(1)} {score.group(2)}")
        assert unit.one("User") == "ipr" and unit.one("NoNewPrivileges") == "yes"
        assert unit.one("ProtectSystem") == "strict" and unit.get("ReadWritePaths")
        assert unit.one("Restart") == "on-failure"


@needs_root_on_debian
def test_check_deploy_is_clean_with_the_documented_production_settings(install):
    production = documented_production_settings()
    done = run("ipr", "check", "--deploy", "--fail-level", "WARNING", env=production, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def documented_production_settings() -> dict[str, str]:
    """The block of docs/install.md that says what to set behind TLS."""
    text = (ROOT / "docs/install.md").read_text()
    block = re.search(r"```sh\n# /etc/ipr/ipr\.env, behind an HTTPS proxy\n(.*?)```", text, re.S)
    assert block, "docs/install.md lost its production settings block"
    settings = dict(line.split("=", 1) for line in block.group(1).splitlines()
                    if line and not line.startswith("#"))
    assert {"IPR_HTTPS", "IPR_PROXY_SSL_HEADER", "ALLOWED_HOSTS"} <= set(settings), settings
    return settings


# --------------------------------------------------------------------------
# The whole path, installed

class Browser:
    """A logged-in session on the web UI, as a person's browser has one."""

    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=30) as r:
            return r.read().decode()

    def post(self, path: str, fields: dict) -> tuple[str, str]:
        csrf = next(c.value for c in self.jar if c.name == "csrftoken")
        data = urllib.parse.urlencode({"csrfmiddlewaretoken": csrf, **fields}).encode()
        request = urllib.request.Request(self.base + path, data, headers={"Referer": self.base + path})
        with self.opener.open(request, timeout=30) as r:
            return r.geturl(), r.read().decode()

    def login(self, user: str, password: str) -> None:
        self.get("/admin/login/")
        url, page = self.post("/admin/login/?next=/admin/", {"username": user, "password": password,
                                                             "next": "/admin/"})
        assert url.endswith("/admin/"), page[-2000:]


def form_value(page: str, name: str) -> str:
    tag = re.search(rf'<(?:input|textarea)[^>]*name="{name}"[^>]*>(?:([^<]*)</textarea>)?', page)
    assert tag, f"no field {name}"
    if tag.group(0).startswith("<textarea"):
        return tag.group(1)
    return re.search(r'value="([^"]*)"', tag.group(0)).group(1)


def free(port: int, kind=socket.SOCK_STREAM) -> bool:
    """Can the unit bind it? (As the servers do, past a closed run's TIME_WAIT.)"""
    with socket.socket(socket.AF_INET6, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("::", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def running(names: list[str], logs: Path):
    """These units' services, started as their unit files say; on leaving,
    stopped as systemctl stop does, each of which must exit 0."""
    for port, kind in ((8000, socket.SOCK_STREAM), (9477, socket.SOCK_DGRAM), (9478, socket.SOCK_STREAM)):
        assert free(port, kind), f"port {port} is taken: the installed units need it"
    started = {}
    try:
        for name in names:
            started[name] = Service(Unit.read(name), logs / f"{name}.log").start()
        wait_for_port("127.0.0.1", 8000, service=started["ipr-web"])
        wait_for_port("127.0.0.1", 9478, service=started["ipr-collector"])
        yield started
    finally:
        codes = {name: service.stop() for name, service in started.items()}
        for name, service in started.items():
            print(f"--- {name}\n{service.text()[-4000:]}")
        # Each stops cleanly on SIGTERM, as systemctl stop sends it.
        assert all(code == 0 for code in codes.values()), codes


@pytest.fixture
def nginx(install, tmp_path):
    """nginx with the module as the package enabled it, on a port of its own."""
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    number = port.getsockname()[1]
    port.close()
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "nginx.conf"

    def start(key_file: Path, sender_id: int) -> subprocess.Popen:
        conf.write_text(f"""
include /etc/nginx/modules-enabled/*.conf;
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/logs/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    ipr_collector 127.0.0.1:9477;
    ipr_key_file {key_file};
    ipr_sender_id {sender_id};
    server {{
        listen 127.0.0.1:{number};
        ipr on;
        ipr_traffic_type pkgtest;
        location / {{ return 200 "{'x' * 3000}"; }}
    }}
}}
""")
        # nginx's own prefix, where the package's load_module line points
        # (modules/ is /usr/share/nginx/modules); every other path is here.
        errors = open(tmp_path / "logs/stderr", "wb")
        process = subprocess.Popen(["nginx", "-c", str(conf), "-g", "daemon off;"], stderr=errors)
        try:
            wait_for_port("127.0.0.1", number, deadline=20)
        except TimeoutError:
            raise AssertionError((tmp_path / "logs/stderr").read_text()) from None
        state["process"] = process
        return process

    state = {"port": number, "start": start}
    yield state
    if "process" in state:
        state["process"].terminate()
        state["process"].wait(30)


def wait_until(done, what: str, deadline: float, explain=lambda: ""):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = done()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"{what}: not within {deadline} s\n{explain()}")


def requests_reach_the_web_ui(services: dict, nginx: dict, tmp_path: Path, deadline: float) -> None:
    """An operator's first steps: a user, a sender key made in the admin, the
    web server's key file written by `ipr agent-key`; then requests through
    nginx, until the web UI shows every one of them."""
    run("ipr", "createsuperuser", "--noinput", "--username", "operator", "--email", "op@example.org",
        env={"DJANGO_SUPERUSER_PASSWORD": PASSWORD})
    browser = Browser(WEB)
    browser.login("operator", PASSWORD)

    form = browser.get("/admin/agents/senderkey/add/")
    key_id, secret = form_value(form, "key_id"), form_value(form, "secret")
    assert form_value(form, "sender_ids").strip() == key_id  # what a new key is offered
    url, page = browser.post("/admin/agents/senderkey/add/", {
        "key_id": key_id, "name": "web-test", "secret": secret, "enabled": "on",
        "sender_ids": key_id,
        "networks": "127.0.0.0/8\n::1/128", "traffic_type": "", "_save": "Save"})
    assert f"Key {key_id} created" in page and "Wrote 1 key(s)" in page, page[-3000:]
    # The collector takes the key from the file the admin wrote: no reload, no signal.
    assert stat("/var/lib/ipr/keys.json") == ("ipr", "ipr", "0o600")
    collector = services["ipr-collector"]
    wait_until(lambda: "changed: reloaded, 1 key(s)" in collector.text(),
               "the collector loads the admin's key", 30, collector.text)

    # The web server's key file, written by the command, not copied by hand.
    key_file = tmp_path / "ipr.key"
    run("sh", "-c", f"key=$(ipr agent-key --id {key_id}) && "
                    f"printf '%s\\n' \"$key\" | install -m 600 /dev/stdin {key_file}")
    assert key_file.read_text() == f"{key_id}:{secret.lower()}\n"
    nginx["start"](key_file, sender_id=int(key_id))

    requests = 25
    for _ in range(requests):
        with urllib.request.urlopen(f"http://127.0.0.1:{nginx['port']}/", timeout=10) as r:
            assert r.status == 200 and len(r.read()) == 3000

    def totals():
        body = json.loads(browser.get("/api/totals/?range=1h&type=pkgtest"))
        return body.get("requests") or 0

    def explain():
        return "\n".join(f"--- {n}\n{s.text()[-2000:]}" for n, s in services.items())

    wait_until(lambda: totals() >= requests, "the requests on the web UI", deadline, explain)
    assert totals() == requests
    page = browser.get("/type/pkgtest?range=1h")
    assert "pkgtest" in page and str(requests) in page
    accepted = urllib.request.urlopen("http://127.0.0.1:9478/metrics", timeout=10).read().decode()
    assert re.search(rf"^ipr_collector_records_accepted_total {requests}\.0$", accepted, re.M), accepted


@needs_root_on_debian
def test_a_request_through_nginx_reaches_the_installed_web_ui(install, nginx, tmp_path):
    """The embedded default, as installed: SQLite, the scheduler's tasks in
    process. The collector closes its segment within a minute
    (segment_seconds); the scheduler ingests it within the next."""
    with running(ENABLED, tmp_path) as services:
        requests_reach_the_web_ui(services, nginx, tmp_path, deadline=240)
        figure(f"apt-get install to the first request visible on a page: {time.time() - install:.0f} s")


@pytest.fixture
def behind_tls(install, tmp_path):
    """The documented production settings in /etc/ipr/ipr.env, and the
    package's sample nginx site with a self-signed certificate, on ports of
    its own."""
    env_file = Path("/etc/ipr/ipr.env")
    saved = env_file.read_text()
    env_file.write_text(saved + "".join(f"{k}={v}\n" for k, v in documented_production_settings().items()))
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=ipr.example.net",
        "-keyout", tmp_path / "tls.key", "-out", tmp_path / "tls.pem")
    plain, tls = (free_tcp_port() for _ in range(2))
    site = Path("/usr/share/doc/ipr/examples/nginx-ipr-ui.conf").read_text()
    site = (site.replace("listen [::]:80;", "").replace("listen [::]:443 ssl http2;", "")
            .replace("listen 80;", f"listen 127.0.0.1:{plain};")
            .replace("listen 443 ssl http2;", f"listen 127.0.0.1:{tls} ssl http2;")
            .replace("/etc/ssl/certs/ipr.example.net.pem", str(tmp_path / "tls.pem"))
            .replace("/etc/ssl/private/ipr.example.net.key", str(tmp_path / "tls.key")))
    assert f"127.0.0.1:{tls} ssl" in site and str(tmp_path / "tls.key") in site, site
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(f"""
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    include {tmp_path}/site.conf;
}}
""")
    run("nginx", "-t", "-c", tmp_path / "nginx.conf")
    process = subprocess.Popen(["nginx", "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"])
    try:
        wait_for_port("127.0.0.1", tls, deadline=20)
        yield plain, tls
    finally:
        process.terminate()
        process.wait(30)
        env_file.write_text(saved)


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(port: int, path: str, *, tls: bool = True, method: str = "GET", body: bytes | None = None,
          headers: dict | None = None):
    import http.client
    import ssl
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # self-signed
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(method, path, body, {"Host": "ipr.example.net", **(headers or {})})
    response = connection.getresponse()
    response.text = response.read().decode(errors="replace")
    connection.close()
    return response


@needs_root_on_debian
def test_behind_the_sample_tls_proxy_the_ui_has_secure_cookies_hsts_and_no_public_metrics(behind_tls, tmp_path):
    plain, tls = behind_tls
    with running(ENABLED, tmp_path):
        run("ipr", "createsuperuser", "--noinput", "--username", "tls-operator", "--email", "t@example.org",
            env={"DJANGO_SUPERUSER_PASSWORD": PASSWORD})
        page = fetch(tls, "/accounts/login/")
        assert page.status == 200, page.text[-2000:]
        assert page.getheader("Strict-Transport-Security") == "max-age=31536000"
        csrf_cookie = next(c for c in page.headers.get_all("Set-Cookie") if c.startswith("csrftoken="))
        assert "; Secure" in csrf_cookie, csrf_cookie
        csrf = csrf_cookie.split(";")[0].split("=", 1)[1]
        form = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        login = fetch(tls, "/accounts/login/", method="POST", body=urllib.parse.urlencode(
            {"csrfmiddlewaretoken": form, "username": "tls-operator", "password": PASSWORD}).encode(),
            headers={"Cookie": f"csrftoken={csrf}", "Referer": "https://ipr.example.net/accounts/login/",
                     "Content-Type": "application/x-www-form-urlencoded"})
        assert login.status == 302 and login.getheader("Location") == "/", (login.status, login.text[-2000:])
        session = next(c for c in login.headers.get_all("Set-Cookie") if c.startswith("sessionid="))
        assert "; Secure" in session and "HttpOnly" in session, session
        dashboard = fetch(tls, "/", headers={"Cookie": session.split(";")[0]})
        assert dashboard.status == 200 and "tls-operator" in dashboard.text
        # Plain HTTP is sent to HTTPS, by the proxy and by ipr itself.
        redirect = fetch(plain, "/reports/", tls=False)
        assert redirect.status == 301 and redirect.getheader("Location") == "https://ipr.example.net/reports/"
        direct = urllib.request.Request(f"{WEB}/reports/")
        with pytest.raises(urllib.error.HTTPError) as no_redirect:
            urllib.request.build_opener(NoRedirect).open(direct, timeout=10)
        assert no_redirect.value.code == 301
        assert no_redirect.value.headers["Location"] == "https://127.0.0.1:8000/reports/"
        # Probes and Prometheus on the host still reach gunicorn over HTTP.
        assert urllib.request.urlopen(f"{WEB}/healthz", timeout=10).status == 200
        assert b"ipr_database_up 1.0" in urllib.request.urlopen(f"{WEB}/metrics", timeout=10).read()
        # ... but nobody reaches ipr's metrics through the proxy.
        assert fetch(tls, "/metrics").status == 404


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture
def postgresql_and_redis(install):
    """/etc/ipr/ipr.env switched to a PostgreSQL database and a Redis
    broker of this test's own, as docs/install.md says; put back after."""
    env_file, collector_toml = Path("/etc/ipr/ipr.env"), Path("/etc/ipr/collector.toml")
    saved = env_file.read_text(), collector_toml.read_text()
    database, redis = "ipr_pkgtest", "redis://127.0.0.1:6379/12"
    run("psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f"DROP DATABASE IF EXISTS {database}")
    run("psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f"CREATE DATABASE {database}")
    run("redis-cli", "-n", "12", "flushdb")
    # This host's spool has a queue of its own, served by ipr-ingest@QUEUE.
    env_file.write_text(saved[0] + f"DATABASE_URL=postgres://postgres@127.0.0.1:5432/{database}\n"
                                   f"REDIS_URL={redis}\nIPR_INGEST_QUEUES=ingest.pkgtest\n")
    # A segment a second sooner than the default's minute, to keep the test short.
    collector_toml.write_text(saved[1] + "segment_seconds = 5.0\n")
    try:
        run("ipr", "migrate", "--noinput", "-v", "0")
        yield
    finally:
        env_file.write_text(saved[0])
        collector_toml.write_text(saved[1])
        run("redis-cli", "-n", "12", "flushdb")
        run("psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f"DROP DATABASE IF EXISTS {database}",
            check=False)


@needs_root_on_debian
def test_with_postgresql_and_redis_the_worker_and_beat_units_carry_the_requests(
        postgresql_and_redis, nginx, tmp_path):
    """The production set-up: beat sends the periodic tasks through Redis,
    the ingest to this host's queue, whose templated unit ingests the spool
    into PostgreSQL, and the rest to the worker."""
    units = ["ipr-collector", "ipr-web", "ipr-worker", "ipr-beat", "ipr-ingest@ingest.pkgtest"]
    with running(units, tmp_path) as services:
        requests_reach_the_web_ui(services, nginx, tmp_path, deadline=150)
        ingest = services["ipr-ingest@ingest.pkgtest"].text()
        assert re.search(r"Task ipr\.ingest\[.*\] succeeded in [0-9.e-]+s: [1-9]", ingest), ingest[-3000:]
        worker = services["ipr-worker"].text()
        assert "ipr.check_spool" in worker and "ipr.ingest[" not in worker, worker[-3000:]
        assert "postgresql" in urllib.request.urlopen(f"{WEB}/healthz", timeout=10).read().decode()


# --------------------------------------------------------------------------
# Upgrade, remove, purge

FAKE_SYSTEMCTL = """#!/bin/sh
# systemctl as the maintainer scripts see it in this test: records each call.
echo "$*" >> {log}
case "$*" in
    *is-enabled*) unit=$(echo "$*" | sed 's/.* //');
                  [ -e /etc/systemd/system/multi-user.target.wants/$unit ] && echo enabled && exit 0;
                  echo disabled; exit 1 ;;
    *is-active*) exit 0 ;;
    *--version*) echo "systemd 252 (252)"; exit 0 ;;
esac
exit 0
"""


def bumped(deb: Path, version: str, out: Path) -> Path:
    """The same package with another version: the next release of this tree."""
    tree = out / "tree"
    run("dpkg-deb", "-R", deb, tree)
    control = tree / "DEBIAN/control"
    control.write_text(re.sub(r"^Version: .*$", f"Version: {version}", control.read_text(), flags=re.M))
    target = out / f"ipr_{version}_amd64.deb"
    run("dpkg-deb", "-Zgzip", "-z1", "--root-owner-group", "-b", tree, target, timeout=900)
    shutil.rmtree(tree)
    return target


@needs_root_on_debian
def test_an_upgrade_migrates_keeps_data_and_settings_and_restarts_the_units(install, debs, tmp_path):
    version = run("dpkg-query", "-W", "-f", "${Version}", "ipr").stdout
    new = bumped(debs["ipr"], version + "+1", tmp_path)
    # Data and settings an operator made since the install.
    run("ipr", "createsuperuser", "--noinput", "--username", "keeper", "--email", "k@example.org",
        env={"DJANGO_SUPERUSER_PASSWORD": PASSWORD})
    env_file = Path("/etc/ipr/ipr.env")
    env_file.write_text(env_file.read_text() + "IPR_COLLECTOR_ADDRESS=192.0.2.10:9477\n")
    Path("/var/lib/ipr/spool/incoming").mkdir(exist_ok=True)
    Path("/var/lib/ipr/spool/incoming/kept.seg").write_bytes(b"a segment waiting for the ingest")
    # The previous release's schema: one migration behind, as after an
    # upgrade that brings a new one.
    last = run("ipr", "showmigrations", "traffic", "--plan").stdout.strip().splitlines()[-1]
    name = re.search(r"traffic\.(\d{4}_\w+)", last).group(1)
    previous = f"{int(name[:4]) - 1:04d}"
    run("ipr", "migrate", "traffic", previous)
    assert "[ ]" in run("ipr", "showmigrations", "traffic").stdout

    log = tmp_path / "systemctl.log"
    fake = tmp_path / "systemctl"
    fake.write_text(FAKE_SYSTEMCTL.format(log=log))
    fake.chmod(0o755)
    allow = tmp_path / "policy-rc.d"
    allow.write_text("#!/bin/sh\n# every service action allowed, as on a host without a policy\nexit 0\n")
    allow.chmod(0o755)
    # Only inside this mount namespace: systemd "runs" (/run/systemd/system),
    # /usr/bin/systemctl is the recorder, and a container's policy-rc.d
    # (exit 101: start nothing) does not hide what the scripts ask for.
    script = (f"set -e; mkdir -p /run/systemd; mount -t tmpfs none /run/systemd; "
              f"mkdir -p /run/systemd/system; "
              f"mount --bind {fake} /usr/bin/systemctl; "
              f"if [ -e /usr/sbin/policy-rc.d ]; then mount --bind {allow} /usr/sbin/policy-rc.d; fi; "
              f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q {new}")
    run("unshare", "--mount", "--propagation", "private", "sh", "-c", script, timeout=900)

    assert run("dpkg-query", "-W", "-f", "${Version}", "ipr").stdout == version + "+1"
    assert "[ ]" not in run("ipr", "showmigrations", "traffic").stdout  # migrated on upgrade
    users = run("ipr", "shell", "-c",
                "from django.contrib.auth.models import User; "
                "print(sorted(User.objects.values_list('username', flat=True)))").stdout
    assert "'keeper'" in users
    assert "IPR_COLLECTOR_ADDRESS=192.0.2.10:9477" in env_file.read_text()
    assert stat("/etc/ipr/ipr.env") == ("root", "ipr", "0o640")
    assert Path("/var/lib/ipr/spool/incoming/kept.seg").exists()
    calls = log.read_text().splitlines()
    for unit in ENABLED:
        assert any(re.search(rf"restart .*{unit}\.service", c) for c in calls), calls
    for unit in ("ipr-worker", "ipr-beat"):
        assert not any(re.search(rf"(re)?start .*{unit}\.service", c) for c in calls), calls
    Path("/var/lib/ipr/spool/incoming/kept.seg").unlink()


@needs_root_on_debian
def test_remove_keeps_data_and_settings_and_purge_deletes_them(install):
    apt("remove", "ipr")
    assert not VENV.exists() and not Path("/usr/bin/ipr").exists()
    assert Path("/etc/ipr/ipr.env").exists() and Path("/var/lib/ipr/ipr.sqlite3").exists()
    assert Path("/var/lib/ipr/secret_key").exists()
    apt("purge", "ipr")
    assert not Path("/etc/ipr").exists() and not Path("/var/lib/ipr").exists()
    assert not list(Path("/etc/systemd/system/multi-user.target.wants").glob("ipr-*"))
    assert run("id", "ipr", check=False).returncode == 0  # Debian keeps system users
    apt("purge", "libnginx-mod-http-ipr")
    assert not Path("/etc/nginx/modules-enabled/50-mod-http-ipr.conf").exists()
    assert not Path("/usr/lib/nginx/modules/ngx_http_ipr_module.so").exists()


# --------------------------------------------------------------------------
# The agent alone

def test_the_agent_installs_into_a_web_application_without_django_celery_or_numpy(tmp_path):
    venv = tmp_path / "webapp"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin/pip", "install", "-q", ROOT / "packaging/agent", timeout=600)
    listed = run(venv / "bin/pip", "list", "--format", "json").stdout
    names = {p["name"].lower() for p in json.loads(listed)}
    assert "ipr-agent" in names
    assert not names & {"django", "celery", "numpy", "ipr"}, names
    code = ("import sys, ipr_agent.wsgi, ipr_agent.sender, ipr_agent.wire; "
            "from ipr_agent.sender import Sender; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'celery', 'numpy', 'ipr'}))")
    assert run(venv / "bin/python", "-c", code, cwd=tmp_path).stdout.strip() == "[]"
