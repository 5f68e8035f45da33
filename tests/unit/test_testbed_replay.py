"""Replayed captures on the edge: each at the host it was recorded on, its linked hosts mapped, per-exit policy."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import requests

from testbed.edge import Edge
from testbed.replay import ReplayError, linked_hosts, load_captures
from testbed.sites import Web

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"


def har(url: str, status: int, body: str, headers=()) -> dict:
    response = {"status": status, "statusText": "", "httpVersion": "HTTP/1.1",
                "headers": [{"name": n, "value": v} for n, v in headers],
                "content": {"size": len(body), "mimeType": "text/html", "text": body}, "redirectURL": ""}
    request = {"method": "GET", "url": url, "httpVersion": "HTTP/1.1", "headers": []}
    return {"log": {"version": "1.2", "creator": {"name": "t", "version": "1"},
                    "entries": [{"request": request, "response": response}]}}


@pytest.fixture
def captures(tmp_path):
    pages = {
        "a-challenge": har("https://www.example.org/search?q=1", 403,
                           '<script src="https://challenges.vendor.example/x.js"></script>just a moment',
                           [("Server", "cloudflare"), ("Content-Length", "999"), ("Content-Encoding", "br")]),
        "b-same-url": har("https://www.example.org/search?q=1", 200, "<p>fine</p>"),
        "c-address": har("http://10.0.0.1/test", 503, "<p>checking</p>"),
    }
    for name, data in pages.items():
        (tmp_path / f"{name}.har").write_text(json.dumps(data))
    return load_captures(tmp_path)


def test_captures_keep_their_url_unless_it_is_taken_or_not_ours(captures):
    urls = {c.site: c.url for c in captures}
    assert urls == {"a-challenge": "https://www.example.org/search?q=1",
                    "b-same-url": "https://capture002.www.example.org/search?q=1",
                    "c-address": "http://capture003.replay.test/test"}
    first = captures[0]
    assert first.status == 403 and ("Server", "cloudflare") in first.headers
    assert not {"content-length", "content-encoding"} & {n.lower() for n, _ in first.headers}
    assert first.linked_hosts == {"challenges.vendor.example"}


def test_linked_hosts_are_names_in_src_href_action():
    html = ('<a href="//cdn.example.net/a">x</a><img src=https://img.example.com/i.png>'
            '<form action="http://login.example.com/go"><script src="/local.js"></script>'
            '<iframe src="https://10.1.2.3/"></iframe><p>see https://text.example.com/</p>')
    assert linked_hosts(html) == {"cdn.example.net", "img.example.com", "login.example.com"}


def test_an_empty_or_bad_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ReplayError, match="no .har files"):
        load_captures(tmp_path)
    (tmp_path / "bad.har").write_text("{not json")
    with pytest.raises(ReplayError, match="bad.har"):
        load_captures(tmp_path)


@pytest.fixture
def edge(tmp_path, captures, monkeypatch):
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: real("127.0.0.1", *a, **k))
    web = Web(captures)
    with Edge(web.load_policy({"sites": {"a-challenge": {"exits": {"exit2": "block"}}}}), lambda peer: "exit1",
              tmp_path / "edge", web=web) as running:
        yield running


def test_the_edge_serves_the_recording_at_its_path_and_404_elsewhere(edge):
    url = edge.site_urls("https")["a-challenge"]
    assert url == f"https://www.example.org:{edge.https_port}/search?q=1"
    page = requests.get(url, verify=str(edge.ca_file), timeout=5)
    assert page.status_code == 403 and page.text.endswith("just a moment") and page.headers["server"] == "cloudflare"
    other = requests.get(url.replace("/search", "/elsewhere"), verify=str(edge.ca_file), timeout=5)
    assert other.status_code == 404
    vendor = requests.get(f"https://challenges.vendor.example:{edge.https_port}/x.js", verify=str(edge.ca_file),
                          timeout=5)
    assert vendor.status_code == 404 and edge.requests()[-1]["site"] == "challenges.vendor.example"
    assert {"www.example.org", "capture002.www.example.org", "challenges.vendor.example"} <= set(edge.hostnames())


def test_replayed_sites_follow_the_policy_and_take_only_fitting_behaviours(edge, captures):
    edge._identify = lambda peer: "exit2"
    assert requests.get(edge.site_urls()["a-challenge"], timeout=5).status_code == 403  # the 1020 block page
    assert "Sorry, you have been blocked" in requests.get(edge.site_urls()["a-challenge"], timeout=5).text
    with pytest.raises(ValueError, match=r"sites\.a-challenge\.default: this site cannot answer 'injected'"):
        Web(captures).load_policy({"sites": {"a-challenge": "injected"}})


@pytest.mark.skipif(not CORPUS.is_dir(), reason="needs the shared corpus beside the worktree")
def test_every_capture_of_the_shared_corpus_loads_at_a_url_of_its_own():
    captures = load_captures(CORPUS)
    assert len(captures) == len(json.loads((CORPUS / "labels.json").read_text()))
    assert len({c.url for c in captures}) == len(captures)
