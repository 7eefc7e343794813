"""Alert rules an admin edits, and the alerts they raise.

A rule watches a kind of destination (origin AS, country, prefix) or uplink
(router × neighbour AS, or neighbour AS), one key or every key of the
kind, for one measure, over the last ``window_minutes``: worse than an
absolute threshold, or worse than the baseline (the same minutes
``baseline_days`` before) by a change, with at least ``min_requests``
responses. ipr.alerts.check evaluates the enabled rules (a periodic task),
opens an Alert per (rule, key) whose condition holds, and resolves it when
it no longer does; each opening and resolution is sent by e-mail and to the
rule's webhook.
"""
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from ipr.web import params
from ipr.web.queries import QueryError

KINDS = [
    ("origin_as", "origin AS"),
    ("country", "country"),
    ("prefix", "prefix"),
    ("neighbor_as", "neighbour AS"),
    ("uplink", "uplink: router via neighbour AS"),
]
MEASURES = [
    ("retrans_rate", "retransmit rate (%)"),
    ("rtt_p50_ms", "RTT p50 (ms)"),
    ("rtt_p95_ms", "RTT p95 (ms)"),
    ("delivery_rate", "delivery rate (bytes/s per second of response)"),
    ("bps", "traffic (bits/s)"),
]
MODES = [
    ("absolute", "worse than the threshold"),
    ("change", "worse than the baseline by the threshold (%)"),
]


class AlertRule(models.Model):
    name = models.CharField(max_length=100, unique=True)
    enabled = models.BooleanField(default=True)
    kind = models.CharField(max_length=16, choices=KINDS, default="origin_as")
    key = models.CharField(
        max_length=64, blank=True,
        help_text="One destination or neighbour: an ASN (64500, AS64500), a country code (FR, -- for unknown) "
                  "or a prefix (192.0.2.0/24); for an uplink, the neighbour ASN. Empty: every one of the kind.")
    router = models.BigIntegerField(
        null=True, blank=True, validators=[MinValueValidator(0)],
        help_text="Uplinks only: the router id (empty: every router).")
    measure = models.CharField(max_length=16, choices=MEASURES, default="retrans_rate")
    mode = models.CharField(max_length=8, choices=MODES, default="absolute")
    threshold = models.FloatField(
        help_text="absolute: retransmits in %, RTT in ms, delivery rate in bytes/s, traffic in bits/s "
                  "(higher is worse for retransmits and RTT, lower for delivery rate and traffic); "
                  "change: how much worse than the baseline, in % (50 = 1.5 times the RTT, or half the traffic).")
    window_minutes = models.PositiveIntegerField(default=60, validators=[MinValueValidator(5)],
                                                 help_text="The period checked: the last this many minutes.")
    baseline_days = models.PositiveIntegerField(default=7, validators=[MinValueValidator(1)],
                                                help_text="change: the same minutes this many days before.")
    min_requests = models.PositiveIntegerField(
        default=1000, help_text="Minimum volume: responses in the window (and in the baseline, for a change).")
    email_to = models.TextField(blank=True, help_text="E-mail recipients, separated by commas or spaces.")
    webhook_url = models.URLField(blank=True, help_text="POSTed a JSON document on opening and resolution.")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def recipients(self) -> list[str]:
        return [a for a in self.email_to.replace(",", " ").split() if a]

    def target(self):
        """The key as the archive has it (int ASN, country code, prefix
        text), or None for every key of the kind. Raises QueryError."""
        if not self.key.strip():
            return None
        if self.kind in ("origin_as", "neighbor_as", "uplink"):
            return params.asn(self.key, "key")
        if self.kind == "country":
            return params.country(self.key, "key")
        return params.prefix(self.key, "key")

    def clean(self):
        try:
            self.target()
        except QueryError as exc:
            raise ValidationError({"key": str(exc)})
        if self.router is not None and self.kind != "uplink":
            raise ValidationError({"router": "a router is given for uplinks only"})
        if self.threshold is not None and self.threshold < 0:
            raise ValidationError({"threshold": "a threshold is not negative"})
        if self.mode == "change" and self.measure in ("delivery_rate", "bps") and (self.threshold or 0) >= 100:
            raise ValidationError({"threshold": "a fall of 100 % or more cannot happen"})
        from django.core.validators import validate_email
        for address in self.recipients:
            try:
                validate_email(address)
            except ValidationError:
                raise ValidationError({"email_to": f"{address!r} is not an e-mail address"})


class Alert(models.Model):
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    key = models.CharField(max_length=80, help_text="What the rule found worse (its kind's key, as text).")
    label = models.CharField(max_length=300)
    started = models.DateTimeField()
    resolved = models.DateTimeField(null=True, blank=True)
    last_checked = models.DateTimeField()
    last_value = models.FloatField(null=True)
    baseline_value = models.FloatField(null=True, blank=True)
    message = models.TextField()
    path = models.CharField(max_length=500, blank=True,
                            help_text="The page to look at, on this server, over the window last checked.")
    notify_error = models.TextField(blank=True, help_text="The last notification that failed, and why.")

    class Meta:
        ordering = ["-started"]
        constraints = [
            # One open alert per rule and key: a rerun updates it, never adds
            # another. Its partial index also serves the check's and the
            # dashboard's query of the open alerts.
            models.UniqueConstraint(fields=["rule", "key"], condition=models.Q(resolved__isnull=True),
                                    name="alerts_one_open_per_rule_key"),
        ]

    def __str__(self):
        return f"{self.rule.name}: {self.label}"

    @property
    def firing(self) -> bool:
        return self.resolved is None
