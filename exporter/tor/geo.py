"""The country of a relay address: a GeoIP2 Country database, else tor's own GeoIP table."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import geoip2.database
import geoip2.errors
import stem

log = logging.getLogger(__name__)

UNKNOWN = "??"


class CountryLookup:
    """``lookup(address) -> "DE"`` (uppercase ISO 3166 alpha-2) or ``"??"``; results are cached.

    With ``country_db`` (a GeoLite2/GeoIP2 Country mmdb) the database answers;
    without it tor does, through ``GETINFO ip-to-country/<ip>``, which needs
    tor's geoip files (Debian: tor-geoipdb) and answers ``??`` for private
    addresses.
    """

    def __init__(self, country_db: Path | None, controller=None):
        if country_db is None and controller is None:
            raise ValueError("CountryLookup needs a country database or a tor controller")
        self._reader = geoip2.database.Reader(str(country_db)) if country_db else None
        self._controller = controller
        self._cache: dict[str, str] = {}
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

    def close(self) -> None:
        if self._reader:
            self._reader.close()

    def __enter__(self) -> CountryLookup:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
