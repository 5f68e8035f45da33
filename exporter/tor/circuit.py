"""One pinned circuit per lane, ending at the exit being probed, and every stream of the lane on it.

Tor leaves new streams unattached while ``__LeaveStreamsUnattached`` is 1 and
reports them as STREAM NEW events (DETACHED when a circuit gave up on them);
the controller then sends ATTACHSTREAM, or CLOSESTREAM.  A stream belongs to
a lane when the event's ``SESSION_GROUP`` is that lane's SocksPort session
group.  ATTACHSTREAM to a circuit that is not yet BUILT fails, so ``pin()``
returns only once tor reports the circuit BUILT.

Streams are told apart by lane, never by host: a page needs its vendors'
scripts and frames, other hosts' redirects and XHRs, and a user's browser
sends them all through the same exit, so every stream of a pinned lane goes
to its circuit (unless the operator denied the host).  A lane is pinned only
while a probe runs on it; a stream it opens at any other time (a browser's
background traffic) is closed, logged and counted as ``stray``.  A page left
at the end of a probe may still open a stream it had begun (Chromium's browser
process fetches the favicon, and navigating away does not cancel it): tor
reports a stream only once its SOCKS request arrives, so ``release_when_quiet``
keeps the circuit until the lane has opened no stream for a moment.

Tor may close a pinned circuit itself: a relay on the path sends DESTROY
(CIRC CLOSED with REASON=DESTROYED and the relay's REMOTE_REASON), or its
channel closes.  The probe on that lane then cannot reach its exit; its later
streams are closed and counted as ``circuit_closed``, not ``stray``, and the
CIRC event's reasons are logged, until the lane is pinned again or released.

A stream to an onion service never goes through an exit: tor must fetch the
service's descriptor and build the rendezvous circuit itself, which a
controller cannot do.  So a new stream to a ``.onion`` host is handed back to
tor with ATTACHSTREAM to circuit 0 (control-spec: "if circuit ID is 0,
responsibility for attaching the given stream is returned to Tor"), whatever
circuit its lane is pinned to; tor then attaches it to the rendezvous circuit
and, when that fails, retries it itself.
"""

from __future__ import annotations

import ipaddress
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence

import stem
from stem import CircStatus, StreamStatus
from stem.control import EventType

from exporter.tor.relay import ExitRelay
from exporter.values import CircuitError, CircuitFailure, Lane, StreamClosed

log = logging.getLogger(__name__)
ALIVE_CHECK_SECONDS = 0.5  # how often a circuit build checks that tor's control connection is still up
STREAM_WORKER_JOIN_SECONDS = 5.0  # how long stop() waits for the stream worker to finish its event
QUIET_SECONDS = 0.5  # how long a lane must open no stream before release_when_quiet() unpins it
QUIET_LIMIT_SECONDS = 2.0  # how long release_when_quiet() waits at most for that
QUIET_POLL_SECONDS = 0.02

# CIRC event REASON (control-spec "CIRC" event) → our failure reason.
_CIRC_REASONS = {
    "TIMEOUT": CircuitFailure.TIMEOUT,
    "MEASUREMENT_EXPIRED": CircuitFailure.TIMEOUT,
    "DESTROYED": CircuitFailure.DESTROYED,
    "CHANNEL_CLOSED": CircuitFailure.DESTROYED,
    "OR_CONN_CLOSED": CircuitFailure.DESTROYED,
    "FINISHED": CircuitFailure.DESTROYED,
    "REQUESTED": CircuitFailure.DESTROYED,
    "CONNECTFAILED": CircuitFailure.CONNECT_FAILED,
    "OR_IDENTITY": CircuitFailure.CONNECT_FAILED,
    "NOPATH": CircuitFailure.CONNECT_FAILED,
}

_SETTINGS = ("__LeaveStreamsUnattached", "__DisablePredictedCircuits")
_ATTACHABLE = (StreamStatus.NEW, StreamStatus.NEWRESOLVE, StreamStatus.DETACHED)


def reason_for_circ_event(circ_reason: str | None) -> CircuitFailure:
    """Our failure reason for a CIRC FAILED/CLOSED event's REASON."""
    return _CIRC_REASONS.get((circ_reason or "").upper(), CircuitFailure.OTHER)


def reason_for_extend_error(error: stem.ControllerError) -> CircuitFailure:
    """Our failure reason for an EXTENDCIRCUIT refusal (552 "No descriptor for …", "Unknown router …")."""
    text = str(error).lower()
    if isinstance(error, stem.InvalidRequest) and ("descriptor" in text or "unknown router" in text):
        return CircuitFailure.NO_DESCRIPTOR
    return CircuitFailure.OTHER


def same_slash16(a: str, b: str) -> bool:
    """Both IPv4 addresses share a /16 (tor refuses such pairs in normal path selection)."""
    try:
        net_a = ipaddress.ip_network(f"{a}/16", strict=False)
        return ipaddress.ip_address(b) in net_a
    except ValueError:
        return False


def _normalise_family(entries: Iterable[str]) -> set[str]:
    """Family lines name relays as ``$FP``, ``$FP~nick``, ``$FP=nick`` or a nickname."""
    names = set()
    for entry in entries:
        names.add(entry.lstrip("$").split("~")[0].split("=")[0].upper())
    return names


def choose_first_hop(exit: ExitRelay, exit_family: Iterable[str], relays: Iterable, exclude: set[str] = frozenset(),
                     rng: random.Random = random) -> object | None:
    """A first hop for a circuit ending at ``exit``, chosen as sbws chooses a helper.

    Never the exit itself, a relay of its declared family, a relay in
    ``exclude`` (first hops that already failed), or one without Running.
    Preferred, in this order: outside the exit's /16, then Fast and Stable;
    each preference falls back when nothing meets it (a test network on
    127.0.0.0/8 has no other /16).  Uniform choice within the best tier.
    """
    family = _normalise_family(exit_family)
    candidates = [
        relay for relay in relays
        if relay.fingerprint != exit.fingerprint
        and relay.fingerprint not in exclude
        and relay.fingerprint.upper() not in family
        and relay.nickname.upper() not in family
        and "Running" in relay.flags
    ]
    tiers = (
        lambda r: not same_slash16(r.address, exit.address) and {"Fast", "Stable"} <= set(r.flags),
        lambda r: not same_slash16(r.address, exit.address),
        lambda r: {"Fast", "Stable"} <= set(r.flags),
        lambda r: True,
    )
    for preferred in tiers:
        tier = [relay for relay in candidates if preferred(relay)]
        if tier:
            return rng.choice(tier)
    return None


def choose_path(exit: ExitRelay, exit_family: Iterable[str], relays: Iterable, hops: int,
                exclude: set[str] = frozenset(), rng: random.Random = random) -> list | None:
    """The ``hops - 1`` relays before ``exit``, first hop first, each chosen as ``choose_first_hop``
    chooses and none twice; None when there are not enough."""
    relays = list(relays)
    path: list = []
    for _ in range(hops - 1):
        hop = choose_first_hop(exit, exit_family, relays, set(exclude) | {r.fingerprint for r in path}, rng)
        if hop is None:
            return None
        path.append(hop)
    return path


def host_denied(host: str, patterns: Iterable[str]) -> bool:
    """``host`` is one of ``patterns``: a name, or ``*.suffix`` for every name under the suffix."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        if pattern.startswith("*.") and host.endswith(pattern[1:]) or host == pattern:
            return True
    return False


class CircuitPinner:
    """Pins each lane to a circuit of ``hops`` hops ending at a chosen exit and attaches the lane's streams.

    Every stream of a pinned lane goes to its circuit, whatever its host,
    unless the host is in ``deny_hosts``; streams of a lane without a circuit
    (no probe runs on it) are closed as stray.  Closed streams are reported to
    ``on_closed(reason)``.  Streams of other session groups are left alone.
    """

    def __init__(self, controller, lanes: Sequence[Lane], deny_hosts: Iterable[str] = (),
                 on_failure: Callable[[str], None] = lambda reason: None, timeout: float = 20.0, attempts: int = 3,
                 descriptor_wait: float = 1.0, hops: int = 3,
                 on_closed: Callable[[StreamClosed], None] = lambda reason: None):
        self.controller = controller
        self.timeout = timeout
        self.attempts = attempts
        self.descriptor_wait = descriptor_wait
        self.hops = hops
        self._on_failure = on_failure
        self._on_closed = on_closed
        self._lanes = {lane.session_group: lane for lane in lanes}
        self._deny_hosts = tuple(host.lower() for host in deny_hosts)
        self._circuits: dict[int, str] = {}  # session group → pinned circuit id
        self._lost: dict[int, str] = {}  # session group → how tor closed its pinned circuit (until re-pin/release)
        self._reattached: set[str] = set()  # stream ids re-attached once after DETACHED
        self._opened: dict[int, float] = {}  # session group → when tor last reported a stream to attach
        self._unhandled: dict[int, int] = {}  # session group → such STREAM events not yet handled
        self._waiters: set[queue.Queue] = set()  # CIRC event queues of pin() calls in progress
        self._lock = threading.Lock()
        self._saved: dict[str, str | None] = {}
        self._stream_events: queue.Queue = queue.Queue()
        self._stream_worker: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Take over stream attachment (and stop tor building circuits of its own)."""
        self._saved = {name: self.controller.get_conf(name, None) for name in _SETTINGS}
        self.controller.set_options({name: "1" for name in _SETTINGS})
        self._stream_worker = threading.Thread(target=self._attach_streams, name="stream-attacher", daemon=True)
        self._stream_worker.start()
        self.controller.add_event_listener(self._on_circ, EventType.CIRC)
        self.controller.add_event_listener(self._queue_stream, EventType.STREAM)

    def stop(self) -> None:
        """Close our circuits, stop listening, and give stream attachment back to tor."""
        for group in list(self._circuits):
            self.release(self._lanes[group])
        self.controller.remove_event_listener(self._queue_stream)
        self.controller.remove_event_listener(self._on_circ)
        if self._stream_worker is not None:
            self._stream_events.put(None)
            self._stream_worker.join(STREAM_WORKER_JOIN_SECONDS)
            self._stream_worker = None
        try:
            self.controller.set_options([(name, value or "0") for name, value in self._saved.items()])
        except stem.ControllerError as exc:
            log.warning("could not restore tor's settings", extra={"settings": ",".join(_SETTINGS), "err": str(exc)})


    # -- pinning -----------------------------------------------------------

    def pin(self, lane: Lane, exit: ExitRelay, relays: Iterable) -> str:
        """Close the lane's circuit, build [first hop, (middle,) exit] and make it the lane's circuit.

        Returns the circuit id once BUILT.  A failed build is retried with
        another first hop, up to ``attempts`` builds, after ``descriptor_wait``
        seconds when tor lacked a descriptor; each failure is reported to
        ``on_failure(reason)``.  Raises CircuitError when out of tries; the
        lane then has no circuit, so its streams are closed.
        """
        self.release(lane)  # a browser's keep-alive connections must not outlive the previous exit
        relays = list(relays)
        family = self._family_of(exit.fingerprint)
        tried: set[str] = set()
        failure = None
        for attempt in range(1, self.attempts + 1):
            path = choose_path(exit, family, relays, self.hops, exclude=tried)
            if path is None:
                failure = CircuitError(CircuitFailure.NO_FIRST_HOP, f"no first hop left for exit {exit.fingerprint}")
                self._on_failure(failure.reason)
                break
            first_hop = path[0]
            tried.add(first_hop.fingerprint)
            try:
                circuit_id = self._build([relay.fingerprint for relay in path] + [exit.fingerprint])
            except CircuitError as exc:
                failure = exc
                self._on_failure(exc.reason)
                log.info("circuit failed", extra={"first_hop": first_hop.fingerprint, "exit": exit.fingerprint,
                                                   "reason": exc.reason, "err": str(exc)})
                if exc.reason == CircuitFailure.NO_DESCRIPTOR and attempt < self.attempts:
                    time.sleep(self.descriptor_wait)  # descriptors are often moments away (fresh consensus)
                continue
            with self._lock:
                self._circuits[lane.session_group] = circuit_id
                self._lost.pop(lane.session_group, None)
            return circuit_id
        raise CircuitError(failure.reason, f"lane {lane.index}: no circuit to exit {exit.fingerprint}: {failure}")

    def release(self, lane: Lane) -> None:
        """Close the lane's circuit; its later streams are closed until the next pin()."""
        with self._lock:
            circuit_id = self._circuits.pop(lane.session_group, None)
            self._lost.pop(lane.session_group, None)
        if circuit_id:
            self._close_circuit(circuit_id)

    def release_when_quiet(self, lane: Lane, quiet: float = QUIET_SECONDS, limit: float = QUIET_LIMIT_SECONDS) -> None:
        """Release the lane once every stream it opened is handled and it has opened none for
        ``quiet`` seconds, or after ``limit`` seconds: the late streams of the page its browser
        just left go to that page's circuit, not counted as stray."""
        group = lane.session_group
        start = time.monotonic()
        while (now := time.monotonic()) - start < limit:
            with self._lock:
                busy = self._unhandled.get(group, 0) > 0 or now - max(self._opened.get(group, 0.0), start) < quiet
            if not busy:
                break
            time.sleep(QUIET_POLL_SECONDS)
        self.release(lane)

    def circuit_of(self, lane: Lane) -> str | None:
        with self._lock:
            return self._circuits.get(lane.session_group)

    def lost(self, lane: Lane) -> str | None:
        """How tor closed the lane's pinned circuit, while the lane is still pinned; None otherwise."""
        with self._lock:
            return self._lost.get(lane.session_group)

    def _family_of(self, fingerprint: str) -> list[str]:
        """The exit's declared family, from its server descriptor or else its microdescriptor."""
        for lookup in (self.controller.get_server_descriptor, self.controller.get_microdescriptor):
            try:
                return list(lookup(fingerprint).family)
            except (stem.ControllerError, ValueError) as exc:  # stem: ValueError for a flavour tor does not fetch
                log.debug("no family", extra={"relay": fingerprint, "source": lookup.__name__, "err": str(exc)})
        return []

    def _build(self, path: list[str]) -> str:
        """EXTENDCIRCUIT 0 path, then wait for its CIRC BUILT (or FAILED/CLOSED) event."""
        events: queue.Queue = queue.Queue()
        with self._lock:
            self._waiters.add(events)  # before EXTENDCIRCUIT: its events may arrive before the reply is read
        try:
            try:
                circuit_id = self.controller.extend_circuit("0", path)
            except stem.ControllerError as exc:
                raise CircuitError(reason_for_extend_error(exc), str(exc)) from exc
            deadline = time.monotonic() + self.timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._close_circuit(circuit_id)
                    raise CircuitError(CircuitFailure.TIMEOUT, f"circuit {circuit_id} not built within {self.timeout:g} s")
                try:
                    event = events.get(timeout=min(remaining, ALIVE_CHECK_SECONDS))
                except queue.Empty:
                    if not self.controller.is_alive():  # no event will come: fail now, not at the deadline
                        raise CircuitError(CircuitFailure.OTHER, f"tor's control connection closed while building {circuit_id}")
                    continue
                if event.id != circuit_id:
                    continue
                if event.status == CircStatus.BUILT:
                    return circuit_id
                if event.status in (CircStatus.FAILED, CircStatus.CLOSED):
                    raise CircuitError(reason_for_circ_event(event.reason),
                                       f"circuit {circuit_id} {event.status.lower()}: {event.reason}")
        finally:
            with self._lock:
                self._waiters.discard(events)

    def _close_circuit(self, circuit_id: str) -> None:
        try:
            self.controller.close_circuit(circuit_id)
        except stem.ControllerError as exc:  # tor may have closed it already
            log.debug("closing a circuit failed", extra={"circuit": circuit_id, "err": str(exc)})

    # -- event listeners (stem's event thread: no slow calls here) ---------

    def _on_circ(self, event) -> None:
        lost = []
        with self._lock:
            waiters = list(self._waiters)
            if event.status in (CircStatus.FAILED, CircStatus.CLOSED):
                for group, circuit_id in list(self._circuits.items()):
                    if circuit_id == event.id:  # not ours to close: release() unpins before CLOSECIRCUIT
                        del self._circuits[group]
                        self._lost[group] = (f"circuit {event.id} {event.status.lower()} by tor: "
                                             f"{event.reason}/{event.remote_reason}")
                        lost.append(self._lanes[group])
        for lane in lost:
            log.warning("pinned circuit closed by tor", extra={"lane": lane.index, "circuit": event.id,
                                                                "reason": event.reason,
                                                                "remote_reason": event.remote_reason})
        for waiter in waiters:
            waiter.put(event)

    def _queue_stream(self, event) -> None:
        """STREAM events are handled on a thread of our own, never on stem's event thread: a
        controller command sent from that thread deadlocks when tor's control connection closes
        (stem's reader, holding the socket's send lock, joins the event thread, which waits for
        the message lock, which a thread waiting for the send lock holds)."""
        group = self._opening_group(event)
        if group is not None:
            with self._lock:
                self._opened[group] = time.monotonic()
                self._unhandled[group] = self._unhandled.get(group, 0) + 1
        self._stream_events.put(event)

    def _opening_group(self, event) -> int | None:
        """The session group of our lane whose stream ``event`` asks us to attach, else None."""
        group = _session_group(event)
        return group if group in self._lanes and getattr(event, "status", None) in _ATTACHABLE else None

    def _attach_streams(self) -> None:
        while (event := self._stream_events.get()) is not None:
            try:
                self._on_stream(event)
            except Exception:  # one bad event must not end stream attachment
                log.exception("handling a stream event failed", extra={"stream": getattr(event, "id", "?")})
            finally:
                group = self._opening_group(event)
                if group is not None:
                    with self._lock:
                        self._unhandled[group] -= 1
                self._stream_events.task_done()

    def _on_stream(self, event) -> None:
        if event.status in (StreamStatus.CLOSED, StreamStatus.FAILED):
            self._reattached.discard(event.id)
            return
        if event.status not in _ATTACHABLE:
            return
        lane = self._lanes.get(_session_group(event))
        if lane is None:
            return  # not one of our lanes: another controller's business
        host = (event.target_address or "").lower()
        circuit_id = self.circuit_of(lane)
        if host.endswith(".onion"):
            self._leave_to_tor(event, lane)
        elif circuit_id is None:
            where = {"lane": lane.index, "stream": event.id, "target": f"{host}:{event.target_port}"}
            lost = self.lost(lane)
            if lost is None:
                log.warning("stray stream closed", extra=where)
                self._on_closed(StreamClosed.STRAY)  # counted before the client can see its stream fail
            else:
                log.warning("stream closed: tor closed its lane's circuit", extra={**where, "why": lost})
                self._on_closed(StreamClosed.CIRCUIT_CLOSED)
            self._close_stream(event.id, f"lane {lane.index}: {lost or 'no probe runs on it'}")
        elif host_denied(host, self._deny_hosts):
            self._on_closed(StreamClosed.DENIED)
            self._close_stream(event.id, f"lane {lane.index}: {host} is in tor.deny_hosts")
        elif event.status == StreamStatus.DETACHED and (event.reason == "END" or event.id in self._reattached):
            self._close_stream(event.id, f"lane {lane.index}: stream detached ({event.reason}/{event.remote_reason})")
        else:
            if event.status == StreamStatus.DETACHED:
                self._reattached.add(event.id)
            try:
                self.controller.attach_stream(event.id, circuit_id)
            except stem.ControllerError as exc:
                self._close_stream(event.id, f"lane {lane.index}: attach to circuit {circuit_id} failed: {exc}")

    def _leave_to_tor(self, event, lane: Lane) -> None:
        """Hand a new onion stream back to tor (circuit 0); one tor took back is tor's to retry."""
        if event.status == StreamStatus.DETACHED:
            return
        try:
            self.controller.attach_stream(event.id, "0")
        except stem.ControllerError as exc:
            self._close_stream(event.id, f"lane {lane.index}: handing an onion stream to tor failed: {exc}")

    def _close_stream(self, stream_id: str, why: str) -> None:
        log.debug("closing a stream", extra={"stream": stream_id, "why": why})
        try:
            self.controller.close_stream(stream_id, stem.RelayEndReason.MISC)
        except stem.ControllerError as exc:
            log.debug("closing a stream failed", extra={"stream": stream_id, "err": str(exc)})


def _session_group(event) -> int | None:
    """The SocksPort session group of a STREAM event (stem 1.8 keeps it in keyword_args)."""
    try:
        return int(getattr(event, "keyword_args", {})["SESSION_GROUP"])
    except (KeyError, TypeError, ValueError):
        return None
