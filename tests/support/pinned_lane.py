"""One lane of our tor, pinned to a chosen test-bed exit before each probe (e2e helper).

It plays the Prober's part: ``pin`` before a probe, ``release`` after it, so a
stream the lane opens between probes is stray (closed and counted in ``closed``).
"""

from __future__ import annotations

import time
from pathlib import Path

import stem

from exporter.config import TorConfig
from exporter.tor.circuit import CircuitPinner
from exporter.tor.consensus import read_exits
from exporter.tor.control import open_tor
from exporter.values import CircuitError


class PinnedLane:
    def __init__(self, state: dict, hops: int = 3):
        self.tor = open_tor(
            TorConfig(mode="connect", control_port=state["client"]["control_port"],
                      cookie_file=Path(state["client"]["cookie_file"])),
            lanes=1,
        )
        self.lane = self.tor.lanes[0]
        # hops before the exit: middles and the other exits (the client may hold no microdescriptor of
        # an authority); two middles alone leave a 3-hop pin no second try once a first hop failed
        exits = {e["fingerprint"] for e in state["exits"]}
        wanted = {relay["fingerprint"] for relay in state["relays"] if relay["role"] == "middle"} | exits
        deadline = time.monotonic() + 60
        while True:  # a consensus read while a new one is being loaded may lack relays
            self.consensus = read_exits(self.tor.controller, lambda address: "??")
            if wanted <= {relay.fingerprint for relay in self.consensus.relays} or time.monotonic() > deadline:
                break
            time.sleep(1)
        self.first_hops = [relay for relay in self.consensus.relays if relay.fingerprint in wanted]
        # open_tor turns microdescriptors off, so circuits wait for full descriptors
        wait_for_descriptors(self.tor.controller, wanted)
        self.closed: list[str] = []
        self.pinner = CircuitPinner(self.tor.controller, [self.lane], hops=hops, on_closed=self.closed.append)
        self.pinner.start()

    def pin(self, nickname: str, tries: int = 3):
        """Pin the lane to exit ``nickname``.  A pin that failed is tried again: on loopback tor
        learns a circuit build timeout of milliseconds, which a busy machine overruns now and then
        (CIRC FAILED REASON=TIMEOUT); the exporter counts that as a circuit error, a test wants its probe."""
        exit_relay = next(e for e in self.consensus.exits if e.nickname == nickname)
        for attempt in range(1, tries + 1):
            try:
                self.pinner.pin(self.lane, exit_relay, self.first_hops)
                return self.lane
            except CircuitError:
                if attempt == tries:
                    raise
                time.sleep(1)

    def release(self) -> None:
        self.pinner.release(self.lane)

    def lost(self) -> str | None:
        """How tor closed the lane's pinned circuit (a relay's DESTROY, a closed channel), or None."""
        return self.pinner.lost(self.lane)

    def close(self):
        self.pinner.stop()
        self.tor.close()


def wait_for_descriptors(controller, fingerprints: set[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    missing = set(fingerprints)
    while missing:
        for fingerprint in list(missing):
            try:
                controller.get_info(f"desc/id/{fingerprint}")
                missing.discard(fingerprint)
            except stem.ControllerError:
                pass
        if missing and time.monotonic() > deadline:
            raise TimeoutError(f"tor has no server descriptor for {sorted(missing)}")
        time.sleep(0.5)
