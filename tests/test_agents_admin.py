"""Sender keys and traffic types in the admin: every change rewrites the
collector's key file, in the collector's own format, which a running
collector loads by itself; a new key's page shows what to paste onto the
web servers, and `ipr agent-key` prints it for scripts."""
import os
import re
import stat
import subprocess
import sys
import time
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection

from collector import config
from ipr_agent import wire
from ipr_agent.sender import Sender
from ipr.agents import keyfile
from ipr.agents.models import SenderKey, TrafficType, new_secret
from tests.collector_helpers import ROOT, CollectorProcess

# Transactional, so the admin's after-commit work runs as it does in
# production: before the response, with its message.
pytestmark = pytest.mark.django_db(transaction=True)

ADD = "/admin/agents/senderkey/add/"


@pytest.fixture
def admin(client):
    client.force_login(User.objects.create_superuser("root", "root@example.net", "pw"))
    return client


@pytest.fixture
def key_file(tmp_path, settings):
    settings.KEY_FILE = tmp_path / "etc" / "keys.json"
    return settings.KEY_FILE


def add_key(admin, **fields):
    data = {"key_id": 7, "name": "web-fra", "secret": "ab" * 32, "enabled": "on",
            "networks": "192.0.2.0/24\n2001:db8:10::/48", "traffic_type": ""}
    data.update(fields)
    data.setdefault("sender_ids", str(data["key_id"]))
    return admin.post(ADD, data, follow=True)


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def test_adding_a_key_writes_a_key_file_the_collector_loads(admin, key_file):
    r = add_key(admin)
    assert r.status_code == 200
    keys = config.load_keys(key_file)
    assert list(keys) == [7]
    k = keys[7]
    assert (k.secret, k.enabled, k.name) == (bytes.fromhex("ab" * 32), True, "web-fra")
    assert [str(n) for n in k.networks] == ["192.0.2.0/24", "2001:db8:10::/48"]
    assert k.allows("192.0.2.9") and not k.allows("198.51.100.1")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # No temporary file is left beside it.
    assert [p.name for p in key_file.parent.iterdir()] == ["keys.json"]


def test_the_admin_says_where_it_wrote_the_keys_and_that_the_collector_loads_them_by_itself(admin, key_file):
    text = " ".join(messages_of(add_key(admin)))
    assert text.endswith(f"Wrote 1 key(s) to {key_file}. A collector reading this file loads them "
                         "within about 2 seconds.")
    assert "HUP" not in text and "reload" not in text


def test_rewriting_the_same_keys_leaves_the_file_alone_so_the_collector_does_not_reload(key_file):
    SenderKey.objects.create(key_id=5, name="x", networks="0.0.0.0/0")
    keyfile.write()
    before = key_file.stat()
    assert keyfile.write() == (key_file, 1)
    assert (key_file.stat().st_ino, key_file.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    SenderKey.objects.update(enabled=False)
    keyfile.write()
    assert key_file.stat().st_ino != before.st_ino
    assert config.load_keys(key_file)[5].enabled is False


def test_a_new_key_page_shows_the_nginx_and_wsgi_snippets_with_its_id_and_secret(
        admin, key_file, settings):
    settings.COLLECTOR_ADDRESS = "198.51.100.5:9477"
    TrafficType.objects.create(name="video", label="Video")
    video = TrafficType.objects.get(name="video")
    generated = new_secret()
    r = add_key(admin, key_id=4000000000, secret=generated,
                traffic_type=video.pk)
    key = SenderKey.objects.get(key_id=4000000000)
    assert r.redirect_chain[-1][0].endswith(f"/admin/agents/senderkey/{key.pk}/change/")
    page = r.content.decode()
    for line in (f"4000000000:{generated}", "ipr_collector    198.51.100.5:9477;",
                 "ipr_key_file     /etc/nginx/ipr.key;", "ipr_sender_id    4000000000;",
                 "ipr_traffic_type video;", "IPR_COLLECTOR=198.51.100.5:9477", "IPR_KEY_ID=4000000000",
                 f"IPR_KEY_SECRET={generated}", "IPR_SENDER_ID=4000000000", "IPR_TRAFFIC_TYPE=video",
                 "`ipr agent-key --id 4000000000` prints it", "libnginx-mod-http-ipr package loads the module",
                 "`ipr agent-key --id 4000000000 --format env` prints it"):
        assert line in page, line
    # The package enables the module: a load_module line of one's own would load it twice.
    assert "\nload_module" not in page and "# load_module modules/ngx_http_ipr_module.so;" in page


def test_the_add_form_offers_the_next_key_id_and_a_fresh_32_byte_secret(admin, key_file):
    SenderKey.objects.create(key_id=41, name="a", networks="0.0.0.0/0")
    form = admin.get(ADD).context["adminform"].form
    assert form.initial["key_id"] == 42
    assert re.fullmatch(r"[0-9a-f]{64}", form.initial["secret"])
    assert form.initial["secret"] != admin.get(ADD).context["adminform"].form.initial["secret"]


@pytest.mark.parametrize("fields, field, why", [
    ({"networks": "192.0.2.1/24"}, "networks", "has host bits set"),
    ({"networks": ""}, "networks", "This field is required"),
    ({"secret": "ab" * 8}, "secret", "16 to 128 bytes"),
    ({"secret": "zz" * 32}, "secret", "hex digits"),
    ({"secret": ""}, "secret", "This field is required"),
    ({"key_id": 2**32}, "key_id", "less than or equal to 4294967295"),
])
def test_a_bad_key_is_refused_and_the_key_file_left_alone(admin, key_file, fields, field, why):
    add_key(admin, key_id=1)
    before = key_file.read_bytes()
    r = add_key(admin, **{"key_id": 2, **fields})
    assert why in " ".join(r.context["adminform"].form.errors[field])
    assert key_file.read_bytes() == before
    assert SenderKey.objects.count() == 1


def test_networks_are_stored_canonical_one_per_line(admin, key_file):
    add_key(admin, networks="192.0.2.0/24, 2001:DB8::/32 10.0.0.0/8")
    assert SenderKey.objects.get().networks == "192.0.2.0/24\n2001:db8::/32\n10.0.0.0/8"


def test_deleting_and_disabling_keys_reach_the_key_file(admin, key_file):
    for kid in (1, 2, 3):
        add_key(admin, key_id=kid)
    one, two = SenderKey.objects.get(key_id=1), SenderKey.objects.get(key_id=2)
    admin.post(f"/admin/agents/senderkey/{one.pk}/delete/", {"post": "yes"})
    admin.post("/admin/agents/senderkey/", {"action": "disable", "_selected_action": [two.pk]})
    keys = config.load_keys(key_file)
    assert sorted(keys) == [2, 3]
    assert (keys[2].enabled, keys[3].enabled) == (False, True)


def test_replacing_a_secret_records_when_and_reaches_the_key_file(admin, key_file):
    add_key(admin)
    key = SenderKey.objects.get()
    admin.post("/admin/agents/senderkey/", {"action": "replace_secret", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.secret != "ab" * 32 and re.fullmatch(r"[0-9a-f]{64}", key.secret)
    assert key.rotated is not None
    assert config.load_keys(key_file)[7].secret == bytes.fromhex(key.secret)


def test_a_key_file_that_cannot_be_written_is_an_error_message_and_leaves_no_temporary_file(
        admin, key_file):
    # A directory where the file should be: the rename fails, even as root.
    (key_file / "in-the-way").mkdir(parents=True)
    r = add_key(admin, key_id=2)
    assert any("NOT written" in m for m in messages_of(r))
    assert [p.name for p in key_file.parent.iterdir()] == ["keys.json"]
    assert key_file.is_dir()
    # The key is saved all the same: the command writes the file once the path is fixed.
    assert SenderKey.objects.filter(key_id=2).exists()


def test_the_command_writes_the_key_file_from_the_database(key_file, tmp_path, capsys):
    SenderKey.objects.create(key_id=5, name="x", networks="0.0.0.0/0\n::/0", enabled=False)
    SenderKey.objects.create(key_id=6, name="y", networks="10.0.0.0/8")
    call_command("write_key_file")
    assert {k: v.enabled for k, v in config.load_keys(key_file).items()} == {5: False, 6: True}
    other = tmp_path / "other.json"
    call_command("write_key_file", str(other))
    assert sorted(config.load_keys(other)) == [5, 6]
    assert capsys.readouterr().out == f"wrote 2 key(s) to {key_file}\nwrote 2 key(s) to {other}\n"


def until(collector, sender, metric, at_least, timeout=15):
    """Send a record a flush until ``metric`` reaches ``at_least``."""
    deadline = time.monotonic() + timeout
    while collector.metrics().get(metric, 0) < at_least:
        assert time.monotonic() < deadline, f"{metric} < {at_least}\n{collector.log.read_text()}"
        sender.add(wire.Record(client="127.0.0.1", server="127.0.0.1", wire_bytes=100))
        sender.flush()
        time.sleep(0.05)


def agent_key(*args) -> str:
    out = StringIO()
    call_command("agent-key", *args, stdout=out)
    return out.getvalue()


def test_a_collector_started_without_keys_takes_the_admins_new_key_and_its_disabling_with_no_signal(
        admin, tmp_path, settings):
    c = CollectorProcess(tmp_path / "c", flush_interval=0.1)
    c.key_file.unlink()
    with c:
        settings.KEY_FILE = c.key_file
        settings.COLLECTOR_ADDRESS = f"127.0.0.1:{c.port}"
        add_key(admin, key_id=9, networks="127.0.0.0/8", secret=new_secret())
        # The WSGI agent, configured with nothing but `ipr agent-key --format env`.
        environ = dict(line.split("=", 1) for line in agent_key("--id", "9", "--format", "env").splitlines())
        sender = Sender.from_env(environ)
        try:
            until(c, sender, "ipr_collector_records_accepted_total", 1)
            admin.post("/admin/agents/senderkey/", {"action": "disable",
                                                    "_selected_action": [SenderKey.objects.get().pk]})
            until(c, sender, 'ipr_collector_datagrams_rejected_total{reason="disabled_key"}', 1)
        finally:
            sender.close()
    assert "WARNING no sender keys" in c.log.read_text()


def test_agent_key_prints_the_nginx_modules_key_file_line_and_nothing_else(key_file):
    SenderKey.objects.create(key_id=7, name="web-fra", secret="AB" * 48, networks="0.0.0.0/0")
    # As ngx_http_ipr_module reads it: KEY_ID:SECRET_HEX, lower-case, one line.
    assert agent_key("--id", "7") == f"7:{'ab' * 48}\n"
    assert agent_key("--id", "7", "--format", "nginx") == f"7:{'ab' * 48}\n"


def test_nginx_with_the_module_loads_the_key_file_agent_key_prints(key_file, tmp_path):
    from nginx_helpers import Nginx
    SenderKey.objects.create(key_id=2**32 - 1, name="web-fra", secret="AB" * 128, networks="0.0.0.0/0")
    ng = Nginx(tmp_path, "ipr_collector 127.0.0.1:9477; ipr_key_file KEYFILE; ipr_sender_id 1;", "ipr on;")
    ng.key.write_text(agent_key("--id", str(2**32 - 1)))
    out = ng.test_config()
    assert out.returncode == 0, out.stderr


def test_agent_key_prints_the_wsgi_agents_environment(key_file, settings):
    settings.COLLECTOR_ADDRESS = "198.51.100.5:9477"
    video = TrafficType.objects.create(name="video")
    SenderKey.objects.create(key_id=7, name="web-fra", secret="cd" * 32, networks="0.0.0.0/0", traffic_type=video,
                             sender_ids="12\n9")
    expected = ("IPR_COLLECTOR=198.51.100.5:9477\nIPR_KEY_ID=7\nIPR_KEY_SECRET=" + "cd" * 32
                + "\nIPR_SENDER_ID={}\nIPR_TRAFFIC_TYPE=video\n")
    # The key's lowest sender id, or the one asked for if the key lists it.
    assert agent_key("--id", "7", "--format", "env") == expected.format(9)
    assert agent_key("--id", "7", "--format", "env", "--sender-id", "12") == expected.format(12)
    with pytest.raises(CommandError, match=r"sender id 7 is not one of key 7's \(9, 12\): the collector would "
                                           "refuse it"):
        agent_key("--id", "7", "--format", "env", "--sender-id", "7")
    # The admin's snippet shows the same lines.
    assert expected.format(9) in keyfile.snippet(SenderKey.objects.get())["wsgi"]


def test_agent_key_refuses_an_unknown_or_disabled_key(key_file):
    SenderKey.objects.create(key_id=7, name="old", networks="0.0.0.0/0", enabled=False)
    with pytest.raises(CommandError, match="no sender key 8"):
        agent_key("--id", "8")
    with pytest.raises(CommandError, match=r"sender key 7 \(old\) is disabled"):
        agent_key("--id", "7", "--format", "env")
    with pytest.raises(CommandError, match="--sender-id goes with --format env"):
        agent_key("--id", "7", "--sender-id", "3")


# The idiom docs/admin.md gives: the file is replaced only when the command
# succeeded, and is never readable by others.
INSTALL = """key=$(ipr agent-key --id {id}) && printf '%s\\n' "$key" | install -m 600 /dev/stdin {dest}"""


@pytest.fixture
def ipr_command(tmp_path):
    """Run a shell line with `ipr` meaning this checkout's manage.py on the test database."""
    if connection.vendor != "postgresql":
        pytest.skip("a second process must share the test database: DATABASE_URL must be PostgreSQL")
    s = connection.settings_dict
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ipr.settings", "IPR_DATA_DIR": str(tmp_path / "var"),
           "DATABASE_URL": f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"}

    def run(line: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", f'ipr() {{ "{sys.executable}" manage.py "$@"; }}; {line}'],
                              capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    return run


def test_agent_key_as_a_command_prints_only_the_key_or_exits_1_with_the_reason_on_stderr(ipr_command):
    key = SenderKey.objects.create(key_id=7, name="web-fra", networks="0.0.0.0/0")
    out = ipr_command("ipr agent-key --id 7")
    assert (out.returncode, out.stdout, out.stderr) == (0, f"7:{key.secret}\n", "")
    key.enabled = False
    key.save()
    out = ipr_command("ipr agent-key --id 7")
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == "CommandError: sender key 7 (web-fra) is disabled: the collector refuses it\n"
    out = ipr_command("ipr agent-key --id 8")
    assert (out.returncode, out.stdout, out.stderr) == (1, "", "CommandError: no sender key 8\n")


def test_the_documented_idiom_installs_the_key_file_only_when_the_command_succeeds(ipr_command, tmp_path):
    key = SenderKey.objects.create(key_id=7, name="web-fra", networks="0.0.0.0/0")
    dest = tmp_path / "nginx" / "ipr.key"
    dest.parent.mkdir()
    out = ipr_command(INSTALL.format(id=7, dest=dest))
    assert out.returncode == 0, out.stderr
    assert dest.read_text() == f"7:{key.secret}\n"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    key.enabled = False
    key.save()
    out = ipr_command(INSTALL.format(id=7, dest=dest))
    assert out.returncode == 1 and "is disabled" in out.stderr
    assert dest.read_text() == f"7:{key.secret}\n"  # the last good one, not an empty file


@pytest.mark.parametrize("value", ["collector.example.net:9477", "192.0.2.5", "[2001:db8::5]:99999"])
def test_a_collector_address_that_nginx_could_not_use_stops_start_up(tmp_path, value):
    from tests.test_settings import settings_with
    code, err = settings_with(tmp_path, IPR_COLLECTOR_ADDRESS=value)
    assert code != 0 and "IPR_COLLECTOR_ADDRESS" in err and "ImproperlyConfigured" in err


def test_an_ipv6_collector_address_is_accepted_for_the_snippets(tmp_path):
    from tests.test_settings import settings_with
    code, out = settings_with(tmp_path, IPR_COLLECTOR_ADDRESS="[2001:db8::5]:9477")
    assert code == 0, out


# Keys bound to senders

def test_a_keys_sender_ids_reach_the_key_file_and_the_snippets_set_one_of_them(admin, key_file):
    add_key(admin, key_id=7, sender_ids="101, 7\n 4294967295 101")
    assert SenderKey.objects.get().sender_ids == "7\n101\n4294967295"
    assert config.load_keys(key_file)[7].sender_ids == {7, 101, 4294967295}
    parts = keyfile.snippet(SenderKey.objects.get())
    assert "ipr_sender_id    7;    # one per server or site; this key allows: 7, 101, 4294967295" in parts["nginx"]
    assert "IPR_SENDER_ID=7\n" in parts["wsgi"]
    assert "IPR_SENDER_ID=101\n" in keyfile.snippet(SenderKey.objects.get(), sender_id=101)["wsgi"]


@pytest.mark.parametrize("value, why", [
    ("", "This field is required"),
    ("7 x", "'x' is not a sender id"),
    ("4294967296", "'4294967296' is not a sender id"),
    ("-1", "'-1' is not a sender id"),
])
def test_a_key_without_valid_sender_ids_is_refused(admin, key_file, value, why):
    r = add_key(admin, sender_ids=value)
    assert why in " ".join(r.context["adminform"].form.errors["sender_ids"])
    assert not SenderKey.objects.exists()


def test_the_add_form_offers_the_new_key_id_as_its_sender_id(admin, key_file):
    SenderKey.objects.create(key_id=41, name="a", networks="0.0.0.0/0")
    assert admin.get(ADD).context["adminform"].form.initial["sender_ids"] == "42"


def test_the_migration_lets_an_existing_key_speak_for_the_sender_id_equal_to_its_key_id():
    from django.db.migrations.executor import MigrationExecutor
    executor = MigrationExecutor(connection)
    executor.migrate([("agents", "0001_initial")])
    try:
        old = executor.loader.project_state([("agents", "0001_initial")]).apps.get_model("agents", "SenderKey")
        old.objects.create(key_id=5, name="old", secret="ab" * 32, networks="0.0.0.0/0")
        executor = MigrationExecutor(connection)
        executor.migrate([("agents", "0002_senderkey_sender_ids")])
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert SenderKey.objects.get(key_id=5).key_file_entry()["sender_ids"] == [5]


# The secret is shown once

def staff(client, username, *perms):
    from django.contrib.auth.models import Permission
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="agents", codename__in=perms))
    client.force_login(user)
    return client


def change_page(client, key):
    r = client.get(f"/admin/agents/senderkey/{key.pk}/change/")
    assert r.status_code == 200
    return r.content.decode()


def test_a_user_who_may_only_view_keys_never_sees_a_secret(client, key_file):
    key = SenderKey.objects.create(key_id=7, name="web-fra", networks="0.0.0.0/0")
    viewer = staff(client, "viewer", "view_senderkey")
    page = change_page(viewer, key)
    assert key.secret not in page
    assert key.secret_fingerprint in page
    assert "ipr_sender_id    7;" in page  # the rest of the snippet is there
    assert "run `ipr agent-key --id 7` to print it" in page
    # Nor after a replacement, which a viewer may not make.
    r = viewer.post("/admin/agents/senderkey/", {"action": "replace_secret", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.rotated is None
    assert key.secret not in change_page(viewer, key)


def test_the_secret_is_shown_once_after_it_is_made_and_once_after_it_is_replaced(client, key_file):
    changer = staff(client, "changer", "view_senderkey", "change_senderkey", "add_senderkey")
    r = add_key(changer, key_id=7)
    key = SenderKey.objects.get()
    first = r.content.decode()
    assert f"7:{key.secret}" in first and f"IPR_KEY_SECRET={key.secret}" in first
    assert "The secret is shown this once" in first
    assert key.secret not in change_page(changer, key)
    old = key.secret
    changer.post("/admin/agents/senderkey/", {"action": "replace_secret", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.secret != old
    assert f"7:{key.secret}" in change_page(changer, key)
    assert key.secret not in change_page(changer, key)
    assert key.secret not in change_page(staff(client, "viewer", "view_senderkey"), key)
