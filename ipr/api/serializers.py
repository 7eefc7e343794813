"""The shapes the API answers with, for the OpenAPI schema.

The views return what ipr.web.queries returns (plain dicts and lists); these
serializers only describe those dicts to drf-spectacular, so the schema
says what a client gets. Metadata lists (routers, traffic types, AS names)
are real model serializers.
"""
from rest_framework import serializers

from ipr.agents.models import TrafficType
from ipr.fields import format_asn
from ipr.routing.models import ASName, Router

KEY_HELP = ("The group's key: an ASN (integer) for origin_as/neighbor_as, a router id, a country code "
            "('' is unknown), a prefix, a traffic type or an AS path; null for the 'other' and 'total' rows.")


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What is wrong, e.g. which parameter and why.")


class RangeSerializer(serializers.Serializer):
    start = serializers.DateTimeField(help_text="First instant, inclusive (widened to a whole bucket).")
    end = serializers.DateTimeField(help_text="Last instant, exclusive.")
    resolution = serializers.ChoiceField(["minute", "hour", "day"], help_text="The archive tables read.")
    step = serializers.IntegerField(help_text="Seconds per bucket of a series.")
    preset = serializers.CharField(allow_null=True)
    label = serializers.CharField()


class FiltersSerializer(serializers.Serializer):
    router = serializers.IntegerField(allow_null=True)
    traffic_type = serializers.CharField(allow_null=True)
    origin_as = serializers.IntegerField(allow_null=True)
    neighbor_as = serializers.IntegerField(allow_null=True)
    country = serializers.CharField(allow_null=True)
    prefix = serializers.CharField(allow_null=True)


class FiguresSerializer(serializers.Serializer):
    bytes = serializers.IntegerField(help_text="Response bytes the servers sent.")
    wire_bytes = serializers.IntegerField(help_text="Bytes handed to TCP (headers included).")
    bps = serializers.FloatField(allow_null=True, help_text="bytes × 8 / elapsed seconds of the range.")
    requests = serializers.IntegerField()
    data_segs = serializers.IntegerField()
    retrans_segs = serializers.IntegerField()
    retrans_rate = serializers.FloatField(allow_null=True, help_text="retrans_segs / data_segs.")
    rtt_samples = serializers.IntegerField(help_text="Records that carried an RTT.")
    rtt_mean_ms = serializers.FloatField(allow_null=True)
    rtt_p50_ms = serializers.FloatField(allow_null=True, help_text="From the RTT histogram.")
    rtt_p95_ms = serializers.FloatField(allow_null=True)
    rtt_hist = serializers.ListField(child=serializers.IntegerField(),
                                     help_text="Records per RTT bucket: ≤1, 2, 5, 10, 20, 50, 100, 200, 500 ms, "
                                               "1 s, 2 s, more.")
    rtt_sum_us = serializers.IntegerField()


class TotalsSerializer(FiguresSerializer):
    range = RangeSerializer()
    filters = FiltersSerializer()


class RowSerializer(FiguresSerializer):
    key = serializers.JSONField(allow_null=True, help_text=KEY_HELP)
    label = serializers.CharField()
    share = serializers.FloatField(allow_null=True, help_text="Of the total's bytes.")


class TopSerializer(serializers.Serializer):
    by = serializers.CharField()
    rows = RowSerializer(many=True)
    other = RowSerializer(allow_null=True, help_text="The total minus the rows; null when nothing is left.")
    total = RowSerializer()
    count = serializers.IntegerField(help_text="Groups in all.")
    range = RangeSerializer()
    filters = FiltersSerializer()


class PathsSerializer(TopSerializer):
    available = serializers.BooleanField(help_text="False while the archive has no AS path tables.")


class OneSeriesSerializer(serializers.Serializer):
    key = serializers.JSONField(allow_null=True, help_text=KEY_HELP)
    label = serializers.CharField()
    bytes = serializers.ListField(child=serializers.IntegerField())
    bps = serializers.ListField(child=serializers.FloatField(allow_null=True))
    requests = serializers.ListField(child=serializers.IntegerField())
    retrans_rate = serializers.ListField(child=serializers.FloatField(allow_null=True))
    rtt_mean_ms = serializers.ListField(child=serializers.FloatField(allow_null=True))
    rtt_p50_ms = serializers.ListField(child=serializers.FloatField(allow_null=True))
    rtt_p95_ms = serializers.ListField(child=serializers.FloatField(allow_null=True))


class SeriesSerializer(serializers.Serializer):
    times = serializers.ListField(child=serializers.DateTimeField(), help_text="Start of each bucket.")
    step = serializers.IntegerField()
    resolution = serializers.CharField()
    split = serializers.CharField(allow_null=True)
    series = OneSeriesSerializer(many=True, help_text="One per group (and 'other'); lists follow `times`.")
    range = RangeSerializer()
    filters = FiltersSerializer()


class CoverageLevelSerializer(serializers.Serializer):
    share = serializers.FloatField()
    groups = serializers.IntegerField(help_text="The fewest of the largest groups whose bytes reach the share.")


class CoverageSerializer(serializers.Serializer):
    by = serializers.CharField()
    count = serializers.IntegerField()
    levels = CoverageLevelSerializer(many=True)
    total_bytes = serializers.IntegerField()


class RankedRowSerializer(RowSerializer):
    rank = serializers.IntegerField()
    cumulative = serializers.FloatField(help_text="Share of the total's bytes of this row and those above it.")


class TopAsnsSerializer(TopSerializer):
    rows = RankedRowSerializer(many=True)
    coverage = CoverageSerializer()


class TransitSerializer(serializers.Serializer):
    asn = serializers.IntegerField()
    label = serializers.CharField()
    share = serializers.FloatField(allow_null=True)
    direct = serializers.BooleanField(help_text="The neighbour is the origin itself (already a peer or customer).")


class PeeringRowSerializer(FiguresSerializer):
    rank = serializers.IntegerField()
    key = serializers.IntegerField(help_text="The origin AS.")
    label = serializers.CharField()
    share = serializers.FloatField(allow_null=True, help_text="Of all the range's bytes.")
    transit_share = serializers.FloatField(allow_null=True,
                                           help_text="Of this origin's bytes, the part that went through another AS.")
    transits_now = TransitSerializer(many=True, help_text="The neighbours carrying it over `now_range`.")
    transits_text = serializers.CharField()


class PeeringSerializer(serializers.Serializer):
    rows = PeeringRowSerializer(many=True, help_text="Figures over the traffic that went through another AS.")
    total_bytes = serializers.IntegerField()
    transit_bytes = serializers.IntegerField()
    transit_share = serializers.FloatField(allow_null=True)
    range = RangeSerializer()
    now_range = RangeSerializer()


class CountryRowSerializer(RowSerializer):
    previous_bytes = serializers.IntegerField(help_text="Bytes in the period before.")
    change = serializers.FloatField(allow_null=True, help_text="(bytes - previous_bytes) / previous_bytes.")
    top_asn = serializers.IntegerField(allow_null=True, help_text="The country's largest origin AS.")
    top_asn_label = serializers.CharField()
    top_asn_share = serializers.FloatField(allow_null=True)


class CountryReportSerializer(TopSerializer):
    rows = CountryRowSerializer(many=True)
    previous_range = RangeSerializer()


class ThresholdSerializer(serializers.Serializer):
    min_share = serializers.FloatField()
    min_bytes = serializers.FloatField()
    min_samples = serializers.IntegerField()
    min_segments = serializers.IntegerField()


class QualitySerializer(serializers.Serializer):
    by = serializers.CharField()
    worst_retrans = RowSerializer(many=True)
    worst_rtt = RowSerializer(many=True, help_text="Worst RTT p95 first.")
    eligible = serializers.IntegerField(help_text="Groups with enough traffic to be ranked (see threshold).")
    count = serializers.IntegerField()
    total = RowSerializer()
    threshold = ThresholdSerializer()
    range = RangeSerializer()


class UplinkRowSerializer(RowSerializer):
    retrans_vs_all = serializers.FloatField(allow_null=True,
                                            help_text="Retransmit rate minus the destination's overall one.")
    p95_vs_all = serializers.FloatField(allow_null=True)


class BestSerializer(serializers.Serializer):
    retrans_rate = serializers.JSONField(required=False, help_text="Key of the row with the fewest retransmits.")
    rtt_p95_ms = serializers.JSONField(required=False, help_text="Key of the row with the lowest RTT p95.")


class UplinkTopSerializer(TopSerializer):
    rows = UplinkRowSerializer(many=True)
    best = BestSerializer(help_text="Among the rows carrying at least `min_share` of the bytes.")


class GridRowSerializer(FiguresSerializer):
    key = serializers.ListField(child=serializers.IntegerField(), help_text="[router id, neighbour AS]")
    router = serializers.IntegerField()
    neighbor_as = serializers.IntegerField()
    label = serializers.CharField()
    share = serializers.FloatField(allow_null=True)


class UplinksSerializer(serializers.Serializer):
    target = FiltersSerializer()
    total = RowSerializer()
    neighbors = UplinkTopSerializer()
    routers = UplinkTopSerializer()
    grid = GridRowSerializer(many=True)
    series_neighbors = SeriesSerializer()
    series_routers = SeriesSerializer()
    min_share = serializers.FloatField()
    range = RangeSerializer()


class FlowNodeSerializer(serializers.Serializer):
    id = serializers.CharField()
    label = serializers.CharField()
    kind = serializers.ChoiceField(["router", "neighbor", "origin"])


class FlowLinkSerializer(serializers.Serializer):
    source = serializers.IntegerField(help_text="Index into nodes.")
    target = serializers.IntegerField()
    bytes = serializers.IntegerField()


class FlowsSerializer(serializers.Serializer):
    nodes = FlowNodeSerializer(many=True)
    links = FlowLinkSerializer(many=True)
    total_bytes = serializers.IntegerField()


class AsnDetailSerializer(serializers.Serializer):
    asn = serializers.IntegerField()
    label = serializers.CharField()
    name = serializers.CharField(allow_null=True)
    totals = FiguresSerializer()
    series = SeriesSerializer(help_text="Split by router.")
    by_router = TopSerializer()
    by_traffic_type = TopSerializer()
    by_neighbor_as = TopSerializer(help_text="The transits and peers that carry this AS's traffic.")
    by_prefix = TopSerializer()
    by_country = TopSerializer()
    paths = PathsSerializer()
    range = RangeSerializer()
    filters = FiltersSerializer()


class CountryDetailSerializer(serializers.Serializer):
    country = serializers.CharField()
    label = serializers.CharField()
    totals = FiguresSerializer()
    series = SeriesSerializer(help_text="Split by router.")
    by_origin_as = TopSerializer()
    by_neighbor_as = TopSerializer()
    by_router = TopSerializer()
    by_traffic_type = TopSerializer()
    range = RangeSerializer()
    filters = FiltersSerializer()


class RouterSerializer(serializers.ModelSerializer):
    asn_text = serializers.SerializerMethodField()
    served_networks = serializers.SlugRelatedField(many=True, read_only=True, slug_field="network")
    active_routes = serializers.IntegerField(source="active_table.routes", allow_null=True, default=None)
    active_since = serializers.DateTimeField(source="active_table.activated", allow_null=True, default=None)

    class Meta:
        model = Router
        fields = ["id", "name", "asn", "asn_text", "description", "is_default", "served_networks",
                  "active_routes", "active_since", "refreshed_at", "refresh_error"]

    def get_asn_text(self, obj) -> str:
        return format_asn(obj.asn)


class TrafficTypeSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="As sent on the wire and kept in the archive.")
    label = serializers.CharField()
    description = serializers.CharField()
    configured = serializers.BooleanField(help_text="Listed in the admin.")
    seen = serializers.BooleanField(help_text="Present in the archive.")

    @staticmethod
    def rows(seen_names) -> list[dict]:
        seen = set(seen_names)
        out = {t.name: {"name": t.name, "label": t.label or t.name, "description": t.description,
                        "configured": True, "seen": t.name in seen}
               for t in TrafficType.objects.all()}
        for name in seen - set(out):
            out[name] = {"name": name, "label": name or "(none)", "description": "", "configured": False,
                         "seen": True}
        return [out[n] for n in sorted(out)]


class ASNameSerializer(serializers.ModelSerializer):
    asn_text = serializers.SerializerMethodField()

    class Meta:
        model = ASName
        fields = ["asn", "asn_text", "name", "country"]

    def get_asn_text(self, obj) -> str:
        return format_asn(obj.asn)


class FindingSerializer(serializers.Serializer):
    key = serializers.JSONField(help_text="The group: an origin AS, a country, [prefix, origin AS] or "
                                          "[router id, neighbour AS].")
    label = serializers.CharField()
    router = serializers.IntegerField(required=False, help_text="Of an uplink.")
    neighbor_as = serializers.IntegerField(required=False, help_text="Of an uplink.")
    prefix = serializers.CharField(required=False, help_text="Of a prefix.")
    origin_as = serializers.IntegerField(required=False, help_text="Of a prefix.")
    measure = serializers.ChoiceField(["retrans_rate", "rtt_p50_ms", "rtt_p95_ms", "delivery_rate", "bps"])
    measure_label = serializers.CharField()
    before = serializers.FloatField(help_text="In the baseline (retrans_rate a fraction, RTT in ms, "
                                              "delivery_rate bytes/s, bps bits/s).")
    now = serializers.FloatField()
    change = serializers.FloatField(allow_null=True, help_text="now - before; of delivery_rate and bps, a "
                                                               "fraction of before.")
    factor = serializers.FloatField(allow_null=True, help_text="How many times worse; null when the "
                                                               "traffic (or the rate) is gone.")
    z = serializers.FloatField(allow_null=True, help_text="The test's statistic (null: unbounded).")
    bytes = serializers.IntegerField(help_text="Response bytes of the group now.")
    requests = serializers.IntegerField()
    requests_before = serializers.IntegerField()
    compare_url = serializers.CharField(help_text="The page comparing the group's uplinks (of an uplink: "
                                                  "its neighbour's page).")


class RegressionsSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(["origin_as", "country", "prefix", "neighbor_as", "uplink"])
    title = serializers.CharField()
    findings = FindingSerializer(many=True)
    compared = serializers.IntegerField(help_text="Groups with enough samples in both periods.")
    count = serializers.IntegerField(help_text="Groups in the range.")
    range = RangeSerializer()
    baseline = RangeSerializer()
    filters = FiltersSerializer()
