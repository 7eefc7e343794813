"""bench/mrt_table.py's transit-feed tables and bench/table_stats.py, read back
by the real bgpdump and by ipr's parser."""
from __future__ import annotations

import shutil
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from bench import mrt_table, table_stats
from ipr.routing.dumps import mrt
from test_routing_mrt import as_bgpdump, read_bgpdump

SAMPLES = Path(__file__).resolve().parents[2] / "shared/formats/samples/mrt"
BGPDUMP = shutil.which("bgpdump") or "/usr/bin/bgpdump"
needs_bgpdump = pytest.mark.skipif(not Path(BGPDUMP).exists(), reason="bgpdump is not installed")


@pytest.fixture(scope="module")
def feeds(tmp_path_factory):
    """Three transit feeds, 0.3 distinct attribute sets per route, and bgpdump's lines."""
    d = tmp_path_factory.mktemp("feeds")
    path, expect = d / "feeds.mrt.gz", d / "feeds.bgpdump-m"
    summary = mrt_table.write(str(path), v4=6000, v6=1500, peers=3, seed=5, expect=str(expect),
                              sets=0.05, distinct=0.3)
    with mrt.open_dump(str(path)) as f:
        got = list(mrt.entries(f))
    return path, expect, summary, got


@needs_bgpdump
def test_bgpdump_reads_a_transit_table_exactly_as_the_generator_expects(feeds):
    path, expect, summary, _ = feeds
    assert mrt_table.check(str(path), str(expect), BGPDUMP) == summary["routes"]


def test_the_parser_reads_a_transit_table_as_the_generator_expects(feeds):
    _, expect, summary, got = feeds
    with open(expect) as f:
        _, want = read_bgpdump(f)
    assert [as_bgpdump(e) for e in got] == want
    assert len(got) == summary["routes"]
    assert summary["as_sets"] >= 3 and any("{" in e.route.attrs.as_path for e in got)


def test_every_feed_is_a_transit_with_its_own_asn_next_hop_and_policy(feeds):
    _, _, summary, got = feeds
    by_peer = defaultdict(list)
    for e in got:
        by_peer[(e.peer_ip, e.peer_as)].append(e)
    assert len(by_peer) == summary["peers"] == 3
    prefixes = {e.route.prefix for e in got}
    assert len(prefixes) == summary["prefixes"] == 7500
    for (ip, asn), routes in by_peer.items():
        assert all(e.route.attrs.neighbor_as == asn for e in routes)
        assert {e.route.attrs.next_hop for e in routes if ":" not in e.route.prefix} == {ip}
        assert len({e.route.attrs.next_hop for e in routes if ":" in e.route.prefix}) == 1
        assert all(e.route.attrs.local_pref is not None for e in routes)
        # A full feed that misses a few prefixes.
        assert 0.95 * len(prefixes) < len(routes) < len(prefixes)
    # Each peer has its own MED policy: with metrics, all zero, or none.
    meds = [{e.route.attrs.med for e in routes} for routes in by_peer.values()]
    assert sorted(len(m) > 2 for m in meds) == [False, False, True]
    # No prefix is left without a route; most have one per feed.
    per_prefix = Counter(e.route.prefix for e in got)
    assert min(per_prefix.values()) >= 1 and Counter(per_prefix.values()).most_common(1)[0][0] == 3


def test_it_reaches_the_distinct_share_asked_for(tmp_path, feeds):
    path, _, summary, got = feeds
    # What the generator says it wrote (distinct blobs) is what the parser
    # reads (distinct values) and table_stats counts.
    assert abs(summary["distinct"] - 0.3) < 0.02
    result = table_stats.read(str(path))
    assert result["routes"] == summary["routes"]
    assert sum(len(result["families"][v].sets) for v in (4, 6)) == summary["attr_sets"]
    assert len({(e.route.attrs, e.origin) for e in got}) == summary["attr_sets"]
    for v in (4, 6):
        fam = result["families"][v]
        assert fam.routes == sum((":" in e.route.prefix) == (v == 6) for e in got)
        assert len(fam.sets) / fam.routes == pytest.approx(summary[f"distinct_v{v}"], abs=1e-4)
        for peer, sets in fam.by_peer.items():  # each feed alone, not only all of them together
            assert abs(len(sets) / fam.peer_routes[peer] - 0.3) < 0.04
    # Other targets, per family (a small table cannot go below one set per origin and family).
    for asked in ((0.25, 0.4), (0.31, 0.55), (0.7, 0.7)):
        out = mrt_table.write(str(tmp_path / "t.mrt"), v4=8000, v6=2000, peers=2, seed=2, distinct=asked)
        assert abs(out["distinct_v4"] - asked[0]) < 0.03 and abs(out["distinct_v6"] - asked[1]) < 0.03, out


def test_the_share_comes_from_per_prefix_variation_not_from_junk(feeds):
    _, _, _, got = feeds
    v4 = [e for e in got if ":" not in e.route.prefix]
    paths = {e.route.attrs.as_path for e in v4}
    # Many paths, but far fewer than routes; the same path with different
    # communities or MED is what makes most of the rest.
    assert 0.05 * len(v4) < len(paths) < 0.3 * len(v4)
    mix = Counter(len(e.route.attrs.as_path.split()) for e in v4 if "{" not in e.route.attrs.as_path)
    assert max(mix, key=mix.get) in (3, 4) and mix[1] == 0
    assert 0.05 < sum(n for length, n in mix.items() if length >= 6) / len(v4) < 0.3
    with_communities = sum(bool(e.route.attrs.communities) for e in v4) / len(v4)
    assert 0.3 < with_communities < 0.95


def test_a_transit_table_is_deterministic(tmp_path):
    a, b, c = tmp_path / "a.mrt", tmp_path / "b.mrt", tmp_path / "c.mrt"
    mrt_table.write(str(a), v4=2000, v6=400, peers=2, seed=9, distinct=0.4)
    mrt_table.write(str(b), v4=2000, v6=400, peers=2, seed=9, distinct=0.4)
    mrt_table.write(str(c), v4=2000, v6=400, peers=2, seed=10, distinct=0.4)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_the_command_line_takes_one_share_or_one_per_family(tmp_path, capsys):
    out = tmp_path / "t.mrt"
    mrt_table.main([str(out), "--v4", "3000", "--v6", "600", "--peers", "2", "--distinct", "0.31,0.55"])
    printed = dict(kv.split("=") for kv in capsys.readouterr().out.split())
    assert printed["peers"] == "2" and abs(float(printed["distinct_v6"]) - 0.55) < 0.05
    for bad in ("0", "1.5", "0.3,0.4,0.5", "x"):
        with pytest.raises(SystemExit):
            mrt_table.main([str(out), "--distinct", bad])


def test_table_stats_reads_a_real_sample_and_prints_one_column_per_file(capsys, feeds):
    sample = SAMPLES / "bgpdump__bview.64k_stream_overflow.gz"
    table_stats.main([str(sample), str(feeds[0])])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"| | {sample.name} | {feeds[0].name} |"
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in lines[2:]}
    assert rows["IPv6 routes"][0] == "23"                      # the sample's one record of 23 entries
    assert rows["IPv6 routes with large communities"][0] != "0.0 %"
    assert rows["routes"][1].rstrip(" |") == f"{feeds[2]['routes']:,}"
