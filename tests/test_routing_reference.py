"""Data sources end to end: the commands load RIR files, an .mmdb and AS
names into the database, the resolver uses them, and a bad file keeps the
data that was there."""
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ipr.routing.lookup import Resolver, as_array
from ipr.routing.models import ASName, CountryPrefix, DataSource
from ipr.routing.load import RefreshError
from ipr.routing.reference import refresh_source

pytestmark = pytest.mark.django_db

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "formats" / "samples" / "rir"
AFRINIC = SAMPLES / "delegated-afrinic-extended-20240105.txt"


def countries(addresses):
    resolver = Resolver()
    resolver.refresh()
    return resolver.country_of(as_array(addresses)).tolist()


def test_load_countries_reads_a_real_rir_file_and_the_resolver_uses_it(capsys):
    call_command("load_countries", "--rir", str(AFRINIC))
    source = DataSource.objects.get()
    assert source.kind == "rir" and source.records == CountryPrefix.objects.count() > 5000
    assert f"{source.name}: {source.records} records" in capsys.readouterr().out
    # From the file: 196.2.64.0 + 4096 addresses is MU, the next 4096 MA.
    assert countries(["41.1.2.3", "196.2.79.255", "196.2.80.0", "8.8.8.8"]) == ["ZA", "MU", "MA", ""]


def test_an_mmdb_source_wins_over_rir_files_where_both_cover_an_address(tmp_path):
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country")
    writer.insert_network(IPSet(["41.1.0.0/16"]), {"country": {"iso_code": "NA"}})
    mmdb = tmp_path / "country.mmdb"
    writer.to_db_file(str(mmdb))
    call_command("load_countries", "--rir", str(AFRINIC))
    call_command("load_countries", "--mmdb", str(mmdb))
    assert DataSource.objects.get(kind="mmdb").priority == 50
    assert countries(["41.1.2.3", "41.2.2.3"]) == ["NA", "ZA"]


def test_a_bad_file_is_refused_with_its_line_and_the_previous_rows_stay(tmp_path):
    path = tmp_path / "delegated-test"
    path.write_text("2|ripencc|1|2|19830705|20140630|+0200\n"
                    "ripencc|NL|ipv4|10.0.0.0|256|20100101|allocated\n")
    source = DataSource.objects.create(name="t", kind="rir", path=str(path))
    assert refresh_source(source.pk) == 1
    path.write_text(path.read_text() + "ripencc|NL|ipv4|10.0.1.0|many|20100101|allocated\n")
    with pytest.raises(RefreshError, match=f"{path}: line 3"):
        refresh_source(source.pk)
    source.refresh_from_db()
    assert f"{path}: line 3" in source.refresh_error and source.records == 1
    assert list(CountryPrefix.objects.values_list("prefix", "country")) == [("10.0.0.0/24", "NL")]
    with pytest.raises(CommandError, match="1 source.s. refused"):
        call_command("load_countries")


def test_load_asnames_replaces_names_from_the_same_source(tmp_path):
    path = tmp_path / "asnames.txt"
    path.write_text("13335 CLOUDFLARENET, US\n64500 EXAMPLE-ONE, NL\n")
    call_command("load_asnames", "--file", str(path))
    assert dict(ASName.objects.values_list("asn", "name")) == {13335: "CLOUDFLARENET", 64500: "EXAMPLE-ONE"}
    path.write_text("13335 CLOUDFLARENET, US\n64501 EXAMPLE-TWO, DE\n")
    call_command("load_asnames")
    assert dict(ASName.objects.values_list("asn", "country")) == {13335: "US", 64501: "DE"}


@pytest.fixture
def broker_down(monkeypatch):
    """Celery's broker at a port nothing listens on."""
    import socket

    from cron.celery import app
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setitem(app.conf, "task_always_eager", False)
    monkeypatch.setitem(app.conf, "broker_url", f"redis://127.0.0.1:{port}/0")
    # Connections made for the previous broker are not reused.
    monkeypatch.setattr(app, "_pool", None)
    monkeypatch.setattr(app.amqp, "_producer_pool", None)
    return port


@pytest.mark.parametrize("model, url", [("router", "/admin/routing/router/"),
                                        ("source", "/admin/routing/datasource/")])
def test_the_admin_says_a_refresh_could_not_be_queued_when_the_broker_is_down(admin_client, broker_down,
                                                                              model, url):
    from ipr.routing.models import Router
    if model == "router":
        obj = Router.objects.create(name="edge1", asn=64500)
    else:
        obj = DataSource.objects.create(name="names", kind="asnames", path="/nonexistent")
    r = admin_client.post(url, {"action": "refresh_now", "_selected_action": [obj.pk]}, follow=True)
    assert r.status_code == 200
    text = " ".join(str(m) for m in r.context["messages"])
    assert f"The refresh of {obj} could not be queued" in text and "broker" in text
    assert str(broker_down) in text  # the reason names where it was looked for


# -- AS names lists as RIPE NCC publishes them -----------------------------------

def ripe_asn_list(count: int, seed: int = 1, nameless: int = 5):
    """A list in the layout of RIPE NCC's asn.txt: ``ASN<TAB>NAME-DESCR, CC``
    (names with hyphens, spaces, commas and accented letters, some without a
    country) with ``nameless`` lines like the real ``49067\\t, TR``. Returns
    (text, {asn: (name, cc)} expected, line numbers of the nameless lines).
    Every name is Latin-1 encodable, as the list was until about 2020."""
    import random
    rng = random.Random(seed)
    words = ["NET", "TELECOM", "Türk", "Société", "Générale", "Ålands", "Niño", "DATA", "CLOUD", "ISP",
             "Hosting", "Networks", "Inc.", "GmbH", "Sp. z o.o.", "S.A.", "LLC", "B.V.", "Øresund"]
    countries = ["US", "DE", "TR", "FR", "NL", "RU", "BR", "JP", "PL", "ZA", "EU"]
    odd = set(rng.sample(range(1, count), nameless))
    lines, want, bad_lines, asn = [], {}, [], 0
    for i in range(count):
        asn += rng.randint(1, 40)
        if i in odd:
            lines.append(f"{asn}\t, {rng.choice(countries)}")
            bad_lines.append(i + 1)
            continue
        handle = "-".join(rng.choice(words).upper().replace(" ", "") for _ in range(rng.randint(1, 3)))
        descr = " ".join(rng.choice(words) for _ in range(rng.randint(0, 4)))
        if rng.random() < 0.1:
            descr += ", " + rng.choice(words)  # a comma inside the name
        name = f"{handle} - {descr}" if descr else handle
        cc = rng.choice(countries) if rng.random() > 0.02 else None
        lines.append(f"{asn}\t{name}, {cc}" if cc else f"{asn}\t{name}")
        want[asn] = (name, cc or "")
    return "\n".join(lines) + "\n", want, bad_lines


def names_in_db():
    return {asn: (name, cc) for asn, name, cc in ASName.objects.values_list("asn", "name", "country")}


def test_a_ripe_list_with_nameless_lines_loads_every_other_line_and_says_which_were_skipped(tmp_path, capsys):
    text, want, nameless = ripe_asn_list(20_000, nameless=7)
    path = tmp_path / "asn.txt"
    path.write_text(text)
    call_command("load_asnames", "--file", str(path))
    assert names_in_db() == want
    first = ", ".join(f"line {n}" for n in nameless[:5])
    assert f"{path}: 7 line(s) without a name, skipped ({first}, ...)" in capsys.readouterr().out
    source = DataSource.objects.get()
    assert source.records == len(want) and source.refresh_error == ""
    assert source.refresh_notes.startswith(f"{path}: 7 line(s) without a name")


def test_the_list_in_latin_1_gives_the_same_names_as_in_utf_8(tmp_path, capsys):
    text, want, _ = ripe_asn_list(5_000, seed=2)
    assert any(ord(c) > 127 for name, _ in want.values() for c in name)
    path = tmp_path / "asn.txt"
    path.write_bytes(text.encode("utf-8"))
    call_command("load_asnames", "--file", str(path))
    assert names_in_db() == want
    path.write_bytes(text.encode("latin-1"))
    call_command("load_asnames")
    assert names_in_db() == want  # nothing replaced by U+FFFD
    assert "not UTF-8, read as Latin-1" in capsys.readouterr().out


def test_a_name_mangled_upstream_does_not_replace_a_good_one(tmp_path, capsys):
    path = tmp_path / "asn.txt"
    path.write_text("64500\tSociété Générale, FR\n64501\tPLAIN, NL\n")
    call_command("load_asnames", "--file", str(path))
    path.write_text("64500\tSoci\ufffdt\ufffd G\ufffdn\ufffdrale, FR\n64501\tPLAIN, NL\n64502\tN\ufffdW, DE\n")
    call_command("load_asnames")
    assert names_in_db() == {64500: ("Société Générale", "FR"), 64501: ("PLAIN", "NL"),
                             64502: ("N\ufffdW", "DE")}  # none better to keep
    assert "1 name(s) with replacement characters (U+FFFD) not loaded over the good name already " \
           "there, which stays (AS64500)" in capsys.readouterr().out


def test_a_list_cut_in_half_is_refused_and_the_names_stay(tmp_path):
    text, want, _ = ripe_asn_list(10_000, seed=3)
    path = tmp_path / "asn.txt"
    path.write_text(text)
    call_command("load_asnames", "--file", str(path))
    lines = text.splitlines()
    path.write_text("\n".join(lines[:len(lines) // 2]) + "\n")
    source = DataSource.objects.get()
    with pytest.raises(RefreshError, match=r"a shrink of 5\d% \(more than the 20% allowed\)"):
        refresh_source(source.pk)
    assert names_in_db() == want
    source.refresh_from_db()
    assert "shrink" in source.refresh_error and source.records == len(want)
    with pytest.raises(CommandError, match="1 source.s. refused"):
        call_command("load_asnames")
    DataSource.objects.filter(pk=source.pk).update(max_shrink=0.6)
    assert refresh_source(source.pk) < len(want)  # allowed once the operator says so


def test_long_names_are_cut_and_duplicates_kept_last_and_the_summary_says_so(tmp_path, capsys):
    path = tmp_path / "asn.txt"
    long = "LONG-NAME - " + "x" * 240
    path.write_text(f"64500\tFIRST, US\n64501\t{long}, DE\n64500\tSECOND, US\n")
    call_command("load_asnames", "--file", str(path))
    assert names_in_db() == {64500: ("SECOND", "US"), 64501: (long[:200], "DE")}
    out = capsys.readouterr().out
    assert f"{path}: 1 name(s) longer than 200 characters, cut (line 2)" in out
    assert f"{path}: 1 ASN(s) given again, the last one kept (line 3)" in out


def test_a_refused_source_keeps_its_error_and_the_others_still_load(tmp_path, capsys, admin_client):
    good, gone = tmp_path / "good.txt", tmp_path / "gone.txt"
    good.write_text("64500\tGOOD, US\n")
    gone.write_text("64501\tGONE, DE\n")
    call_command("load_asnames", "--file", str(gone))
    call_command("load_asnames", "--file", str(good))
    gone.unlink()
    good.write_text("64500\tGOOD, US\n64502\tNEW, NL\n")
    with pytest.raises(CommandError, match=rf"1 source.s. refused \(of 2\): asnames:{gone}$"):
        call_command("load_asnames")
    assert names_in_db() == {64500: ("GOOD", "US"), 64501: ("GONE", "DE"), 64502: ("NEW", "NL")}
    refused = DataSource.objects.get(path=str(gone))
    assert refused.refresh_error == f"{gone}: no such file" and refused.enabled
    assert f"asnames:{gone}: refused, the previous data stays: {gone}: no such file" in capsys.readouterr().err
    page = admin_client.get("/admin/routing/datasource/").content.decode()
    assert f"{gone}: no such file" in page
    # A path given on the command line that cannot be loaded is not kept.
    typo = tmp_path / "typo.txt"
    with pytest.raises(CommandError, match=rf"1 source.s. refused \(of 1\): asnames:{typo}"):
        call_command("load_asnames", "--file", str(typo))
    assert not DataSource.objects.filter(path=str(typo)).exists()
    assert "refused, not added" in capsys.readouterr().err


@pytest.mark.parametrize("name, data", [
    ("asn.txt", b"64500 EXAMPLE\x00NAME, NL\n64501 OTHER, DE\n"),
    ("peeringdb.json", b'{"data": [{"asn": 64500, "name": "EXAMPLE\\u0000NAME"}, '
                       b'{"asn": 64501, "name": "OTHER"}]}'),
])
def test_a_nul_in_a_name_is_stored_as_a_space_and_noted(tmp_path, name, data):
    # PostgreSQL's text cannot hold a NUL: the name is cleaned before COPY.
    path = tmp_path / name
    path.write_bytes(data)
    source = DataSource.objects.create(name="names", kind="asnames", path=str(path))
    assert refresh_source(source.pk) == 2
    assert {asn: name for asn, (name, _) in names_in_db().items()} == {64500: "EXAMPLE NAME", 64501: "OTHER"}
    source.refresh_from_db()
    assert source.refresh_error == "" and "1 name(s) with control characters" in source.refresh_notes
