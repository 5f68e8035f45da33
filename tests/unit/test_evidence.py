"""Evidence files: HAR contents and retention."""

import json

import pytest

from exporter.config import Evidence
from exporter.evidence import enforce_retention, save_evidence
from exporter.values import FetchResult, Response

CHALLENGE = Response("https://news.test/", 403, (("Content-Type", "text/html"), ("cf-mitigated", "challenge"),
                                                  ("Set-Cookie", "__cf_bm=1; Path=/")),
                     "<title>Just a moment...</title>")
REAL_PAGE = Response("https://news.test/", 200, (("Content-Type", "text/html"),), "<title>News</title>")
CLEARED = FetchResult(CHALLENGE, REAL_PAGE, load_seconds=0.4, phases={"ttfb": 0.1, "dom_content_loaded": 0.3},
                      outcome="cleared", clear_seconds=2.5)
ROOMY = Evidence(max_files=100, max_bytes=10**9)


def probe_id(n: int) -> str:
    return f"20261122T03{n // 60:02d}{n % 60:02d}Z-{n:06x}"


def test_har_has_the_first_response_then_the_final_page(tmp_path):
    directory = save_evidence(tmp_path, probe_id(0), CLEARED, b"\x89PNG fake", ROOMY)
    assert directory == tmp_path / "evidence" / probe_id(0)
    har = json.loads((directory / "probe.har").read_text())["log"]
    assert har["version"] == "1.2"
    first, final = har["entries"]
    assert first["response"]["status"] == 403
    assert {"name": "cf-mitigated", "value": "challenge"} in first["response"]["headers"]
    assert first["response"]["cookies"] == [{"name": "__cf_bm", "value": "1"}]
    assert first["response"]["content"] == {"size": len(CHALLENGE.body), "mimeType": "text/html", "text": CHALLENGE.body}
    assert (final["response"]["status"], final["response"]["content"]["text"]) == (200, REAL_PAGE.body)
    assert first["startedDateTime"] == "2026-11-22T03:00:00+00:00"
    assert har["pages"][0]["pageTimings"] == {"onContentLoad": 300.0, "onLoad": 400.0}
    assert (directory / "page.html").read_text() == REAL_PAGE.body
    assert (directory / "screenshot.png").read_bytes() == b"\x89PNG fake"


def test_first_response_without_a_body_carries_the_final_html(tmp_path):
    headers_only = FetchResult(Response("https://news.test/", 200, (("Content-Type", "text/html"),)), REAL_PAGE)
    directory = save_evidence(tmp_path, probe_id(1), headers_only, None, ROOMY)
    entries = json.loads((directory / "probe.har").read_text())["log"]["entries"]
    assert [e["response"]["content"]["text"] for e in entries] == [REAL_PAGE.body]
    assert not (directory / "screenshot.png").exists()


def test_retention_keeps_at_most_max_files_deleting_oldest_first(tmp_path):
    limits = Evidence(max_files=7, max_bytes=10**9)  # 3 files per probe with a screenshot
    for n in range(5):
        save_evidence(tmp_path, probe_id(n), CLEARED, b"png", limits)
    assert sorted(p.name for p in (tmp_path / "evidence").iterdir()) == [probe_id(3), probe_id(4)]


def test_retention_keeps_at_most_max_bytes(tmp_path):
    one_probe = sum(f.stat().st_size for f in save_evidence(tmp_path, probe_id(0), CLEARED, b"png", ROOMY).iterdir())
    limits = Evidence(max_files=1000, max_bytes=3 * one_probe)
    for n in range(1, 6):
        save_evidence(tmp_path, probe_id(n), CLEARED, b"png", limits)
    kept = sorted(p.name for p in (tmp_path / "evidence").iterdir())
    assert kept == [probe_id(3), probe_id(4), probe_id(5)]


def test_the_probe_just_written_survives_limits_it_alone_exceeds(tmp_path):
    save_evidence(tmp_path, probe_id(0), CLEARED, b"png", ROOMY)
    save_evidence(tmp_path, probe_id(1), CLEARED, b"png", Evidence(max_files=1, max_bytes=1))
    assert [p.name for p in (tmp_path / "evidence").iterdir()] == [probe_id(1)]
    assert enforce_retention(tmp_path / "evidence", Evidence(max_files=1, max_bytes=1), keep="") == [probe_id(1)]


@pytest.mark.parametrize("bad", ["../etc", "20261122T031500Z-a1b2c3/../x", "latest", ""])
def test_probe_ids_that_are_not_probe_ids_are_refused(tmp_path, bad):
    with pytest.raises(ValueError):
        save_evidence(tmp_path, bad, CLEARED, None, ROOMY)


def test_classify_reads_the_first_response_back_from_the_har(tmp_path):
    from exporter.detect import classify
    from exporter.detect.saved import har_document

    page = (Response("https://news.test/", 403, CHALLENGE.headers,
                     "<html><head><title>Just a moment...</title></head><body>"
                     "<script src=\"/cdn-cgi/challenge-platform/h/b/orchestrate/chl_page/v1?ray=1\"></script>"
                     "</body></html>"))
    directory = save_evidence(tmp_path, probe_id(0), FetchResult(page, REAL_PAGE, outcome="cleared"), None, ROOMY)
    document = har_document(json.loads((directory / "probe.har").read_text()))
    assert (document.status, document.body) == (403, page.body)
    assert document.header("cf-mitigated") == "challenge"
    assert classify(document).kind == classify(page).kind == "challenge"


def test_evidence_is_readable_by_its_owner_only(tmp_path):
    import os
    import stat

    (tmp_path / "evidence").mkdir(mode=0o755)  # made by an earlier version
    old = os.umask(0o022)
    try:
        directory = save_evidence(tmp_path, probe_id(1), CLEARED, b"\x89PNG", ROOMY, diff="- a\n+ b\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "evidence").stat().st_mode) == 0o700
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = list(directory.iterdir())
    assert len(files) == 4 and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files), files
