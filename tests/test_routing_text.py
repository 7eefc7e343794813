"""The BIRD and Quagga/FRR text and JSON parsers on the real samples.

Every file in samples/bird, samples/quagga and samples/lab-generated is read
here. Where a sample lacks a case (another FRR version's column widths,
asdot text, overflowing columns), the case is made from a real sample by the
change that FRR's own printf formats would make, and must parse to the same
routes as the original.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from ipr.routing.dumps import Attrs, DumpError, bird, frr

SAMPLES = Path(__file__).resolve().parents[2] / "shared/formats/samples"  # beside the repository
BIRD_DIR = SAMPLES / "bird"
QUAGGA = SAMPLES / "quagga"
LAB_BIRD = SAMPLES / "lab-generated" / "bird-2.0.12"
LAB_FRR = SAMPLES / "lab-generated" / "frr-8.4.4"


def bird_routes(path, **kw):
    return list(bird.parse(io.BytesIO(Path(path).read_bytes()), source=Path(path).name, **kw))


def frr_text(data, source="t", **kw):
    return list(frr.parse_text(io.BytesIO(data if isinstance(data, bytes) else data.encode()), source, **kw))


def frr_table(*lines):
    """Table lines of one path per prefix, with the line FRR ends a table with."""
    return "\n".join(lines) + f"\n\nDisplayed  {len(lines)} routes and {len(lines)} total paths\n"


def frr_json(data, source="j"):
    return list(frr.parse_json(io.BytesIO(data if isinstance(data, bytes) else data.encode()), source))


def by_prefix(routes):
    out = {}
    for r in routes:
        out.setdefault(r.prefix, []).append(r)
    return out


def one(routes, prefix, index=0):
    return by_prefix(routes)[prefix][index]


def frr_line(status, net, hop, med, local_pref, weight, path, origin):
    """A table line as FRR 8 and Quagga print it (route_vty_out's widths)."""
    return (f"{status}{net:<17}{hop:<16}{'' if med is None else med:>10}"
            f"{'' if local_pref is None else local_pref:>7}{weight:>7} {path + ' ' if path else ''}{origin}")


# --- BIRD: real samples -------------------------------------------------------


BIRD_COUNTS = {
    "birdclient__test_show_t_bgp4.rawsocket.txt": 3,
    "birdclient__test_show_t_bgp4_with_blackhole.rawsocket.txt": 1,
    "birdclient__test_show_t_bgp4v3.rawsocket.txt": 1,
    "birdclient__test_show_t_bgp4v3b.rawsocket.txt": 1,
    "birdclient__test_show_t_bgp6.rawsocket.txt": 4,
    "birdwatcher__routes_bird1_ipv4.sample": 4,
    "birdwatcher__routes_bird1_ipv6.sample": 3,
    "birdwatcher__routes_bird2_ipv4.sample": 4,
    "birdwatcher__routes_bird2_ipv6.sample": 3,
    "birdwatcher__routes_bird3_ipv4.sample": 4,
    "birdwatcher__routes_bird3_ipv6.sample": 3,
    "pybird__all000.bird1_4.rawsocket.txt": 3,
    "pybird__example.bird1_3.rawsocket.txt": 1,
    "pybird__show_route_all_table_T_peer_export_peer.rawsocket.txt": 3,
    "pybird__show_route_for_8.8.8.8_all_protocol_peer.rawsocket.txt": 1,
}


# Hand-edited samples saved without their final newline: a capture that
# does not end where birdc's output ends is refused, unless asked to accept it.
BIRD_WITHOUT_FINAL_NEWLINE = {"birdwatcher__routes_bird3_ipv4.sample", "birdwatcher__routes_bird3_ipv6.sample"}


@pytest.mark.parametrize("name, count", BIRD_COUNTS.items())
def test_it_reads_every_route_of_each_bird_sample(name, count):
    if name in BIRD_WITHOUT_FINAL_NEWLINE:
        with pytest.raises(DumpError, match="no newline: the dump is cut short"):
            bird_routes(BIRD_DIR / name)
    routes = bird_routes(BIRD_DIR / name, accept_truncated=name in BIRD_WITHOUT_FINAL_NEWLINE)
    assert len(routes) == count
    for r in routes:
        assert isinstance(r.attrs, Attrs) and r.best in (True, False)


LAB_BIRD_COUNTS = {
    "b4_rawsocket_show_route_all.txt": 16,
    "b4_rawsocket_show_route_all_table_master6.txt": 4,
    "b4_show_route_all.txt": 16,
    "b4_show_route_all_table_master6.txt": 4,
    "b4_show_route_for_198.51.100.77_all.txt": 2,
}


@pytest.mark.parametrize("name, count", LAB_BIRD_COUNTS.items())
def test_it_reads_every_route_of_the_lab_bird_captures(name, count):
    assert len(bird_routes(LAB_BIRD / name)) == count


def test_the_control_socket_capture_parses_like_birdc():
    raw = bird_routes(LAB_BIRD / "b4_rawsocket_show_route_all.txt")
    assert raw == bird_routes(LAB_BIRD / "b4_show_route_all.txt")
    assert bird_routes(LAB_BIRD / "b4_rawsocket_show_route_all_table_master6.txt") == \
        bird_routes(LAB_BIRD / "b4_show_route_all_table_master6.txt")


def test_bird2_lab_routes_field_by_field():
    routes = bird_routes(LAB_BIRD / "b4_show_route_all.txt")
    # A second route for the net: empty net field, no '*'.
    first, second = by_prefix(routes)["198.51.100.0/25"]
    assert first == ("198.51.100.0/25",
                     Attrs("203.0.113.2", "65002 64512", 64512, 65002, 100, 0, ""), True)
    assert second == ("198.51.100.0/25",
                      Attrs("203.0.113.1", "65001 4200000001 4200000001", 4200000001, 65001, 100, 50,
                            "65001:100 65001:200 65001:1:2"), False)
    # The BGP next hop, not the 'dev lo' the IGP resolved it through.
    assert one(routes, "2001:db8:abcd:ef01:2345::/80").attrs.next_hop == "2001:db8:ffff::1"
    # A static route: kept, with no AS path and no next hop.
    assert one(routes, "203.0.113.0/25") == ("203.0.113.0/25", Attrs(None, "", None, None, None, None, ""), True)
    # The same attributes are one object, however many routes carry them.
    r1 = [r.attrs for r in routes if r.attrs.as_path == "65001" and ":" not in r.prefix]
    assert len(r1) == 5 and all(a is r1[0] for a in r1)


def test_bird_raw_socket_ecmp_routes_take_the_bgp_next_hop_not_the_gateways():
    routes = bird_routes(BIRD_DIR / "birdclient__test_show_t_bgp4.rawsocket.txt")
    best, other = by_prefix(routes)["100.201.0.0/24"]
    # Two 'via ... weight 1' lines (ECMP) to reach BGP next hop 100.64.40.11.
    assert best == ("100.201.0.0/24", Attrs("100.64.40.11", "65006", 65006, 65006, 450, None,
                                            "65000:3:3 65006:3:1"), True)
    # Extended communities are left out; standard ones come before large ones.
    assert other.attrs == Attrs("100.64.43.2", "65004", 65004, 65004, 150, None,
                                "1:0 1:1 1:2 65000:3:4 65004:3:1")
    assert other.best is False
    # An empty 'BGP.large_community:' (hand-edited sample) is no community.
    assert one(routes, "100.100.0.0/24").attrs.communities == ""


def test_bird_ipv6_next_hop_pairs_and_empty_paths():
    routes = bird_routes(BIRD_DIR / "birdclient__test_show_t_bgp6.rawsocket.txt")
    first, second = by_prefix(routes)["fc00:130::/48"]
    assert first.attrs.next_hop == "fc61::3"  # 'fc61::3 fe80::61:1ff:fe00:1': the global one
    assert (first.attrs.as_path, first.attrs.origin_as, first.attrs.neighbor_as) == ("65007", 65007, 65007)
    assert first.attrs.communities == "65000:4:65414 65007:3:1 65000:3:2 65000:1:901"
    # 'BGP.as_path:' with nothing after it: an iBGP route of our own AS.
    assert second.attrs == Attrs("fc50::5", "", None, None, 940, None, "65000:3:1")
    assert second.best is False
    assert one(routes, "fc20::/64").attrs.as_path == ""


def test_bird_blackhole_with_bgp_attributes_has_no_next_hop():
    (route,) = bird_routes(BIRD_DIR / "birdclient__test_show_t_bgp4_with_blackhole.rawsocket.txt")
    assert route == ("100.64.11.0/24", Attrs(None, "", None, None, 930, None, "65000:3:1"), True)


def test_bird3_attribute_names():
    (route,) = bird_routes(BIRD_DIR / "birdclient__test_show_t_bgp4v3.rawsocket.txt")
    assert route == ("100.64.101.0/24", Attrs("100.64.0.2", "65001", 65001, 65001, 750, None, "65000:3:2"), True)
    (empty,) = bird_routes(BIRD_DIR / "birdclient__test_show_t_bgp4v3b.rawsocket.txt")
    assert empty.attrs == Attrs("100.64.0.2", "", None, None, 100, None, "65000:3:1")
    routes = bird_routes(BIRD_DIR / "birdwatcher__routes_bird3_ipv6.sample", accept_truncated=True)
    assert one(routes, "2001:4860::/32", 1).attrs == Attrs(
        "fe80:ffff:ffff::2", "50629 15169", 15169, 50629, 100, 71,
        "50629:200 50629:201 48821:0:3000 48821:0:3100")


def test_a_wrapped_community_line_continues_the_attribute():
    # BGP.community is wrapped onto a '\t\t' line after (50673,500).
    for name in ("birdwatcher__routes_bird1_ipv4.sample", "birdwatcher__routes_bird2_ipv4.sample",
                 "birdwatcher__routes_bird3_ipv4.sample"):
        first = bird_routes(BIRD_DIR / name, accept_truncated=name in BIRD_WITHOUT_FINAL_NEWLINE)[0]
        communities = first.attrs.communities.split()
        assert communities[:2] == ["0:5464", "0:8339"]
        assert communities[45:52] == ["50673:500", "65101:11077", "65102:11000", "65103:724", "65104:150",
                                      "9033:65666:12", "9033:65666:9"]
        assert len(communities) == 52


def test_bird1_layout_with_next_hop_on_the_route_line():
    routes = bird_routes(BIRD_DIR / "birdwatcher__routes_bird1_ipv6.sample")
    # The second route's net field is a tab and spaces.
    assert [(r.prefix, r.best) for r in routes] == [
        ("2001:4860::/32", True), ("2001:4860::/32", False), ("2001:678:1e0::/48", True)]
    assert routes[1].attrs == Attrs("fe80:ffff:ffff::2", "50629 15169", 15169, 50629, 100, 71,
                                    "50629:200 50629:201 48821:0:3000 48821:0:3100")
    assert routes[0].attrs.med == 0 and routes[0].attrs.local_pref == 500
    (old,) = bird_routes(BIRD_DIR / "pybird__example.bird1_3.rawsocket.txt")
    assert old == ("2a02:898::/32", Attrs("2001:7f8:1::a500:8954:1", "8954 8283", 8283, 8954, 100, None,
                                          "8954:620"), True)


def test_hand_edited_bird2_sample_with_mixed_tabs_and_a_bird1_banner():
    # "BIRD 1.6.3 ready." over a BIRD 2 layout; a tab after the net; an empty
    # net field of 16 spaces; attribute lines indented by 4 spaces.
    v4 = bird_routes(BIRD_DIR / "birdwatcher__routes_bird2_ipv4.sample")
    assert [(r.prefix, r.best, r.attrs.as_path) for r in v4] == [
        ("16.0.0.0/24", True, "1340"), ("200.0.0.0/24", True, "1339"),
        ("200.0.0.0/24", False, "1340"), ("16.0.0.0/24", True, "1340")]
    assert v4[2].attrs.next_hop == "1.2.3.16"
    v6 = bird_routes(BIRD_DIR / "birdwatcher__routes_bird2_ipv6.sample")
    assert v6[0].attrs == Attrs("fe80:ffff:ffff::1", "15169", 15169, 15169, 500, 0, v6[0].attrs.communities)
    assert v6[2].attrs == Attrs("2001:678:1e0::2", "202739", 202739, 202739, 5000, None,
                                "48821:2000 48821:2100 48821:0:2000 48821:0:2100")


def test_bird_static_and_unreachable_routes_are_kept():
    routes = bird_routes(BIRD_DIR / "pybird__all000.bird1_4.rawsocket.txt")
    assert [(r.prefix, r.attrs.as_path, r.attrs.next_hop, r.best) for r in routes] == [
        ("10.255.30.0/24", "", None, True), ("10.255.3.0/24", "", None, True),
        ("10.255.10.0/24", "65001", "10.203.0.143", True)]
    assert routes[2].attrs.communities == "65003:54321 65001:12345"
    # Blackholes made by a static protocol with BGP attributes set by a filter.
    statics = bird_routes(BIRD_DIR / "pybird__show_route_all_table_T_peer_export_peer.rawsocket.txt")
    assert {r.attrs for r in statics} == {Attrs("10.217.130.42", "63311 63311", 63311, 63311, 100, None,
                                                "43531:49021")}


def test_a_bird_route_without_the_primary_mark_is_not_best():
    (route,) = bird_routes(BIRD_DIR / "pybird__show_route_for_8.8.8.8_all_protocol_peer.rawsocket.txt")
    assert route.prefix == "8.8.8.0/24" and route.best is False
    assert route.attrs == Attrs("206.41.110.37", "15169", 15169, 15169, 200, 0, "63311:21201")


@pytest.mark.parametrize("name", ["b4_show_route.txt", "b4_show_route_primary.txt"])
def test_show_route_without_all_is_refused_at_the_first_bgp_route(name):
    with pytest.raises(DumpError) as err:
        bird_routes(LAB_BIRD / name)
    assert (err.value.source, err.value.where) == (name, "line 3")
    assert "show route all" in err.value.message


# --- BIRD: policies and errors on edited samples --------------------------------


def lab_bird_text():
    return (LAB_BIRD / "b4_show_route_all.txt").read_text()


def test_bird_as_sets_and_confederations():
    text = lab_bird_text().replace("BGP.as_path: 65002 64512\n",
                                   "BGP.as_path: (65010 65011) 65002 {64512 64513}\n", 1)
    text = text.replace("BGP.as_path: 65001 4200000001 4200000001",
                        "BGP.as_path: 65001 ({65020 65021}) {4200000001}", 1)
    routes = list(bird.parse(io.BytesIO(text.encode()), "t"))
    agg = one(routes, "198.51.100.0/23").attrs
    # Confederation segments are dropped; a 2-member set: the aggregating AS is the origin.
    assert (agg.as_path, agg.origin_as, agg.neighbor_as) == ("65002 {64512 64513}", 65002, 65002)
    single = one(routes, "198.51.100.0/25", 1).attrs
    assert (single.as_path, single.origin_as, single.neighbor_as) == ("65001 {4200000001}", 4200000001, 65001)


def test_bird_error_reply_on_the_socket_is_a_dump_error():
    data = b"0001 BIRD 2.0.12 ready.\n8001 Network not found\n"
    with pytest.raises(DumpError) as err:
        list(bird.parse(io.BytesIO(data), "sock"))
    assert err.value.where == "line 2" and "8001" in err.value.message and "Network not found" in err.value.message
    data = (LAB_BIRD / "b4_rawsocket_show_route_all.txt").read_bytes().replace(b"0000 \n", b"9001 syntax error\n")
    routes = []
    with pytest.raises(DumpError) as err:
        routes.extend(bird.parse(io.BytesIO(data), "sock"))
    assert err.value.where == f"line {len(data.splitlines())}" and "syntax error" in err.value.message
    assert len(routes) == 15  # every route before the error was yielded


def test_an_unknown_bird_line_is_an_error_with_its_number():
    lines = lab_bird_text().splitlines(keepends=True)
    lines.insert(12, "Network not found\n")
    with pytest.raises(DumpError) as err:
        list(bird.parse(io.BytesIO("".join(lines).encode()), "b4"))
    assert err.value.where == "line 13"


def test_a_bird_route_with_an_empty_net_after_a_table_heading_is_an_error():
    lines = lab_bird_text().splitlines(keepends=True)
    second = next(i for i, line in enumerate(lines) if line.startswith(" " * 21))
    # A heading, then an alternative route (empty net field) and its attributes.
    text = "BIRD 2.0.12 ready.\nTable master4:\n" + "".join(lines[second:second + 9])
    with pytest.raises(DumpError) as err:
        list(bird.parse(io.BytesIO(text.encode()), "b4"))
    assert err.value.where == "line 3" and "without a network" in err.value.message


@pytest.mark.parametrize("bad", [
    "BGP.as_path: 65002 x64512", "BGP.as_path: 65002 4294967296", "BGP.as_path: 65002 {64512",
    "BGP.as_path: 65002 64512}", "BGP.local_pref: many", "BGP.med: -", "BGP.community: (65001,x)",
    "BGP.large_community: (65001, 1)", "BGP.next_hop: 203.0.113.x",
    "BGP.local_pref: 4294967296", "BGP.med: 1" + "0" * 120, "BGP.local_pref: +5",
])
def test_bad_bird_attribute_values_name_their_line(bad):
    name = bad.split(":")[0]
    lines = lab_bird_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if line.startswith(f"\t{name}:"))
    lines[index] = f"\t{bad}\n"
    with pytest.raises(DumpError) as err:
        list(bird.parse(io.BytesIO("".join(lines).encode()), "b4"))
    assert err.value.where == f"line {index + 1}"


def test_an_empty_bird_dump_has_no_routes():
    assert list(bird.parse(io.BytesIO(b""), "b")) == []
    assert list(bird.parse(io.BytesIO(b"BIRD 2.0.12 ready.\n"), "b")) == []
    assert list(bird.parse(io.BytesIO(b"0001 BIRD 2.0.12 ready.\n0000 \n"), "b")) == []


def test_invalid_utf8_in_a_bird_dump_is_replaced_not_fatal():
    data = (LAB_BIRD / "b4_show_route_all.txt").read_bytes().replace(b"[r2 ", b"[r\xff2 ")
    assert len(list(bird.parse(io.BytesIO(data), "b"))) == 16


# --- Quagga / FRR text: real samples --------------------------------------------


FRR_TEXT_COUNTS = {
    "frr-doc__bgp.rst__show_ip_bgp_example.txt": 4,
    "frr-topotest__all_protocol_startup__show_bgp_ipv4-post4.1.ref.txt": 1,
    "frr-topotest__all_protocol_startup__show_bgp_ipv4-post5.0.ref.txt": 1,
    "frr-topotest__all_protocol_startup__show_bgp_ipv4-post6.1.ref.txt": 1,
    "frr-topotest__all_protocol_startup__show_bgp_ipv4.ref.txt": 1,
    "frr-topotest__all_protocol_startup__show_bgp_ipv6-post4.1.ref.txt": 1,
    "frr-topotest__all_protocol_startup__show_bgp_ipv6.ref.txt": 1,
    "frr-topotest__all_protocol_startup__show_bgp_ipv6_post6.1.ref.txt": 1,
}


# Expected outputs of FRR's own tests, which leave out the table's last line.
FRR_WITHOUT_TRAILER = {name for name in FRR_TEXT_COUNTS if name.endswith(".ref.txt")}


@pytest.mark.parametrize("name, count", FRR_TEXT_COUNTS.items())
def test_it_reads_every_route_of_each_frr_text_sample(name, count):
    if name in FRR_WITHOUT_TRAILER:
        with pytest.raises(DumpError, match="does not end with its 'Displayed N routes"):
            frr_text((QUAGGA / name).read_bytes(), name)
    routes = frr_text((QUAGGA / name).read_bytes(), name, accept_truncated=name in FRR_WITHOUT_TRAILER)
    assert len(routes) == count and all(r.best for r in routes)


def test_frr_doc_sample_field_by_field():
    routes = frr_text((QUAGGA / "frr-doc__bgp.rst__show_ip_bgp_example.txt").read_bytes())
    assert routes[0] == ("0.0.0.0/0", Attrs("10.10.10.1", "1", 1, 1, None, 0, ""), True)
    assert [r.prefix for r in routes] == ["0.0.0.0/0", "10.139.224.0/20", "192.0.2.1/32", "192.0.2.5/32"]
    assert all(r.attrs is routes[0].attrs for r in routes)  # one shared Attrs


def test_classful_nets_without_a_length_get_their_natural_mask():
    old = frr_text((QUAGGA / "frr-topotest__all_protocol_startup__show_bgp_ipv4.ref.txt").read_bytes(),
                   accept_truncated=True)
    new = frr_text((QUAGGA / "frr-topotest__all_protocol_startup__show_bgp_ipv4-post5.0.ref.txt").read_bytes(),
                   accept_truncated=True)
    assert old == new == [("192.168.0.0/24", Attrs(None, "", None, None, None, 0, ""), True)]
    # Class A and B, and the default route, as Quagga prints them.
    text = (LAB_FRR / "r3_show_ip_bgp.txt").read_text()
    edited = text.replace("10.0.0.0/8  ", "10.0.0.0    ").replace("172.16.0.0/16", "172.16.0.0   ")
    assert edited != text and frr_text(edited) == frr_text(text)
    doc = (QUAGGA / "frr-doc__bgp.rst__show_ip_bgp_example.txt").read_text().replace("0.0.0.0/0", "0.0.0.0  ")
    assert frr_text(doc)[0].prefix == "0.0.0.0/0"


def test_a_local_route_has_no_next_hop():
    (v6,) = frr_text((QUAGGA / "frr-topotest__all_protocol_startup__show_bgp_ipv6_post6.1.ref.txt").read_bytes(),
                     accept_truncated=True)
    assert v6 == ("fc00::/64", Attrs(None, "", None, None, None, 0, ""), True)


def test_quagga_doc_sample_yields_its_route_then_fails_on_the_texinfo_line():
    routes = []
    with pytest.raises(DumpError) as err:
        routes.extend(frr.parse_text(io.BytesIO((QUAGGA / "quagga-doc__bgpd.texi__show_ip_bgp_example.txt")
                                                .read_bytes()), "quagga-doc"))
    assert routes == [("1.1.1.1/32", Attrs(None, "", None, None, None, 0, ""), True)]
    assert (err.value.source, err.value.where) == ("quagga-doc", "line 8")


def test_frr_lab_table_field_by_field():
    routes = frr_text((LAB_FRR / "r3_show_ip_bgp.txt").read_bytes())
    assert len(routes) == 11 and len(by_prefix(routes)) == 9
    # The second path of 192.0.2.0/24 is the best one; LocPrf is blank (eBGP).
    assert by_prefix(routes)["192.0.2.0/24"] == [
        ("192.0.2.0/24", Attrs("203.0.113.2", "65002 64512", 64512, 65002, None, 0, ""), False),
        ("192.0.2.0/24", Attrs("203.0.113.1", "65001", 65001, 65001, None, 50, ""), True)]
    assert one(routes, "198.51.100.0/25", 1).attrs == Attrs(
        "203.0.113.1", "65001 4200000001 4200000001", 4200000001, 65001, None, 50, "")


def test_wrapped_ipv6_nets_and_next_hops():
    routes = frr_text((LAB_FRR / "r3_show_bgp_ipv6_unicast.txt").read_bytes())
    assert routes == [
        ("2001:db8:1234:5678::/64", Attrs("2001:db8:ffff::2", "65002 64512", 64512, 65002, None, 0, ""), False),
        ("2001:db8:1234:5678::/64", Attrs("2001:db8:ffff::1", "65001", 65001, 65001, None, 50, ""), True),
        ("2001:db8:abcd:ef01:2345::/80", Attrs("2001:db8:ffff::1", "65001", 65001, 65001, None, 50, ""), True)]


def test_the_wide_table_reads_like_the_normal_one():
    assert frr_text((LAB_FRR / "r3_show_bgp_ipv4_unicast_wide.txt").read_bytes()) == \
        frr_text((LAB_FRR / "r3_show_ip_bgp.txt").read_bytes())


def test_the_per_prefix_detail_view_is_refused():
    with pytest.raises(DumpError) as err:
        frr_text((LAB_FRR / "r3_show_bgp_ipv4_unicast_198.51.100.0_25_detail.txt").read_bytes(), "detail")
    assert err.value.where == "line 1" and "detail view" in err.value.message


# --- FRR text: other versions' layouts, made from the lab table -----------------


def relayout(text, rpki, extra, wrap_indent, header=True):
    """The lab table (FRR 8.4) as another FRR prints it: ``rpki`` before the
    status, ``extra`` after it, the numbers of a wrapped next hop indented by
    ``wrap_indent`` instead of 36, and the header shifted to match."""
    out = []
    for line in text.splitlines():
        if line.lstrip().startswith("Network") and header:
            line = " " * (len(rpki) + len(extra)) + line
        elif line[:1] == "*":
            line = rpki + line[:3] + extra + line[3:]
        elif line.startswith(" " * 36):
            line = " " * (wrap_indent - 36) + line
        out.append(line)
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("rpki, extra, wrap_indent, header", [
    ("N", "", 36, False),   # FRR 8.x with an RPKI state: 4 characters, header unchanged
    (" ", "", 38, True),    # FRR 9.0-10.1: the RPKI column always there
    ("V", " ", 38, True),   # FRR 10.2+: 5 characters
])
def test_newer_status_column_widths_read_the_same(rpki, extra, wrap_indent, header):
    for name in ("r3_show_ip_bgp.txt", "r3_show_bgp_ipv6_unicast.txt"):
        text = (LAB_FRR / name).read_text()
        edited = relayout(text, rpki, extra, wrap_indent, header)
        assert edited != text
        assert frr_text(edited) == frr_text(text)


def test_the_internal_flag_may_touch_the_net():
    text = (LAB_FRR / "r3_show_ip_bgp.txt").read_text()
    edited = "".join(line[:2] + "i" + line[3:] if line[:1] == "*" else line
                     for line in text.splitlines(keepends=True))
    assert "*>i10.0.0.0/8" in edited
    assert frr_text(edited) == frr_text(text)


def test_asdot_as_numbers_become_32_bit_integers():
    text = (LAB_FRR / "r3_show_ip_bgp.txt").read_text()
    edited = text.replace("4200000001", f"{4200000001 >> 16}.{4200000001 & 0xFFFF}")
    assert "64086.59905" in edited
    assert frr_text(edited) == frr_text(text)


def test_frr_text_as_sets_and_confederations():
    line = frr_line("*> ", "192.0.2.0/24", "203.0.113.2", 0, None, 0,
                    "(65010 65011) 65002 [65012,65013] {64512,64513}", "?")
    (route,) = frr_text(frr_table(line))
    assert (route.attrs.as_path, route.attrs.origin_as, route.attrs.neighbor_as) == \
        ("65002 {64512 64513}", 65002, 65002)
    (single,) = frr_text(frr_table(frr_line("*> ", "192.0.2.0/24", "203.0.113.2", 0, None, 0, "65002 {64512}", "i")))
    assert (single.attrs.as_path, single.attrs.origin_as) == ("65002 {64512}", 64512)


def test_blank_med_and_present_local_pref_are_told_apart_by_column():
    lines = [frr_line("*>i", "192.0.2.0/24", "203.0.113.2", None, 200, 0, "65002", "i"),
             frr_line("*>i", "192.0.2.128/25", "203.0.113.2", 200, None, 0, "65002", "i")]
    a, b = frr_text(frr_table(*lines))
    assert (a.attrs.med, a.attrs.local_pref) == (None, 200)
    assert (b.attrs.med, b.attrs.local_pref) == (200, None)


def test_a_number_wider_than_its_column_pushes_the_rest_right():
    # MED fills its 10 columns; LocPrf takes 10 of its 7 and shifts Weight.
    line = frr_line("*>i", "192.0.2.0/24", "203.0.113.2", 4294967295, 4294967295, 32768, "65002", "i")
    assert "42949672954294967295  32768 65002 i" in line
    (route,) = frr_text(frr_table(line))
    assert (route.attrs.med, route.attrs.local_pref, route.attrs.as_path) == (4294967295, 4294967295, "65002")


def test_next_hop_decorations_are_removed():
    lines = [frr_line("*> ", "192.0.2.0/24", "203.0.113.2@4<", 0, None, 0, "65002", "i"),
             frr_line("*> ", "192.0.2.128/25", "203.0.113.2(r2)", 0, None, 0, "65002", "i"),
             frr_line("*> ", "198.51.100.0/24", "swp1", 0, None, 0, "65002", "i")]
    hops = [r.attrs.next_hop for r in frr_text(frr_table(*lines))]
    assert hops == ["203.0.113.2", "203.0.113.2", None]  # an interface: BGP unnumbered


# --- FRR text: errors -----------------------------------------------------------


def test_a_bad_frr_line_is_an_error_with_its_number():
    lines = (LAB_FRR / "r3_show_ip_bgp.txt").read_text().splitlines(keepends=True)
    lines.insert(13, "% Unknown command: show ip bgp x\n")
    routes = []
    with pytest.raises(DumpError) as err:
        routes.extend(frr.parse_text(io.BytesIO("".join(lines).encode()), "r3"))
    assert (err.value.source, err.value.where) == ("r3", "line 14")
    assert len(routes) == 4  # the four paths before it


@pytest.mark.parametrize("old, new, message", [
    ("65001 i\n", "65001 x\n", "origin"),
    ("65001 i\n", "650x1 i\n", "AS number"),
    ("65001 i\n", "70000.1 i\n", "AS number"),
    ("203.0.113.1             50", "203.0.113.1             5x", "MED"),
])
def test_bad_frr_fields_are_errors(old, new, message):
    text = (LAB_FRR / "r3_show_ip_bgp.txt").read_text().replace(old, new, 1)
    with pytest.raises(DumpError) as err:
        frr_text(text)
    assert err.value.where == "line 10" and message in err.value.message


def test_a_wrapped_route_cut_short_is_an_error():
    text = (LAB_FRR / "r3_show_bgp_ipv6_unicast.txt").read_text()
    cut = "\n".join(text.splitlines()[:11]) + "\n"  # ends after a wrapped next hop
    with pytest.raises(DumpError) as err:
        frr_text(cut)
    assert err.value.where == "line 10" and "cut short" in err.value.message
    broken = text.replace("                    2001:db8:ffff::2\n", "*> 2001:db8:ffff::2\n", 1)
    with pytest.raises(DumpError) as err:
        frr_text(broken)
    assert err.value.where == "line 11"


def test_an_empty_table_has_no_routes():
    assert frr_text("") == []
    assert frr_text("No BGP prefixes displayed, 0 exist\n") == []


# --- FRR JSON -------------------------------------------------------------------


FRR_JSON_COUNTS = {
    "frr-topotest__bgp_asdot_regex__r1__show_bgp_ipv4.asdot.json": 3,
    "frr-topotest__bgp_confed1__r3__bgp_ipv4_unicast.json": 5,
    "frr-topotest__bgp_route_server_client__r2__show_bgp_ipv6_step1.PARTIAL.json": 12,
    "frr-topotest__bgp_vpnv4_ebgp__r100__show_bgp_ipv4.json": 7,
}


@pytest.mark.parametrize("name, count", FRR_JSON_COUNTS.items())
def test_it_reads_every_route_of_each_frr_json_sample(name, count):
    assert len(frr_json((QUAGGA / name).read_bytes(), name)) == count


def test_the_lab_json_reads_like_the_lab_table():
    assert frr_json((LAB_FRR / "r3_show_bgp_ipv4_unicast.json").read_bytes()) == \
        frr_text((LAB_FRR / "r3_show_ip_bgp.txt").read_bytes())
    assert frr_json((LAB_FRR / "r3_show_bgp_ipv6_unicast.json").read_bytes()) == \
        frr_text((LAB_FRR / "r3_show_bgp_ipv6_unicast.txt").read_bytes())


def test_json_asdot_paths():
    routes = frr_json((QUAGGA / "frr-topotest__bgp_asdot_regex__r1__show_bgp_ipv4.asdot.json").read_bytes())
    assert routes[2] == ("172.31.3.0/24", Attrs("192.168.255.2", "65538 65540", 65540, 65538, None, 0, ""), True)
    assert routes[0].attrs == Attrs(None, "65540", 65540, 65540, None, 0, "")


@pytest.mark.parametrize("field, value", [("locPrf", 2 ** 32), ("metric", -1), ("metric", 10 ** 120)])
def test_a_med_or_local_pref_outside_32_bits_is_refused(field, value):
    doc = {"routes": {"192.0.2.0/24": [{"valid": True, "bestpath": True, "path": "65001", "origin": "IGP",
                                         field: value, "nexthops": [{"ip": "198.51.100.1"}]}]}}
    with pytest.raises(DumpError, match=f"{field} {value} is not in 0..2\\^32-1"):
        frr_json(json.dumps(doc))
    line = frr_line("*> ", "192.0.2.0/24", "198.51.100.1", None, 2 ** 32, 0, "65001", "i")
    with pytest.raises(DumpError, match="LocPrf 4294967296 is over 2\\^32-1"):
        frr_text(frr_table(line))


def test_json_confederation_segments_are_left_out():
    routes = by_prefix(frr_json((QUAGGA / "frr-topotest__bgp_confed1__r3__bgp_ipv4_unicast.json").read_bytes()))
    assert routes["203.0.113.0/28"][0].attrs == Attrs("192.0.2.1", "100", 100, 100, None, None, "")
    assert routes["0.0.0.0/0"][0].attrs.as_path == ""  # "(200)": only the confederation
    # This expected-output file leaves 'bestpath' out: nothing is best.
    assert not any(r.best for paths in routes.values() for r in paths)


def test_json_takes_the_global_ipv6_next_hop():
    name = "frr-topotest__bgp_route_server_client__r2__show_bgp_ipv6_step1.PARTIAL.json"
    routes = by_prefix(frr_json((QUAGGA / name).read_bytes()))
    # The global hop is not 'used' (the link-local one is); it is still the one.
    assert [r.attrs.next_hop for r in routes["2001:db8:1::/64"]] == ["2001:db8:1::4", "2001:db8:1::2",
                                                                     "2001:db8:1::3"]


def test_json_without_path_key_is_an_empty_path():
    routes = frr_json((QUAGGA / "frr-topotest__bgp_vpnv4_ebgp__r100__show_bgp_ipv4.json").read_bytes())
    assert routes[0] == ("172.31.0.1/32", Attrs("172.31.2.1", "", None, None, 100, 0, ""), True)
    assert routes[1].attrs.as_path == "65501"


def test_parse_sniffs_json_and_text():
    for path in (LAB_FRR / "r3_show_bgp_ipv4_unicast.json", LAB_FRR / "r3_show_ip_bgp.txt"):
        data = path.read_bytes()
        assert list(frr.parse(io.BytesIO(b" \n\t\n" + data), "x")) == frr_text(
            (LAB_FRR / "r3_show_ip_bgp.txt").read_bytes())


def test_json_read_in_tiny_chunks_gives_the_same_routes(monkeypatch):
    data = (LAB_FRR / "r3_show_bgp_ipv4_unicast.json").read_bytes()
    whole = frr_json(data)
    monkeypatch.setattr(frr._Json, "CHUNK", 7)
    monkeypatch.setattr(frr._Json, "MARGIN", 8)  # more than 'false' cut short
    assert frr_json(data) == whole


def test_truncated_json_is_an_error_at_its_end_after_the_complete_prefixes():
    data = (LAB_FRR / "r3_show_bgp_ipv4_unicast.json").read_bytes()
    cut = data[:data.index(b',"192.0.2.0/24"') + 1]
    routes = []
    with pytest.raises(DumpError) as err:
        routes.extend(frr.parse_json(io.BytesIO(cut), "r3.json"))
    assert (err.value.source, err.value.where) == ("r3.json", f"byte {len(cut)}")
    assert "truncated" in err.value.message
    assert [r.prefix for r in routes] == ["10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/16"]
    mid = data[:data.index(b'"path":"65001 4200000001') + 12]
    with pytest.raises(DumpError) as err:
        frr_json(mid)
    assert "truncated" in err.value.message


def test_a_json_syntax_error_names_its_byte_offset_in_bytes_not_characters():
    data = (LAB_FRR / "r3_show_bgp_ipv4_unicast.json").read_bytes()
    data = data.replace(b'"hostname":"r1"', '"hostname":"r1-\u00e9\u00e9"'.encode(), 1)
    at = data.index(b'"version":203') + len(b'"version"')
    bad = data[:at] + b";" + data[at + 1:]
    with pytest.raises(DumpError) as err:
        frr_json(bad)
    assert err.value.where == f"byte {at}"
    assert "truncated" not in err.value.message


def test_json_errors_for_wrong_shapes():
    with pytest.raises(DumpError) as err:
        frr_json('{"default": {"routes": {}}}')
    assert "routes" in err.value.message
    with pytest.raises(DumpError) as err:
        frr_json('{"routes": {"10.0.0.0/33": []}}')
    assert err.value.where == "byte 12"
    with pytest.raises(DumpError):
        frr_json('{"routes": {"10.0.0.0/8": [{"nexthops": [], "path": "1 x"}]}}')
    with pytest.raises(DumpError):
        frr_json('{"routes": {}} trailing')


def test_json_totals_must_match_what_was_read():
    data = (QUAGGA / "frr-topotest__bgp_vpnv4_ebgp__r100__show_bgp_ipv4.json").read_text()
    assert '"totalPaths": 7' in data and len(frr_json(data)) == 7
    with pytest.raises(DumpError, match="totalPaths is 6, but 7 were read") as err:
        frr_json(data.replace('"totalPaths": 7', '"totalPaths": 6'))
    assert err.value.where.startswith("byte ")


def test_frr_text_trailer_counts_must_match_what_was_read():
    text = (LAB_FRR / "r3_show_ip_bgp.txt").read_text()
    assert "Displayed  9 routes and 11 total paths" in text
    for said, message in (("Displayed  9 routes and 10 total paths", "says 9 routes and 10 paths"),
                          ("Displayed  8 routes and 11 total paths", "says 8 routes and 11 paths"),
                          ("Total number of prefixes 8", "says 8 prefixes")):
        with pytest.raises(DumpError, match=message):
            frr_text(text.replace("Displayed  9 routes and 11 total paths", said))
    assert len(frr_text(text.replace("Displayed  9 routes and 11 total paths", "Total number of prefixes 9"))) == 11
    two = text + text  # two tables, each with its last line
    assert len(frr_text(two)) == 22
    cut_first = text[:text.index("Displayed")] + text
    with pytest.raises(DumpError, match="the one before has no 'Displayed N routes' line"):
        frr_text(cut_first)


def test_empty_json_outputs_have_no_routes():
    assert frr_json("") == []
    assert frr_json("{}\n") == []
    assert frr_json('{"vrfId": 0, "routes": {  }  }') == []


# --- dumps cut short ------------------------------------------------------------

# Real captures and the parser that reads each; "strict": the format has an
# end mark (BIRD's socket reply, FRR's trailer, a whole JSON document).
CUT_CASES = {
    "bird2-socket": (bird.parse, LAB_BIRD / "b4_rawsocket_show_route_all.txt", True),
    "bird1-socket": (bird.parse, BIRD_DIR / "pybird__all000.bird1_4.rawsocket.txt", True),
    "bird2-birdc": (bird.parse, LAB_BIRD / "b4_show_route_all.txt", False),
    "bird1-birdc": (bird.parse, BIRD_DIR / "birdwatcher__routes_bird1_ipv4.sample", False),
    "frr-text": (frr.parse_text, LAB_FRR / "r3_show_ip_bgp.txt", True),
    "frr-text-wrapped": (frr.parse_text, LAB_FRR / "r3_show_bgp_ipv6_unicast.txt", True),
    "frr-text-wide": (frr.parse_text, LAB_FRR / "r3_show_bgp_ipv4_unicast_wide.txt", True),
    "frr-doc": (frr.parse_text, QUAGGA / "frr-doc__bgp.rst__show_ip_bgp_example.txt", True),
    "frr-json": (frr.parse_json, LAB_FRR / "r3_show_bgp_ipv4_unicast.json", True),
    "frr-json-v6": (frr.parse, LAB_FRR / "r3_show_bgp_ipv6_unicast.json", True),
}


def cuts(data: bytes) -> list[int]:
    """Every byte of the last 500 (the last routes and the end mark), every 11th before."""
    tail = max(0, len(data) - 500)
    return list(range(0, tail, 11)) + list(range(tail, len(data) + 1))


@pytest.mark.parametrize("case", CUT_CASES)
def test_a_dump_cut_anywhere_is_refused_unless_nothing_it_needs_was_cut(case):
    parse, path, strict = CUT_CASES[case]
    data = path.read_bytes()
    full = list(parse(io.BytesIO(data), path.name))
    assert full
    accepted = 0
    for k in cuts(data):
        try:
            routes = list(parse(io.BytesIO(data[:k]), "cut"))
        except DumpError as exc:
            assert exc.source == "cut" and exc.where.split()[0] in ("line", "byte")
            continue
        accepted += 1
        if k == 0:  # nothing at all: no routes (which the loader refuses)
            assert routes == []
            continue
        if strict:
            # Only what follows the end mark (white space) may be missing.
            assert not data[k:].strip() and routes == full, k
            continue
        # birdc's output has no end mark: a cut is refused unless it falls at the
        # end of a line, and then only the last route can miss lines, none that
        # BIRD prints for every BGP route (its AS path and next hop are whole).
        assert data[:k].endswith(b"\n"), k
        if routes != full[:len(routes)]:
            last, whole = routes[-1], full[len(routes) - 1]
            assert routes[:-1] == full[:len(routes) - 1], k
            assert (last.prefix, last.best, last.attrs[:4]) == (whole.prefix, whole.best, whole.attrs[:4]), k
    assert accepted >= 1  # the whole dump at least


# --- nothing left out -------------------------------------------------------------

# Samples read by the tests above by name, besides the count tables.
READ_BY_NAME = {
    "b4_show_route.txt", "b4_show_route_primary.txt",                       # refused: no 'all'
    "quagga-doc__bgpd.texi__show_ip_bgp_example.txt",                       # a route, then an error
    "r3_show_ip_bgp.txt", "r3_show_bgp_ipv6_unicast.txt", "r3_show_bgp_ipv4_unicast_wide.txt",
    "r3_show_bgp_ipv4_unicast.json", "r3_show_bgp_ipv6_unicast.json",
    "r3_show_bgp_ipv4_unicast_198.51.100.0_25_detail.txt",                  # refused: detail view
}


def test_every_text_and_json_sample_is_tested():
    files = {p.name for d in (BIRD_DIR, QUAGGA, LAB_BIRD, LAB_FRR) for p in d.iterdir()
             if p.is_file() and p.name != "SOURCE.txt"}
    tested = set(BIRD_COUNTS) | set(LAB_BIRD_COUNTS) | set(FRR_TEXT_COUNTS) | set(FRR_JSON_COUNTS) | READ_BY_NAME
    assert files == tested
