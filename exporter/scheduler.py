"""Running probes on time: APScheduler fires each target's run; a bounded pool of lanes does the work.

A target run picks its next exits (least recently tried first) and queues one
task per exit. A task takes a free lane, pins it to the exit (one circuit for
every fetcher of that target), runs the probes and frees the lane. Scrapes never
wait for any of this.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from exporter.config import Schedule, Target
from exporter.fetch.response import Fetcher, Lane
from exporter.plan import next_exits
from exporter.probe import Classify, ProbeResult, error_result, run_probe
from exporter.tor.relay import ExitRelay

log = logging.getLogger(__name__)


class PinError(Exception):
    """The lane could not be pinned to the exit; ``reason`` is a probe error reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class Prober:
    """Runs (target, exit) tasks on a fixed set of lanes."""

    def __init__(self, lanes: Sequence[Lane], pin: Callable[[Lane, ExitRelay], None],
                 fetchers: dict[str, Fetcher], timeouts: dict[str, float], classify: Classify,
                 on_result: Callable[[ProbeResult], None]):
        self._free: queue.Queue[Lane] = queue.Queue()
        for lane in lanes:
            self._free.put(lane)
        self._pool = ThreadPoolExecutor(max_workers=len(lanes), thread_name_prefix="lane")
        self._pin = pin
        self._fetchers = fetchers
        self._timeouts = timeouts
        self._classify = classify
        self._on_result = on_result
        self._lock = threading.Lock()
        self._pending: set[tuple[str, str]] = set()
        self._running = 0

    def submit(self, target: Target, exit: ExitRelay) -> bool:
        """Queue a task unless the same target and exit is already queued or running."""
        key = (target.name, exit.fingerprint)
        with self._lock:
            if key in self._pending:
                return False
            self._pending.add(key)
        self._pool.submit(self._run, target, exit, key)
        return True

    def is_pending(self, target: Target, exit: ExitRelay) -> bool:
        with self._lock:
            return (target.name, exit.fingerprint) in self._pending

    @property
    def queued(self) -> int:
        with self._lock:
            return len(self._pending) - self._running

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._running

    def _run(self, target: Target, exit: ExitRelay, key: tuple[str, str]) -> None:
        lane = self._free.get()
        with self._lock:
            self._running += 1
        try:
            self._probe_all(target, exit, lane)
        except Exception:  # never lose the lane or the pool thread to a bug
            log.exception("task failed", extra={"target": target.name, "exit": exit.fingerprint})
        finally:
            with self._lock:
                self._running -= 1
                self._pending.discard(key)
            self._free.put(lane)

    def _probe_all(self, target: Target, exit: ExitRelay, lane: Lane) -> None:
        try:
            self._pin(lane, exit)
        except PinError as exc:
            for name in target.fetchers:
                self._on_result(error_result(target, name, exit, exc.reason, str(exc)))
            return
        for name in target.fetchers:
            fetcher = self._fetchers.get(name)
            if fetcher is None:
                self._on_result(error_result(target, name, exit, "browser", f"fetcher {name} is not available"))
                continue
            self._on_result(run_probe(target, exit, fetcher, lane, self._classify, self._timeouts[name]))

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)


class Scheduler:
    """Fires each target's run on its interval (or the schedule's cron) with jitter."""

    def __init__(self, schedule: Schedule, prober: Prober,
                 candidates: Callable[[Target], list[ExitRelay]],
                 last_attempted: Callable[[str], dict[str, float]]):
        self._schedule = schedule
        self._prober = prober
        self._candidates = candidates
        self._last_attempted = last_attempted
        self._scheduler = BackgroundScheduler(daemon=True)

    def start(self, targets: Sequence[Target]) -> None:
        self.set_targets(targets)
        self._scheduler.start()

    def set_targets(self, targets: Sequence[Target]) -> None:
        """(Re)schedule every target; jobs of targets no longer listed are removed."""
        wanted = {t.name for t in targets}
        for job in self._scheduler.get_jobs():
            if job.id not in wanted:
                job.remove()
        for target in targets:
            self._scheduler.add_job(self.run_target, self._trigger(target), args=[target], id=target.name,
                                    replace_existing=True, max_instances=1, coalesce=True,
                                    misfire_grace_time=None, next_run_time=_now())

    def _trigger(self, target: Target):
        jitter = int(self._schedule.jitter) or None
        if target.cron:
            trigger = CronTrigger.from_crontab(target.cron, timezone="UTC")
            trigger.jitter = jitter
            return trigger
        return IntervalTrigger(seconds=target.interval, jitter=jitter)

    def run_target(self, target: Target) -> int:
        """Queue probes of the target's next exits; returns how many were queued."""
        candidates = [e for e in self._candidates(target) if not self._prober.is_pending(target, e)]
        chosen = next_exits(candidates, target.exits_per_run, self._last_attempted(target.name))
        queued = sum(self._prober.submit(target, exit) for exit in chosen)
        log.debug("target run", extra={"target": target.name, "exits": len(chosen), "queued": queued})
        return queued

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)


def _now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)
