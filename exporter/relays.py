"""What the exporter knows about exit relays beyond the consensus: when each was first seen.

The consensus has no first-seen time.  Onionoo's details document has one
(``exporter.tor.onionoo``), read through a Tor exit every ``onionoo.interval``;
without it, the earliest consensus the exporter itself saw a relay in is the
best lower bound of its age.  Both go into the store, and for each relay the
earliest known time wins, so a restart keeps them and an unreachable Onionoo
costs only precision.

Threads: ``saw`` runs where the consensus is read (tor-keeper, stem's event
thread), ``read_onionoo`` on APScheduler's thread, ``first_seen`` on web
threads (scrapes); the times are held by ``_lock``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from exporter.store import Store
from exporter.tor import onionoo
from exporter.tor.relay import ExitRelay
from exporter.values import ProbeError, Response

log = logging.getLogger(__name__)

CONSENSUS, ONIONOO = "consensus", "onionoo"  # where a first-seen time came from
ONIONOO_EXITS_TRIED = 3  # exits tried in turn, heaviest first, when reading Onionoo fails


class RelayFacts:
    def __init__(self, store: Store):
        self._store = store
        self._lock = threading.Lock()
        self._first_seen = {fingerprint: when for fingerprint, (when, _) in store.load_relays().items()}
        self.onionoo_success_time: float | None = None

    def first_seen(self) -> dict[str, float]:
        """Fingerprint → first-seen time (unix seconds) of every relay known."""
        with self._lock:
            return dict(self._first_seen)

    def saw(self, fingerprints: Iterable[str], valid_after: float) -> None:
        """The relays were in the consensus that became valid at ``valid_after``."""
        self._learn(dict.fromkeys(fingerprints, valid_after), CONSENSUS)

    def read_onionoo(self, url: str, exits: list[ExitRelay], fetch: Callable[[ExitRelay, str], Response]) -> bool:
        """Read Onionoo's details document at ``url`` (its /details) with ``fetch(exit, url)`` through one
        of ``exits``, heaviest first; True once one answered with a document."""
        address = onionoo.details_url(url)
        for exit in sorted(exits, key=lambda e: -e.probability)[:ONIONOO_EXITS_TRIED]:
            try:
                response = fetch(exit, address)
                if response.status != 200:
                    raise onionoo.OnionooError(f"status {response.status}")
                found = onionoo.first_seen(response.body)
            except (ProbeError, onionoo.OnionooError) as exc:
                log.warning("Onionoo unreadable through this exit", extra={"exit": exit.fingerprint, "url": address,
                                                                           "err": str(exc)})
                continue
            self._learn(found, ONIONOO)
            self.onionoo_success_time = time.time()
            log.info("Onionoo read", extra={"exit": exit.fingerprint, "relays": len(found)})
            return True
        if not exits:
            log.warning("Onionoo not read: no selected exit allows its port", extra={"url": address})
        return False

    def _learn(self, first_seen: dict[str, float], source: str) -> None:
        with self._lock:
            earlier = {fingerprint: when for fingerprint, when in first_seen.items()
                       if when < self._first_seen.get(fingerprint, float("inf"))}
            self._first_seen.update(earlier)
        if earlier:
            self._store.saw_relays(earlier, source)
