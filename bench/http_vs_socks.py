"""HTTP probe wall time against a bare SOCKS fetch through the same circuit (a benchmark, not a test).

    unshare --net sh -c 'ip link set lo up && python bench/http_vs_socks.py [--fetches 60]'

Boots a test bed whose sites answer their real pages, pins one lane to one
exit, and loads the same URL through that one circuit ``--fetches`` times each
way, alternating (A B A B ...) so drifts in the machine's load hit both alike:

- A: ``HttpFetcher.fetch`` (requests + PySocks, a fresh session per fetch);
- B: a bare client: SOCKS5 (RFC 1928) CONNECT by domain name, one HTTP/1.1
  GET, the body read to its ``Content-Length`` (to the end of the stream
  without one; waiting for the close would add tor's END round trip).

Prints the median wall time of each and their ratio. Goal: ratio ≤ 1.5.
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import struct
import sys
import time
from urllib.parse import urlsplit

from bench_bed import BedProcess, PinnedLanes, command_line, load_average

from exporter.config import HttpFetcherConfig
from exporter.fetch.http import HttpFetcher
from testbed.processes import exit_on_termination_signals

SOCKS_VERSION = 5
NO_AUTHENTICATION = 0
CONNECT = 1
DOMAIN_NAME = 3
ADDRESS_LENGTHS = {1: 4, 4: 16}  # IPv4, IPv6; a domain name carries its own length byte


def bare_fetch(socks: tuple[str, int], url: str, timeout: float = 30.0) -> bytes:
    """GET ``url`` through a SOCKS5 proxy with nothing but a socket; returns the whole response."""
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    with socket.create_connection(socks, timeout=timeout) as conn:
        conn.sendall(bytes([SOCKS_VERSION, 1, NO_AUTHENTICATION]))
        if _read_exactly(conn, 2) != bytes([SOCKS_VERSION, NO_AUTHENTICATION]):
            raise ConnectionError("SOCKS server refused no-authentication")
        name = host.encode("idna")
        conn.sendall(bytes([SOCKS_VERSION, CONNECT, 0, DOMAIN_NAME, len(name)]) + name + struct.pack("!H", port))
        _version, reply, _reserved, address_type = _read_exactly(conn, 4)
        if reply != 0:
            raise ConnectionError(f"SOCKS CONNECT failed with reply {reply}")
        length = ADDRESS_LENGTHS.get(address_type) or _read_exactly(conn, 1)[0]
        _read_exactly(conn, length + 2)  # bound address and port
        conn.sendall(f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode())
        return _read_response(conn)


def _read_response(conn: socket.socket) -> bytes:
    """Head and body of one HTTP/1.1 response (RFC 9112 §6.3: Content-Length, else until close)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0]
    length = re.search(rb"^content-length:\s*(\d+)", head, re.IGNORECASE | re.MULTILINE)
    total = len(head) + 4 + int(length.group(1)) if length else None
    while total is None or len(data) < total:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _read_exactly(conn: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            raise ConnectionError("SOCKS server closed the connection")
        data += chunk
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fetches", type=int, default=60, help="fetches each way (default 60)")
    parser.add_argument("--site", default="news", help="test-bed site to load (default news)")
    args = parser.parse_args()
    exit_on_termination_signals()  # a SIGTERM (e.g. from timeout) still stops the test bed and browsers
    bed = BedProcess()
    try:
        lanes = PinnedLanes(bed, 1)
        try:
            lane, exit = lanes.lanes[0], lanes.exits[0]
            url = bed.state["edge"]["sites"][args.site]
            fetcher = HttpFetcher(HttpFetcherConfig(ca_file=bed.ca_file))
            lanes.pin(lane, exit)
            times: dict[str, list[float]] = {"HttpFetcher.fetch": [], "bare SOCKS5 + GET": []}
            sizes = {}
            fetch_ways = {
                "HttpFetcher.fetch": lambda: len(fetcher.fetch(url, lane, 30).final.body),
                "bare SOCKS5 + GET": lambda: len(bare_fetch((lane.socks_host, lane.socks_port), url)),
            }
            for name, fetch in fetch_ways.items():  # one untimed fetch each: the first stream is slower
                fetch()
            for _ in range(args.fetches):
                for name, fetch in fetch_ways.items():
                    started = time.perf_counter()
                    sizes[name] = fetch()
                    times[name].append(time.perf_counter() - started)
        finally:
            lanes.close()
    finally:
        bed.stop()

    print(f"command: {command_line()}")
    print(f"{args.fetches} fetches each, alternating, of {url} through one circuit to exit {exit.nickname}")
    for name, seconds in times.items():
        print(f"{name:>18}: median {statistics.median(seconds) * 1000:7.1f} ms, "
              f"p90 {statistics.quantiles(seconds, n=10)[-1] * 1000:7.1f} ms ({sizes[name]} bytes read)")
    ours, bare = (statistics.median(seconds) for seconds in times.values())
    print(f"{'ratio':>18}: {ours / bare:.2f} (goal <= 1.50); {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
