"""The web endpoint's connection cap: held-open connections cannot starve it of descriptors, threads or CPU."""

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from test_web import FakeView

from exporter.web import WebServer

SERVER = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
sys.path[:0] = sys.argv[1:]  # test_web, and the support package it imports
from test_web import FakeView
from exporter.web import WebServer
server = WebServer(FakeView(None), "127.0.0.1", 0)
server.start()
print(server.address[1], flush=True)
time.sleep(600)
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_three_hundred_held_open_connections_under_ulimit_256(tmp_path):
    """~250 held-open connections used to exhaust the descriptors; accept() then failed and spun at 100 % CPU.

    The clients send one header line every few seconds, as slowloris does, so the server's
    30 s read timeout never closes them.
    """
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(Path(__file__).parent),
                               str(Path(__file__).parents[1])], stdout=subprocess.PIPE,
                              stderr=(tmp_path / "stderr").open("wb"), text=True)
    held, stop = [], threading.Event()

    def trickle():
        while not stop.wait(5.0):
            for connection in list(held):
                try:
                    connection.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    held.remove(connection)  # the server closed it to make room

    trickler = threading.Thread(target=trickle)
    trickler.start()
    try:
        port = int(server.stdout.readline())
        for _ in range(300):
            connection = socket.create_connection(("127.0.0.1", port), timeout=30)
            connection.sendall(b"GET /metrics HTTP/1.1\r\n")
            held.append(connection)
        time.sleep(1.0)
        before = cpu_seconds(server.pid)
        time.sleep(3.0)
        busy = (cpu_seconds(server.pid) - before) / 3.0
        print(f"\n300 held-open connections under ulimit -n 256: the server used {busy:.1%} of a core")
        for _ in range(5):
            started = time.monotonic()
            response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
            assert response.status_code == 200 and "fake_probes_total" in response.text
            assert time.monotonic() - started < 2.0
        assert busy < 0.3, f"the server used {busy:.0%} of a core while connections were held open"
    finally:
        stop.set()
        trickler.join()
        for connection in held:
            connection.close()
        server.kill()
        server.wait()
    assert "Traceback" not in (tmp_path / "stderr").read_text()


@pytest.fixture
def capped():
    view = FakeView(None)
    server = WebServer(view, "127.0.0.1", 0, max_connections=3)
    server.start()
    yield server, view
    server.stop()


def test_a_new_connection_takes_the_place_of_the_longest_idle_one(capped):
    server, _ = capped
    idle = [socket.create_connection(server.address, timeout=10) for _ in range(3)]
    time.sleep(0.3)
    assert requests.get("http://{}:{}/-/healthy".format(*server.address), timeout=10).status_code == 200
    assert idle[0].recv(100) == b""  # closed by the server to make room
    for connection in idle:
        connection.close()


def test_a_new_connection_waits_from_its_admission_however_late_its_thread_starts():
    """Under load the threads of earlier connections may start after later ones: the oldest still goes first."""
    from exporter.webconns import Connections

    pairs = [socket.socketpair() for _ in range(3)]
    connections = Connections(limit=2)
    try:
        first, second, third = (ours for ours, _ in pairs)
        assert connections.admit(first) and connections.admit(second)
        connections.waiting(second)
        connections.waiting(first)  # its thread started last
        assert connections.admit(third)
        pairs[0][1].settimeout(5)
        assert pairs[0][1].recv(1) == b""  # the first was shut down to make room
        pairs[1][1].setblocking(False)
        with pytest.raises(BlockingIOError):
            pairs[1][1].recv(1)  # the second is still open
    finally:
        for pair in pairs:
            for end in pair:
                end.close()


def test_when_every_connection_is_being_answered_a_new_one_gets_a_503(capped):
    server, view = capped
    view.status = lambda: time.sleep(2) or {}
    slow = [threading.Thread(target=requests.get, args=("http://{}:{}/".format(*server.address),),
                             kwargs={"timeout": 10}) for _ in range(3)]
    for thread in slow:
        thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    refused = requests.get("http://{}:{}/-/healthy".format(*server.address), timeout=10)
    assert (refused.status_code, refused.text, refused.headers["Retry-After"]) == (503, "Too many connections.\n", "1")
    assert time.monotonic() - started < 1.0
    for thread in slow:
        thread.join()
    assert requests.get("http://{}:{}/-/healthy".format(*server.address), timeout=10).status_code == 200
