"""The tor supervisor: keep one connection to our tor, and a probing session on it, alive.

Tor may be unreachable at start, die, or restart; none of that stops the
exporter.  The supervisor connects (with backoff, doubling up to a minute),
starts a session on the connection, watches that tor's control connection is
alive, and on loss tears the session and the connection down and starts over.
A session that cannot start yet (a tor we launched has no consensus for its
first seconds) is tried again on the same tor, with backoff.  On ``restart()``
(a config reload) it starts a new session with the config now in force; it
keeps the tor connection (in launch mode: the tor process, its bootstrap and
its consensus) when the reload changed nothing that tor was opened with: the
``tor`` keys other than those the session's circuit pinner reads
(``circuit_timeout``, ``hops``, ``deny_hosts``), and the number of lanes.
What a session holds (circuits, fetchers, scheduler) is added to it by the
``start_session`` it is given; the supervisor knows only how to close it.

Threads: the loop runs on its own thread, ``tor-keeper``, which alone starts and
replaces sessions.  ``restart()`` comes from the reload thread, ``stop()`` from
the main thread (it tears down the session itself, then the loop ends).
``session`` and ``error`` are read by web threads; both are replaced whole, under
``_lock``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from exporter.config import TorConfig
from exporter.tor.control import OurTor, TorUnavailable, open_tor

log = logging.getLogger(__name__)

RECONNECT_MAX_SECONDS = 60.0
WATCHDOG_SECONDS = 5.0


class Session:
    """What runs on one tor connection; closed in the reverse order of its parts' start (the
    connection itself is the supervisor's to close)."""

    def __init__(self, tor: OurTor):
        self.tor = tor
        self.prober = None  # set once probing runs: the view reads its queue lengths
        self.fetchers: dict = {}  # fetcher name → fetcher, once probing runs: the view reads their identity
        self._closers: list[Callable[[], object]] = []

    def on_close(self, step: Callable[[], object]) -> None:
        """Run ``step`` when the session closes (before the steps registered earlier)."""
        self._closers.append(step)

    def close(self) -> None:
        """Stop probing and drop the connection (running probes finish or fail, and are counted)."""
        for step in reversed(self._closers):
            try:
                step()
            except Exception as exc:  # tor or a browser may already be gone
                log.debug("teardown step failed", extra={"step": getattr(step, "__qualname__", "?"),
                                                         "err": str(exc)})


class TorSupervisor:
    """Connects to tor, has ``start_session`` fill a session on each connection, and starts over
    when tor goes away."""

    def __init__(self, tor_config: Callable[[], TorConfig], lanes: Callable[[], int],
                 start_session: Callable[[Session], None]):
        self._tor_config = tor_config
        self._lanes = lanes
        self._start_session = start_session
        self._stopping = threading.Event()
        self._restart = threading.Event()
        self._lock = threading.Lock()
        self._session: Session | None = None
        self._error = "connecting to tor"

    @property
    def session(self) -> Session | None:
        """The running session, or None while tor is unavailable."""
        with self._lock:
            return self._session

    @property
    def error(self) -> str:
        """Why there is no session (one line), or "" while probing."""
        with self._lock:
            return self._error

    def start(self) -> None:
        threading.Thread(target=self._keep, name="tor-keeper", daemon=True).start()

    def restart(self) -> None:
        """Start over with the configuration now in force (running probes finish first), on the
        same tor when nothing it was opened with changed."""
        self._restart.set()

    def stop(self) -> None:
        self._stopping.set()
        self._restart.set()
        self._teardown()

    def _keep(self) -> None:
        delay = 1.0
        while not self._stopping.is_set():
            config, lanes = self._tor_config(), self._lanes()
            control = f"{config.control_host}:{config.control_port}"
            try:
                tor = open_tor(config, lanes=lanes)
            except TorUnavailable as exc:
                self._set(None, str(exc))
                log.error("tor unavailable", extra={"err": str(exc), "retry_seconds": delay})
                self._stopping.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
                continue
            delay = 1.0
            self._serve(tor, config, lanes, control)

    def _serve(self, tor: OurTor, config: TorConfig, lanes: int, control: str) -> None:
        """Run sessions on ``tor`` until it must go: lost, stopped, or a reload changed what it was
        opened with.  A session that cannot start yet (a tor we launched has no consensus for its
        first seconds) is tried again on the same tor, with backoff."""
        delay = 1.0
        while True:
            session = Session(tor)
            try:
                self._start_session(session)
            except Exception as exc:  # e.g. no consensus yet: report, try again on this tor
                self._set(None, f"tor at {control}: {exc}")
                log.error("could not start probing", extra={"control": control, "err": str(exc),
                                                            "retry_seconds": delay})
                log.debug("could not start probing", exc_info=True)
                session.close()
                session = None
                ended = self._wait(tor, control, delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
            else:
                self._set(session, "")
                if self._stopping.is_set():  # stop() came while the session started
                    self._teardown()
                    return
                delay = 1.0
                ended = self._wait(tor, control)
            if ended == "timeout":
                continue
            if ended == "restart" and same_tor(config, self._tor_config()) and lanes == self._lanes():
                log.info("restarting probing on the same tor", extra={"control": control})
                self._teardown("restarting probing with the new configuration", keep_tor=True)
                continue
            if ended == "restart":
                log.info("tor settings changed; reopening tor", extra={"control": control})
            if session is None:  # no session holds this tor: nobody else closes it
                tor.close()
            elif ended != "stop":  # stop() closed the session and its tor itself
                self._teardown("lost the connection to tor; reconnecting" if ended == "lost" else "connecting to tor")
            return

    def _wait(self, tor: OurTor, control: str, seconds: float | None = None) -> str:
        """Wait for a reload ("restart"), a stop ("stop"), the loss of ``tor`` ("lost"), or the end of
        ``seconds`` ("timeout")."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            left = WATCHDOG_SECONDS if deadline is None else min(WATCHDOG_SECONDS, deadline - time.monotonic())
            self._restart.wait(max(left, 0.0))
            if self._stopping.is_set():
                return "stop"
            if self._restart.is_set():  # a reload: start over with the config now in force
                self._restart.clear()
                return "restart"
            if not tor.controller.is_alive():
                log.error("lost tor", extra={"control": control})
                return "lost"
            if deadline is not None and time.monotonic() >= deadline:
                return "timeout"

    def _set(self, session: Session | None, error: str) -> None:
        with self._lock:
            self._session, self._error = session, error

    def _teardown(self, error: str = "connecting to tor", keep_tor: bool = False) -> None:
        """Close the running session and, unless ``keep_tor``, its tor connection."""
        with self._lock:
            session, self._session, self._error = self._session, None, error
        if session is not None:
            session.close()
            if not keep_tor:
                session.tor.close()


# tor keys that only the session's circuit pinner reads (tor builds the circuits we ask for, of the
# length we ask, and hands us every stream): a new session takes them up, on the same tor
PINNER_KEYS = ("circuit_timeout", "hops", "deny_hosts")


def same_tor(running: TorConfig, wanted: TorConfig) -> bool:
    """Whether a tor opened with ``running`` serves ``wanted`` as it is: every tor key is the same
    but the pinner's."""
    return replace(running, **{key: getattr(wanted, key) for key in PINNER_KEYS}) == wanted
