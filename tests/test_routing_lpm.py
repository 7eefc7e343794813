"""The longest-prefix-match engine against a brute-force oracle (ipaddress
containment), and its edge cases: nesting, duplicates, default and host
routes, IPv6 longer than /64, IPv4 and IPv6 kept apart."""
import ipaddress
import random

import numpy as np
import pytest

from ipr.routing import lpm


def oracle(prefixes, address):
    """Index of the longest prefix containing ``address``, the first of equals; -1 if none."""
    addr = ipaddress.ip_address(address)
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    best, best_len = -1, -1
    for i, text in enumerate(prefixes):
        net = ipaddress.ip_network(text)
        if net.version == addr.version and addr in net and net.prefixlen > best_len:
            best, best_len = i, net.prefixlen
    return best


def random_prefixes(rng: random.Random, count: int) -> list[str]:
    """Nested, duplicated, mixed-family prefixes in a small space, so that
    most addresses meet several of them."""
    out: list[str] = []
    for _ in range(count):
        roll = rng.random()
        if out and roll < 0.08:
            out.append(rng.choice(out))                       # an equal prefix again
            continue
        if out and roll < 0.65:
            parent = ipaddress.ip_network(rng.choice(out))    # a more specific inside one
            bits = parent.max_prefixlen
            length = rng.randint(parent.prefixlen, bits)
            host = rng.getrandbits(bits - parent.prefixlen)
            net = ipaddress.ip_network((int(parent.network_address) | host, bits))
            out.append(str(net.supernet(new_prefix=length)))
            continue
        if rng.random() < 0.5:
            base = rng.choice([0x0A000000, 0xC0A80000, 0xCB007100])
            addr = base | rng.getrandbits(16)
            length = rng.choice([0, 8, 12, 16, 18, 20, 22, 23, 24, 25, 28, 30, 31, 32])
            out.append(str(ipaddress.IPv4Network((addr, 32)).supernet(new_prefix=length)))
        else:
            addr = 0x20010DB8 << 96 | rng.getrandbits(40) << 56 | rng.getrandbits(56) * rng.randint(0, 1)
            length = rng.choice([0, 16, 29, 32, 40, 48, 56, 64, 65, 72, 96, 112, 127, 128])
            out.append(str(ipaddress.IPv6Network((addr, 128)).supernet(new_prefix=length)))
    return out


def random_addresses(rng: random.Random, prefixes: list[str], count: int) -> list[str]:
    out = []
    for _ in range(count):
        if rng.random() < 0.7:
            net = ipaddress.ip_network(rng.choice(prefixes))
            host = rng.randrange(net.num_addresses) if rng.random() < 0.8 else \
                rng.choice([0, net.num_addresses - 1])        # the edges of a prefix
            out.append(str(net.network_address + host))
        elif rng.random() < 0.5:
            out.append(str(ipaddress.IPv4Address(rng.choice([0x0A000000, 0xC0A80000, rng.getrandbits(32)])
                                                 | rng.getrandbits(16))))
        else:
            out.append(str(ipaddress.IPv6Address(0x20010DB8 << 96 | rng.getrandbits(96))))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_it_agrees_with_brute_force_containment(seed):
    rng = random.Random(seed)
    prefixes = random_prefixes(rng, 500)
    addresses = random_addresses(rng, prefixes, 1000)
    table = lpm.Table.build((p, 1000 + i) for i, p in enumerate(prefixes))
    expected = [oracle(prefixes, a) for a in addresses]
    assert table.match_many(lpm.pack(addresses)).tolist() == expected
    assert table.lookup_many(lpm.pack(addresses)).tolist() == [-1 if e < 0 else 1000 + e for e in expected]
    assert sum(e >= 0 for e in expected) > 600          # the test does exercise matches
    assert any(ipaddress.ip_network(prefixes[e]).prefixlen > 64 for e in expected if e >= 0
               and ":" in prefixes[e])


def test_nested_prefixes_give_the_most_specific():
    table = lpm.Table.build([("10.0.0.0/8", 1), ("10.1.0.0/16", 2), ("10.1.2.0/24", 3),
                             ("10.1.2.128/25", 4), ("10.1.2.128/32", 5)])
    got = [table.lookup(a) for a in ["10.0.0.0", "10.1.0.0", "10.1.1.255", "10.1.2.0", "10.1.2.127",
                                     "10.1.2.128", "10.1.2.129", "10.1.2.255", "10.1.3.0", "10.255.255.255",
                                     "11.0.0.0", "9.255.255.255"]]
    assert got == [1, 2, 2, 3, 3, 5, 4, 4, 2, 1, -1, -1]


def test_of_equal_prefixes_the_first_wins():
    table = lpm.Table.build([("192.0.2.0/24", 7), ("2001:db8::/32", 8), ("192.0.2.0/24", 9),
                             ("2001:db8::/32", 10), ("192.0.2.0/24", 11)])
    assert table.match("192.0.2.1") == 0 and table.lookup("192.0.2.1") == 7
    assert table.match("2001:db8::1") == 1 and table.lookup("2001:db8::1") == 8
    assert len(table) == 5


def test_default_routes_catch_everything_of_their_family():
    table = lpm.Table.build([("0.0.0.0/0", 4), ("::/0", 6), ("10.0.0.0/8", 8)])
    addrs = ["0.0.0.0", "255.255.255.255", "10.9.9.9", "::", "::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
             "2001:db8::1"]
    assert table.lookup_many(lpm.pack(addrs)).tolist() == [4, 4, 8, 6, 6, 6, 6]


def test_host_routes_at_the_edges_of_the_address_space():
    top6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    table = lpm.Table.build([("0.0.0.0/32", 1), ("255.255.255.255/32", 2), ("192.0.2.1/32", 3),
                             ("::/128", 4), (f"{top6}/128", 5), ("2001:db8::1/128", 6)])
    addrs = ["0.0.0.0", "0.0.0.1", "255.255.255.254", "255.255.255.255", "192.0.2.0", "192.0.2.1",
             "192.0.2.2", "::", "::1", top6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
             "2001:db8::", "2001:db8::1", "2001:db8::2"]
    assert table.lookup_many(lpm.pack(addrs)).tolist() == [1, -1, -1, 2, -1, 3, -1, 4, -1, 5, -1, -1, 6, -1]


def test_ipv6_prefixes_longer_than_64_are_exact():
    table = lpm.Table.build([("2001:db8:0:1::/64", 1), ("2001:db8:0:1:8000::/65", 2),
                             ("2001:db8:0:1::100:0/120", 3), ("2001:db8:0:1::100:80/121", 4),
                             ("2001:db8:0:1::100:ff/128", 5), ("2001:db8:0:2::/127", 6)])
    cases = {
        "2001:db8:0:1::": 1, "2001:db8:0:1:7fff:ffff:ffff:ffff": 1, "2001:db8:0:1:8000::": 2,
        "2001:db8:0:1:ffff:ffff:ffff:ffff": 2, "2001:db8:0:1::ff:ffff": 1, "2001:db8:0:1::100:0": 3,
        "2001:db8:0:1::100:7f": 3, "2001:db8:0:1::100:80": 4, "2001:db8:0:1::100:fe": 4,
        "2001:db8:0:1::100:ff": 5, "2001:db8:0:1::101:0": 1, "2001:db8:0:2::": 6, "2001:db8:0:2::1": 6,
        "2001:db8:0:2::2": -1, "2001:db8:0:0:ffff:ffff:ffff:ffff": -1, "2001:db8:0:3::": -1,
    }
    assert table.lookup_many(lpm.pack(list(cases))).tolist() == list(cases.values())
    assert table.prefix_of("2001:db8:0:1::100:90") == "2001:db8:0:1::100:80/121"


def test_ipv4_addresses_match_only_ipv4_prefixes_and_ipv6_only_ipv6():
    v6_only = lpm.Table.build([("::/0", 1), ("::ffff:0:0/96", 2), ("::/96", 3)])
    assert v6_only.lookup("10.1.2.3") == -1
    assert v6_only.lookup("::ffff:10.1.2.3") == -1       # the spool's form of 10.1.2.3
    assert v6_only.lookup("::10.1.2.3") == 3             # IPv4-compatible is plain IPv6
    v4_only = lpm.Table.build([("0.0.0.0/0", 1)])
    assert v4_only.lookup_many(lpm.pack(["::1", "::", "2001:db8::", "::a01:203"])).tolist() == [-1] * 4
    assert v4_only.lookup("::ffff:10.1.2.3") == 1


def test_an_empty_table_matches_nothing():
    table = lpm.Table.build([])
    assert len(table) == 0
    assert table.lookup_many(lpm.pack(["10.0.0.1", "::1"])).tolist() == [-1, -1]
    assert table.match_many(np.empty(0, dtype="V16")).tolist() == []
    assert table.nbytes < 200


def test_addresses_may_come_as_bytes_rows_or_a_strided_spool_field():
    table = lpm.Table.build([("198.51.100.0/24", 1), ("2001:db8::/32", 2)])
    texts = ["198.51.100.7", "2001:db8::7", "203.0.113.1"]
    packed = lpm.pack(texts)
    rows = np.zeros(3, dtype=[("minute", "<u4"), ("client", "V16"), ("server", "V16")])
    rows["client"] = packed
    as_uint8 = np.frombuffer(packed.tobytes(), dtype=np.uint8).reshape(-1, 16)
    for addrs in (packed, rows["client"], as_uint8):
        assert table.lookup_many(addrs).tolist() == [1, 2, -1]
    with pytest.raises(TypeError):
        table.lookup_many(np.zeros(3, dtype=np.uint32))


def test_prefix_gives_the_matched_prefix_canonically():
    table = lpm.Table.build([("10.0.0.0/8", 0), ("2001:0db8:0000::/32", 0), ("192.0.2.1", 0), ("::1", 0)])
    assert [table.prefix(i) for i in range(4)] == ["10.0.0.0/8", "2001:db8::/32", "192.0.2.1/32", "::1/128"]
    assert table.match_many(lpm.pack(["10.2.3.4", "2001:db8:1::", "192.0.2.1", "::1"])).tolist() == [0, 1, 2, 3]
    assert table.prefix_of("10.200.0.1") == "10.0.0.0/8"
    assert table.prefix_of("11.0.0.1") is None


@pytest.mark.parametrize("items, message", [
    ([("10.0.0.0/8", 1), ("10.0.0.1/24", 2)], "item 1: host bits set"),
    ([("2001:db8::1/64", 1)], "item 0: host bits set"),
    ([("10.0.0.0/33", 1)], "item 0: prefix length over 32"),
    ([("::/129", 1)], "item 0: prefix length over 128"),
    ([("10.0.0.0/8", 1), ("10.0.0/8", 2)], "item 1: not a"),
    ([("10.0.0.0/x", 1)], "item 0: not a"),
    ([("10.0.0.0/8", 1), ("11.0.0.0/8", -3)], "item 1: negative value"),
    ([("10.0.0.0/8", None)], "item 0: not a"),
])
def test_it_refuses_what_is_not_a_prefix(items, message):
    with pytest.raises(ValueError, match=message):
        lpm.Table.build(items)


def test_nbytes_grows_with_the_table():
    small = lpm.Table.build([("10.0.0.0/8", 0)])
    big = lpm.Table.build((f"10.{i // 256}.{i % 256}.0/24", i) for i in range(10_000))
    assert big.nbytes > small.nbytes + 10_000 * 8
    assert big.lookup("10.39.15.1") == 39 * 256 + 15


def test_a_table_saved_as_arrays_loads_back_identical(tmp_path):
    rng = random.Random(9)
    prefixes = random_prefixes(rng, 300)
    addresses = lpm.pack(random_addresses(rng, prefixes, 500))
    table = lpm.Table.build((p, i * 3) for i, p in enumerate(prefixes))
    np.savez(tmp_path / "engine.npz", **table.arrays())
    with np.load(tmp_path / "engine.npz", allow_pickle=False) as npz:
        loaded = lpm.Table.from_arrays(npz)
    assert loaded.lookup_many(addresses).tolist() == table.lookup_many(addresses).tolist()
    assert [loaded.prefix(i) for i in range(len(prefixes))] == [table.prefix(i) for i in range(len(prefixes))]
    assert loaded.nbytes == table.nbytes
    arrays = table.arrays()
    del arrays["_b4"]
    with pytest.raises(ValueError, match="_b4 missing"):
        lpm.Table.from_arrays(arrays)


def packed(prefixes):
    """(v6, length, 16 address bytes) of prefix texts, as build_packed takes them."""
    nets = [ipaddress.ip_network(p) for p in prefixes]
    addr = np.zeros((len(nets), 16), np.uint8)
    for i, net in enumerate(nets):
        raw = net.network_address.packed
        addr[i, :len(raw)] = list(raw)
    return (np.array([n.version == 6 for n in nets], bool), np.array([n.prefixlen for n in nets], np.uint8), addr)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_table_built_from_arrays_is_the_table_built_from_text(seed):
    rng = random.Random(seed)
    prefixes = random_prefixes(rng, 2000)
    values = [rng.randrange(1 << 40) for _ in prefixes]
    from_text = lpm.Table.build(zip(prefixes, values))
    from_arrays = lpm.Table.build_packed(*packed(prefixes), np.array(values))
    text_arrays, packed_arrays = from_text.arrays(), from_arrays.arrays()
    assert text_arrays.keys() == packed_arrays.keys()
    for name, value in text_arrays.items():
        assert packed_arrays[name].dtype == value.dtype and np.array_equal(packed_arrays[name], value), name
    addresses = lpm.pack(random_addresses(rng, prefixes, 3000))
    assert from_arrays.lookup_many(addresses).tolist() == from_text.lookup_many(addresses).tolist()


def test_networks_of_a_table_build_it_again():
    prefixes = random_prefixes(random.Random(5), 500)
    table = lpm.Table.build((p, i) for i, p in enumerate(prefixes))
    again = lpm.Table.build_packed(*table.networks(range(len(table))))
    assert [again.prefix(i) for i in range(len(again))] == [table.prefix(i) for i in range(len(table))]
    assert again.values.tolist() == list(range(len(prefixes)))
    assert lpm.Table.build_packed(*packed([])).lookup("10.0.0.1") == -1


@pytest.mark.parametrize("prefixes, values, message", [
    (["10.0.0.0/8", "10.0.0.1/24"], None, "item 1: host bits set"),
    (["2001:db8::1/64"], None, "item 0: host bits set"),
    (["10.0.0.0/8", "11.0.0.0/8"], [1, -3], "item 1: negative value"),
])
def test_a_table_from_arrays_refuses_what_build_refuses(prefixes, values, message):
    v6, plen, addr = packed([p.split("/")[0] + "/32" if "." in p else p.split("/")[0] + "/128" for p in prefixes])
    plen = np.array([int(p.split("/")[1]) for p in prefixes], np.uint8)
    with pytest.raises(ValueError, match=message):
        lpm.Table.build_packed(v6, plen, addr, None if values is None else np.array(values))
    with pytest.raises(ValueError, match=message):
        lpm.Table.build(zip(prefixes, values or range(len(prefixes))))


def test_a_table_from_arrays_refuses_bad_lengths_and_stray_bytes():
    v6, plen, addr = packed(["10.0.0.0/8", "2001:db8::/32"])
    with pytest.raises(ValueError, match="item 0: prefix length over 32"):
        lpm.Table.build_packed(v6, np.array([33, 32], np.uint8), addr)
    with pytest.raises(ValueError, match="item 1: prefix length over 128"):
        lpm.Table.build_packed(v6, np.array([8, 200], np.uint8), addr)
    stray = addr.copy()
    stray[0, 7] = 1
    with pytest.raises(ValueError, match="item 0: IPv4 address with bytes past the fourth set"):
        lpm.Table.build_packed(v6, plen, stray)
    with pytest.raises(ValueError, match=r"must be \(n,\), \(n,\) and \(n, 16\) uint8"):
        lpm.Table.build_packed(v6, plen, addr[:, :4])
    with pytest.raises(ValueError, match="item 1: not a prefix length"):
        lpm.Table.build_packed(v6, np.array([8, 300]), addr)
