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
