"""Small GeoIP2 databases for the test bed: each exit address gets a fake country and network.

Tor's own GeoIP data (and every real database) has no country for 127/8, so
the exporter's country labels would all read ``??`` on the test bed.  This
writes a MaxMind DB whose ``database_type`` contains "Country" (geoip2's
``Reader.country()`` checks that) with the record layout of GeoIP2-Country:
``{"continent": {"code": ..}, "country": {"iso_code": .., "names": {"en": ..}}}``,
and one whose type contains "ASN" (``Reader.asn()``) with GeoLite2-ASN's
layout: ``{"autonomous_system_number": .., "autonomous_system_organization": ..}``.
The AS numbers are the documentation range (RFC 5398).
"""

from __future__ import annotations

from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet

# Fake countries handed out to exits in order; names are what GeoIP2 stores under names.en.
COUNTRIES = (
    ("DE", "Germany"),
    ("US", "United States"),
    ("NL", "Netherlands"),
    ("SE", "Sweden"),
    ("FR", "France"),
    ("CH", "Switzerland"),
    ("RO", "Romania"),
    ("CA", "Canada"),
)
CONTINENTS = {"US": "NA", "CA": "NA"}  # the others are in Europe
# Fake networks handed out to exits in turn: fewer than exits, so networks hold several exits.
NETWORKS = ((64496, "Testbed Hosting"), (64497, "Example Transit"), (64498, "Loopback Networks"))


def assign_countries(addresses: list[str]) -> dict[str, str]:
    """A different country code for each address (cycling when there are more addresses than codes)."""
    return {address: COUNTRIES[i % len(COUNTRIES)][0] for i, address in enumerate(addresses)}


def write_country_db(path: Path, countries: dict[str, str]) -> Path:
    """Write an mmdb mapping each address (a /32) to its ISO country code."""
    names = dict(COUNTRIES)
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Country",
                        languages=["en"], description="captcha-exporter test bed")
    for address, code in countries.items():
        record = {"continent": {"code": CONTINENTS.get(code, "EU")},
                  "country": {"iso_code": code, "names": {"en": names.get(code, code)}}}
        writer.insert_network(IPSet([f"{address}/32"]), record)
    writer.to_db_file(str(path))
    return path


def assign_networks(addresses: list[str]) -> dict[str, tuple[int, str]]:
    """An (AS number, AS name) from NETWORKS for each address, in turn."""
    return {address: NETWORKS[i % len(NETWORKS)] for i, address in enumerate(addresses)}


def write_asn_db(path: Path, networks: dict[str, tuple[int, str]]) -> Path:
    """Write an mmdb mapping each address (a /32) to its autonomous system, as GeoLite2-ASN does."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN",
                        languages=["en"], description="captcha-exporter test bed")
    for address, (number, name) in networks.items():
        record = {"autonomous_system_number": number, "autonomous_system_organization": name}
        writer.insert_network(IPSet([f"{address}/32"]), record)
    writer.to_db_file(str(path))
    return path
