"""Where a relay address is: its country (a GeoIP2 Country database, else tor's own GeoIP table),
its continent (that database only) and its network (a GeoLite2/GeoIP2 ASN database, when given)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import geoip2.database
import geoip2.errors
import stem

log = logging.getLogger(__name__)

UNKNOWN = "??"


class GeoLookup:
    """``lookup(address) -> "DE"`` (uppercase ISO 3166 alpha-2) or ``"??"``; ``details(address)`` gives the
    continent and network facts of an ExitRelay.  Results are cached.

    With ``country_db`` (a GeoLite2/GeoIP2 Country mmdb) the database answers,
    continent included; without it tor does, through ``GETINFO
    ip-to-country/<ip>``, which needs tor's geoip files (Debian: tor-geoipdb),
    answers ``??`` for private addresses and knows no continents.  ``asn_db``
    (a GeoLite2/GeoIP2 ASN mmdb) names each address's autonomous system.
    """

    def __init__(self, country_db: Path | None, controller=None, asn_db: Path | None = None):
        if country_db is None and controller is None:
            raise ValueError("GeoLookup needs a country database or a tor controller")
        self._reader = geoip2.database.Reader(str(country_db)) if country_db else None
        self._asn_reader = geoip2.database.Reader(str(asn_db)) if asn_db else None
        self._controller = controller
        self._cache: dict[str, str] = {}
        self._details: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def __call__(self, address: str) -> str:
        with self._lock:
            cached = self._cache.get(address)
        if cached is not None:
            return cached
        country = self._from_database(address) if self._reader else self._from_tor(address)
        with self._lock:
            self._cache[address] = country
        return country

    def details(self, address: str) -> dict[str, str]:
        """``{"continent": "EU", "asn": "AS24940", "as_name": "Hetzner Online GmbH"}``: the ExitRelay
        fields besides the country ("??" and "" when unknown)."""
        with self._lock:
            cached = self._details.get(address)
        if cached is not None:
            return cached
        found = {"continent": self._continent(address), **self._network(address)}
        with self._lock:
            self._details[address] = found
        return found

    def _from_database(self, address: str) -> str:
        try:
            code = self._reader.country(address).country.iso_code
        except (geoip2.errors.AddressNotFoundError, ValueError):
            return UNKNOWN
        return code.upper() if code else UNKNOWN

    def _from_tor(self, address: str) -> str:
        try:
            code = self._controller.get_info(f"ip-to-country/{address}")
        except stem.ControllerError as exc:
            log.debug("tor has no country for the address", extra={"address": address, "err": str(exc)})
            return UNKNOWN
        return code.upper() if code and len(code) == 2 and code.isalpha() else UNKNOWN

    def _continent(self, address: str) -> str:
        if self._reader is None:
            return UNKNOWN
        try:
            code = self._reader.country(address).continent.code
        except (geoip2.errors.AddressNotFoundError, ValueError):
            return UNKNOWN
        return code.upper() if code else UNKNOWN

    def _network(self, address: str) -> dict[str, str]:
        if self._asn_reader is None:
            return {"asn": "", "as_name": ""}
        try:
            found = self._asn_reader.asn(address)
        except (geoip2.errors.AddressNotFoundError, ValueError):
            return {"asn": "", "as_name": ""}
        number = found.autonomous_system_number
        return {"asn": f"AS{number}" if number else "", "as_name": found.autonomous_system_organization or ""}

    def close(self) -> None:
        for reader in (self._reader, self._asn_reader):
            if reader:
                reader.close()

    def __enter__(self) -> GeoLookup:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
