"""The web endpoint's open connections, capped, so clients cannot take every file descriptor or thread.

Each connection holds a file descriptor and a thread.  Past the cap, a new
connection takes the place of the one that has waited longest for its request
(an idle keep-alive or a slow sender, the kind an attacker opens by the
hundred), so held-open connections cannot lock Prometheus out; when every
connection is busy answering, the newcomer gets a one-line 503.

Taking a connection's place means ``shutdown()`` of its socket: the thread
blocked reading it sees the end of the stream and ends, and it closes the
socket itself, so no descriptor is closed under a thread still using it.
"""

from __future__ import annotations

import logging
import resource
import socket
import threading
import time

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 100
WARN_EVERY_SECONDS = 60.0
BUSY = float("inf")  # the "waiting since" of a connection that is being answered


def default_limit() -> int:
    """MAX_CONNECTIONS, or half the process's file descriptor limit when that is lower."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, soft // 2))


class Connections:
    """Open connections by file descriptor, each with the time since it waits for a request."""

    def __init__(self, limit: int):
        self.limit = limit
        self._lock = threading.Lock()
        self._waiting_since: dict[int, float] = {}
        self._warned = -WARN_EVERY_SECONDS

    def admit(self, connection: socket.socket) -> bool:
        """Count a new connection in, making room if needed; False when every slot is busy."""
        with self._lock:
            if len(self._waiting_since) >= self.limit and not self._make_room():
                self._warn("refusing new connections: all are being answered")
                return False
            self._waiting_since[connection.fileno()] = time.monotonic()
            return True

    def waiting(self, connection: socket.socket) -> None:
        """The connection's answer is done: it waits for its next request from now on.

        A new connection has waited since it was admitted, however late its thread starts.
        """
        with self._lock:
            descriptor = connection.fileno()
            if self._waiting_since.get(descriptor) == BUSY:
                self._waiting_since[descriptor] = time.monotonic()

    def busy(self, connection: socket.socket) -> None:
        """The connection's request is being answered."""
        with self._lock:
            descriptor = connection.fileno()
            if descriptor in self._waiting_since:
                self._waiting_since[descriptor] = BUSY

    def release(self, connection: socket.socket) -> None:
        """Call before closing the connection (its descriptor number is the key)."""
        with self._lock:
            self._waiting_since.pop(connection.fileno(), None)

    def __len__(self) -> int:
        return len(self._waiting_since)

    def _make_room(self) -> bool:
        """End the connection that has waited longest for a request; False if all are busy."""
        descriptor, since = min(self._waiting_since.items(), key=lambda item: item[1])
        if since == BUSY:
            return False
        del self._waiting_since[descriptor]
        self._warn("closing the connections that wait longest for a request")
        try:
            borrowed = socket.socket(fileno=descriptor)  # no new descriptor needed, none to spare maybe
        except OSError:
            return True  # it closed meanwhile
        try:
            borrowed.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            borrowed.detach()  # the owner's thread closes it
        return True

    def _warn(self, action: str) -> None:
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY_SECONDS:
            self._warned = now
            log.warning("web connection limit reached", extra={"limit": self.limit, "action": action})

