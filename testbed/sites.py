"""The web the edge serves: which host is which site or vendor, where a visit starts, who answers.

Built-in sites answer with ``behaviours``, vendor hosts with ``vendors``;
replayed captures (``replay``) add sites of their own, at the hosts they
were recorded on.  The edge asks this one object, whatever the host.
"""

from __future__ import annotations

from testbed import behaviours, vendors
from testbed.behaviours import Reply, Visit
from testbed.pages import SITES, VENDORS, host_names, hostname
from testbed.passes import Passes
from testbed.policy import Behaviour


class Web:
    def __init__(self) -> None:
        self.names: dict[str, str] = host_names()  # host → site or vendor
        self._starts: dict[str, tuple[str, str]] = {site: (hostname(site), "/") for site in SITES}

    @property
    def sites(self) -> tuple[str, ...]:
        """Every site a probe can start at (not the vendor hosts)."""
        return tuple(self._starts)

    def start(self, site: str) -> tuple[str, str]:
        """(host, path) where a visit to ``site`` starts."""
        return self._starts[site]

    def site_of(self, host: str) -> str | None:
        """The site or vendor that ``host`` (no port) serves, or None."""
        return self.names.get(host.lower().rstrip("."))

    def answer(self, visit: Visit, behaviour: Behaviour, passes: Passes) -> Reply:
        if visit.site in VENDORS:
            return vendors.answer(visit, behaviour, passes)
        return behaviours.answer(visit, behaviour, passes)
