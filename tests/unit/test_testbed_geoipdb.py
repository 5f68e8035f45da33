"""The test bed's GeoIP2-Country database reads back with geoip2."""

from __future__ import annotations

import geoip2.database
import geoip2.errors
import pytest

from testbed.geoipdb import (
    assign_countries,
    assign_networks,
    write_asn_db,
    write_country_db,
)


def test_each_exit_address_reads_back_as_its_own_country(tmp_path):
    addresses = [f"127.0.0.{21 + i}" for i in range(5)]
    countries = assign_countries(addresses)
    assert len(set(countries.values())) == 5
    path = write_country_db(tmp_path / "country.mmdb", countries)
    with geoip2.database.Reader(str(path)) as reader:
        assert reader.metadata().database_type == "GeoIP2-Country"
        for address, code in countries.items():
            country = reader.country(address).country
            assert country.iso_code == code
            assert country.name
        with pytest.raises(geoip2.errors.AddressNotFoundError):
            reader.country("127.0.0.1")


def test_countries_cycle_when_there_are_more_exits_than_codes():
    countries = assign_countries([f"127.0.1.{i}" for i in range(20)])
    assert len(countries) == 20
    assert countries["127.0.1.0"] == countries[f"127.0.1.{len(set(countries.values()))}"]


def test_countries_carry_their_continent_and_exits_their_network(tmp_path):
    addresses = [f"127.0.0.{21 + i}" for i in range(4)]
    country_db = write_country_db(tmp_path / "country.mmdb", assign_countries(addresses))
    networks = assign_networks(addresses)
    asn_db = write_asn_db(tmp_path / "asn.mmdb", networks)
    with geoip2.database.Reader(str(country_db)) as reader:
        assert [reader.country(a).continent.code for a in addresses] == ["EU", "NA", "EU", "EU"]
    with geoip2.database.Reader(str(asn_db)) as reader:
        assert reader.metadata().database_type == "GeoLite2-ASN"
        found = [(reader.asn(a).autonomous_system_number, reader.asn(a).autonomous_system_organization)
                 for a in addresses]
    assert found == [networks[a] for a in addresses] and found[0] == found[3], "a network holds several exits"
