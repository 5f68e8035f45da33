import argparse
import http.client
import logging
import os
import socket
import struct
import threading
import time
from datetime import date
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry, Counter
from support.spine_values import fetched, page, relay

from exporter.evidence import HAR_FILE, HTML_FILE, SCREENSHOT_FILE
from exporter.exposition import Exposition
from exporter.probe import ProbeResult
from exporter.store import probe_record
from exporter.values import Verdict
from exporter.web import WebServer, add_arguments

PROBE = "20261122T031500Z-a1b2c3"
BARE = "20261122T031600Z-d4e5f6"  # a probe without evidence
HOSTILE = "<script>alert('x')</script>"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
ACTION = {"X-Requested-By": "test"}  # an action (POST) from a client, not from a web page


class FakeView:
    def __init__(self, evidence_dir: Path | None):
        registry = CollectorRegistry()
        Counter("fake_probes", "Probes.", registry=registry).inc()
        self.exposition = Exposition(registry)
        self.is_ready = True
        self.reload_answer = (True, "reloaded: 2 targets")
        self.reloads = 0
        self._evidence_dir = evidence_dir
        self.report = None  # (day, file) of the newest daily report
        answered = ProbeResult(PROBE, "news", "chromium", relay(1), 1_700_000_000.0, 1.2,
                               verdict=Verdict("challenge", "cloudflare", ("status:403",)),
                               fetch=fetched(page(403), load=1.234, outcome="cleared", clear_seconds=5.0))
        failed = ProbeResult(BARE, HOSTILE, "http", relay(2), 1_700_000_100.0, 0.5,
                             error_reason="timeout", error_message=f"timed out {HOSTILE}")
        self.records = [probe_record(answered, evidence=f"evidence/{PROBE}"), probe_record(failed)]

    def ready(self):
        return (True, "probing 1 target") if self.is_ready else (False, "tor is not bootstrapped")

    def status(self):
        return {"tor": "0.4.9 at 127.0.0.1:9051", "note": HOSTILE}

    def recent(self):
        return self.records

    def probe(self, probe_id):
        return next((r for r in self.records if r["probe_id"] == probe_id), None)

    def probes(self, limit, since, until, **equal):
        self.asked = (limit, since, until, equal)
        return list(reversed(self.records))[:limit]

    def config_text(self):
        return f"targets:\n- name: {HOSTILE}\n"

    def evidence_dir(self):
        return self._evidence_dir

    def latest_report(self):
        return self.report

    def reload(self):
        self.reloads += 1
        return self.reload_answer


@pytest.fixture
def evidence(tmp_path):
    root = tmp_path / "evidence"
    (root / PROBE).mkdir(parents=True)
    (root / PROBE / HTML_FILE).write_text(f"<html><body>{HOSTILE}</body></html>")
    (root / PROBE / HAR_FILE).write_text('{"log": {"version": "1.2"}}')
    (root / PROBE / SCREENSHOT_FILE).write_bytes(PNG)
    (tmp_path / "secret.html").write_text("outside the evidence directory")
    return root


@pytest.fixture
def view(evidence):
    return FakeView(evidence)


@pytest.fixture
def server(view):
    web = WebServer(view, "127.0.0.1", 0)
    web.start()
    yield web
    web.stop()


def url(server, path):
    host, port = server.address
    return f"http://{host}:{port}{path}"


def raw_get(server, path):
    """GET ``path`` exactly as written (no client-side normalisation or quoting)."""
    connection = http.client.HTTPConnection(*server.address, timeout=10)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_metrics(server):
    response = requests.get(url(server, "/metrics"), timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    assert "fake_probes_total 1.0" in response.text


def test_metrics_gzipped_when_the_scraper_asks(server):
    asked = requests.get(url(server, "/metrics"), headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert asked.headers["Content-Encoding"] == "gzip" and asked.headers["Vary"] == "Accept-Encoding"
    assert "fake_probes_total 1.0" in asked.text  # requests decompresses
    status, body = raw_get(server, "/metrics")  # no Accept-Encoding at all
    assert status == 200 and b"fake_probes_total 1.0" in body


def test_health_and_readiness(server, view):
    assert requests.get(url(server, "/-/healthy"), timeout=10).status_code == 200
    ready = requests.get(url(server, "/-/ready"), timeout=10)
    assert (ready.status_code, ready.text) == (200, "probing 1 target\n")
    view.is_ready = False
    not_ready = requests.get(url(server, "/-/ready"), timeout=10)
    assert (not_ready.status_code, not_ready.text) == (503, "tor is not bootstrapped\n")


def test_config_is_plain_text(server):
    response = requests.get(url(server, "/config"), timeout=10)
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert HOSTILE in response.text


def test_the_probes_api_answers_json_and_bounds_its_answer(server, view):
    answer = requests.get(url(server, f"/api/v1/probes?target=news&exit=${'a' * 40}&verdict=challenge&limit=1"),
                          timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/json"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    data = answer.json()["data"]
    assert [p["probe_id"] for p in data["probes"]] == [BARE] and data["truncated"] is True and data["limit"] == 1
    assert view.asked == (2, None, None, {"target": "news", "fingerprint": "A" * 40, "verdict": "challenge"})
    bad = requests.get(url(server, "/api/v1/probes?verdict=captcha"), timeout=10)
    assert bad.status_code == 400 and bad.json() == {
        "status": "error", "errorType": "bad_data",
        "error": "verdict must be one of ok, widget, challenge, block, error, none, got 'captcha'"}


def test_unknown_paths_are_404(server):
    for path in ("/nope", "/probe/", "/evidence/", "/metrics/x"):
        assert requests.get(url(server, path), timeout=10).status_code == 404, path


def test_landing_page_lists_probes_with_links_and_escapes_hostile_text(server):
    response = requests.get(url(server, "/"), timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    body = response.text
    assert "<script" not in body
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in body
    assert body.count("&lt;script&gt;") == 3  # in the status table, the config and a probe's target
    assert f'<a href="/probe/{PROBE}">' in body and f'<a href="/probe/{BARE}">' in body
    for name in (HTML_FILE, HAR_FILE, SCREENSHOT_FILE):
        assert f'<a href="/evidence/{PROBE}/{name}">' in body
    assert f"/evidence/{BARE}/" not in body
    for text in ("exit1", relay(1).fingerprint, "DE", "chromium", "challenge", "cloudflare", "cleared", "1.23",
                 "2023-11-14 22:13:20", "no answer: timeout"):
        assert text in body


def test_landing_page_takes_probe_results_too(view, server):
    view.records = [ProbeResult(PROBE, "shop", "http", relay(3), 1_700_000_000.0, 0.1,
                                verdict=Verdict("ok"), fetch=fetched(page()))]
    body = requests.get(url(server, "/"), timeout=10).text
    assert "shop" in body and "exit3" in body and f'<a href="/probe/{PROBE}">' in body


def test_a_long_config_is_linked_from_the_landing_page_not_shown_on_it(view, server):
    """The landing page stays small whatever the config (a 1 MiB file may render to megabytes)."""
    view.config_text = lambda: "targets:\n" + "- {name: t, url: 'https://s.example/'}\n" * 20_000
    body = requests.get(url(server, "/"), timeout=10).text
    assert "s.example" not in body and 'on <a href="/config">/config</a>' in body and "780,009 characters" in body
    assert len(body) < 100_000
    view.config_text = lambda: "targets:\n- {name: t, url: 'https://s.example/'}\n"
    assert "s.example" in requests.get(url(server, "/"), timeout=10).text


def test_the_landing_page_links_the_latest_daily_report_once_there_is_one(view, server, tmp_path):
    assert "/reports/latest" not in requests.get(url(server, "/"), timeout=10).text
    assert requests.get(url(server, "/reports/latest"), timeout=10).status_code == 404
    path = tmp_path / "captcha-report-2026-12-04.csv"
    path.write_text("day,target\n2026-12-04,news\n")
    view.report = (date(2026, 12, 4), path)
    assert '<a href="/reports/latest">Daily report (2026-12-04)</a>' in requests.get(url(server, "/"), timeout=10).text
    report = requests.get(url(server, "/reports/latest"), timeout=10)
    assert report.status_code == 200 and report.text == "day,target\n2026-12-04,news\n"
    assert report.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert report.headers["Content-Disposition"] == 'attachment; filename="captcha-report-2026-12-04.csv"'
    path.unlink()  # removed by the daily job between the listing and the read
    assert requests.get(url(server, "/reports/latest"), timeout=10).status_code == 404


def test_a_server_that_never_started_stops_at_once_and_frees_its_port(view):
    """An exporter that fails between binding and serving is stopped too; socketserver's shutdown()
    alone would wait for a serve_forever that never runs, and the process would hang."""
    web = WebServer(view, "127.0.0.1", 0)
    address = web.address
    stopping = threading.Thread(target=web.stop, daemon=True)
    stopping.start()
    stopping.join(5)
    assert not stopping.is_alive(), "stop() hangs on a server that never served"
    with socket.socket() as again:
        again.bind(address)


def test_our_pages_carry_security_headers(server):
    for path in ("/", f"/probe/{PROBE}"):
        headers = requests.get(url(server, path), timeout=10).headers
        assert headers["Content-Security-Policy"].startswith("default-src 'none'; style-src 'unsafe-inline'")
        assert "script-src" not in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_probe_page_shows_everything_escaped(server):
    answered = requests.get(url(server, f"/probe/{PROBE}"), timeout=10)
    assert answered.status_code == 200
    for text in ("exit.fingerprint", relay(1).fingerprint, "status:403", "clear_seconds", "5.0",
                 f'<a href="/evidence/{PROBE}/{HTML_FILE}">'):
        assert text in answered.text
    failed = requests.get(url(server, f"/probe/{BARE}"), timeout=10)
    assert "<script" not in failed.text and "timed out &lt;script&gt;" in failed.text
    assert "none kept" in failed.text


def test_unknown_or_malformed_probe_ids_are_404(server):
    for probe_id in ("20261122T031500Z-ffffff", "p1", "..", "%3Cscript%3E", f"{PROBE}/x"):
        assert raw_get(server, f"/probe/{probe_id}")[0] == 404, probe_id


def test_evidence_html_is_inert_text(server):
    response = requests.get(url(server, f"/evidence/{PROBE}/{HTML_FILE}"), timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Content-Security-Policy"] == "sandbox; default-src 'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.text == f"<html><body>{HOSTILE}</body></html>"


def test_evidence_screenshot_and_har(server):
    png = requests.get(url(server, f"/evidence/{PROBE}/{SCREENSHOT_FILE}"), timeout=10)
    assert (png.status_code, png.headers["Content-Type"], png.content) == (200, "image/png", PNG)
    assert png.headers["Content-Security-Policy"] == "sandbox; default-src 'none'"
    har = requests.get(url(server, f"/evidence/{PROBE}/{HAR_FILE}"), timeout=10)
    assert har.headers["Content-Type"] == "application/json"
    assert har.headers["Content-Disposition"] == f'attachment; filename="{PROBE}-{HAR_FILE}"'
    assert har.json() == {"log": {"version": "1.2"}}
    assert har.headers["Content-Security-Policy"] == "sandbox; default-src 'none'"


@pytest.mark.parametrize("path", [
    f"/evidence/{PROBE}/../../secret.html",
    f"/evidence/{PROBE}/..%2f..%2fsecret.html",
    f"/evidence/{PROBE}/%2e%2e/%2e%2e/secret.html",
    "/evidence/%2e%2e/secret.html",
    "/evidence/../secret.html",
    "/evidence//etc/passwd",
    "/evidence/etc/passwd",
    f"/evidence/{PROBE}//etc/passwd",
    f"/evidence/{PROBE}/%2fetc%2fpasswd",
    f"/evidence/{PROBE}/page.html%00.png",
    f"/evidence/{PROBE}/other.html",
    f"/evidence/{PROBE}/{HTML_FILE}/",
    f"/evidence/{BARE}/{HTML_FILE}",
    f"/evidence/{PROBE}/./{HTML_FILE}",
])
def test_evidence_paths_outside_the_known_files_are_refused(server, path):
    status, body = raw_get(server, path)
    assert status in (400, 404), (path, status)
    assert b"outside the evidence directory" not in body and b"root:" not in body


def test_symlinks_out_of_the_evidence_directory_are_refused(server, evidence):
    outside = evidence.parent / "secret.html"
    linked_dir = evidence.parent / "elsewhere"
    linked_dir.mkdir()
    (linked_dir / HTML_FILE).write_text("outside the evidence directory")
    os.symlink(linked_dir, evidence / BARE)  # a probe directory pointing out
    (evidence / PROBE / HTML_FILE).unlink()
    os.symlink(outside, evidence / PROBE / HTML_FILE)  # a file pointing out
    for path in (f"/evidence/{PROBE}/{HTML_FILE}", f"/evidence/{BARE}/{HTML_FILE}"):
        status, body = raw_get(server, path)
        assert status == 404 and b"outside" not in body, path


def test_no_evidence_directory_means_no_evidence(view, server):
    view._evidence_dir = None
    assert requests.get(url(server, f"/evidence/{PROBE}/{HTML_FILE}"), timeout=10).status_code == 404
    assert "/evidence/" not in requests.get(url(server, "/"), timeout=10).text


def test_reload_takes_post_only(server, view):
    get = requests.get(url(server, "/-/reload"), timeout=10)
    assert (get.status_code, get.headers["Allow"], view.reloads) == (405, "POST", 0)
    ok = requests.post(url(server, "/-/reload"), headers=ACTION, timeout=10)
    assert (ok.status_code, ok.text, view.reloads) == (200, "reloaded: 2 targets\n", 1)
    view.reload_answer = (False, "config.yml:3: targets[0].url: not a URL")
    bad = requests.post(url(server, "/-/reload"), headers=ACTION, timeout=10)
    assert (bad.status_code, bad.text) == (500, "config.yml:3: targets[0].url: not a URL\n")
    assert requests.post(url(server, "/metrics"), timeout=10).status_code == 405


def test_a_failing_page_is_a_500_and_the_server_lives_on(server, view):
    view.status = lambda: 1 / 0
    assert requests.get(url(server, "/"), timeout=10).status_code == 500
    assert requests.get(url(server, "/-/healthy"), timeout=10).status_code == 200


def test_head_answers_headers_without_a_body(server):
    for path in ("/-/healthy", "/", f"/evidence/{PROBE}/{SCREENSHOT_FILE}"):
        response = requests.head(url(server, path), timeout=10)
        assert response.status_code == 200 and response.content == b"", path
        assert int(response.headers["Content-Length"]) > 0
    assert requests.head(url(server, "/nope"), timeout=10).status_code == 404


def test_the_web_config_flag():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--web.config.file", "web.yml"]).web_config_file == "web.yml"
    assert parser.parse_args([]).web_config_file is None


def test_a_client_that_resets_its_connection_is_one_debug_line(server, caplog, capfd):
    caplog.set_level(logging.DEBUG, logger="exporter.web")
    for partial in (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"):
        connection = socket.create_connection(server.address, timeout=10)
        connection.sendall(partial)
        time.sleep(0.2)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()  # with SO_LINGER 0: a reset, not a FIN
    deadline = time.monotonic() + 5
    while sum("web client went away" in r.getMessage() for r in caplog.records) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    gone = [r for r in caplog.records if "web client went away" in r.getMessage()]
    assert gone and all(r.levelno == logging.DEBUG and "Connection" in r.err for r in gone)
    assert "Traceback" not in capfd.readouterr().err
    assert requests.get(url(server, "/-/healthy"), timeout=10).status_code == 200


def test_the_landing_page_shows_one_page_of_probes_at_a_time(server, view):
    template = view.records[1]
    view.records = [dict(template, probe_id=f"20261122T03{index // 60:02d}{index % 60:02d}Z-{index:06x}",
                         target=f"t{index}", started=1_700_000_000.0 + index) for index in range(120)]
    first = requests.get(url(server, "/"), timeout=10).text
    assert "t119<" in first and "t70<" in first and "t69<" not in first
    assert "page 1 of 3" in first and '<a href="/?page=2">older</a>' in first and "newer" not in first
    second = requests.get(url(server, "/?page=2"), timeout=10).text
    assert "t69<" in second and "t20<" in second and "t119<" not in second and "t19<" not in second
    assert '<a href="/?page=1">newer</a>' in second and '<a href="/?page=3">older</a>' in second
    last = requests.get(url(server, "/?page=3"), timeout=10).text
    assert "t19<" in last and "t0<" in last and "older" not in last
    for odd in ("/?page=99", "/?page=0", "/?page=-1", "/?page=x", "/?page=" + "9" * 50):
        assert requests.get(url(server, odd), timeout=10).status_code == 200, odd


def test_the_landing_page_stays_small_whatever_the_config(server, view):
    view.config_text = lambda: "targets:\n" + "- name: x\n" * 500_000
    view.records = view.records * 500
    response = requests.get(url(server, "/"), timeout=30)
    assert response.status_code == 200 and len(response.content) < 200_000, len(response.content)
    assert 'on <a href="/config">/config</a>' in response.text
