"""Countries from a GeoIP2 Country database, else from tor's GETINFO ip-to-country."""

import pytest
import stem
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from exporter.tor.geo import GeoLookup


@pytest.fixture
def country_db(tmp_path):
    writer = MMDBWriter(ip_version=4, database_type="GeoLite2-Country")
    writer.insert_network(IPSet(["127.0.0.21/32"]), {"country": {"iso_code": "de"}})
    writer.insert_network(IPSet(["127.0.0.22/32"]), {"country": {"iso_code": "US"}})
    path = tmp_path / "country.mmdb"
    writer.to_db_file(str(path))
    return path


def test_database_answers_uppercase_and_unknown_addresses_are_question_marks(country_db):
    lookup = GeoLookup(country_db, controller=None)
    assert lookup("127.0.0.21") == "DE"
    assert lookup("127.0.0.22") == "US"
    assert lookup("127.0.0.23") == "??"
    assert lookup("not an address") == "??"
    lookup.close()


class GeoController:
    def __init__(self, table):
        self.table = table
        self.calls = []

    def get_info(self, key):
        self.calls.append(key)
        address = key.removeprefix("ip-to-country/")
        if address not in self.table:
            raise stem.InvalidArguments("552", "Unrecognized key")
        return self.table[address]


def test_without_a_database_tor_answers_and_results_are_cached():
    controller = GeoController({"10.0.0.1": "fr", "127.0.0.1": "??"})
    lookup = GeoLookup(None, controller)
    assert lookup("10.0.0.1") == "FR"
    assert lookup("10.0.0.1") == "FR"
    assert lookup("127.0.0.1") == "??"
    assert lookup("10.9.9.9") == "??"
    assert controller.calls.count("ip-to-country/10.0.0.1") == 1


def test_a_lookup_needs_a_source():
    with pytest.raises(ValueError):
        GeoLookup(None, None)


@pytest.fixture
def asn_db(tmp_path):
    """A GeoLite2-ASN-shaped database, as the test bed writes one (testbed.geoipdb)."""
    writer = MMDBWriter(ip_version=4, database_type="GeoLite2-ASN")
    writer.insert_network(IPSet(["127.0.0.21/32"]), {"autonomous_system_number": 64500,
                                                     "autonomous_system_organization": "Example Hosting"})
    path = tmp_path / "asn.mmdb"
    writer.to_db_file(str(path))
    return path


def test_details_give_the_continent_and_network(tmp_path, asn_db):
    writer = MMDBWriter(ip_version=4, database_type="GeoLite2-Country")
    writer.insert_network(IPSet(["127.0.0.21/32"]), {"country": {"iso_code": "DE"}, "continent": {"code": "eu"}})
    writer.to_db_file(str(tmp_path / "country.mmdb"))
    with GeoLookup(tmp_path / "country.mmdb", asn_db=asn_db) as lookup:
        assert lookup.details("127.0.0.21") == {"continent": "EU", "asn": "AS64500", "as_name": "Example Hosting"}
        assert lookup.details("127.0.0.22") == {"continent": "??", "asn": "", "as_name": ""}


def test_without_databases_the_details_are_unknown(asn_db):
    controller = GeoController({"10.0.0.1": "fr"})
    lookup = GeoLookup(None, controller)
    assert lookup("10.0.0.1") == "FR"
    assert lookup.details("10.0.0.1") == {"continent": "??", "asn": "", "as_name": ""}, "tor knows no continents"
    with GeoLookup(None, controller, asn_db=asn_db) as with_networks:
        assert with_networks.details("127.0.0.21")["asn"] == "AS64500"
