"""Sender keys and traffic types in the admin: every change rewrites the
collector's key file, in the collector's own format, and a new key's page
shows what to paste onto the web servers."""
import re
import stat
import time

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from collector import config, wire
from collector.agent import Sender
from ipr.agents import keyfile
from ipr.agents.models import SenderKey, TrafficType, new_secret
from tests.collector_helpers import CollectorProcess

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
    settings.COLLECTOR_PID_FILE = None
    return settings.KEY_FILE


def add_key(admin, **fields):
    data = {"key_id": 7, "name": "web-fra", "secret": "ab" * 32, "enabled": "on",
            "networks": "192.0.2.0/24\n2001:db8:10::/48", "traffic_type": ""}
    data.update(fields)
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


def test_the_admin_says_the_collector_needs_a_reload(admin, key_file):
    text = " ".join(messages_of(add_key(admin)))
    assert f"Wrote 1 key(s) to {key_file}" in text
    assert "kill -HUP" in text


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
                 f"IPR_KEY_SECRET={generated}", "IPR_SENDER_ID=4000000000", "IPR_TRAFFIC_TYPE=video"):
        assert line in page, line


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
    call_command("write_key_file", str(other), "--no-reload")
    assert sorted(config.load_keys(other)) == [5, 6]
    assert "wrote 2 key(s)" in capsys.readouterr().out


def test_the_admin_reloads_a_running_collector_which_then_accepts_the_new_key(
        admin, tmp_path, settings):
    with CollectorProcess(tmp_path / "c", keys=[]) as collector:
        pid_file = tmp_path / "collector.pid"
        pid_file.write_text(f"{collector.proc.pid}\n")
        settings.KEY_FILE = collector.key_file
        settings.COLLECTOR_PID_FILE = str(pid_file)
        settings.COLLECTOR_ADDRESS = f"127.0.0.1:{collector.port}"
        r = add_key(admin, key_id=9, networks="127.0.0.0/8", secret=new_secret())
        assert any(f"Sent SIGHUP to the collector (pid {collector.proc.pid})" in m for m in messages_of(r))
        collector.wait_metric('ipr_collector_reloads_total{result="ok"}', 1)
        # The WSGI agent, configured with nothing but the snippet's variables.
        lines = keyfile.snippet(SenderKey.objects.get())["wsgi"].splitlines()
        environ = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
        sender = Sender.from_env(environ)
        try:
            for _ in range(3):
                sender.add(wire.Record(client="127.0.0.1", server="127.0.0.1", wire_bytes=100))
            sender.flush()
            collector.wait_metric("ipr_collector_records_accepted_total", 3)
        finally:
            sender.close()
        assert collector.metrics().get('ipr_collector_datagrams_rejected_total{reason="unknown_key"}', 0) == 0


@pytest.mark.parametrize("value", ["collector.example.net:9477", "192.0.2.5", "[2001:db8::5]:99999"])
def test_a_collector_address_that_nginx_could_not_use_stops_start_up(tmp_path, value):
    from tests.test_settings import settings_with
    code, err = settings_with(tmp_path, IPR_COLLECTOR_ADDRESS=value)
    assert code != 0 and "IPR_COLLECTOR_ADDRESS" in err and "ImproperlyConfigured" in err


def test_an_ipv6_collector_address_is_accepted_for_the_snippets(tmp_path):
    from tests.test_settings import settings_with
    code, out = settings_with(tmp_path, IPR_COLLECTOR_ADDRESS="[2001:db8::5]:9477")
    assert code == 0, out
