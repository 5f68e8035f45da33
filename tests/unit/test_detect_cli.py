"""`captcha-exporter classify`: HAR and HTML input, JSON output, exit codes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.detect.saved import SavedResponseError, har_document, load_saved

FIXTURES = Path(__file__).parent / "fixtures" / "detect"
CHALLENGE = (FIXTURES / "cf-managed-2025.html").read_text(encoding="utf-8")


def _entry(url, status, body="", mime="text/html; charset=utf-8", headers=(), redirect="", encoding=None):
    content = {"size": len(body), "mimeType": mime, "text": body}
    if encoding:
        content["encoding"] = encoding
    return {
        "startedDateTime": "2026-01-01T00:00:00Z", "time": 1,
        "request": {"method": "GET", "url": url, "httpVersion": "HTTP/1.1", "headers": [], "cookies": [],
                    "queryString": [], "headersSize": -1, "bodySize": -1},
        "response": {"status": status, "statusText": "", "httpVersion": "HTTP/1.1",
                     "headers": [{"name": n, "value": v} for n, v in headers], "cookies": [],
                     "content": content, "redirectURL": redirect, "headersSize": -1, "bodySize": -1},
        "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0},
    }


def _har(*entries):
    return {"log": {"version": "1.2", "creator": {"name": "test", "version": "1"}, "entries": list(entries)}}


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


def test_har_main_document_follows_redirects_past_other_entries():
    har = _har(
        _entry("https://example.org/favicon.ico", 200, "", mime="image/x-icon"),
        _entry("http://example.org/", 301, "", mime="", headers=[("Location", "https://example.org/")]),
        _entry("https://example.org/app.js", 200, "console.log(1)", mime="application/javascript"),
        _entry("https://example.org/", 302, "", mime="text/html", redirect="/home"),
        _entry("https://example.org/home", 403, CHALLENGE, headers=[("Server", "cloudflare")]),
        _entry("https://example.org/home", 200, "<html>after the challenge</html>"),
    )
    document = har_document(har)
    assert (document.url, document.status) == ("https://example.org/home", 403)
    assert document.header("server") == "cloudflare"
    assert "_cf_chl_opt" in document.body


def test_har_redirect_without_a_following_entry_is_the_document():
    document = har_document(_har(_entry("http://a.example/", 302, "", mime="", redirect="https://b.example/")))
    assert document.status == 302


def test_har_malformed_redirect_target_is_compared_as_written():
    har = _har(_entry("http://[bad/", 302, "", mime="", redirect="http://[bad/next"),
               _entry("http://[bad/next", 429, "<html>slow down</html>"))
    assert har_document(har).status == 429


def test_har_base64_body_and_cookies_listed_apart():
    entry = _entry("https://example.org/", 403, base64.b64encode(CHALLENGE.encode()).decode(), encoding="base64")
    entry["response"]["cookies"] = [{"name": "__cf_bm", "value": "x"}]
    document = har_document(_har(entry))
    assert document.body == CHALLENGE
    assert document.cookie_names == ["__cf_bm"]


@pytest.mark.parametrize(("data", "words"), [
    ("{not json", "not valid JSON"),
    ({"log": {}}, "no log.entries"),
    (_har(_entry("https://example.org/a.png", 200, "", mime="image/png")), "no HTML document"),
    (_har({"request": {}}), "no HAR entry has a response"),
])
def test_unreadable_har_says_why(tmp_path, data, words):
    with pytest.raises(SavedResponseError, match=words):
        load_saved(_write(tmp_path, "x.har", data))


def test_cli_json_for_har_and_html(tmp_path, capsys):
    har = _write(tmp_path, "gate.har", _har(_entry("https://example.org/", 403, CHALLENGE)))
    html = FIXTURES / "widget-login-recaptcha.html"
    assert main(["classify", "--json", str(har), str(html)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["file"], r["verdict"], r["provider"]) for r in lines] == [
        (str(har), "challenge", "cloudflare"), (str(html), "widget", "recaptcha")]
    assert "cloudflare-challenge/_cf_chl_opt" in lines[0]["markers"]


def test_cli_status_and_headers_apply_to_html(tmp_path, capsys):
    page = _write(tmp_path, "page.html", "<html><head><title>Hi</title></head></html>")
    assert main(["classify", "--json", str(page)]) == 0
    assert json.loads(capsys.readouterr().out) == {"file": str(page), "verdict": "ok", "provider": None, "markers": []}
    assert main(["classify", "--status", "202", "--header", "x-amzn-waf-action: challenge", str(page)]) == 0
    assert capsys.readouterr().out.startswith(f"{page}: challenge/aws-waf")


def test_cli_exit_2_on_unreadable_input_but_classifies_the_rest(tmp_path, capsys):
    good = _write(tmp_path, "good.html", "<html></html>")
    assert main(["classify", str(tmp_path / "missing.har"), str(good)]) == 2
    captured = capsys.readouterr()
    assert "missing.har" in captured.err and "cannot read" in captured.err
    assert captured.out.startswith(f"{good}: ok")


def test_cli_bad_header_argument_exits_2(capsys):
    assert main(["classify", "--header", "no-colon", str(FIXTURES / "nginx-403.html")]) == 2
    assert "Name: value" in capsys.readouterr().err


def test_cli_config_adds_custom_signatures(tmp_path, capsys):
    config = _write(tmp_path, "config.yaml", "targets:\n  - {name: shop, url: 'https://shop.example/'}\ndetect:\n  signatures:\n"
                    "    - {name: intranet-sso, kind: block, all: [{title: '^Intranet login required'}]}\n")
    page = _write(tmp_path, "sso.html", "<title>Intranet login required</title>")
    assert main(["classify", "--config", str(config), str(page)]) == 0
    assert capsys.readouterr().out.startswith(f"{page}: block/intranet-sso")


def test_cli_invalid_config_signature_exits_2_naming_the_key(tmp_path, capsys):
    config = _write(tmp_path, "config.yaml", "targets:\n  - {name: shop, url: 'https://shop.example/'}\n"
                    "detect:\n  signatures:\n    - {name: x, kind: block,\n       all: [{body: '('}]}\n")
    assert main(["classify", "--config", str(config), str(FIXTURES / "nginx-403.html")]) == 2
    error = capsys.readouterr().err
    assert "config.yaml:6" in error and "all[0].body" in error and "regular expression" in error
