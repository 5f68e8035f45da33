"""The web the edge serves: which host is which site or vendor, where a visit starts, who answers.

Built-in sites answer with ``behaviours``, vendor hosts with ``vendors``;
replayed captures (``replay``) add sites of their own at the hosts they were
recorded on, and the hosts their pages name (each a site named after its
host, answering 404: nothing of it was recorded).  The edge asks this one
object, whatever the host.
"""

from __future__ import annotations

from collections.abc import Iterable

from testbed import behaviours, replay, vendors
from testbed.behaviours import Reply, Visit
from testbed.pages import SITES, VENDORS, host_names, hostname
from testbed.passes import Passes
from testbed.policy import Behaviour, Policy, load_policy


class Web:
    def __init__(self, captures: Iterable[replay.Capture] = ()) -> None:
        self.names: dict[str, str] = host_names()  # host → site or vendor
        self._starts: dict[str, tuple[str, str]] = {site: (hostname(site), "/") for site in SITES}
        self._captures = {capture.site: capture for capture in captures}
        for capture in self._captures.values():
            self.names.setdefault(capture.host, capture.site)
            self._starts[capture.site] = (capture.host, capture.start)
        self._linked = {host for capture in self._captures.values() for host in capture.linked_hosts
                        if host not in self.names}
        self.names.update({host: host for host in self._linked})

    @property
    def sites(self) -> tuple[str, ...]:
        """Every site a probe can start at (not the vendor hosts)."""
        return tuple(self._starts)

    @property
    def captures(self) -> dict[str, replay.Capture]:
        return dict(self._captures)

    def start(self, site: str) -> tuple[str, str]:
        """(host, path) where a visit to ``site`` starts."""
        return self._starts[site]

    def site_of(self, host: str) -> str | None:
        """The site or vendor that ``host`` (no port) serves, or None."""
        return self.names.get(host.lower().rstrip("."))

    def load_policy(self, source) -> Policy:
        """A policy that may name every site of this web (replayed ones take fewer behaviours)."""
        limited = {name: replay.REPLAY_BEHAVIOURS for name in (*self._captures, *self._linked)}
        return load_policy(source, (*SITES, *limited), limited)

    def answer(self, visit: Visit, behaviour: Behaviour, passes: Passes) -> Reply:
        if visit.site in VENDORS:
            return vendors.answer(visit, behaviour, passes)
        if visit.site in self._captures:
            return replay.answer(self._captures[visit.site], visit, behaviour, passes)
        if visit.site in self._linked:
            if behaviour.name in ("ok", "slow"):
                reply = replay.not_recorded()
                reply.delay = behaviour.params.get("seconds", 0.0)
                return reply
            return behaviours.ANSWERS[behaviour.name](visit, behaviour, passes)
        return behaviours.answer(visit, behaviour, passes)
