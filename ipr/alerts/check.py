"""Evaluate the enabled alert rules, open and resolve alerts, send them.

``check_rules()`` is what the periodic task ``ipr.check_alerts`` runs. Per
rule, in one transaction that holds the rule's row (so two checks at once
take turns): the keys whose condition holds now are its firing set; an
open alert of a key in it is updated, a key without one gets a new alert
(sent as "firing"), and an open alert whose key is no longer in it is
resolved (sent as "resolved"). Running it again with the same archive
changes nothing but ``last_checked``. Notifications go out after the
transaction commits; one that fails is logged and kept on the alert's
``notify_error``, and does not stop the others.
"""
from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils.http import urlencode

from ipr.alerts.models import Alert, AlertRule
from ipr.web import queries as q, regress
from ipr.web.queries import Filters, QueryError, Range

log = logging.getLogger("ipr.alerts")

WEBHOOK_TIMEOUT = 10  # seconds
HIGHER_IS_WORSE = {m: worse for m, (_, worse) in regress.MEASURES.items()}


@dataclass
class Finding:
    key: str
    label: str
    value: float | None
    baseline: float | None
    message: str
    path: str


def _key_text(kind: str, key) -> str:
    if kind == "uplink":
        return f"{key[0]}/{key[1]}"
    if kind == "prefix":
        return f"{key[0]} AS{key[1]}"
    if kind == "country":
        return key or "--"
    return str(key)


def _filters(rule: AlertRule) -> Filters:
    target = rule.target()
    dim = {"origin_as": "origin_as", "country": "country", "prefix": "prefix", "neighbor_as": "neighbor_as",
           "uplink": "neighbor_as"}[rule.kind]
    return Filters(**({dim: target} if target is not None else {}),
                   **({"router": rule.router} if rule.kind == "uplink" and rule.router is not None else {}))


def _value(measure: str, figs: dict, seconds: float):
    if measure == "bps":
        return figs["bytes"] * 8 / seconds
    return figs[measure]


def _significant(measure: str, now: dict, before: dict, seconds_now: float, seconds_before: float) -> bool:
    """The report's test of a change (ipr.web.regress), at Z_MIN."""
    if measure == "retrans_rate":
        z = regress.retrans_z(now, before)
    elif measure in ("rtt_p50_ms", "rtt_p95_ms"):
        z = regress.rtt_z(now, before, measure)
    elif measure == "bps":
        z = regress.traffic_z(now, before, seconds_now, seconds_before)
    else:
        z = regress.delivery_t(now, before)
    return z is not None and z >= regress.Z_MIN


def _path(rule: AlertRule, key, rng: Range) -> str:
    """The page to look at: the uplink comparison of a destination, the
    neighbour's page for an uplink."""
    when = {"from": rng.start.strftime("%Y-%m-%dT%H:%M"), "to": rng.end.strftime("%Y-%m-%dT%H:%M")}
    if rule.kind == "origin_as":
        return reverse("web:report_uplinks") + "?" + urlencode({"asn": key, **when})
    if rule.kind == "country":
        return reverse("web:report_uplinks") + "?" + urlencode({"country": key or "--", **when})
    if rule.kind == "prefix":
        return reverse("web:report_uplinks") + "?" + urlencode({"asn": key[1], "prefix": key[0], **when})
    if rule.kind == "uplink":
        return reverse("web:neighbor", args=[key[1]]) + "?" + urlencode({"router": key[0], **when})
    return reverse("web:neighbor", args=[key]) + "?" + urlencode(when)


def evaluate(rule: AlertRule, now: datetime | None = None) -> list[Finding]:
    """The keys of the rule's kind whose condition holds over its window."""
    now = now or q._now()
    rng = Range.between(now - timedelta(minutes=rule.window_minutes), now, now)
    filters = _filters(rule)
    kind = rule.kind
    current = regress.measured(rng, kind, filters)
    measure, worse_up = rule.measure, HIGHER_IS_WORSE[rule.measure]
    found: dict = {}
    if rule.mode == "absolute":
        limit = rule.threshold / 100 if measure == "retrans_rate" else rule.threshold
        for key, figs in current.items():
            value = _value(measure, figs, rng.seconds)
            if figs["requests"] < rule.min_requests or value is None:
                continue
            if (value > limit) if worse_up else (value < limit):
                found[key] = (value, None, f"{regress.MEASURES[measure][0]} {regress.shown(measure, value)}, "
                                           f"{'above' if worse_up else 'below'} {regress.shown(measure, limit)}")
    else:
        base = regress.baseline_of(rng, timedelta(days=rule.baseline_days))
        before = regress.measured(base, kind, filters)
        empty = regress.nothing(rng.seconds, len(rng.buckets()))
        factor = 1 + rule.threshold / 100 if worse_up else 1 - rule.threshold / 100
        for key, b in before.items():
            figs = current.get(key, empty)
            if b["requests"] < rule.min_requests:
                continue
            if measure != "bps" and figs["requests"] < rule.min_requests:
                continue
            v1, v0 = _value(measure, figs, rng.seconds), _value(measure, b, base.seconds)
            if v1 is None or v0 is None:
                continue
            worse = v1 >= v0 * factor if worse_up else v1 <= v0 * factor
            if worse and v1 != v0 and _significant(measure, figs, b, rng.seconds, base.seconds):
                found[key] = (v1, v0, f"{regress.MEASURES[measure][0]} {regress.shown(measure, v1)}, was "
                                      f"{regress.shown(measure, v0)} {rule.baseline_days} d before "
                                      f"({'+' if worse_up else '−'}{rule.threshold:g} % or worse)")
    labels = regress._labels(kind, list(found))
    return [Finding(_key_text(kind, k), labels[k], v, b, f"{labels[k]}: {text}", _path(rule, k, rng))
            for k, (v, b, text) in found.items()]


def check_rule(rule: AlertRule, now: datetime | None = None) -> list[tuple[str, Alert]]:
    """Open, update and resolve the rule's alerts; return what to send:
    [("firing" | "resolved", alert)]."""
    now = now or q._now()
    try:
        findings = evaluate(rule, now) if rule.enabled else []
    except QueryError as exc:  # a key the admin form let through and the archive cannot read
        log.error("alert rule %s: %s", rule.name, exc)
        return []
    firing = {f.key: f for f in findings}
    to_send = []
    with transaction.atomic():
        AlertRule.objects.select_for_update().filter(pk=rule.pk).first()
        open_ = {a.key: a for a in Alert.objects.filter(rule=rule, resolved__isnull=True)}
        for key, f in firing.items():
            alert = open_.get(key)
            if alert is not None:
                alert.last_value, alert.baseline_value, alert.last_checked = f.value, f.baseline, now
                alert.message, alert.path = f.message, f.path
                alert.save(update_fields=["last_value", "baseline_value", "last_checked", "message", "path"])
            else:
                alert = Alert.objects.create(rule=rule, key=key, label=f.label[:300], started=now,
                                             last_checked=now, last_value=f.value, baseline_value=f.baseline,
                                             message=f.message, path=f.path)
                to_send.append(("firing", alert))
        for key, alert in open_.items():
            if key in firing:
                continue
            alert.resolved = alert.last_checked = now
            why = "the condition no longer holds" if rule.enabled else "the rule is disabled"
            alert.message = f"{alert.label}: resolved ({why}; last {regress.shown(rule.measure, alert.last_value)})"
            alert.save(update_fields=["resolved", "last_checked", "message"])
            to_send.append(("resolved", alert))
    return to_send


def check_rules(now: datetime | None = None) -> dict:
    """Check every rule (a disabled one resolves its open alerts) and send
    what changed. Returns {"firing": n, "opened": n, "resolved": n}."""
    now = now or q._now()
    opened = resolved = 0
    for rule in AlertRule.objects.all():
        for status, alert in check_rule(rule, now):
            notify(status, alert)
            opened += status == "firing"
            resolved += status == "resolved"
    return {"firing": Alert.objects.filter(resolved__isnull=True).count(), "opened": opened, "resolved": resolved}


def payload(status: str, alert: Alert) -> dict:
    """The webhook's JSON document (docs/regressions.md)."""
    rule = alert.rule
    return {
        "status": status,
        "rule": {"id": rule.pk, "name": rule.name, "kind": rule.kind, "key": rule.key, "router": rule.router,
                 "measure": rule.measure, "mode": rule.mode, "threshold": rule.threshold,
                 "window_minutes": rule.window_minutes, "baseline_days": rule.baseline_days,
                 "min_requests": rule.min_requests},
        "alert": {"id": alert.pk, "key": alert.key, "label": alert.label, "started": alert.started.isoformat(),
                  "resolved": alert.resolved.isoformat() if alert.resolved else None,
                  "value": alert.last_value, "baseline": alert.baseline_value, "message": alert.message,
                  "path": alert.path},
    }


def notify(status: str, alert: Alert) -> None:
    """E-mail the rule's recipients and POST the payload to its webhook."""
    rule, errors = alert.rule, []
    subject = f"[ipr] {status.upper()}: {rule.name}: {alert.label}"
    if rule.recipients:
        body = alert.message + "\n\n" + json.dumps(payload(status, alert), indent=2)
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, rule.recipients)
        except Exception as exc:  # SMTP down or refusing: kept on the alert, the webhook still tried
            errors.append(f"e-mail: {exc}")
    if rule.webhook_url:
        request = urllib.request.Request(rule.webhook_url, data=json.dumps(payload(status, alert)).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:
                response.read()
        except Exception as exc:  # refused, timed out, or answered 4xx/5xx (HTTPError)
            errors.append(f"webhook: {exc}")
    if errors:
        log.error("alert %s (%s): %s", alert.pk, status, "; ".join(errors))
        Alert.objects.filter(pk=alert.pk).update(notify_error=f"{status}: {'; '.join(errors)}")
