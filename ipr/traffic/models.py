"""What the archive keeps besides its tables (ipr.traffic.tables)."""
from django.db import models


class IngestedSegment(models.Model):
    """A spool segment whose rows are in the archive. Written in the same
    transaction as the rows, so a segment is never added twice."""
    name = models.CharField(max_length=200, unique=True)
    rows = models.PositiveIntegerField()
    bytes = models.PositiveBigIntegerField()
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # The retention task drops old records by time.
        indexes = [models.Index(fields=["at"])]

    def __str__(self):
        return self.name


class Pending(models.Model):
    """An hour whose hourly archive, or a day whose daily rollup, must be
    (re)computed. Marked in the same transaction that changed the rows it is
    computed from, and removed in the one that computes it."""

    class Level(models.TextChoices):
        HOUR = "hour"
        DAY = "day"

    level = models.CharField(max_length=4, choices=Level.choices)
    start = models.DateTimeField(help_text="The hour's or day's first instant (UTC).")
    marked = models.DateTimeField(help_text="When rows of it last changed.")

    class Meta:
        # The archive and rollup tasks look for their level's oldest entries;
        # the ingest marks with an upsert on this key.
        constraints = [models.UniqueConstraint(fields=["level", "start"], name="traffic_pending_level_start")]
        ordering = ["level", "start"]

    def __str__(self):
        return f"{self.level} {self.start:%Y-%m-%d %H:%M}"


class Span(models.Model):
    """A span of whole days whose rows the span tables hold (ipr.traffic.
    tables.SPANS): written with them, and removed with them as soon as any
    hour or day in it changes, in the same transaction; so the pages read
    a span only while it equals the days it sums."""
    first_day = models.DateTimeField(help_text="The first day's first instant (UTC).")
    end_day = models.DateTimeField(help_text="The instant after the last day (UTC).")
    rows = models.PositiveBigIntegerField(help_text="Rows written, over all span tables.")
    computed = models.DateTimeField(auto_now=True)

    class Meta:
        # The pages look up the spans within a range; the rollup those of an end.
        constraints = [models.UniqueConstraint(fields=["end_day", "first_day"], name="traffic_span_days")]
        ordering = ["end_day", "first_day"]

    def __str__(self):
        return f"{self.first_day:%Y-%m-%d} .. {self.end_day:%Y-%m-%d}"


class SpanChange(models.Model):
    """A day marked as changed (with its hour, or by the daily rollup), logged
    by the marking transaction, so that a span computed meanwhile, which
    that transaction could not see to drop, is not kept (ipr.traffic.rollup).
    The computation of spans removes the entries it has seen."""
    day = models.DateTimeField(help_text="The day's first instant (UTC).")

    def __str__(self):
        return f"{self.day:%Y-%m-%d}"
