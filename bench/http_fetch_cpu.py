"""CPU of one HTTPS fetch by the HTTP fetcher, trust loaded once vs a bundle path per connection (side by side).

    unshare --net sh -c 'ip link set lo up && python bench/http_fetch_cpu.py [--fetches 200]'

Fetches a small page from an HTTPS server on loopback through a SOCKS5 server
(as through a lane's SocksPort), certificates checked against certifi's roots
plus the server's CA, as a deployment checks them.  Taking turns, in one run:
today's ``HttpFetcher`` (one SSL context per CA file for the process) and the
same fetch with ``session.verify`` set to the bundle's path (what the fetcher
did before: urllib3 loads the bundle into a new context for every
connection).  Prints the fetching thread's CPU time per fetch (``time.thread_time``).
"""

from __future__ import annotations

import argparse
import http.server
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import certifi
import requests
from bench_bed import command_line, load_average

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.socks_server import SocksServer

from exporter.config import HttpFetcherConfig
from exporter.fetch.http import HttpFetcher
from exporter.values import Lane
from testbed.tls import issue_certificates, server_context

PAGE = (Path(__file__).resolve().parent.parent / "testbed" / "pages" / "news.html").read_bytes()


class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args):
        pass


def bundle_per_connection(fetcher: HttpFetcher, url: str, lane: Lane, roots: Path) -> None:
    """The fetch as it was: requests given the bundle's path."""
    proxy = f"socks5h://{lane.socks_host}:{lane.socks_port}"
    with requests.Session() as session:
        session.trust_env = False
        session.proxies = {"http": proxy, "https": proxy}
        session.verify = str(roots)
        session.get(url, headers=fetcher.headers, timeout=10).raise_for_status()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fetches", type=int, default=200, help="fetches per method (default 200)")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="captcha-bench-"))
    certs = issue_certificates(directory, ["news.test"])
    roots = directory / "roots.pem"
    roots.write_text(Path(certifi.where()).read_text() + Path(certs.ca_file).read_text())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    server.socket = server_context(certs).wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    socks = SocksServer()
    lane = Lane(0, "127.0.0.1", socks.port, 1001)
    url = f"https://news.test:{server.server_port}/"
    fetcher = HttpFetcher(HttpFetcherConfig(ca_file=roots))
    methods = {"loaded once (today)": lambda: fetcher.fetch(url, lane, 10),
               "bundle per connection (before)": lambda: bundle_per_connection(fetcher, url, lane, roots)}
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.fetches):
        for name, fetch in methods.items():
            clock = time.thread_time()
            fetch()
            times[name].append(time.thread_time() - clock)
    server.shutdown()
    socks.shutdown()
    print(f"command: {command_line()}\n{args.fetches} HTTPS fetches each, taking turns; {load_average()}")
    medians = {name: statistics.median(values) * 1000 for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:>32}: {statistics.mean(values) * 1000:6.2f} ms CPU per fetch (median {medians[name]:.2f})")
    today, before = medians.values()
    print(f"{'ratio today / before':>32}: {today / before:.2f} (medians)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
