"""/metrics/quality: the pages' delivery figures for the largest origin ASes,
countries and uplinks over the last complete hour, with a bounded number of
series; and the sample alert rules on them, run by promtool."""
import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import yaml
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from ipr.routing.load import refresh_router
from ipr.routing.models import ASName, DataSource, Router, ServedNetwork
from ipr.routing.reference import refresh_source
from ipr.routing.samples import DEMO_TRANSITS_2, demo_as_name, demo_blocks, demo_delegated, demo_routes
from ipr.traffic import ingest, metrics, quality_metrics as qm, rollup
from ipr.web import queries
from tests.test_metrics import (EXAMPLES, OPERATIONS, TOKEN, empty_archive,  # noqa: F401 (a fixture)
                                locked_by_another_session, selectors)
from tests.web_helpers import spool_rows

UTC = timezone.utc
RULES = EXAMPLES / "ipr-quality-alerts.yml"
DIMS = ("origin_as", "country", "uplink")
MEASURES = [m[0] for m in qm.MEASURES]


@pytest.fixture
def quality(settings, empty_archive):
    settings.METRICS_TOKEN = None
    qm._cache.clear()
    yield settings
    qm._cache.clear()


@pytest.fixture
def archive(quality, tmp_path):
    """Two routers with the demo's tables (255 origin ASes over 3 transits;
    the second router over 2, every fifth origin a direct peer), the demo's
    countries and AS names; traffic to an address of every /8 in the last
    complete hour, and some before and after it (outside the window)."""
    a = Router.objects.create(name="edge-a", asn=64500, is_default=True)
    b = Router.objects.create(name="edge-b", asn=64500)
    ServedNetwork.objects.create(router=a, network="198.18.0.0/24")
    ServedNetwork.objects.create(router=b, network="198.18.1.0/24")
    for router, table in ((a, demo_routes()), (b, demo_routes(DEMO_TRANSITS_2, peer_every=5))):
        (tmp_path / f"{router.name}.txt").write_text(table)
        refresh_router(router.pk, [str(tmp_path / f"{router.name}.txt")])
    (tmp_path / "delegated.txt").write_text(demo_delegated())
    refresh_source(DataSource.objects.create(name="rirs", kind="rir", path=str(tmp_path / "delegated.txt")).pk)
    ASName.objects.bulk_create([ASName(asn=origin, name=demo_as_name(origin)[0]) for _, origin, _ in demo_blocks()])
    clients = [net.replace(".0.0.0/8", ".77.1.1").replace("00::/8", "12::1") for net, _, _ in demo_blocks()]
    now = datetime.now(UTC)
    hour = int(qm.window_start(now).timestamp()) // 60
    rng = np.random.default_rng(3)

    def rows(n, minutes):
        # Skewed: a few clients (so a few ASes and countries) carry most
        # bytes; and every one has some.
        skewed = np.where(np.arange(n) % 2, np.minimum(rng.zipf(1.3, n) - 1, len(clients) - 1),
                          np.arange(n) % len(clients))
        return spool_rows(rng, n, minutes, clients, ("198.18.0.1", "198.18.1.1", "203.0.113.9"), (b"web",),
                          client_index=skewed)
    inside = rows(3000, list(range(hour, hour + 60)))
    outside = np.concatenate([rows(300, [hour - 61, hour - 120]), rows(300, [hour + 60])])
    ingest.write(ingest.summarise(np.concatenate([inside, outside])))
    return {"now": now, "inside": inside, "routers": (a, b)}


def scrape(client, **extra) -> str:
    qm._cache.clear()
    r = client.get("/metrics/quality", **extra)
    assert r.status_code == 200, r.content
    assert r["Content-Type"].startswith("text/plain; version=")
    return r.content.decode()


def series(text: str) -> dict:
    """{metric name: {label values (sorted pairs): value}}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def of(found: dict, name: str, **labels):
    return found.get(name, {}).get(tuple(sorted(labels.items())))


def check_figures(found: dict, name: str, labels: dict, row: dict) -> None:
    """The series of one group hold its figures from the query layer."""
    expected = {"bytes": row["bytes"], "requests": row["requests"], "data_segments": row["data_segs"],
                "retransmitted_segments": row["retrans_segs"], "retransmit_ratio": row["retrans_rate"],
                "rtt_samples": row["rtt_samples"],
                "rtt_p50_seconds": None if row["rtt_p50_ms"] is None else row["rtt_p50_ms"] / 1000,
                "rtt_p95_seconds": None if row["rtt_p95_ms"] is None else row["rtt_p95_ms"] / 1000}
    for measure, want in expected.items():
        got = of(found, f"ipr_quality_{name}_{measure}", **labels)
        if want is None:
            assert got is None, (name, labels, measure)
        else:
            assert got == pytest.approx(want, rel=1e-12), (name, labels, measure, got, want)


# -- the figures ------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_figures_are_the_pages_figures_over_the_last_complete_hour(client, archive, quality):
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=User.objects.create_user('ops')).key}")
    quality.QUALITY_METRICS_TOP, quality.QUALITY_METRICS_UPLINKS = 5, 4
    start = qm.window_start(archive["now"])
    api_range = {"from": start.strftime("%Y-%m-%dT%H:%M"),
                 "to": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")}
    # The hour waits for its archive (read from the per-minute window), then is archived.
    for archived in (False, True):
        if archived:
            rollup.archive_pending(everything=True)
        found = series(scrape(client))
        assert of(found, "ipr_quality_up") == 1
        assert of(found, "ipr_quality_window_start_timestamp_seconds") == start.timestamp()
        assert of(found, "ipr_quality_window_seconds") == 3600
        names = dict(ASName.objects.values_list("asn", "name"))
        for by, name in (("origin_as", "origin_as"), ("country", "country")):
            # What the pages show for the same hour (minute resolution there).
            page = queries.top(queries.Range.between(start, start + timedelta(hours=1)), by, limit=5)
            assert page["range"]["resolution"] == "minute" and page["other"] is not None
            for row in page["rows"]:
                labels = ({"asn": str(row["key"]), "as_name": names.get(row["key"], "")} if by == "origin_as"
                          else {"country": row["key"] or "--"})
                check_figures(found, name, labels, row)
            check_figures(found, name, {"asn": "other", "as_name": ""} if by == "origin_as" else
                          {"country": "other"}, page["other"])
            assert of(found, "ipr_quality_groups", dimension=by) == page["count"] > 5
        # The uplinks against the per-minute rows of the hour, summed here.
        with connection.cursor() as cur:
            cur.execute("SELECT router_id, neighbor_as, sum(response_bytes), sum(data_segs), sum(retrans_segs) "
                        "FROM traffic_current WHERE minute >= %s AND minute < %s GROUP BY router_id, neighbor_as",
                        [start, start + timedelta(hours=1)])
            uplinks = sorted(((int(b), int(d), int(r), int(rt), int(nb)) for rt, nb, b, d, r in cur.fetchall()),
                             reverse=True)
        router_names = queries.router_names()
        kept = uplinks[:4]
        for b, d, r, rt, nb in kept:
            labels = {"router": router_names[rt], "neighbor_asn": str(nb), "neighbor_name": names.get(nb, "")}
            assert of(found, "ipr_quality_uplink_bytes", **labels) == b
            assert of(found, "ipr_quality_uplink_retransmit_ratio", **labels) == pytest.approx(r / d)
        rest = uplinks[4:]
        other = {"router": "other", "neighbor_asn": "other", "neighbor_name": ""}
        assert of(found, "ipr_quality_uplink_bytes", **other) == sum(u[0] for u in rest)
        assert of(found, "ipr_quality_uplink_retransmit_ratio", **other) == pytest.approx(
            sum(u[2] for u in rest) / sum(u[1] for u in rest))
        assert of(found, "ipr_quality_groups", dimension="uplink") == len(uplinks)
        # Every byte of the hour, and none from outside it, is in the series.
        total = int(archive["inside"]["response_bytes"].sum())
        for dim in DIMS:
            assert sum(found[f"ipr_quality_{dim}_bytes"].values()) == total
        # And the API's top-N of the same hour.
        body = api.get("/api/top/country/", {**api_range, "limit": 5}).json()
        for row in body["rows"]:
            assert of(found, "ipr_quality_country_bytes", country=row["key"] or "--") == row["bytes"]
            assert of(found, "ipr_quality_country_rtt_p95_seconds", country=row["key"] or "--") == \
                pytest.approx(row["rtt_p95_ms"] / 1000, rel=1e-12)


@pytest.mark.django_db
def test_the_number_of_series_is_bounded_whatever_the_number_of_ases(client, archive, quality):
    groups = {}
    for top, uplinks in ((3, 2), (20, 50), (100, 200)):
        quality.QUALITY_METRICS_TOP, quality.QUALITY_METRICS_UPLINKS = top, uplinks
        found = series(scrape(client))
        for dim in DIMS:
            groups[dim] = of(found, "ipr_quality_groups", dimension=dim)
            cap = uplinks if dim == "uplink" else top
            # The kept groups and "other", if any group is left over.
            want = min(groups[dim], cap) + (groups[dim] > cap)
            assert len(found[f"ipr_quality_{dim}_bytes"]) == want, (dim, top, uplinks)
            for measure in MEASURES:
                assert len(found.get(f"ipr_quality_{dim}_{measure}", {})) <= want
        assert sum(len(v) for v in found.values()) <= qm.max_series(top, uplinks)
    # The archive has more ASes and uplinks than the small settings keep.
    assert groups["origin_as"] > 100 and groups["uplink"] > 50 and groups["country"] > 3
    assert qm.max_series() == 8 * (2 * 101 + 201) + 6 == 3230


def test_the_settings_refuse_a_top_n_beyond_the_hard_cap(tmp_path):
    from tests.test_settings import settings_with
    for name, cap in (("IPR_QUALITY_METRICS_TOP", qm.TOP_CAP), ("IPR_QUALITY_METRICS_UPLINKS", qm.UPLINKS_CAP)):
        code, out = settings_with(tmp_path, **{name: str(cap + 1)})
        assert code != 0 and f"{name}={cap + 1}: expected 1..{cap}" in out
        code, out = settings_with(tmp_path, **{name: str(cap)})
        assert code == 0, out


@pytest.mark.django_db
def test_series_are_labelled_by_asn_and_name_country_and_router_and_neighbour(client, archive, quality):
    quality.QUALITY_METRICS_TOP, quality.QUALITY_METRICS_UPLINKS = 3, 3
    found = series(scrape(client))
    asns = [dict(k) for k in found["ipr_quality_origin_as_bytes"]]
    assert all(set(k) == {"asn", "as_name"} for k in asns)
    named = [k for k in asns if k["asn"] != "other"]
    assert len(named) == 3 and all(k["as_name"] == demo_as_name(int(k["asn"]))[0] for k in named)
    countries = {dict(k)["country"] for k in found["ipr_quality_country_bytes"]}
    assert "other" in countries and countries - {"other"} <= {c for _, _, c in demo_blocks()} | {"ZZ", "--"}
    uplinks = [dict(k) for k in found["ipr_quality_uplink_bytes"]]
    assert {u["router"] for u in uplinks} <= {"edge-a", "edge-b", queries.router_names()[0], "other"}
    assert all(u["neighbor_asn"].isdigit() or u["neighbor_asn"] == "other" for u in uplinks)


@pytest.mark.django_db
def test_with_no_traffic_in_the_window_there_are_no_group_series(client, quality):
    found = series(scrape(client))
    assert of(found, "ipr_quality_up") == 1
    for dim in DIMS:
        assert of(found, "ipr_quality_groups", dimension=dim) == 0
        assert not found.get(f"ipr_quality_{dim}_bytes")


@pytest.mark.django_db
def test_queries_that_take_too_long_leave_the_figures_out_and_say_so(client, settings, monkeypatch, caplog):
    if connection.vendor != "postgresql":
        pytest.skip("the time limit is PostgreSQL's statement_timeout")
    # (No archive made in this test's transaction: its writes would hold
    # the tables against the other session's lock.)
    settings.METRICS_TOKEN = None
    monkeypatch.setattr(metrics, "QUERY_TIMEOUT_MS", 300)
    with locked_by_another_session("traffic_origin_all_hour") as holding:
        found = series(scrape(client))
        assert holding()   # answered while the lock was held: it did not wait for it
    assert of(found, "ipr_quality_up") == 0 and "ipr_quality_origin_as_bytes" not in found
    assert "metrics: the quality figures failed, they are left out: canceling statement" in caplog.text


# -- who may read it ------------------------------------------------------------------

@pytest.mark.django_db
def test_it_answers_as_metrics_does_this_host_or_a_token(client, quality):
    assert client.get("/metrics/quality", REMOTE_ADDR="192.0.2.9").status_code == 403
    assert client.get("/metrics/quality", HTTP_X_FORWARDED_FOR="192.0.2.9").status_code == 403
    quality.METRICS_TOKEN = TOKEN
    r = client.get("/metrics/quality")
    assert r.status_code == 401 and r["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics/quality", REMOTE_ADDR="192.0.2.9",
                      HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert client.post("/metrics/quality", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


@pytest.mark.django_db
def test_every_metric_has_help_and_is_described_in_the_docs(client, archive):
    families = list(text_string_to_metric_families(scrape(client)))
    guide = OPERATIONS.read_text()
    assert len(families) == 4 + len(DIMS) * len(MEASURES)
    for family in families:
        assert family.name.startswith("ipr_quality_") and family.documentation and family.samples, family.name
        # Per group: `ipr_quality_DIM_MEASURE{labels}`, and a row per MEASURE.
        per_group = [(d, m) for d in DIMS for m in MEASURES if family.name == f"ipr_quality_{d}_{m}"]
        assert f"`{family.name}" in guide or (per_group and f"`ipr_quality_{per_group[0][0]}_MEASURE{{" in guide
                                               and f"| `{per_group[0][1]}` |" in guide), \
            f"{family.name} is not described in docs/operations.md"


# -- the sample alert rules -----------------------------------------------------------

def rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_every_alert_says_what_it_is_and_what_to_look_at():
    guide = OPERATIONS.read_text()
    for rule in rules():
        assert rule["alert"].startswith("Ipr") and rule["labels"]["severity"] == "warning"
        assert rule["annotations"]["summary"] and len(rule["annotations"]["description"]) > 80
        assert f"`{rule['alert']}`" in guide, f"{rule['alert']} is not described in docs/operations.md"


@pytest.mark.django_db
def test_every_alert_reads_series_and_labels_the_endpoint_exposes(client, archive):
    exposed = {}
    for name, values in series(scrape(client)).items():
        exposed[name] = {}
        for labels in values:
            for label, v in labels:
                exposed[name].setdefault(label, set()).add(v)
    for rule in rules():
        for name, labels in selectors(re.sub(r"\boffset\s+\w+", "", rule["expr"])):
            assert name in exposed, f"{rule['alert']}: {name} is not exposed"
            for label in labels:
                assert label == "job" or label in exposed[name], f"{rule['alert']}: {name} has no {label}"


PROMTOOL = shutil.which("promtool")
Q = 'job="ipr-quality", instance="127.0.0.1:8000"'
AS1 = f'{Q}, asn="64500", as_name="EXAMPLE"'
UP1 = f'{Q}, router="edge-a", neighbor_asn="64601", neighbor_name="TRANSIT-A"'
UP2 = f'{Q}, router="edge-b", neighbor_asn="64602", neighbor_name="TRANSIT-B"'
# Per alert: (its series when it should fire, and when all is well), the
# input interval and the evaluation time. The noise cases: a high rate over
# too few segments, or a drop from a week that carried little, stays quiet.
ALERT_CASES = {
    "IprQualityFiguresMissing": ({f"ipr_quality_up{{{Q}}}": ("0x20", "1x20")}, "1m", "15m"),
    "IprOriginAsRetransmitsHigh": ({f"ipr_quality_origin_as_retransmit_ratio{{{AS1}}}": ("0.08x20", "0.08x20"),
                                    f"ipr_quality_origin_as_data_segments{{{AS1}}}": ("50000x20", "900x20")},
                                   "1m", "10m"),
    "IprOriginAsRttHigh": ({f"ipr_quality_origin_as_rtt_p95_seconds{{{AS1}}}": ("0.45x20", "0.12x20"),
                            f"ipr_quality_origin_as_rtt_samples{{{AS1}}}": ("5000x20", "5000x20")}, "1m", "10m"),
    "IprCountryRetransmitsHigh": (
        {f'ipr_quality_country_retransmit_ratio{{{Q}, country="FR"}}': ("0.07x20", "0.02x20"),
         f'ipr_quality_country_data_segments{{{Q}, country="FR"}}': ("80000x20", "80000x20")}, "1m", "10m"),
    "IprUplinkWorseThanOthers": (
        {f"ipr_quality_uplink_retransmit_ratio{{{UP1}}}": ("0.04x20", "0.012x20"),
         f"ipr_quality_uplink_retransmitted_segments{{{UP1}}}": ("4000x20", "1200x20"),
         f"ipr_quality_uplink_data_segments{{{UP1}}}": ("100000x20", "100000x20"),
         f"ipr_quality_uplink_retransmit_ratio{{{UP2}}}": ("0.01x20", "0.01x20"),
         f"ipr_quality_uplink_retransmitted_segments{{{UP2}}}": ("9000x20", "9000x20"),
         f"ipr_quality_uplink_data_segments{{{UP2}}}": ("900000x20", "900000x20")}, "1m", "10m"),
    # A week of 5-minute samples: 4 GB an hour, then 1 GB (or, when quiet,
    # a week before that carried only 0.5 GB).
    "IprOriginAsTrafficDropped": ({f"ipr_quality_origin_as_bytes{{{AS1}}}": ("4e9x2016 1e9x6", "5e8x2016 1e8x6")},
                                  "5m", "10100m"),
}


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian: prometheus)")
def test_promtool_accepts_the_rules_and_each_fires_on_its_condition_only(tmp_path):
    out = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert set(ALERT_CASES) == {rule["alert"] for rule in rules()}, "every alert needs a case here"
    tests = []
    for alert, (cases, interval, at) in ALERT_CASES.items():
        for bad, firing in ((0, [{"labels": f'{{alertname="{alert}"}}', "value": 1}]), (1, [])):
            tests.append({
                "name": f"{alert} {'fires' if firing else 'is quiet'}", "interval": interval,
                "input_series": [{"series": s, "values": v[bad]} for s, v in cases.items()],
                "promql_expr_test": [{"expr": 'count by (alertname) (ALERTS{alertstate="firing"})',
                                      "eval_time": at, "exp_samples": firing}]})
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(
        {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}))
    out = subprocess.run([PROMTOOL, "test", "rules", str(tmp_path / "tests.yml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
