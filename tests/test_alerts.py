"""Alert rules on the archive of known regressions (regress_helpers): the
rules that should fire do, once; the noise never does; an alert resolves by
itself; each opening and resolution goes by e-mail (Django's locmem
backend) and as JSON to a webhook (a real HTTP server on loopback)."""
import json
import threading
from datetime import timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cron.celery import app
from cron.schedule import SCHEDULE
from ipr.alerts.check import check_rules, evaluate
from ipr.alerts.models import Alert, AlertRule
from regress_helpers import NOW, facts, periods  # noqa: F401 (facts: the fixture)

pytestmark = pytest.mark.django_db
UTC = timezone.utc
(START, END), (BASE_START, BASE_END) = periods(NOW)
DAY = 24 * 60



class Hook:
    """A webhook receiver on 127.0.0.1: keeps every POST's JSON; answers
    ``status`` (200, or 500 to play a broken receiver)."""

    def __init__(self):
        self.received, self.status = [], 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.append({"type": self.headers["Content-Type"], "json": json.loads(body)})
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def rule(**fields) -> AlertRule:
    defaults = {"name": "r", "kind": "origin_as", "measure": "retrans_rate", "mode": "absolute",
                "threshold": 4, "window_minutes": DAY, "min_requests": 100}
    r = AlertRule(**{**defaults, **fields})
    r.full_clean()
    r.save()
    return r


def keys(r, now=END):
    return {f.key for f in evaluate(r, now)}


def test_absolute_rule_fires_once_sends_and_resolves(facts, hook, mailoutbox):
    r = rule(name="retransmits above 4 %", email_to="noc@example.net, oncall@example.net", webhook_url=hook.url)
    # Stable ASes (1..3 %) and the tiny AS (67 % of 30 segments, 3 responses) stay out.
    assert check_rules(END) == {"firing": 1, "opened": 1, "resolved": 0}
    alert = Alert.objects.get()
    assert (alert.key, alert.label, alert.resolved) == ("65100", "AS65100 RETRANS-UP", None)
    assert 0.04 < alert.last_value < 0.06 and alert.started == END
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["noc@example.net", "oncall@example.net"]
    assert mail.subject == "[ipr] FIRING: retransmits above 4 %: AS65100 RETRANS-UP"
    assert "above 4.00 %" in mail.body
    assert len(hook.received) == 1 and hook.received[0]["type"] == "application/json"
    sent = hook.received[0]["json"]
    assert sent["status"] == "firing" and sent["alert"]["key"] == "65100" and sent["alert"]["resolved"] is None
    assert sent["rule"]["name"] == r.name and sent["rule"]["measure"] == "retrans_rate"
    assert sent["alert"]["path"].startswith("/reports/uplinks?asn=65100&")
    assert sent["alert"]["value"] == pytest.approx(alert.last_value)

    # A rerun: the same alert, updated; nothing sent again.
    later = END + timedelta(minutes=5)
    assert check_rules(later) == {"firing": 1, "opened": 0, "resolved": 0}
    assert Alert.objects.count() == 1 and Alert.objects.get().last_checked == later
    last_path = Alert.objects.get().path   # over the window that ends 5 minutes later
    assert last_path.startswith("/reports/uplinks?asn=65100&") and last_path != sent["alert"]["path"]
    assert len(mailoutbox) == 1 and len(hook.received) == 1

    # The condition clears (checked over the week before, at 0.5 %): resolved, and said so.
    assert check_rules(BASE_END) == {"firing": 0, "opened": 0, "resolved": 1}
    alert.refresh_from_db()
    assert alert.resolved == BASE_END and "resolved" in alert.message
    assert len(mailoutbox) == 2 and mailoutbox[1].subject.startswith("[ipr] RESOLVED: ")
    assert hook.received[1]["json"]["status"] == "resolved"
    assert hook.received[1]["json"]["alert"]["resolved"] == BASE_END.isoformat()
    assert hook.received[1]["json"]["alert"]["path"] == last_path   # the last window that fired
    assert check_rules(BASE_END) == {"firing": 0, "opened": 0, "resolved": 0}
    assert len(mailoutbox) == 2 and len(hook.received) == 2

    # Worse again: a new alert, the old one stays resolved.
    check_rules(END)
    assert Alert.objects.count() == 2 and Alert.objects.filter(resolved__isnull=True).count() == 1


def test_change_rule_finds_the_regression_not_the_noise(facts):
    r = rule(name="retransmits +50 %", mode="change", threshold=50, min_requests=200)
    # 65600 went 1 % -> 1.6 % (+60 %) but over too few segments to be
    # significant; 65300 has 3 responses; the stable ASes did not move.
    assert keys(r) == {"65100"}


def test_uplink_rtt_change(facts):
    slow = rule(name="p95 via TRANSIT-SLOW", kind="uplink", router=2, key="AS64601", measure="rtt_p95_ms",
                mode="change", threshold=50, min_requests=1000)
    assert keys(slow) == {"2/64601"}
    found = evaluate(slow, END)[0]
    assert found.label == "edge-fra1 via AS64601 TRANSIT-SLOW"
    assert found.value / found.baseline == pytest.approx(2, rel=0.15)
    good = rule(name="p95 via TRANSIT-GOOD", kind="uplink", router=2, key="64600", measure="rtt_p95_ms",
                mode="change", threshold=50, min_requests=1000)
    assert keys(good) == set()
    every = rule(name="p95 any uplink", kind="uplink", measure="rtt_p95_ms", mode="change", threshold=50,
                 min_requests=1000)
    assert keys(every) == {"2/64601"}


def test_traffic_and_delivery_rules(facts):
    lost = rule(name="traffic halved", kind="country", measure="bps", mode="change", threshold=50,
                min_requests=1000)
    assert keys(lost) == {"ES"}
    slow = rule(name="delivery below 1 MB/s", kind="origin_as", measure="delivery_rate", threshold=1e6,
                min_requests=1000)
    assert keys(slow) == {"65500"}
    prefix = rule(name="one prefix", kind="prefix", key="198.18.76.0/24", measure="retrans_rate", threshold=4)
    assert keys(prefix) == {"198.18.76.0/24 AS65100"}


def test_minimum_volume_keeps_noise_out(facts):
    tiny = rule(name="tiny", key="AS65300", threshold=1, min_requests=100)
    assert keys(tiny) == set()
    tiny.min_requests = 1
    tiny.save()
    assert keys(tiny) == {"65300"}   # 20 of 30 segments: the volume rule is what kept it out


def test_disabled_rule_resolves_its_alerts(facts, mailoutbox):
    r = rule(name="retransmits", email_to="noc@example.net")
    check_rules(END)
    r.enabled = False
    r.save()
    assert check_rules(END + timedelta(minutes=5)) == {"firing": 0, "opened": 0, "resolved": 1}
    assert "the rule is disabled" in Alert.objects.get().message
    assert [m.subject.split(":")[0] for m in mailoutbox] == ["[ipr] FIRING", "[ipr] RESOLVED"]


def test_broken_webhook_is_recorded_and_mail_still_goes(facts, hook, mailoutbox):
    hook.status = 500
    rule(name="retransmits", email_to="noc@example.net", webhook_url=hook.url)
    check_rules(END)
    alert = Alert.objects.get()
    assert alert.notify_error.startswith("firing: webhook: HTTP Error 500")
    assert len(mailoutbox) == 1 and len(hook.received) == 1


def test_rule_validation():
    bad = AlertRule(name="x", kind="origin_as", key="not-an-as", measure="retrans_rate", threshold=1)
    with pytest.raises(Exception) as info:
        bad.full_clean()
    assert "key" in info.value.message_dict
    bad = AlertRule(name="x", kind="country", key="FR", router=1, measure="retrans_rate", threshold=1)
    with pytest.raises(Exception) as info:
        bad.full_clean()
    assert "router" in info.value.message_dict
    bad = AlertRule(name="x", kind="country", key="FR", measure="bps", mode="change", threshold=100)
    with pytest.raises(Exception) as info:
        bad.full_clean()
    assert "threshold" in info.value.message_dict
    bad = AlertRule(name="x", kind="country", measure="bps", threshold=1, email_to="noc@example.net, nope")
    with pytest.raises(Exception) as info:
        bad.full_clean()
    assert "email_to" in info.value.message_dict


def test_admin_edits_rules(admin_client):
    page = admin_client.get("/admin/alerts/alertrule/add/")
    assert page.status_code == 200 and b"webhook_url" in page.content
    form = {"name": "p95", "enabled": "on", "kind": "origin_as", "key": "AS65100", "router": "",
            "measure": "rtt_p95_ms", "mode": "change", "threshold": "50", "window_minutes": "60",
            "baseline_days": "7", "min_requests": "1000", "email_to": "", "webhook_url": ""}
    answer = admin_client.post("/admin/alerts/alertrule/add/", {**form, "key": "AS-nothing"})
    assert answer.status_code == 200 and b"is not an AS number" in answer.content
    answer = admin_client.post("/admin/alerts/alertrule/add/", form)
    assert answer.status_code == 302 and AlertRule.objects.get().target() == 65100
    assert admin_client.get("/admin/alerts/alert/").status_code == 200
    assert admin_client.get("/admin/alerts/alert/add/").status_code == 403


def test_dashboard_shows_firing_alerts(facts, admin_client):
    rule(name="retransmits above 4 %")
    check_rules(END)
    html = admin_client.get(f"/?from={START:%Y-%m-%dT%H:%M}&to={END:%Y-%m-%dT%H:%M}").content.decode()
    alerts = html.split('id="firing-alerts"')[1].split("</ul>")[0]
    assert "retransmits above 4 %" in alerts and "AS65100 RETRANS-UP" in alerts
    assert 'href="/reports/uplinks?asn=65100&amp;from=' in alerts


def test_periodic_task(facts):
    assert SCHEDULE["alerts"]["task"] == "ipr.check_alerts"
    rule(name="retransmits above 4 %", window_minutes=60)
    # Now, with the archive's traffic two hours old or more: a one-hour
    # window holds none of it, so nothing fires...
    assert app.tasks["ipr.check_alerts"].apply().get() == 0
    # ... and the last 24 hours hold most of the "now" period: 65100 fires.
    AlertRule.objects.update(window_minutes=DAY)
    assert app.tasks["ipr.check_alerts"].apply().get() == 1
    assert Alert.objects.get().key == "65100"
