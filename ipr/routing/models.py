"""Routers, their BGP tables, and the reference data that names addresses.

A router's table is loaded as a new :class:`Table` version beside the active
one and swapped in atomically (``ipr.routing.load``). Routes share their path
attributes through :class:`PathAttrs`, as a router's RIB does: a full table
has ~1M routes but a few hundred thousand distinct attribute sets.
"""
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connection, models
from django.db.models.signals import post_delete
from django.dispatch import receiver

from ipr.fields import ASNField, NetworkField, format_asn

FORMATS = [
    ("auto", "detect from the content"),
    ("bird", "BIRD 1.x/2.x/3.x `show route all` (birdc or control socket)"),
    ("frr-text", "Quagga/FRR `show ip bgp` text"),
    ("frr-json", "FRR `show bgp ... json`"),
    ("mrt", "MRT TABLE_DUMP_V2 or TABLE_DUMP (plain, gzip or bzip2)"),
]


class Refreshed(models.Model):
    """What the beat task needs of anything it refreshes on a schedule."""
    refreshed_at = models.DateTimeField(null=True, blank=True, editable=False,
                                        help_text="When the last refresh ended.")
    refresh_error = models.TextField(blank=True, editable=False,
                                     help_text="Why the last refresh was refused; empty when it succeeded.")
    # Set while a refresh runs, so two workers never refresh the same thing at once.
    refreshing_since = models.DateTimeField(null=True, blank=True, editable=False)
    max_shrink = models.FloatField(
        default=0.2, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="A new version with fewer records (routes, networks, names) than (1 - this) × the "
                  "active one's is refused.")

    class Meta:
        abstract = True

    @property
    def refresh_ok(self) -> bool | None:
        if self.refreshed_at is None:
            return None
        return not self.refresh_error

    def shrink_refusal(self, count: int, active: int | None, what: str = "records",
                       held: str = "the active version") -> str | None:
        """Why a new version of ``count`` records must not replace the active
        one of ``active`` (fewer than (1 - max_shrink) × as many); None if it may."""
        if active and count < (1.0 - self.max_shrink) * active:
            return (f"{count} {what} against {active} in {held}, a shrink of {1 - count / active:.0%} "
                    f"(more than the {self.max_shrink:.0%} allowed)")
        return None


class Router(Refreshed):
    name = models.CharField(max_length=100, unique=True)
    asn = ASNField("own ASN", help_text="The AS of this router; the origin of routes with an empty AS path.")
    description = models.TextField(blank=True)
    is_default = models.BooleanField(
        "default router", default=False,
        help_text="Carries the responses of servers that no served network holds (at most one router).")
    refresh_minutes = models.PositiveIntegerField(
        default=15, validators=[MinValueValidator(1)],
        help_text="How often the beat task refreshes this router's table.")
    active_table = models.ForeignKey("Table", null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+", editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=models.Q(is_default=True),
                                    name="routing_one_default_router"),
        ]

    def __str__(self):
        return f"{self.name} ({format_asn(self.asn)})"


class ServedNetwork(models.Model):
    """A network of web servers behind a router: the static server network → router map.

    A response belongs to the router whose served network holds the server
    address; the most specific network wins where they nest, and a network
    can be listed once only. With none, the default router (if any) carries it.
    """
    router = models.ForeignKey(Router, on_delete=models.CASCADE, related_name="served_networks")
    network = NetworkField(unique=True)
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["network"]

    def __str__(self):
        return f"{self.network} → {self.router.name}"


class RouteSource(models.Model):
    """Where a router's table comes from. A router may have several (e.g.
    one per address family); a refresh loads all of them into one version."""

    class Kind(models.TextChoices):
        FILE = "file", "file (path or glob: the newest match)"
        COMMAND = "command", "command (run without a shell, with a timeout)"

    router = models.ForeignKey(Router, on_delete=models.CASCADE, related_name="sources")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.FILE)
    path = models.CharField(max_length=500, blank=True,
                            help_text="File or glob, e.g. /var/lib/bird/rib-*.mrt (the newest file is read).")
    command = models.CharField(max_length=1000, blank=True,
                               help_text="e.g. ssh router birdc show route all  — split like a shell would, not run by one.")
    timeout = models.PositiveIntegerField("timeout (s)", default=300, validators=[MinValueValidator(1)])
    format = models.CharField(max_length=10, choices=FORMATS, default="auto")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["router", "id"]

    def __str__(self):
        return f"{self.router.name}: {self.path or self.command}"

    def clean(self):
        if self.kind == self.Kind.FILE and not self.path:
            raise ValidationError({"path": "A file source needs a path."})
        if self.kind == self.Kind.COMMAND and not self.command:
            raise ValidationError({"command": "A command source needs a command."})

    @property
    def name(self) -> str:
        return self.path if self.kind == self.Kind.FILE else self.command


class Table(models.Model):
    """One version of a router's table: loading, then active, then retired."""

    class State(models.TextChoices):
        LOADING = "loading"
        ACTIVE = "active"
        RETIRED = "retired"
        FAILED = "failed"

    router = models.ForeignKey(Router, on_delete=models.CASCADE, related_name="tables")
    state = models.CharField(max_length=10, choices=State.choices, default=State.LOADING)
    created = models.DateTimeField(auto_now_add=True)
    activated = models.DateTimeField(null=True, blank=True)
    routes = models.PositiveIntegerField(default=0)
    prefixes = models.PositiveIntegerField(default=0)
    attr_sets = models.PositiveIntegerField(default=0)
    sources = models.TextField(blank=True, help_text="What was read, one source per line.")
    error = models.TextField(blank=True)
    seconds = models.FloatField(default=0.0, help_text="Time to read, parse and load.")

    class Meta:
        ordering = ["-id"]
        # The refresh looks up a router's versions by state (active, stale ones to drop).
        indexes = [models.Index(fields=["router", "state"])]

    def __str__(self):
        return f"{self.router.name} table #{self.pk} ({self.state}, {self.routes} routes)"

    def drop_rows(self) -> None:
        """Drop this version's routes and attribute sets (its partitions on PostgreSQL)."""
        with connection.cursor() as cur:
            if connection.vendor == "postgresql":
                for name in ("routing_route", "routing_pathattrs"):
                    cur.execute(f"DROP TABLE IF EXISTS {name}_t{int(self.pk)}")
            else:
                lo, hi = self.pk << 32, (self.pk + 1) << 32
                for name in ("routing_route", "routing_pathattrs"):
                    cur.execute(f"DELETE FROM {name} WHERE id >= %s AND id < %s", [lo, hi])


class TableEngine(models.Model):
    """A version's longest-prefix-match engine over its best routes, built by
    the loader and kept here so every worker reads it in one query instead
    of rebuilding it from a million rows (ipr.routing.lookup)."""
    table = models.OneToOneField(Table, on_delete=models.CASCADE, primary_key=True, related_name="engine")
    data = models.BinaryField()


class PathAttrs(models.Model):
    """A distinct set of path attributes within one table version.

    Its id is ``table_id << 32 | n``, made by the loader, so a version's
    attributes and routes are written with COPY without a round trip for ids.
    """
    id = models.BigIntegerField(primary_key=True)
    table = models.ForeignKey(Table, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    next_hop = models.CharField(max_length=45, blank=True)
    as_path = models.TextField(blank=True)
    origin_as = ASNField(null=True)
    neighbor_as = ASNField(null=True)
    local_pref = models.BigIntegerField(null=True)
    med = models.BigIntegerField(null=True)
    communities = models.TextField(blank=True)

    class Meta:
        # No index on table: a version's rows are dropped with its partition
        # (PostgreSQL) or deleted by table id (SQLite: the id range).
        managed = False
        db_table = "routing_pathattrs"


class Route(models.Model):
    """One path for a prefix in one table version."""
    id = models.BigIntegerField(primary_key=True)  # table_id << 32 | n, like PathAttrs
    table = models.ForeignKey(Table, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    prefix = NetworkField()
    attrs = models.ForeignKey(PathAttrs, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    best = models.BooleanField()

    class Meta:
        # Created by the migration: on PostgreSQL both tables are partitioned
        # by table_id, one partition per version, so a retired version is
        # dropped at once instead of deleting a million rows.
        managed = False
        db_table = "routing_route"


class OriginOverride(models.Model):
    """An origin AS an admin sets for a prefix a router mis-attributes.

    It applies to every address the override prefix holds, whichever route
    matched it, on every router."""
    prefix = NetworkField(unique=True)
    origin_as = ASNField("origin AS")
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["prefix"]

    def __str__(self):
        return f"{self.prefix} → {format_asn(self.origin_as)}"


class DataSource(Refreshed):
    """A reference file the operator supplies: RIR delegated statistics or a
    MaxMind-format .mmdb (countries), or an AS names list."""

    class Kind(models.TextChoices):
        RIR = "rir", "RIR delegated statistics (countries)"
        MMDB = "mmdb", "MaxMind-format .mmdb (countries)"
        ASNAMES = "asnames", "AS names (text list or PeeringDB JSON)"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    path = models.CharField(max_length=500, help_text="File or glob; every match is read (e.g. the five RIR files).")
    priority = models.IntegerField(
        default=100, help_text="Countries: where two sources cover an address, the lower number wins.")
    refresh_minutes = models.PositiveIntegerField(default=1440, validators=[MinValueValidator(1)])
    enabled = models.BooleanField(default=True)
    records = models.PositiveIntegerField(default=0, editable=False)
    version = models.PositiveIntegerField(default=0, editable=False,
                                          help_text="Bumped at each successful load.")
    refresh_notes = models.TextField(
        blank=True, editable=False,
        help_text="What the last successful load skipped or changed (lines without a name, names "
                  "read as Latin-1 or cut, ASNs given twice), one line each.")

    class Meta:
        ordering = ["priority", "name"]

    def __str__(self):
        return self.name


class CountryPrefix(models.Model):
    """A network and its country, from one data source's active version."""
    source = models.ForeignKey(DataSource, on_delete=models.CASCADE, related_name="+")
    prefix = NetworkField()
    country = models.CharField(max_length=2)

    class Meta:
        # The country engine reads a source's rows in one scan.
        indexes = [models.Index(fields=["source"])]


class ASName(models.Model):
    asn = ASNField(primary_key=True)
    name = models.CharField(max_length=200)
    country = models.CharField(max_length=2, blank=True)
    source = models.ForeignKey(DataSource, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["asn"]
        verbose_name = "AS name"

    def __str__(self):
        return f"{format_asn(self.asn)} {self.name}"


@receiver(post_delete, sender=Table)
def _drop_table_rows(sender, instance, **kwargs):
    # A deleted version (or router) takes its routes with it.
    instance.drop_rows()
