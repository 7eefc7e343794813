"""Country data (RIR delegated files, .mmdb) and AS names: parsed from real
samples and real files, with exact answers and the errors naming the line."""
import io
import ipaddress
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ipr.routing import lpm
from ipr.routing.dumps import DumpError, asnames, mmdb, rir

RIR_SAMPLES = Path(__file__).resolve().parents[2] / "shared/formats/samples/rir"  # beside the repository
AFRINIC = RIR_SAMPLES / "delegated-afrinic-extended-20240105.txt"
RIPE_EXCERPT = RIR_SAMPLES / "EXCERPT__ripencc-20140630__edgecases.txt"
AFRINIC_LACNIC_EXCERPT = RIR_SAMPLES / "EXCERPT__afrinic+lacnic-extended__edgecases.txt"


def rir_text(*lines: str) -> io.BytesIO:
    return io.BytesIO(("\n".join(lines) + "\n").encode())


HEADER = "2|ripencc|1404165599|85681|19830705|20140630|+0200"


# -- RIR delegated files -------------------------------------------------------

def test_ripe_counts_split_into_exact_blocks():
    with open(RIPE_EXCERPT, "rb") as f:
        got = list(rir.parse(f, source="ripe"))
    assert got == [
        ("2.0.0.0/12", "FR"),
        ("2.16.0.0/13", "EU"),
        ("2001:600::/32", "EU"),
        ("46.175.64.0/20", "UA"), ("46.175.80.0/21", "UA"),          # 6144 = 4096 + 2048
        ("81.186.0.0/17", "GR"), ("81.186.128.0/18", "GR"), ("81.186.192.0/19", "GR"),
        ("91.142.129.0/24", "LU"), ("91.142.130.0/24", "LU"),        # 512, misaligned
    ]


def test_concatenated_afrinic_and_lacnic_files_skip_available_reserved_and_zz():
    with open(AFRINIC_LACNIC_EXCERPT, "rb") as f:
        got = list(rir.parse(f, source="excerpt"))
    assert got == [
        ("164.146.0.0/15", "ZA"), ("164.148.0.0/14", "ZA"),          # 393216, not a power of two
        ("168.209.0.0/16", "ZA"), ("168.210.0.0/16", "ZA"),          # 131072 on an odd /16
        ("196.4.20.0/22", "ZA"), ("196.4.24.0/22", "ZA"), ("196.4.28.0/23", "ZA"),
        ("2001:1200::/32", "MX"), ("2001:1208::/32", "MX"),
    ]


def afrinic_records(kind):
    with open(AFRINIC) as f:
        rows = [line.rstrip("\n").split("|") for line in f]
    return [r for r in rows if len(r) >= 7 and r[2] == kind and r[6] in ("allocated", "assigned")]


def test_the_full_afrinic_file_covers_exactly_its_allocated_and_assigned_addresses():
    with open(AFRINIC, "rb") as f:
        got = list(rir.parse(f, source=str(AFRINIC)))
    v4 = [ipaddress.ip_network(p) for p, _ in got if ":" not in p]
    v6 = [ipaddress.ip_network(p) for p, _ in got if ":" in p]
    records4, records6 = afrinic_records("ipv4"), afrinic_records("ipv6")
    assert sum(n.num_addresses for n in v4) == sum(int(r[4]) for r in records4)
    assert len(v4) > len(records4)                     # some counts needed several blocks
    assert len(v6) == len(records6)
    assert [str(n) for n in v6] == [str(ipaddress.ip_network(f"{r[3]}/{r[4]}")) for r in records6]
    assert all(str(ipaddress.ip_network(p)) == p for p, _ in got)   # canonical text
    ordered = sorted(v4)
    assert all(a.broadcast_address < b.network_address for a, b in zip(ordered, ordered[1:]))
    assert {cc for _, cc in got} >= {"ZA", "EG", "NG", "KE", "MU"} and "ZZ" not in {cc for _, cc in got}


def test_asn_countries_expand_allocated_asns():
    with open(AFRINIC, "rb") as f:
        got = list(rir.asn_countries(f, source="afrinic"))
    records = afrinic_records("asn")
    assert len(got) == sum(int(r[4]) for r in records)
    assert got[0] == (1228, "ZA") and (2561, "EG") in got
    assert 8770 not in {asn for asn, _ in got}          # available, cc ZZ
    ranges = list(rir.asn_countries(rir_text(
        "2|apnic|20140701|3|19850701|20140630|+1000", "apnic|*|asn|*|1|summary",
        "apnic|JP|asn|7500|3|19970101|allocated", "apnic|AU|ipv4|1.0.0.0|256|20110811|assigned")))
    assert ranges == [(7500, "JP"), (7501, "JP"), (7502, "JP")]


def test_comments_blank_lines_crlf_extra_fields_and_no_country_in_the_nro_file():
    stream = io.BytesIO(b"# delegated-extended, all RIRs\r\n#\r\n\r\n"
                        b"2.3|nro|20240122|4|19820101|20240122|+0000\r\n"
                        b"nro|*|ipv4|*|3|summary\r\n"
                        b"apnic|AU|ipv4|1.0.0.0|256|20110811|assigned|A91872ED|e-stats\r\n"
                        b"arin|US|ipv4|3.0.0.0|16777216|19880223|allocated|e5e3b9c13678dfd|e-stats\r\n"
                        b"ripencc|DE|ipv6|2a00:1000::|24|20080722|allocated|c8d6bd5c|e-stats\r\n"
                        b"ripencc|ZZ|ipv4|5.0.0.0|256|20080722|allocated|c8d6bd5c|e-stats\r\n"
                        b"lacnic||ipv4|6.0.0.0|256|20080722|assigned\r\n"
                        b"lacnic|BR|asn|1916|1|19980601|allocated|2434|e-stats\r\n")
    assert list(rir.parse(stream, "nro")) == [("1.0.0.0/24", "AU"), ("3.0.0.0/8", "US"),
                                              ("2a00:1000::/24", "DE")]


def test_blocks_equal_summarize_address_range():
    rng = random.Random(7)
    cases = [(0, 1 << 32), (0xFFFFFF00, 256), (0xFFFFFFFF, 1), (1, 1)]
    cases += [(s, rng.randint(1, min(1 << rng.randint(0, 24), (1 << 32) - s)))
              for s in (rng.getrandbits(32) & ~((1 << rng.randint(0, 16)) - 1) for _ in range(500))]
    for first, count in cases:
        expected = [(int(n.network_address), n.prefixlen) for n in ipaddress.summarize_address_range(
            ipaddress.IPv4Address(first), ipaddress.IPv4Address(first + count - 1))]
        assert list(rir.cidr_blocks(first, count)) == expected, (first, count)


@pytest.mark.parametrize("lines, where, message", [
    (["ripencc|UA|ipv4|46.175.64.0|6144|20110208|assigned"], "line 1", "expected the header"),
    (["# only a comment", HEADER, "ripencc|UA|ipv4|46.175.64.0|6144|20110208"], "line 3", "6 fields"),
    ([HEADER, "ripencc|UA|ipv4|46.175.300.0|256|20110208|assigned"], "line 2", "bad IPv4 start"),
    ([HEADER, "ripencc|NL|ipv4|10.0.0.\x000|768|20100101|allocated"], "line 2", "bad IPv4 start"),
    ([HEADER, "ripencc|NL|ipv6|2001:db8::\x00|32|20100101|allocated"], "line 2", "bad IPv6 range"),
    ([HEADER, "ripencc|UA|ipv4|46.175.64.0|" + "7" * 5000 + "|20110208|assigned"], "line 2", "bad value"),
    ([HEADER, "ripencc|UA|ipv4|255.255.255.0|512|20110208|assigned"], "line 2", "runs past"),
    ([HEADER, "", "ripencc|UA|ipv4|46.175.64.0|lots|20110208|assigned"], "line 3", "bad value"),
    ([HEADER, "ripencc|UA|ipv4|46.175.64.0|0|20110208|assigned"], "line 2", "bad value"),
    ([HEADER, "ripencc|UA|ipv4|46.175.64.0|256|20110208|sold"], "line 2", "unknown status"),
    ([HEADER, "ripencc|UA|ipv5|46.175.64.0|256|20110208|assigned"], "line 2", "unknown type"),
    ([HEADER, "ripencc|U1|ipv4|46.175.64.0|256|20110208|assigned"], "line 2", "bad country code"),
    ([HEADER, "ripencc|EU|ipv6|2001:600::1|32|19990826|allocated"], "line 2", "bad IPv6 range"),
    ([HEADER, "ripencc|EU|ipv6|2001:600::|129|19990826|allocated"], "line 2", "over 128"),
    (["2|ripencc|1"], "line 1", "header with fewer"),
])
def test_malformed_rir_lines_are_refused_with_their_line_number(lines, where, message):
    with pytest.raises(DumpError, match=message) as err:
        list(rir.parse(rir_text(*lines), source="delegated-x"))
    assert (err.value.source, err.value.where) == ("delegated-x", where)


@pytest.mark.parametrize("start", ["4294967295", "9" * 5000])
def test_a_malformed_asn_range_is_refused(start):
    with pytest.raises(DumpError, match="bad ASN range") as err:
        list(rir.asn_countries(rir_text(HEADER, f"ripencc|EU|asn|{start}|2|19930901|allocated")))
    assert err.value.where == "line 2"


def test_asn_ranges_too_big_for_a_registry_are_refused_before_they_are_expanded():
    with pytest.raises(DumpError, match="a range of 910000000 ASNs") as err:
        list(rir.asn_countries(rir_text(HEADER, "ripencc|EU|asn|1000|910000000|19930901|allocated")))
    assert err.value.where == "line 2"
    lines = [f"ripencc|EU|asn|{i * 65536}|65536|19930901|allocated" for i in range(17)]
    with pytest.raises(DumpError, match="more than 1048576 ASNs in one file") as err:
        for _ in rir.asn_countries(rir_text(HEADER, *lines)):
            pass
    assert err.value.where == "line 18"


def test_non_utf8_bytes_are_refused():
    with pytest.raises(DumpError, match="not UTF-8") as err:
        list(rir.parse(io.BytesIO(HEADER.encode() + b"\nripencc|D\xe9|ipv4|1.0.0.0|256|x|assigned\n")))
    assert err.value.where == "line 2"


def test_combined_rirs_resolve_most_specific_first_and_equal_prefixes_to_the_first_source():
    # How the caller combines several files: one LPM table, items in file order.
    first = list(rir.parse(rir_text(HEADER, "ripencc|NL|ipv4|10.0.0.0|65536|2010|allocated",
                                    "ripencc|NL|ipv4|10.2.0.0|256|2010|assigned")))
    second = list(rir.parse(rir_text("2|arin|1|2|19830705|20140630|-0400",
                                     "arin|US|ipv4|10.0.5.0|256|2010|assigned",
                                     "arin|US|ipv4|10.2.0.0|256|2010|assigned")))
    codes = ["NL", "US"]
    table = lpm.Table.build((p, codes.index(cc)) for p, cc in first + second)
    got = table.lookup_many(lpm.pack(["10.0.0.1", "10.0.5.1", "10.2.0.1", "10.3.0.1"]))
    assert [codes[v] if v >= 0 else "" for v in got] == ["NL", "US", "NL", ""]


# -- .mmdb ---------------------------------------------------------------------

def write_mmdb(path, networks, ip_version=6):
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=ip_version, ipv4_compatible=ip_version == 6,
                        database_type="GeoLite2-Country", languages=["en"], description="test")
    for network, record in networks:
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path


def test_an_mmdb_yields_each_network_with_its_country(tmp_path):
    path = write_mmdb(tmp_path / "country.mmdb", [
        ("1.0.0.0/24", {"country": {"iso_code": "AU", "names": {"en": "Australia"}},
                        "registered_country": {"iso_code": "JP"}}),
        ("81.2.69.128/26", {"country": {"iso_code": "GB"}, "continent": {"code": "EU"}}),
        ("89.160.20.112/28", {"registered_country": {"iso_code": "SE"}}),   # no located country
        ("2.125.160.216/29", {"continent": {"code": "EU"}}),                 # no country at all
        ("2001:db8::/32", {"country": {"iso_code": "nl"}}),
        ("2a02:cf40::/29", {"registered_country": {"iso_code": "NO"}}),
        ("::ffff:9.9.9.0/120", {"country": {"iso_code": "CH"}}),             # IPv4 stored mapped
        ("2001:470::/32", {"country": {"iso_code": "ZZ"}}),
    ])
    got = sorted(mmdb.parse(path))
    assert got == sorted([("1.0.0.0/24", "AU"), ("81.2.69.128/26", "GB"), ("89.160.20.112/28", "SE"),
                          ("2001:db8::/32", "NL"), ("2a02:cf40::/29", "NO"), ("9.9.9.0/24", "CH")])
    # IPv4 comes out as IPv4, so it combines with RIR data in one table.
    table = lpm.Table.build((p, i) for i, (p, _) in enumerate(got))
    assert got[table.lookup("81.2.69.160")][1] == "GB"
    assert got[table.lookup("9.9.9.9")][1] == "CH"
    assert table.lookup("2.125.160.217") == -1


def test_an_ipv4_only_mmdb_and_the_reader_agree(tmp_path):
    import maxminddb

    networks = [(f"10.{i}.0.0/16", {"country": {"iso_code": cc}})
                for i, cc in enumerate(["DE", "FR", "IT", "ES", "PT"])]
    path = write_mmdb(tmp_path / "v4.mmdb", networks, ip_version=4)
    got = list(mmdb.parse(path, source="geo"))
    assert got == [(n, r["country"]["iso_code"]) for n, r in networks]
    with maxminddb.open_database(str(path)) as reader:
        assert all(reader.get(n.split("/")[0])["country"]["iso_code"] == cc for n, cc in got)


def test_a_file_that_is_not_an_mmdb_is_refused(tmp_path):
    path = tmp_path / "broken.mmdb"
    path.write_bytes(b"this is not a MaxMind database\n" * 10)
    with pytest.raises(DumpError, match="not a MaxMind DB") as err:
        list(mmdb.parse(path, source="countries"))
    assert err.value.source == "countries"


def damaged_mmdb(path):
    """A small database with one byte of its search tree changed: the C
    reader of maxminddb corrupts its heap on it and aborts the process."""
    write_mmdb(path, [("41.1.0.0/16", {"country": {"iso_code": "NA"}}),
                      ("2001:db8::/32", {"registered_country": {"iso_code": "DE"}})])
    data = bytearray(path.read_bytes())
    data[335] = 0x01
    path.write_bytes(bytes(data))
    return path


def test_a_damaged_mmdb_is_refused_without_killing_the_process(tmp_path):
    path = damaged_mmdb(tmp_path / "damaged.mmdb")
    # In a child process, so a reader that aborts fails this test instead of the run.
    child = subprocess.run(
        [sys.executable, "-c",
         "import sys\n"
         "from ipr.routing.dumps import DumpError, mmdb\n"
         "try:\n"
         "    list(mmdb.parse(sys.argv[1], source='countries'))\n"
         "except DumpError as exc:\n"
         "    print(exc)\n",
         str(path)],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert child.returncode == 0, child.stderr
    assert re.match(r"countries: network \d+: corrupt database: ", child.stdout), child.stdout


@pytest.mark.parametrize("damage", [
    pytest.param(lambda data: data[:200] + data[-120:], id="tree cut out"),
    pytest.param(lambda data: data[:300] + bytes([0xFF]) * 40 + data[340:], id="data overwritten"),
    pytest.param(lambda data: data[:-60], id="metadata cut short"),
])
def test_every_reader_error_becomes_a_dump_error_naming_the_file(tmp_path, damage):
    path = damaged_mmdb(tmp_path / "d.mmdb")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DumpError) as err:
        list(mmdb.parse(path, source="countries"))
    assert err.value.source == "countries"


# -- AS names --------------------------------------------------------------------

def test_the_text_list_gives_asn_name_and_country():
    text = ("\ufeff# AS names\n"
            "13335 CLOUDFLARENET, US\r\n"
            "AS13335 CLOUDFLARENET - Cloudflare, Inc., US\n"
            "\n"
            "AS3320\tDTAG Internet service provider operations, DE\n"
            "as1.10   ASDOT-EXAMPLE, NL\n"
            "AS64512 PRIVATE-USE\n"
            "AS65000 Example Networks, Inc\n"
            "AS23456 AS_TRANS, ZZ\n"
            "AS4294967295 LAST, EU\n")
    got = list(asnames.parse(io.BytesIO(text.encode() + b"AS64496 Caf\xe9 Net, FR\n"), source="asn.txt"))
    assert got == [
        (13335, "CLOUDFLARENET", "US"),
        (13335, "CLOUDFLARENET - Cloudflare, Inc.", "US"),
        (3320, "DTAG Internet service provider operations", "DE"),
        (65546, "ASDOT-EXAMPLE", "NL"),
        (64512, "PRIVATE-USE", None),
        (65000, "Example Networks, Inc", None),
        (23456, "AS_TRANS", None),
        (4294967295, "LAST", "EU"),
        (64496, "Caf\xe9 Net", "FR"),             # a line that is not UTF-8 is read as Latin-1
    ]


@pytest.mark.parametrize("line, kind", [
    ("CLOUDFLARENET 13335, US", "not starting with an ASN"),
    ("AS4294967296 TOO-BIG, US", "not starting with an ASN"),
    ("AS70000.1 BAD-ASDOT, US", "not starting with an ASN"),
    ("13335", "without a name"),
    ("13335 , US", "without a name"),
    ("49067\t, TR", "without a name"),
    ("AS" + "9" * 5000 + " HUGE, US", "not starting with an ASN"),
])
def test_an_unusable_text_line_is_skipped_and_noted_with_its_line_number(line, kind):
    stream = io.BytesIO(f"# list\n1 LVLT-1, US\n{line}\n2 SECOND, NL\n".encode())
    notes = asnames.Notes()
    assert list(asnames.parse(stream, source="names", notes=notes)) == [(1, "LVLT-1", "US"), (2, "SECOND", "NL")]
    (note,) = notes.lines("names")
    assert note.startswith("names: 1 line(s) ") and kind in note and note.endswith("(line 3)")


def test_a_file_with_more_unusable_lines_than_usable_ones_is_refused_naming_the_first():
    stream = io.BytesIO(b"1 ONE, US\n2|ripencc|1|2|19830705|20140630|+0200\nripencc|NL|ipv4|10.0.0.0|256\n")
    with pytest.raises(DumpError, match="expected an ASN first.*2 of 3 lines cannot be used") as err:
        list(asnames.parse(stream, source="names"))
    assert err.value.where == "line 2"


def test_each_line_is_utf_8_or_latin_1_and_one_with_c1_bytes_is_skipped_never_mangled():
    data = ("1 Türk Telekom, TR\n".encode() + "2 Société Générale, FR\n".encode("latin-1") +
            "3 \u201cQuoted\u201d Net, US\n".encode("cp1252") + b"4 PLAIN, NL\n")
    notes = asnames.Notes()
    got = list(asnames.parse(io.BytesIO(data), source="asn.txt", notes=notes))
    assert got == [(1, "Türk Telekom", "TR"), (2, "Société Générale", "FR"), (4, "PLAIN", "NL")]
    assert notes.lines("asn.txt") == [
        "asn.txt: 1 line(s) not UTF-8, read as Latin-1 (line 2)",
        "asn.txt: 1 line(s) neither UTF-8 nor Latin-1 (bytes in 0x80-0x9F), skipped (line 3)"]


def test_duplicate_asns_and_long_names_are_noted_with_their_lines():
    text = "1 FIRST, US\n2 " + "N" * 250 + ", DE\n1 AGAIN, US\n"
    notes = asnames.Notes()
    got = list(asnames.parse(io.BytesIO(text.encode()), source="asn.txt", notes=notes, max_name=200))
    assert got == [(1, "FIRST", "US"), (2, "N" * 200, "DE"), (1, "AGAIN", "US")]
    assert notes.lines("asn.txt") == ["asn.txt: 1 name(s) longer than 200 characters, cut (line 2)",
                                      "asn.txt: 1 ASN(s) given again, the last one kept (line 3)"]


def test_a_peeringdb_net_export_gives_names_without_country():
    doc = {"data": [{"id": 1, "org_id": 8, "asn": 13335, "name": "Cloudflare", "info_type": "Content"},
                    {"id": 2, "org_id": 9, "asn": 714, "name": "Apple Inc.", "status": "deleted"},
                    {"id": 3, "org_id": 9, "asn": 6185, "name": " Apple Inc. ", "status": "ok"}]}
    stream = io.BytesIO(b"\n  " + json.dumps(doc).encode())
    assert list(asnames.parse(stream, "net.json")) == [(13335, "Cloudflare", None), (6185, "Apple Inc.", None)]
    assert list(asnames.parse(io.BytesIO(json.dumps(doc["data"][:1]).encode()), "list.json")) == \
        [(13335, "Cloudflare", None)]


def test_a_full_peeringdb_dump_joins_net_to_org_for_the_country():
    dump = {"org": {"data": [{"id": 8, "name": "Cloudflare, Inc.", "country": "US"},
                             {"id": 9, "name": "Hurricane", "country": ""},
                             {"id": 10, "name": "DE-CIX", "country": "de"}]},
            "net": {"data": [{"asn": 13335, "name": "Cloudflare", "org_id": 8},
                             {"asn": 6939, "name": "Hurricane Electric", "org_id": 9},
                             {"asn": 6695, "name": "DE-CIX Frankfurt", "org_id": 10},
                             {"asn": 64500, "name": "Orphan", "org_id": 99},
                             {"asn": 64501, "name": "Nested", "org": {"id": 11, "country": "FR"}}]},
            "ix": {"data": []}}
    got = list(asnames.parse(io.BytesIO(json.dumps(dump).encode()), "peeringdb.json"))
    assert got == [(13335, "Cloudflare", "US"), (6939, "Hurricane Electric", None),
                   (6695, "DE-CIX Frankfurt", "DE"), (64500, "Orphan", None), (64501, "Nested", "FR")]


def test_control_characters_in_names_become_a_space_and_are_noted():
    text = b"64500 EXAMPLE\x00NAME, NL\n64501 TAB\tAND\x7f\xc2\x85DEL, DE\n64502 PLAIN, FR\n"
    notes = asnames.Notes()
    got = list(asnames.parse(io.BytesIO(text), source="asn.txt", notes=notes))
    assert got == [(64500, "EXAMPLE NAME", "NL"), (64501, "TAB AND DEL", "DE"), (64502, "PLAIN", "FR")]
    assert notes.lines("asn.txt") == [
        "asn.txt: 2 name(s) with control characters (NUL, tab...), each run replaced by a space (line 1, line 2)"]
    doc = {"data": [{"asn": 64500, "name": "Example\u0000Name\n"}, {"asn": 64501, "name": "Plain"},
                    {"asn": 64502, "name": "Other", "org_id": [1]}]}
    notes = asnames.Notes()
    got = list(asnames.parse(io.BytesIO(json.dumps(doc).encode()), source="pdb.json", notes=notes))
    assert got == [(64500, "Example Name", None), (64501, "Plain", None), (64502, "Other", None)]
    assert notes.count("control") == 1 and notes.lines("pdb.json")[0].endswith("(net object 0)")


@pytest.mark.parametrize("doc, where, message", [
    ('{"data": [{"asn": 1, "name": "A"},\n {"asn": 2 "name": "B"}]}', "line 2", "bad JSON"),
    ('{"data": [{"asn": 1, "name": "A"}, {"name": "B"}]}', "net object 1", "bad asn None"),
    ('{"data": [{"asn": "13335", "name": "A"}]}', "net object 0", "bad asn '13335'"),
    ('{"data": [{"asn": true, "name": "A"}]}', "net object 0", "bad asn True"),
    ('{"data": [{"asn": -1, "name": "A"}]}', "net object 0", "bad asn -1"),
    ('{"data": [{"asn": 1, "name": "A"}, {"asn": 2, "name": " "}]}', "net object 1", "has no name"),
    ('{"data": [1]}', "net object 0", "not an object"),
    ('{"net": {"data": {}}}', "line 1", "not a list"),
    ('{"org": {"data": [{"country": "US"}]}, "net": {"data": []}}', "org object 0", "with an id"),
    ('{"results": []}', "line 1", "not a PeeringDB export"),
    ('{"data": [{"asn": 1' + "0" * 5000 + ', "name": "A"}]}', "line 1", "bad JSON"),
    ("[" * 100000, "line 1", "nested too deeply"),
    ('{"org": {"data": [{"id": [8]}]}, "net": {"data": []}}', "org object 0", "with an id"),
    ('{"data": [{"asn": 1, "name": "\\u0000 \\t"}]}', "net object 0", "has no name"),
])
def test_bad_peeringdb_json_is_refused_naming_the_object(doc, where, message):
    with pytest.raises(DumpError, match=message) as err:
        list(asnames.parse(io.BytesIO(doc.encode()), source="pdb.json"))
    assert (err.value.source, err.value.where) == ("pdb.json", where)
