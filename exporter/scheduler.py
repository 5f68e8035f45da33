"""Running probes on time: APScheduler fires each target's run; a bounded pool of lanes does the work.

A target run picks its next exits (least recently tried first, exits backing
off after repeated circuit failures left out) and queues the target on each.
A lane takes the exit that became due first, pins one circuit to it, and probes
every target queued on that exit by then, with every fetcher of each target.
Scrapes never wait for any of this.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from exporter.change import Baseline
from exporter.config import Schedule, Target
from exporter.plan import next_exits
from exporter.probe import Classify, ProbeResult, error_result, run_probe
from exporter.tor.relay import ExitRelay
from exporter.values import ErrorReason, Fetcher, Lane, ProbeError

log = logging.getLogger(__name__)


BROWSER_LANE_BYTES = 600 * 2**20  # a warm Chromium and its driver: about 400 MiB PSS measured, plus headroom
MAX_AUTO_LANES = 16


def auto_lanes(cpus: int, available_bytes: int, browsers: bool) -> int:
    """How many lanes this machine can run: a browser lane keeps about a CPU busy and holds
    ~600 MiB; a plain HTTP lane mostly waits on tor, so four share a CPU."""
    if browsers:
        return max(1, min(cpus, available_bytes // BROWSER_LANE_BYTES, MAX_AUTO_LANES))
    return max(1, min(4 * cpus, MAX_AUTO_LANES))


CRON_LOOKAHEAD_SECONDS = 8 * 86400.0


def run_period(target: Target) -> float:
    """Seconds between two runs of the target: its interval, or the longest gap between the
    runs of its cron schedule over the next eight days (so weekly schedules count in full)."""
    if not target.cron:
        return target.interval
    trigger = CronTrigger.from_crontab(target.cron, timezone="UTC")
    start = previous = trigger.get_next_fire_time(None, _now())
    longest = 0.0
    while previous is not None and (previous - start).total_seconds() < CRON_LOOKAHEAD_SECONDS:
        following = trigger.get_next_fire_time(previous, previous)
        if following is None or following <= previous:
            break
        longest = max(longest, (following - previous).total_seconds())
        previous = following
    return longest or target.interval


def available_memory(meminfo: str = "/proc/meminfo") -> int:
    """MemAvailable in bytes (0 when it cannot be read)."""
    try:
        with open(meminfo) as lines:
            for line in lines:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PinError(ProbeError):
    """The lane could not be pinned to the exit; ``reason`` is a probe error reason."""

    reasons = ErrorReason


class Backoff:
    """Exits whose circuits keep failing are skipped for a while, doubling each time, as sbws does."""

    def __init__(self, first: float = 300.0, cap: float = 3 * 3600.0, after: int = 3):
        self.first, self.cap, self.after = first, cap, after
        self._failures: dict[str, int] = {}
        self._until: dict[str, float] = {}

    def failed(self, fingerprint: str, now: float) -> None:
        count = self._failures.get(fingerprint, 0) + 1
        self._failures[fingerprint] = count
        if count >= self.after:
            self._until[fingerprint] = now + min(self.cap, self.first * 2 ** (count - self.after))

    def succeeded(self, fingerprint: str) -> None:
        self._failures.pop(fingerprint, None)
        self._until.pop(fingerprint, None)

    def waiting(self, fingerprint: str, now: float) -> bool:
        return self._until.get(fingerprint, 0.0) > now

    def skipped(self, now: float) -> frozenset[str]:
        """The exits skipped at ``now``."""
        return frozenset(fingerprint for fingerprint, until in self._until.items() if until > now)


class Prober:
    """Runs the work of each exit on a fixed set of lanes: one circuit serves every target due on it.

    Targets are queued per exit; when a lane takes an exit it takes every target
    queued for it by then, pins the lane once, and probes them all. Exits are
    taken in the order they first became due.
    """

    def __init__(self, lanes: Sequence[Lane], pin: Callable[[Lane, ExitRelay], None],
                 fetchers: dict[str, Fetcher], timeouts: dict[str, float], classify: Classify,
                 on_result: Callable[[ProbeResult], None], backoff: Backoff | None = None,
                 baseline: Callable[[str], Baseline | None] = lambda target: None,
                 keep_evidence: Callable[[ProbeResult, bytes | None], str | None] | None = None,
                 labels: dict[str, str] | None = None, release: Callable[[Lane], None] = lambda lane: None):
        self._free: queue.Queue[Lane] = queue.Queue()
        for lane in lanes:
            self._free.put(lane)
        self._pool = ThreadPoolExecutor(max_workers=len(lanes), thread_name_prefix="lane")
        self._pin = pin
        self._release = release  # unpins the lane: no probe runs on it until the next pin
        self._fetchers = fetchers
        self._timeouts = timeouts
        self._classify = classify
        self._on_result = on_result
        self.backoff = backoff or Backoff()
        self._baseline = baseline
        self._keep_evidence = keep_evidence
        self._labels = labels or {}  # fetcher kind → its `fetcher` label, for probes that could not start
        self._lock = threading.Lock()
        self._queued: dict[str, dict[str, Target]] = {}  # exit fingerprint → targets waiting for it
        self._running: dict[str, set[str]] = {}  # exit fingerprint → targets being probed on it

    def submit(self, target: Target, exit: ExitRelay) -> bool:
        """Queue ``target`` on ``exit`` unless it is already queued or running there."""
        with self._lock:
            if self._is_pending(target.name, exit.fingerprint):
                return False
            waiting = self._queued.setdefault(exit.fingerprint, {})
            new_exit = not waiting
            waiting[target.name] = target
        if new_exit:
            self._pool.submit(self._run, exit)
        return True

    def is_pending(self, target: Target, exit: ExitRelay) -> bool:
        with self._lock:
            return self._is_pending(target.name, exit.fingerprint)

    def _is_pending(self, target: str, fingerprint: str) -> bool:
        return target in self._queued.get(fingerprint, {}) or target in self._running.get(fingerprint, ())

    @property
    def queued(self) -> int:
        """(target, exit) pairs waiting for a lane."""
        with self._lock:
            return sum(len(targets) for targets in self._queued.values())

    @property
    def in_flight(self) -> int:
        """(target, exit) pairs being probed now."""
        with self._lock:
            return sum(len(targets) for targets in self._running.values())

    def _run(self, exit: ExitRelay) -> None:
        lane = self._free.get()
        with self._lock:
            targets = list(self._queued.pop(exit.fingerprint, {}).values())
            self._running.setdefault(exit.fingerprint, set()).update(t.name for t in targets)
        try:
            if targets:
                self._probe_exit(exit, targets, lane)
        except Exception:  # never lose the lane or the pool thread to a bug
            log.exception("task failed", extra={"exit": exit.fingerprint})
        finally:
            with self._lock:
                running = self._running.get(exit.fingerprint, set())
                running.difference_update(t.name for t in targets)
                if not running:
                    self._running.pop(exit.fingerprint, None)
            self._free.put(lane)

    def _probe_exit(self, exit: ExitRelay, targets: list[Target], lane: Lane) -> None:
        try:
            self._pin(lane, exit)
        except PinError as exc:
            self.backoff.failed(exit.fingerprint, time.time())
            for target in targets:
                for name in target.fetchers:
                    self._on_result(error_result(target, self._labels.get(name, name), exit, exc.reason, str(exc)))
            return
        self.backoff.succeeded(exit.fingerprint)
        try:
            self._probe_targets(exit, targets, lane)
        finally:
            try:
                self._leave(lane, targets)
            finally:
                self._release(lane)

    def _leave(self, lane: Lane, targets: list[Target]) -> None:
        """Take each fetcher that ran off its last page while the circuit is still there: a page
        still loading (its favicon, a late script) would otherwise open streams counted as stray."""
        for name in dict.fromkeys(name for target in targets for name in target.fetchers):
            fetcher = self._fetchers.get(name)
            if fetcher is not None:
                fetcher.leave(lane)

    def _probe_targets(self, exit: ExitRelay, targets: list[Target], lane: Lane) -> None:
        for target in targets:
            for name in target.fetchers:
                fetcher = self._fetchers.get(name)
                if fetcher is None:
                    self._on_result(error_result(target, self._labels.get(name, name), exit, "browser",
                                                 f"fetcher {name} is not available"))
                    continue
                result = run_probe(target, exit, fetcher, lane, self._classify, self._timeouts[name],
                                   self._baseline(target.name))
                if self._keep_evidence and result.needs_evidence:
                    # the screenshot must be taken now, before the lane's browser loads another page
                    result = replace(result, evidence=self._keep_evidence(result, fetcher.screenshot(lane)))
                self._on_result(result)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=True)


class Scheduler:
    """Fires each target's run on its interval (or the schedule's cron) with jitter."""

    def __init__(self, schedule: Schedule, prober: Prober,
                 candidates: Callable[[Target], list[ExitRelay]],
                 last_attempted: Callable[[str], dict[str, float]],
                 learn_baseline: Callable[[Target], object] | None = None):
        self._schedule = schedule
        self._prober = prober
        self._candidates = candidates
        self._last_attempted = last_attempted
        self._learn_baseline = learn_baseline
        self._scheduler = BackgroundScheduler(daemon=True)

    def start(self, targets: Sequence[Target]) -> None:
        self.set_targets(targets)
        self._scheduler.start()

    def set_targets(self, targets: Sequence[Target]) -> None:
        """(Re)schedule every target; jobs of targets no longer listed are removed."""
        wanted = {t.name for t in targets} | {f"baseline:{t.name}" for t in targets if self._learn_baseline}
        for job in self._scheduler.get_jobs():
            if job.id not in wanted:
                job.remove()
        for target in targets:
            # an interval target runs at once; a cron target waits for its first cron time
            first_run = {} if target.cron else {"next_run_time": _now()}
            self._scheduler.add_job(self.run_target, self._trigger(target), args=[target], id=target.name,
                                    replace_existing=True, max_instances=1, coalesce=True,
                                    misfire_grace_time=None, **first_run)
            if self._learn_baseline:
                self._scheduler.add_job(self._learn_baseline, IntervalTrigger(seconds=target.change.baseline_interval),
                                        args=[target], id=f"baseline:{target.name}", replace_existing=True,
                                        max_instances=1, coalesce=True, misfire_grace_time=None,
                                        next_run_time=_now())

    def _trigger(self, target: Target):
        jitter = int(self._schedule.jitter) or None
        if target.cron:
            trigger = CronTrigger.from_crontab(target.cron, timezone="UTC")
            trigger.jitter = jitter
            return trigger
        return IntervalTrigger(seconds=target.interval, jitter=jitter)

    def run_target(self, target: Target) -> int:
        """Queue probes of the target's next exits; returns how many were queued."""
        now = time.time()
        candidates = [e for e in self._candidates(target) if not self._prober.is_pending(target, e)
                      and not self._prober.backoff.waiting(e.fingerprint, now)]
        chosen = next_exits(candidates, target.exits_per_run, self._last_attempted(target.name))
        queued = sum(self._prober.submit(target, exit) for exit in chosen)
        log.debug("target run", extra={"target": target.name, "exits": len(chosen), "queued": queued})
        return queued

    def shutdown(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)


def _now():
    from datetime import datetime

    return datetime.now(UTC)
