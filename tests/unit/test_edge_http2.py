"""The edge's HTTPS port speaks HTTP/2 to clients that offer it (ALPN), with the same per-exit behaviours.

curl (libcurl with nghttp2) is the client: an HTTP/2 implementation that is
not ours, so a framing or flow-control mistake of the edge shows as curl's error.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from testbed.edge import Edge
from testbed.policy import load_policy

pytestmark = pytest.mark.skipif(
    shutil.which("curl") is None or "HTTP2" not in subprocess.run(["curl", "--version"], capture_output=True,
                                                                  text=True).stdout,
    reason="needs curl built with HTTP/2 (Debian's curl is)")

POLICY = {"sites": {"news": {"default": "ok", "exits": {
    "huge": {"behaviour": "huge", "size": 3_000_000},
    "slow": {"behaviour": "slow", "seconds": 0.5},
    "reset": "reset",
    "challenge": "challenge",
}}}}


@pytest.fixture
def edge(tmp_path):
    exits = {"current": "clean"}
    with Edge(load_policy(POLICY), lambda peer: exits["current"], tmp_path) as running:
        running.exits = exits
        yield running


def curl(edge: Edge, path: str = "/", *options: str, host: str = "news.test") -> subprocess.CompletedProcess:
    url = f"https://{host}:{edge.https_port}{path}"
    return subprocess.run(
        ["curl", "-sS", "--max-time", "20", "--cacert", str(edge.ca_file), "--resolve",
         f"{host}:{edge.https_port}:127.0.0.1", "-o", "/dev/null", "-w", "%{http_version} %{http_code} %{size_download}",
         *options, url],
        capture_output=True, text=True, check=False)


def test_a_client_offering_h2_gets_http2_and_the_edge_logs_it(edge):
    done = curl(edge, "/", "--http2")
    assert done.returncode == 0, done.stderr
    version, status, _ = done.stdout.split()
    assert (version, status) == ("2", "200")
    (entry,) = edge.requests()  # answered once
    assert (entry["protocol"], entry["site"], entry["exit"], entry["status"]) == ("HTTP/2", "news", "clean", 200)


def test_a_client_offering_only_http1_gets_http1(edge):
    done = curl(edge, "/", "--http1.1")
    assert done.stdout.split()[:2] == ["1.1", "200"], done.stderr
    assert edge.requests()[-1]["protocol"] == "HTTP/1.1"


def test_plain_http_stays_http1(edge):
    done = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_version}", "--resolve",
                           f"news.test:{edge.http_port}:127.0.0.1", f"http://news.test:{edge.http_port}/"],
                          capture_output=True, text=True, check=False)
    assert done.stdout == "1.1" and edge.requests()[-1]["protocol"] == "HTTP/1.1"


def test_per_exit_behaviours_hold_over_http2(edge):
    edge.exits["current"] = "challenge"
    assert curl(edge, "/", "--http2").stdout.split()[:2] == ["2", "403"]
    edge.exits["current"] = "slow"
    slow = curl(edge, "/", "--http2", "-w", " %{time_total}")
    assert float(slow.stdout.split()[-1]) >= 0.5


def test_a_body_larger_than_the_flow_control_window_arrives_whole(edge):
    edge.exits["current"] = "huge"
    done = curl(edge, "/", "--http2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "200", "3000000"]


def test_reset_resets_the_http2_connection(edge):
    edge.exits["current"] = "reset"
    done = curl(edge, "/", "--http2")
    assert done.returncode != 0  # curl: connection reset / HTTP/2 stream error, never an answer
    assert edge.requests()[-1]["behaviour"] == "reset"


def test_parallel_streams_are_answered(edge):
    done = curl(edge, "/a", "--http2", "--parallel", "--parallel-immediate",
                f"https://news.test:{edge.https_port}/b", "-o", "/dev/null")
    assert done.returncode == 0, done.stderr
    served = [(r["path"], r["protocol"]) for r in edge.requests()]
    assert sorted(served) == [("/a", "HTTP/2"), ("/b", "HTTP/2")]  # each answered once
