"""The dump parsers on what real BIRD 2 and FRR daemons print.

routing_daemons.py starts four BGP speakers on loopback (two FRR origins,
an FRR and a BIRD collector); here their tables are read the ways ipr reads
a router's (birdc, BIRD's control socket, vtysh text and JSON, BIRD's and
bgpd's MRT dumps) and compared with what the configuration announced.
"""
from __future__ import annotations

import io
import ipaddress

import pytest

import routing_daemons as lab_mod
from ipr.routing.dumps import Attrs, DumpError, bird, frr, mrt, path_asns
from routing_daemons import (AGGREGATE, AGGREGATE_MED, B4_COMMUNITY, B4_NEXT_HOP, B4_R1_LOCAL_PREF,
                             B4_R2_COMMUNITY, B4_R2_LARGE, B4_ROUTE, BIRD_DEFAULT_LOCAL_PREF, C3,
                             C3_LOCAL_PREF, R1, R2, V4_BLACKHOLE, V4_STATIC, V6_STATIC, Lab)

REASON = lab_mod.unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("bgp"))
    lab.start()
    try:
        lab.wait()
        yield lab
    finally:
        lab.stop()


# --- what the configuration announced --------------------------------------------


def family(prefix):
    return 6 if ":" in prefix else 4


def communities(standard=(), large=()):
    return " ".join((*standard, *large))


def originated(fam):
    for speaker in (R1, R2):
        for route in speaker.routes:
            if family(route.prefix) == fam:
                yield speaker, route


def aggregate_parts():
    """The aggregate's AS_SET and communities: the union of its contributors'."""
    agg = ipaddress.ip_network(AGGREGATE)
    members, standard, large = set(), set(), set()
    for speaker, route in originated(4):
        net = ipaddress.ip_network(route.prefix)
        if net != agg and net.subnet_of(agg):
            members.update((speaker.asn, *route.prepend))
            standard.update(speaker.communities)
            large.update(speaker.large)
    key = lambda c: tuple(map(int, c.split(":")))  # noqa: E731
    return sorted(members), communities(sorted(standard, key=key), sorted(large, key=key))


def attrs(next_hop, segments, local_pref, med, comms):
    return Attrs(next_hop, *path_asns(segments), local_pref, med, comms)


def expected_c3(fam, with_communities):
    """c3's table (FRR): {(prefix, next hop): Attrs}."""
    out = {}
    for speaker, route in originated(fam):
        hop = speaker.next_hop4 if fam == 4 else speaker.next_hop6
        lp = C3_LOCAL_PREF.get(route.prefix) if speaker is R2 else None
        comms = communities(speaker.communities, speaker.large) if with_communities else ""
        out[route.prefix, hop] = attrs(hop, [("seq", [speaker.asn, *route.prepend])], lp, speaker.med, comms)
    if fam == 4:
        members, comms = aggregate_parts()
        # Originated by c3 itself: no next hop, and a path that is only the set.
        out[AGGREGATE, None] = attrs(None, [("set", members)], None, AGGREGATE_MED,
                                     comms if with_communities else "")
        out[B4_ROUTE, B4_NEXT_HOP] = attrs(B4_NEXT_HOP, [("seq", [lab_mod.B4_ASN])], None, None,
                                           B4_COMMUNITY if with_communities else "")
    return out


def expected_b4(fam):
    """b4's table (BIRD): {(prefix, next hop): Attrs}."""
    out = {}
    for speaker, route in originated(fam):
        hop = speaker.next_hop4 if fam == 4 else speaker.next_hop6
        if speaker is R1:
            lp, comms = B4_R1_LOCAL_PREF, communities(R1.communities, R1.large)
        else:
            lp, comms = BIRD_DEFAULT_LOCAL_PREF, communities((B4_R2_COMMUNITY,), (B4_R2_LARGE,))
        out[route.prefix, hop] = attrs(hop, [("seq", [speaker.asn, *route.prepend])], lp, speaker.med, comms)
    statics = [V6_STATIC] if fam == 6 else [V4_STATIC, V4_BLACKHOLE, B4_ROUTE]
    for prefix in statics:
        out[prefix, None] = Attrs(None, "", None, None, None, None, "")
    if fam == 4:
        members, comms = aggregate_parts()
        out[AGGREGATE, C3.next_hop4] = attrs(C3.next_hop4, [("seq", [C3.asn]), ("set", members)],
                                             BIRD_DEFAULT_LOCAL_PREF, AGGREGATE_MED, comms)
    return out


def table(routes):
    out = {}
    for r in routes:
        key = (r.prefix, r.attrs.next_hop)
        assert key not in out, f"two paths for {key}"
        out[key] = r.attrs
    return out


def check_best(routes):
    """One best path per prefix, and one BGP's decision could pick: highest
    local preference, then shortest AS path (ties: multipath, or the older)."""
    groups = {}
    for r in routes:
        groups.setdefault(r.prefix, []).append(r)
    for prefix, paths in groups.items():
        assert sum(r.best for r in paths) == 1, (prefix, paths)
        rank = [(-(r.attrs.local_pref or 100), len(r.attrs.as_path.split())) for r in paths]
        winners = [r for r, k in zip(paths, rank) if k == min(rank)]
        assert any(r.best for r in winners), (prefix, paths)


# --- BIRD -------------------------------------------------------------------------


def test_birdc_show_route_all_has_what_was_announced(lab):
    out = lab.birdc("show route all")
    routes = list(bird.parse(io.BytesIO(out), "birdc"))
    assert b"Table master6:" in out  # both tables, one after the other
    v4 = [r for r in routes if family(r.prefix) == 4]
    v6 = [r for r in routes if family(r.prefix) == 6]
    assert table(v4) == expected_b4(4)
    assert table(v6) == expected_b4(6)
    check_best(routes)
    # r1's routes win on local preference, even with a longer AS path.
    best = {r.prefix: r.attrs.neighbor_as for r in routes if r.best}
    assert best["198.51.100.0/25"] == R1.asn and best["192.0.2.0/24"] == R1.asn
    # The aggregate: c3 is its origin (the set has four members).
    agg = next(r for r in routes if r.prefix == AGGREGATE)
    assert (agg.attrs.origin_as, agg.attrs.neighbor_as) == (C3.asn, C3.asn)
    assert agg.attrs.as_path.startswith(f"{C3.asn} {{")


def test_birdc_master6_table(lab):
    routes = list(bird.parse(io.BytesIO(lab.birdc("show route all table master6")), "birdc6"))
    assert table(routes) == expected_b4(6)
    check_best(routes)


def test_the_control_socket_gives_the_same_routes_as_birdc(lab):
    raw = lab.bird_raw("show route all")
    assert raw.startswith(b"0001 BIRD ") and b"\n1007-" in raw and raw.endswith(b"0000 \n")
    assert list(bird.parse(io.BytesIO(raw), "socket")) == \
        list(bird.parse(io.BytesIO(lab.birdc("show route all")), "birdc"))
    raw6 = lab.bird_raw("show route all table master6")
    assert table(bird.parse(io.BytesIO(raw6), "socket6")) == expected_b4(6)


@pytest.mark.parametrize("command, code", [
    ("show route for 100.100.100.100 all", b"8001"),   # no route: "Network not found"
    ("show route all table nosuch", b"9001"),          # a syntax error
])
def test_a_bird_error_reply_is_a_dump_error(lab, command, code):
    raw = lab.bird_raw(command)
    assert code in raw
    with pytest.raises(DumpError) as err:
        list(bird.parse(io.BytesIO(raw), "socket"))
    line = next(n for n, text in enumerate(raw.splitlines(), 1) if text.startswith(code))
    assert err.value.where == f"line {line}" and code.decode() in err.value.message


def test_bird_show_route_without_all_is_refused(lab):
    out = lab.birdc("show route")
    with pytest.raises(DumpError) as err:
        list(bird.parse(io.BytesIO(out), "birdc"))
    assert "show route all" in err.value.message


# --- FRR --------------------------------------------------------------------------


def test_frr_show_ip_bgp_has_what_was_announced(lab):
    out = lab.vtysh("c3", "show ip bgp")
    routes = list(frr.parse_text(io.BytesIO(out), "c3"))
    assert table(routes) == expected_c3(4, with_communities=False)
    check_best(routes)
    assert b"*= " in out or b"*=" in out  # the two equal paths of 192.0.2.0/24: multipath
    # LocPrf set by c3's import route-map; blank MED and LocPrf on b4's route.
    by_key = table(routes)
    assert by_key["198.51.101.0/24", R2.next_hop4].local_pref == C3_LOCAL_PREF["198.51.101.0/24"]
    assert (by_key[B4_ROUTE, B4_NEXT_HOP].med, by_key[B4_ROUTE, B4_NEXT_HOP].local_pref) == (None, None)


def test_frr_ipv6_table_with_wrapped_lines(lab):
    out = lab.vtysh("c3", "show bgp ipv6 unicast")
    # The nets and next hops are too long for their columns.
    assert b"\n" + b" " * 20 + R1.next_hop6.encode() + b"\n" in out
    routes = list(frr.parse_text(io.BytesIO(out), "c3-6"))
    assert table(routes) == expected_c3(6, with_communities=False)
    check_best(routes)


def test_frr_wide_table_reads_like_the_normal_one(lab):
    wide = list(frr.parse_text(io.BytesIO(lab.vtysh("c3", "show ip bgp wide")), "wide"))
    assert wide == list(frr.parse_text(io.BytesIO(lab.vtysh("c3", "show ip bgp")), "normal"))


@pytest.mark.parametrize("fam", [4, 6])
def test_frr_json_reads_like_the_table(lab, fam):
    data = lab.vtysh("c3", f"show bgp ipv{fam} unicast json")
    routes = list(frr.parse_json(io.BytesIO(data), "c3.json"))
    assert table(routes) == expected_c3(fam, with_communities=False)
    text = lab.vtysh("c3", "show ip bgp" if fam == 4 else "show bgp ipv6 unicast")
    assert sorted(routes) == sorted(frr.parse_text(io.BytesIO(text), "c3"))
    assert sorted(frr.parse(io.BytesIO(data), "sniffed")) == sorted(routes)


@pytest.mark.parametrize("fam", [4, 6])
def test_frr_json_detail_has_the_communities(lab, fam):
    data = lab.vtysh("c3", f"show bgp ipv{fam} unicast json detail")
    routes = list(frr.parse_json(io.BytesIO(data), "c3-detail.json"))
    assert table(routes) == expected_c3(fam, with_communities=True)
    check_best(routes)
    plain = list(frr.parse_json(io.BytesIO(lab.vtysh("c3", f"show bgp ipv{fam} unicast json")), "c3"))
    assert [r.best for r in sorted(routes)] == [r.best for r in sorted(plain)]


def test_frr_origin_speaker_tables(lab):
    # r1's own table: its networks, locally originated (no path, no next hop).
    routes = list(frr.parse_text(io.BytesIO(lab.vtysh("r1", "show ip bgp")), "r1"))
    assert {r.prefix for r in routes} == {o.prefix for o in R1.routes if family(o.prefix) == 4}
    for r in routes:
        prepend = next(o.prepend for o in R1.routes if o.prefix == r.prefix)
        assert (r.attrs.next_hop, r.attrs.as_path, r.best) == (None, " ".join(map(str, prepend)), True)


# --- MRT --------------------------------------------------------------------------


def attrs_multiset(routes):
    # MRT does not say which path is best (mrt.parse guesses): compare the rest.
    return sorted((r.prefix, tuple(r.attrs)) for r in routes)


def test_bird_mrt_table_dump_has_the_same_routes_as_birdc(lab):
    path = lab.bird_mrt(since=lab.converged_at)
    stats = mrt.Stats()
    dumped = list(mrt.parse(mrt.open_dump(str(path)), path.name, stats=stats))
    if stats.peer_tables > 1:
        # Two periodic dumps started within one second went to one file,
        # one after the other: the last is the table (as the loader reads it).
        data = mrt.open_dump(str(path)).read()
        dumped = list(mrt.parse(data[stats.last_peer_table_at:], path.name))
    shown = [r for r in bird.parse(io.BytesIO(lab.birdc("show route all table master4")), "birdc")]
    assert attrs_multiset(dumped) == attrs_multiset(shown)
    assert table(dumped) == expected_b4(4)


def test_frr_routes_mrt_dump_has_the_same_routes_as_json_detail(lab):
    path = lab.frr_mrt("c3")
    dumped = list(mrt.parse(mrt.open_dump(str(path)), path.name))
    shown = [r for fam in (4, 6)
             for r in frr.parse_json(io.BytesIO(lab.vtysh("c3", f"show bgp ipv{fam} unicast json detail")), "j")]

    def local_hop(routes):
        # mrt.py keeps the unspecified next hop (0.0.0.0) of c3's own
        # aggregate as text; the table and JSON parsers make it None.
        return [r._replace(attrs=r.attrs._replace(next_hop=None)) if r.attrs.next_hop in ("0.0.0.0", "::")
                else r for r in routes]

    assert attrs_multiset(local_hop(dumped)) == attrs_multiset(shown)


# --- dumps cut short --------------------------------------------------------------


def test_live_dumps_cut_in_or_before_their_last_line_are_refused(lab):
    cases = {  # what each daemon prints, and whether it has an end mark
        "socket": (bird.parse, lab.bird_raw("show route all"), True),
        "birdc": (bird.parse, lab.birdc("show route all"), False),
        "vtysh text": (frr.parse_text, lab.vtysh("c3", "show ip bgp"), True),
        "vtysh wrapped": (frr.parse_text, lab.vtysh("c3", "show bgp ipv6 unicast"), True),
        "vtysh json": (frr.parse_json, lab.vtysh("c3", "show bgp ipv4 unicast json"), True),
    }
    for name, (parse, data, end_mark) in cases.items():
        assert list(parse(io.BytesIO(data), name)), name
        body = data.rstrip()
        last = body.rfind(b"\n") + 1  # where the last line starts
        cuts = [last + (len(body) - last) // 2]  # inside the last line
        if end_mark:
            cuts.append(last)  # the end mark's whole line
        for cut in cuts:
            with pytest.raises(DumpError):
                list(parse(io.BytesIO(data[:cut]), name))
