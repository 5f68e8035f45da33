"""The edge's HTTP/2 transport: one TLS connection that negotiated ``h2`` by ALPN, served by one thread.

Real edges answer browsers over HTTP/2 (RFC 9113): many requests share one
connection as streams, and the sender may put only as many DATA bytes on a
stream as the receiver's flow-control window allows (§5.2), so a large body
waits for WINDOW_UPDATE frames.  The protocol state machine is the ``h2``
library's (sans-IO); this module does the I/O.  One thread owns the socket
(an ``SSLSocket`` must not be read and written from two threads at once) and
runs a select loop over reads, delayed replies and flow-controlled bodies.
A behaviour means the same here as over HTTP/1.1: ``hang`` leaves its stream
unanswered, ``reset`` resets the whole TCP connection (RST), ``delay`` holds
the reply, ``chunks`` stream a body.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
)
from h2.exceptions import H2Error

log = logging.getLogger(__name__)

# Serves one request: (pseudo-headers and headers, body) → a behaviours.Reply-like answer.
Handle = Callable[[list[tuple[str, str]], bytes], object]

READ_SIZE = 65536
TICK = 0.5  # seconds between checks that the edge is not stopping


@dataclass
class _Stream:
    headers: list[tuple[str, str]]
    body: bytearray = field(default_factory=bytearray)
    due: float | None = None  # a delayed reply: when to send it
    reply: object | None = None
    data: Iterator[bytes] | None = None  # the body still to send
    pending: bytes = b""


class Http2Connection:
    """Serve one connection until the peer closes it, ``reset`` asks for an RST, or ``stopping()``."""

    def __init__(self, sock: socket.socket, handle: Handle, stopping: Callable[[], bool], max_body: int):
        self.sock = sock
        self.handle = handle
        self.stopping = stopping
        self.max_body = max_body
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.streams: dict[int, _Stream] = {}

    def serve(self) -> None:
        self.conn.initiate_connection()
        self._flush()
        while not self.stopping():
            timeout = self._next_timeout()
            readable, _, _ = select.select([self.sock], [], [], timeout)
            if readable and not self._read():
                return
            if not self._send_due():
                return
            self._send_bodies()
            self._flush()

    # -- input --------------------------------------------------------------

    def _read(self) -> bool:
        """Feed what arrived to h2 (an SSLSocket may hold decrypted bytes select() cannot see)."""
        try:
            data = self.sock.recv(READ_SIZE)
            while data and getattr(self.sock, "pending", lambda: 0)():
                data += self.sock.recv(READ_SIZE)
        except (OSError, ValueError):
            return False
        if not data:
            return False
        try:
            events = self.conn.receive_data(data)
        except H2Error as exc:
            log.debug("HTTP/2 protocol error: %s", exc)
            self._flush()
            return False
        for event in events:
            if isinstance(event, RequestReceived):  # a request without a body comes with its StreamEnded
                self.streams[event.stream_id] = _Stream(list(event.headers))
            elif isinstance(event, DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    stream.body += event.data
                    if len(stream.body) > self.max_body:
                        self._cancel(event.stream_id, ErrorCodes.REFUSED_STREAM)
            elif isinstance(event, StreamEnded):
                self._answer(event.stream_id)
            elif isinstance(event, StreamReset):
                self.streams.pop(event.stream_id, None)
            elif isinstance(event, ConnectionTerminated):
                return False
        return True

    def _answer(self, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        reply = self.handle(stream.headers, bytes(stream.body))
        if reply.action == "reset":
            self._reset_connection()
            return
        if reply.action == "hang":
            return  # accepted and read, never answered: the stream stays open
        stream.reply = reply
        stream.due = time.monotonic() + (reply.delay or 0.0)

    # -- output -------------------------------------------------------------

    def _next_timeout(self) -> float:
        dues = [s.due for s in self.streams.values() if s.due is not None]
        if not dues:
            return TICK
        return max(0.0, min(TICK, min(dues) - time.monotonic()))

    def _send_due(self) -> bool:
        now = time.monotonic()
        for stream_id, stream in list(self.streams.items()):
            if stream.due is None or stream.due > now:
                continue
            stream.due = None
            reply = stream.reply
            method = dict(stream.headers).get(":method", "GET")
            length = reply.length if reply.chunks is not None else len(reply.body)
            headers = [(":status", str(reply.status)), ("date", formatdate(usegmt=True))]
            headers += [(name.lower(), value) for name, value in reply.headers]
            headers.append(("content-length", str(length)))
            empty = method == "HEAD" or length == 0
            try:
                self.conn.send_headers(stream_id, headers, end_stream=empty)
            except H2Error:
                self.streams.pop(stream_id, None)
                continue
            if empty:
                self.streams.pop(stream_id, None)
            else:
                stream.data = reply.chunks if reply.chunks is not None else iter([reply.body])
        return True

    def _send_bodies(self) -> None:
        for stream_id, stream in list(self.streams.items()):
            if stream.data is None:
                continue
            try:
                while True:
                    if not stream.pending:
                        stream.pending = next(stream.data, b"")
                        if not stream.pending:
                            self.conn.end_stream(stream_id)
                            self.streams.pop(stream_id, None)
                            break
                    window = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
                    if window <= 0:
                        break  # wait for the peer's WINDOW_UPDATE
                    self.conn.send_data(stream_id, stream.pending[:window])
                    stream.pending = stream.pending[window:]
            except H2Error:
                self.streams.pop(stream_id, None)

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            try:
                self.sock.sendall(data)
            except OSError:
                pass

    def _cancel(self, stream_id: int, code: ErrorCodes) -> None:
        self.streams.pop(stream_id, None)
        try:
            self.conn.reset_stream(stream_id, code)
        except H2Error:
            pass

    def _reset_connection(self) -> None:
        """SO_LINGER on with a zero timeout: close() sends RST instead of FIN."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.streams.clear()
        self.sock.close()
        self.stopping = lambda: True
