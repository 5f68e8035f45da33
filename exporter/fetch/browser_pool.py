"""Warm browsers, one per lane, recycled before they grow stale or fat.

Process facts behind the code:

- the driver (chromedriver) is started as the leader of a new session, and the
  browser and its helpers inherit that session, so one ``killpg`` ends the
  whole tree even when the driver hangs;
- a few helpers escape the session (Chromium's crashpad handlers call
  ``setsid``), but their command lines name the browser's private directory,
  so they are found by that;
- a killed process stays in ``/proc`` as a zombie (state ``Z``) until its
  parent reaps it; zombies use no memory and are not counted as alive.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import urllib3
from selenium.common.exceptions import TimeoutException, WebDriverException

from exporter.values import (
    BrowserRestart,
    FetchError,
    FetchResult,
    Lane,
    Response,
    Verdict,
)

log = logging.getLogger(__name__)

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# Beyond the page-load timeout and the challenge wait, how long a probe may
# take before the watchdog declares the browser hung and kills it.
HANG_GRACE_SECONDS = 15.0

# How long a kill waits for the killed processes to be gone (a process in uninterruptible sleep,
# on a stalled disk, takes as long as its system call).
KILL_WAIT_SECONDS = 2.0


def live_processes(session_id: int, marker: str) -> list[int]:
    """PIDs of live (non-zombie) processes in session ``session_id`` or whose
    command line contains ``marker``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            # fields after "(comm)": state ppid pgrp session ...
            state, _ppid, _pgrp, session = stat.rsplit(")", 1)[1].split()[:4]
            if state == "Z":
                continue
            if int(session) == session_id or marker in cmdline(int(entry)):
                pids.append(int(entry))
        except (OSError, ValueError):
            continue  # the process ended while we looked
    return pids


def cmdline(pid: int) -> str:
    """The process's command line, arguments joined by spaces."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def resident_bytes(pids: list[int]) -> int:
    """Resident memory of the processes together.

    Each process counts its proportional set size (``Pss`` in
    ``/proc/PID/smaps_rollup``: a page shared by n processes counts 1/n in
    each), so the sum is what the tree really holds; a plain RSS sum counts
    Chromium's shared libraries and shared memory once per process (about 2.5×
    too much).  Falls back to RSS where smaps_rollup is missing.
    """
    total = 0
    for pid in pids:
        try:
            total += _pss_bytes(pid)
        except (OSError, ValueError, IndexError):
            continue  # the process ended while we looked
    return total


def _pss_bytes(pid: int) -> int:
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except FileNotFoundError:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    for line in rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no Pss line for {pid}")


def kill_tree(session_id: int, marker: str) -> None:
    """SIGKILL the session's process group and every straggler that names ``marker``, and wait
    (at most ``KILL_WAIT_SECONDS``) until none is alive: a killed process first finishes the
    system call it is in, so until then it may still write to the browser's home.

    A ``session_id`` below 1 (the driver never started) kills by ``marker`` only.
    """
    if session_id > 0:
        try:
            os.killpg(session_id, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in live_processes(session_id, marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + KILL_WAIT_SECONDS
    while live_processes(session_id, marker) and time.monotonic() < deadline:
        time.sleep(0.02)


class Browser(Protocol):
    """What the pool needs from one warm browser."""

    lane: Lane  # the lane whose SocksPort it is proxied through
    probes: int  # probes served so far

    def alive(self) -> bool: ...

    def resident_bytes(self) -> int: ...

    def kill(self) -> None: ...

    def probe(self, url: str, timeout: float, classify: Callable[[Response], Verdict],
              challenge_wait: float) -> FetchResult: ...

    def screenshot(self) -> bytes | None: ...

    def leave(self) -> None: ...


class BrowserPool:
    """One browser per lane (by index), started on first use and replaced when

    - the lane's SocksPort changed,
    - it has served ``recycle_after`` probes,
    - its process tree's resident memory exceeds ``memory_limit_bytes``, or
    - it died (crash, or killed by the hang watchdog of ``probe``).

    ``name`` names the browser in error messages; ``on_restart`` hears why each
    browser was replaced (its owner points it at the metrics).
    """

    def __init__(self, launch: Callable[[Lane], Browser], recycle_after: int, memory_limit_bytes: int,
                 name: str = "browser", marker: str = ""):
        """``marker`` is in the command line of every browser this pool starts (its home's prefix):
        close() kills by it the browsers still starting, which no list holds yet."""
        self._launch = launch
        self._name = name
        self._marker = marker
        self._recycle_after = recycle_after
        self._memory_limit = memory_limit_bytes
        self._browsers: dict[int, Browser] = {}
        self._lock = threading.Lock()
        self._closed = False  # set by close(): no browser starts after it
        self.recycled = 0  # browsers replaced so far (any reason)
        self.on_restart: Callable[[BrowserRestart], None] = lambda reason: None

    def acquire(self, lane: Lane) -> Browser:
        """The warm browser for ``lane``, fresh if the old one had to go."""
        with self._lock:
            browser = self._browsers.get(lane.index)
        if browser is not None:
            reason = self._recycle_reason(browser, lane)
            if reason is None:
                return browser
            log.info("recycling a browser", extra={"browser": self._name, "lane": lane.index, "why": reason[1]})
            self.discard(lane)
            self.recycled += 1
            self.on_restart(reason[0])
        if self._closed:  # the probes close() ends go on to their next fetch
            raise FetchError("browser", f"{self._name}: stopped, the exporter is shutting down")
        try:
            browser = self._launch(lane)
        except Exception:
            if self._closed:  # close() killed it while it started
                raise FetchError("browser", f"{self._name}: stopped, the exporter is shutting down") from None
            self.on_restart(BrowserRestart.LAUNCH_FAILED)
            raise
        with self._lock:
            if not self._closed:
                self._browsers[lane.index] = browser
                return browser
        browser.kill()  # the pool closed while it started
        raise FetchError("browser", f"{self._name}: stopped, the exporter is shutting down")

    def probe(self, lane: Lane, url: str, timeout: float, classify: Callable[[Response], Verdict],
              challenge_wait: float) -> FetchResult:
        """One probe on the lane's warm browser, which is killed if it hangs and
        replaced after a timeout or a crash; every failure is a ``FetchError``."""
        browser = self.acquire(lane)
        hung = threading.Event()

        def kill_hung() -> None:
            hung.set()
            browser.kill()

        watchdog = threading.Timer(timeout + challenge_wait + HANG_GRACE_SECONDS, kill_hung)
        watchdog.daemon = True
        watchdog.start()
        try:
            return browser.probe(url, timeout, classify, challenge_wait)
        except FetchError as exc:
            if isinstance(exc.__cause__, TimeoutException):  # the page load hung: the renderer may be stuck
                self.discard(lane)
                self.on_restart(BrowserRestart.HUNG)
            raise
        except (WebDriverException, urllib3.exceptions.HTTPError) as exc:  # the latter: the driver is gone
            message = getattr(exc, "msg", None) or str(exc)
            if self._closed:  # close() killed it mid-probe: a shutdown, not a crash
                raise FetchError("browser", f"{self._name}: stopped, the exporter is shutting down") from exc
            if not browser.alive():
                self.discard(lane)
                self.on_restart(BrowserRestart.HUNG if hung.is_set() else BrowserRestart.CRASHED)
                raise FetchError("browser", f"{self._name} died during the probe: {message}") from exc
            raise FetchError("browser", f"{self._name}: {message}") from exc
        finally:
            watchdog.cancel()

    def screenshot(self, lane: Lane) -> bytes | None:
        """PNG of the page the lane's browser shows now (the last probe's final page
        when called right after ``probe`` on that lane); None without a live browser."""
        browser = self.peek(lane)
        return browser.screenshot() if browser is not None and browser.alive() else None

    def leave(self, lane: Lane) -> None:
        """Take the lane's browser (if it runs) off the last page; a browser that fails to is
        replaced at its next probe."""
        browser = self.peek(lane)
        if browser is None or not browser.alive():
            return
        try:
            browser.leave()
        except (WebDriverException, urllib3.exceptions.HTTPError) as exc:
            log.info("leaving the page failed", extra={"browser": self._name, "lane": lane.index, "err": str(exc)})
            self.discard(lane)

    def peek(self, lane: Lane) -> Browser | None:
        """The lane's browser if one is running, without starting or recycling it."""
        with self._lock:
            return self._browsers.get(lane.index)

    def discard(self, lane: Lane) -> None:
        """Kill the lane's browser (if any); the next acquire starts a new one."""
        with self._lock:
            browser = self._browsers.pop(lane.index, None)
        if browser is not None:
            browser.kill()

    def close(self) -> None:
        """Kill every browser, ending the probes they run; no browser starts after this."""
        with self._lock:
            self._closed = True
            browsers = list(self._browsers.values())
            self._browsers.clear()
        for browser in browsers:
            browser.kill()
        if self._marker:  # a launch can wait a minute for a browser that does not come up
            kill_tree(-1, self._marker)

    def _recycle_reason(self, browser: Browser, lane: Lane) -> tuple[BrowserRestart, str] | None:
        """Why the lane's browser must go, for the metric and for the log; None while it may stay."""
        if browser.lane != lane:
            return BrowserRestart.LANE_CHANGED, "the lane's SocksPort changed"
        if not browser.alive():
            return BrowserRestart.CRASHED, "browser died"
        if browser.probes >= self._recycle_after:
            return BrowserRestart.RECYCLE_AFTER, f"served {browser.probes} probes"
        rss = browser.resident_bytes()
        if rss > self._memory_limit:
            return BrowserRestart.MEMORY_LIMIT, f"resident memory {rss} > {self._memory_limit} bytes"
        return None
