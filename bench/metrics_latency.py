"""/metrics latency while threads read hostile pages (a benchmark, not a test).

    python bench/metrics_latency.py [--readers 2] [--seconds 20]

Each reader thread classifies and normalises a 3 MB page of tags that never close
(the test bed's "hostile" page) in a loop, as prober threads do, but without pause;
meanwhile /metrics of a real WebServer is scraped every 0.1 s.  Prints the scrape
latencies: a regex match that holds the GIL long shows here.  PYTHONPATH=<another tree>
runs the same load on another version of the exporter.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import threading
import time
import urllib.request

from prometheus_client import CollectorRegistry, Counter

from exporter.change.normalise import normalise
from exporter.detect import classify
from exporter.exposition import Exposition
from exporter.values import FetchError, Response
from exporter.web import WebServer

PAGE = "<html><head><title>news</title></head><body><p>news</p>" + "<a " * 1_000_000 + "</body></html>"


class MetricsOnly:
    """A view with 5,000 series and nothing else."""

    def __init__(self):
        registry = CollectorRegistry()
        counter = Counter("captcha_bench_probes", "Probes.", ["target", "exit"], registry=registry)
        for target in range(50):
            for exit in range(100):
                counter.labels(f"t{target}", f"e{exit}").inc()
        self.exposition = Exposition(registry)


def read_pages(stop: threading.Event, counts: list[int]) -> None:
    response = Response("https://news.test/", 200, (("Content-Type", "text/html"),), PAGE)
    while not stop.is_set():
        with contextlib.suppress(FetchError):  # a page too complex to read: the work was done all the same
            classify(response)
            normalise(PAGE)
        counts.append(1)


def scrape_latencies(url: str, seconds: float) -> list[float]:
    latencies, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        with urllib.request.urlopen(url, timeout=30) as answer:
            answer.read()
        latencies.append(time.monotonic() - started)
        time.sleep(0.1)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    web = WebServer(MetricsOnly(), "127.0.0.1", 0)
    web.start()
    url = f"http://127.0.0.1:{web.address[1]}/metrics"
    stop, counts = threading.Event(), []
    readers = [threading.Thread(target=read_pages, args=(stop, counts)) for _ in range(args.readers)]
    for reader in readers:
        reader.start()
    latencies = sorted(scrape_latencies(url, args.seconds))
    stop.set()
    for reader in readers:
        reader.join()
    print(f"{args.readers} readers: {len(latencies)} scrapes, median {statistics.median(latencies) * 1000:.0f} ms, "
          f"p90 {latencies[int(len(latencies) * 0.9)] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms, "
          f"pages read {len(counts)}")
    web.stop()


if __name__ == "__main__":
    main()
