"""Each target's baseline: its page fetched without Tor, several times, to compare exits' pages with.

The baseline is relearnt every ``change.baseline_interval`` and persisted, so a
restart compares at once. Only answers with status 200 are learnt from: a site
that is down for everyone has no page to compare with.
"""

from __future__ import annotations

import logging
import threading
import time

from exporter.change import Baseline
from exporter.change.direct import fetch_direct
from exporter.config import Config, Target
from exporter.store import Store
from exporter.values import FetchError

log = logging.getLogger(__name__)

DIRECT = "direct"  # the fetcher column of persisted baselines: one direct baseline serves every fetcher
PAUSE_SECONDS = 1.0  # between the direct fetches of one baseline, so time-based values can differ


class Baselines:
    def __init__(self, store: Store):
        self._store = store
        self._lock = threading.Lock()
        self._baselines: dict[str, Baseline] = {}
        self._stopped = threading.Event()

    def stop(self) -> None:
        """Make running and later learning give up (the exporter is shutting down)."""
        self._stopped.set()

    def get(self, target: str) -> Baseline | None:
        with self._lock:
            baseline = self._baselines.get(target)
        if baseline is None:
            baseline = self._load(target)
        return baseline

    def _load(self, target: str) -> Baseline | None:
        stored = self._store.load_baseline(target, DIRECT)
        if stored is None:
            return None
        try:
            baseline = Baseline.from_json(stored["baseline"])
        except (KeyError, ValueError) as exc:
            log.warning("persisted baseline unreadable; relearning", extra={"target": target, "err": str(exc)})
            return None
        with self._lock:
            self._baselines.setdefault(target, baseline)
        return baseline

    def learn(self, target: Target, config: Config) -> Baseline | None:
        """Fetch the target directly ``baseline_fetches`` times and learn from the 200 answers."""
        pages = []
        for attempt in range(target.change.baseline_fetches):
            if attempt and self._stopped.wait(PAUSE_SECONDS) or self._stopped.is_set():
                return None
            try:
                page = fetch_direct(target.url, config.fetchers.http, config.baseline_resolve or None)
            except FetchError as exc:
                log.warning("direct fetch failed", extra={"target": target.name, "reason": exc.reason,
                                                           "err": str(exc)})
                continue
            if page.status == 200:
                pages.append(page)
        if len(pages) < 2:
            log.warning("no baseline: fewer than 2 direct fetches answered 200", extra={"target": target.name})
            return None
        if self._stopped.is_set():
            return None
        try:
            baseline = Baseline.learn(pages, mask_numbers=target.change.mask_numbers)
        except FetchError as exc:  # a page too complex to read
            log.warning("no baseline", extra={"target": target.name, "reason": exc.reason, "err": str(exc)})
            return None
        with self._lock:
            self._baselines[target.name] = baseline
        self._store.save_baseline(target.name, DIRECT, {"baseline": baseline.to_json(), "time": time.time()})
        log.info("baseline learnt", extra={"target": target.name, "fetches": len(pages)})
        return baseline

    def forget(self, keep: set[str]) -> None:
        with self._lock:
            self._baselines = {name: b for name, b in self._baselines.items() if name in keep}
