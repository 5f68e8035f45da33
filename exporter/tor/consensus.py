"""The consensus as the exporter needs it: exits, their exit probability, their exit policy.

Exit probability follows Tor Metrics (Onionoo's path-selection probabilities):
among relays with the Running flag, an exit (Exit flag, no BadExit) weighs its
consensus weight × Wed when it is also a Guard, × Wee otherwise, each bandwidth
weight divided by ``bwweightscale`` (10000); probabilities are these weights
normalised over all exits.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import stem
from stem.control import EventType
from stem.descriptor.networkstatus import NetworkStatusDocumentV3

from exporter.tor.relay import ExitRelay

log = logging.getLogger(__name__)

BANDWIDTH_WEIGHT_SCALE = 10000  # dir-spec: "bwweightscale", the unit of Wxx bandwidth weights

# GETINFO keys serving the current consensus (microdesc flavour since tor 0.4.3), then
# the files tor caches it in under its DataDirectory.
_CONSENSUS_GETINFO = ("dir/status-vote/current/consensus-microdesc", "dir/status-vote/current/consensus")
_CONSENSUS_FILES = ("cached-microdesc-consensus", "cached-consensus")


class StatusEntry(Protocol):
    """What a router status entry offers (stem's RouterStatusEntryV3 / MicroV3)."""

    fingerprint: str
    nickname: str
    address: str
    flags: list[str]
    bandwidth: int | None


@dataclass(frozen=True)
class Consensus:
    """One consensus: when it became valid, its exits, and every relay in it.

    ``relays`` are stem router status entries (for choosing first hops).
    """

    valid_after: datetime
    exits: tuple[ExitRelay, ...]
    relays: tuple[StatusEntry, ...] = ()


def is_exit(entry: StatusEntry) -> bool:
    """A usable exit: Running and Exit, not BadExit."""
    flags = set(entry.flags)
    return {"Running", "Exit"} <= flags and "BadExit" not in flags


def exit_probabilities(entries: Iterable[StatusEntry], bandwidth_weights: dict[str, int]) -> dict[str, float]:
    """Exit probability of every exit in ``entries``, keyed by fingerprint; they sum to 1.

    Missing bandwidth weights count as 1 (10000), as when a consensus has none.
    """
    wee = bandwidth_weights.get("Wee", BANDWIDTH_WEIGHT_SCALE) / BANDWIDTH_WEIGHT_SCALE
    wed = bandwidth_weights.get("Wed", BANDWIDTH_WEIGHT_SCALE) / BANDWIDTH_WEIGHT_SCALE
    weights = {}
    for entry in entries:
        if is_exit(entry):
            factor = wed if "Guard" in entry.flags else wee
            weights[entry.fingerprint] = (entry.bandwidth or 0) * factor
    total = sum(weights.values())
    return {fingerprint: (weight / total if total else 0.0) for fingerprint, weight in weights.items()}


def current_consensus(controller) -> NetworkStatusDocumentV3:
    """Tor's current consensus document, from GETINFO or else its cached file."""
    for key in _CONSENSUS_GETINFO:
        try:
            text = controller.get_info(key)
        except stem.ControllerError:
            continue
        if text:
            return NetworkStatusDocumentV3(text.encode())
    data_directory = Path(controller.get_conf("DataDirectory"))
    for name in _CONSENSUS_FILES:
        path = data_directory / name
        if path.exists():
            return NetworkStatusDocumentV3(path.read_bytes())
    raise LookupError("tor has no consensus yet (GETINFO and cached consensus files gave nothing)")


def read_exits(controller, country_of: Callable[[str], str]) -> Consensus:
    """The exits of tor's current consensus with exit probability and country."""
    document = current_consensus(controller)
    relays = tuple(document.routers.values())
    probabilities = exit_probabilities(relays, document.bandwidth_weights)
    exits = tuple(
        ExitRelay(
            fingerprint=entry.fingerprint,
            nickname=entry.nickname,
            address=entry.address,
            flags=frozenset(entry.flags),
            bandwidth=entry.bandwidth or 0,
            probability=probabilities[entry.fingerprint],
            country=country_of(entry.address),
        )
        for entry in relays
        if entry.fingerprint in probabilities
    )
    valid_after = document.valid_after.replace(tzinfo=UTC)
    return Consensus(valid_after=valid_after, exits=exits, relays=relays)


def allows_port(controller_or_descriptor, fingerprint: str, port: int) -> bool:
    """Whether the exit's full exit policy accepts ``port`` for some address.

    Uses the server descriptor: microdescriptor policy summaries leave out
    private ranges, so an exit that accepts only 127.0.0.0/8 reads as
    ``reject 1-65535`` there.  Tor clients fetch server descriptors only with
    ``FetchUselessDescriptors 1`` (open_tor sets it); without a descriptor the
    answer is False.
    """
    descriptor = controller_or_descriptor
    if not hasattr(descriptor, "exit_policy"):
        try:
            descriptor = controller_or_descriptor.get_server_descriptor(fingerprint)
        except (stem.ControllerError, ValueError) as exc:  # stem: ValueError while UseMicrodescriptors is 1
            log.debug("no server descriptor", extra={"exit": fingerprint, "err": str(exc)})
            return False
    return descriptor.exit_policy.can_exit_to(port=port)


def watch_consensus(controller, callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` (in a thread of its own) whenever tor gets a new consensus.

    Tor emits NEWCONSENSUS after it accepts a consensus; the callback runs off
    stem's event thread so it may call the controller.  Returns the function
    that stops watching.
    """

    def on_new_consensus(_event) -> None:
        threading.Thread(target=callback, name="new-consensus", daemon=True).start()

    controller.add_event_listener(on_new_consensus, EventType.NEWCONSENSUS)
    return lambda: controller.remove_event_listener(on_new_consensus)
