"""The delaying TCP relays: every byte late by the delay in each direction, in order, EOF and origins kept."""

from __future__ import annotations

import socket
import socketserver
import threading
import time

import pytest

from testbed.latency import Delays

DELAY = 0.15


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        self.server.peers.append(self.client_address)
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    server.peers = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def delays():
    relays = Delays(DELAY)
    yield relays
    relays.stop()


def test_a_round_trip_pays_the_delay_twice_and_keeps_order(echo, delays):
    port = delays.add(("127.0.0.1", 0), echo.server_address)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        started = time.monotonic()
        for i in range(50):
            client.sendall(f"{i:03d}".encode())
        received = b""
        while len(received) < 150:
            received += client.recv(4096)
        elapsed = time.monotonic() - started
    assert received == b"".join(f"{i:03d}".encode() for i in range(50))
    assert 2 * DELAY <= elapsed < 2 * DELAY + 0.5


def test_half_close_travels_through_and_the_origin_is_known(echo, delays):
    port = delays.add(("127.0.0.1", 0), echo.server_address)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(b"last ")
        assert client.recv(4096) == b"last "
        assert delays.origin(echo.peers[-1]) == client.getsockname()  # while the connection lasts
        client.sendall(b"words")
        client.shutdown(socket.SHUT_WR)
        received = b""
        while data := client.recv(4096):
            received += data
        assert received == b"words"
    assert delays.origin(("127.0.0.1", 1)) is None


def test_an_unreachable_target_closes_the_client(delays):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead = unused.getsockname()
    port = delays.add(("127.0.0.1", 0), dead)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        try:
            assert client.recv(10) == b""
        except ConnectionResetError:
            pass


def test_a_negative_delay_is_refused():
    with pytest.raises(ValueError):
        Delays(-1)
