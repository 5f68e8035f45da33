"""The shipped signatures on hand-written pages built from the documented markers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from exporter.detect import Detector, classify, load_signatures
from exporter.detect.detector import _search
from exporter.detect.page import Page
from exporter.detect.providers import GATE_PROVIDERS, WIDGET_PROVIDERS
from exporter.values import Response, VerdictKind

FIXTURES = Path(__file__).parent / "fixtures" / "detect"
CASES = yaml.safe_load((FIXTURES / "cases.yaml").read_text(encoding="utf-8"))["cases"]


def _response(case: dict) -> Response:
    body = (FIXTURES / case["file"]).read_text(encoding="utf-8") if "file" in case else case["body"]
    headers = tuple((name, str(value)) for name, value in (case.get("headers") or {}).items())
    return Response(url="https://site.example/", status=case["status"], headers=headers, body=body)


def _case_id(case: dict) -> str:
    return f"{case.get('name') or case.get('file') or case['body'][:40]}@{case['status']}->{case['expect']}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_fixture_verdict(case):
    verdict = classify(_response(case))
    assert f"{verdict.kind}/{verdict.provider}".rstrip("/") == case["expect"], verdict.markers
    if "marker" in case:
        assert case["marker"] in verdict.markers


def test_fixtures_cover_every_kind_and_shipped_provider():
    expected = {case["expect"] for case in CASES}
    assert {e.split("/")[0] for e in expected} == set(VerdictKind)
    gate_providers = {e.split("/")[1] for e in expected if e.split("/")[0] in ("challenge", "block", "error")}
    widget_providers = {e.split("/")[1] for e in expected if e.startswith("widget/")}
    assert gate_providers == set(GATE_PROVIDERS)
    assert widget_providers == set(WIDGET_PROVIDERS)


def test_shipped_signatures_name_only_known_providers():
    for signature in load_signatures().items:
        if signature.kind == "widget":
            assert signature.provider in WIDGET_PROVIDERS, signature.name
        elif signature.kind != "origin":  # context signatures name the vendors attribution may choose
            assert signature.provider in GATE_PROVIDERS, signature.name


def test_gate_wins_over_the_captcha_it_embeds():
    case = {"file": "cf-legacy-captcha-recaptcha.html", "status": 403}
    verdict = classify(_response(case))
    assert (verdict.kind, verdict.provider) == ("challenge", "cloudflare")
    # the same reCAPTCHA on a normal page is a widget
    normal = Response("https://site.example/login", 200, (), '<script src="https://www.google.com/recaptcha/api.js">')
    widget = classify(normal)
    assert (widget.kind, widget.provider) == ("widget", "recaptcha")


def test_ok_page_reports_the_context_it_saw():
    case = {"file": "normal-cloudflare-page.html", "status": 200,
            "headers": {"Server": "cloudflare", "Set-Cookie": "cf_clearance=abc; path=/"}}
    verdict = classify(_response(case))
    assert verdict.kind == "ok" and verdict.provider == ""
    assert {"cloudflare-edge/server", "cloudflare-edge/cookie", "cloudflare-sensor/beacon",
            "cloudflare-sensor/email-protection"} <= set(verdict.markers)


@pytest.mark.parametrize("status", [200, 403, 429, 503])
def test_sensors_alone_never_gate_a_normal_status(status):
    """tags.js, the PX sensor, the Incapsula loader and _abck on a 200 page are ok; on a refusal
    they name the vendor (the cookie is the strongest evidence), never a challenge."""
    page = (FIXTURES / "normal-page-with-sensors.html").read_text(encoding="utf-8")
    verdict = classify(Response("https://site.example/", status, (("Set-Cookie", "_abck=x; Path=/"),), page))
    expected = {200: ("ok", ""), 403: ("block", "akamai"), 429: ("block", "akamai"), 503: ("error", "akamai")}
    assert (verdict.kind, verdict.provider) == expected[status]


def test_status_marker_names_the_status_seen():
    verdict = classify(Response("https://site.example/", 451, (), "<html><title>Unavailable</title></html>"))
    assert (verdict.kind, verdict.provider, verdict.markers) == ("block", "generic", ("generic-block/status:451",))


def test_markers_inside_a_huge_page_are_found_near_the_top_only():
    filler = "<p>" + "lorem ipsum " * 200_000 + "</p>"  # ~2.4 MB
    top = Response("https://site.example/", 200, (), '<div class="g-recaptcha"></div>' + filler)
    bottom = Response("https://site.example/", 200, (), filler + '<div class="g-recaptcha"></div>')
    assert classify(top).kind == "widget"
    assert classify(bottom).kind == "ok"


def test_detector_uses_the_signatures_it_is_given():
    custom = [{"name": "acme-waf", "kind": "block", "all": [{"header": "x-acme", "value": "deny"}]}]
    detector = Detector(load_signatures(custom))
    response = Response("https://site.example/", 200, (("X-Acme", "deny"),), "<html></html>")
    assert detector.classify(response).provider == "acme-waf"
    assert classify(response).kind == "ok"


def test_anchored_search_finds_what_a_plain_search_finds_on_every_fixture():
    rules = [r for s in load_signatures().items for r in s.all + s.any + s.none if r.place and r.prefixes]
    matched = 0
    for case in CASES:
        page = Page(_response(case))
        for rule in rules:
            expected = rule.pattern.search(page.place(rule.place)) is not None
            assert _search(rule, page) == expected, (case.get("file"), rule.marker)
            matched += expected
    assert matched > len(CASES)  # the comparison covered real matches, not just misses
