"""Operator signatures: the format, its validation, and how they join the shipped ones."""

from __future__ import annotations

import re
import textwrap

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from exporter.detect import Detector, load_signatures
from exporter.detect import signatures as signatures_module
from exporter.detect.detector import _search
from exporter.detect.literals import fold, required_literals
from exporter.detect.page import Page
from exporter.detect.signatures import SignatureError, check_custom
from exporter.values import Response

ACME = {
    "name": "acme-waf",
    "kind": "block",
    "all": [{"status": [403, "429-429"]}],
    "any": [{"header": "x-acme-waf"}, {"cookie": "acme_[0-9a-f]+", "marker": "acme-cookie"}],
    "none": [{"text": "maintenance"}],
}


def _page(status=200, headers=(), body="<html></html>"):
    return Response("https://site.example/", status, tuple(headers), body)


def test_a_valid_signature_has_no_errors():
    assert check_custom([ACME]) == []
    assert check_custom(None) == []
    assert check_custom((ACME,)) == []  # the config loader hands over a tuple


@pytest.mark.parametrize(("raw", "path", "words"), [
    ({"name": "x"}, [], "list"),
    (["text"], [0], "mapping"),
    ([{**ACME, "colour": "red"}], [0, "colour"], "unknown key"),
    ([{**ACME, "name": "Has Spaces"}], [0, "name"], "lowercase"),
    ([{**ACME, "provider": 7}], [0, "provider"], "lowercase"),
    ([{**ACME, "kind": "captcha"}], [0, "kind"], "one of"),
    ([{"name": "empty", "kind": "block"}], [0], "at least one rule"),
    ([{**ACME, "any": {"header": "x"}}], [0, "any"], "list of rules"),
    ([{**ACME, "any": [{"header": "x"}, {"body": "(unclosed"}]}], [0, "any", 1, "body"], "invalid regular expression"),
    ([{**ACME, "all": [{"status": 99}]}], [0, "all", 0, "status"], "status code"),
    ([{**ACME, "all": [{"status": "599-500"}]}], [0, "all", 0, "status"], "range"),
    ([{**ACME, "all": [{"status": True}]}], [0, "all", 0, "status"], "status code"),
    ([{**ACME, "all": [{"body": "a", "title": "b"}]}], [0, "all", 0], "exactly one"),
    ([{**ACME, "all": [{"header": "x", "value": "[", "marker": "m"}]}], [0, "all", 0, "value"], "regular expression"),
    ([{**ACME, "all": [{"title": "x", "value": "y"}]}], [0, "all", 0, "value"], "unknown key"),
    ([{**ACME, "all": [{"max_body": -1}]}], [0, "all", 0, "max_body"], "non-negative"),
    ([{**ACME, "all": [{"body": 5}]}], [0, "all", 0, "body"], "string"),
    ([ACME, ACME], [1, "name"], "duplicate"),
])
def test_errors_name_the_path_inside_detect_signatures(raw, path, words):
    errors = check_custom(raw)
    assert errors, raw
    assert errors[0][0] == path
    assert words in errors[0][1]


def test_load_rejects_invalid_custom_signatures():
    with pytest.raises(SignatureError, match=r"detect\.signatures\.0\.kind"):
        load_signatures([{**ACME, "kind": "nope"}])


def test_custom_signature_decides_with_all_any_none():
    detector = Detector(load_signatures([ACME]))
    blocked = detector.classify(_page(403, [("Set-Cookie", "acme_0f=1; Path=/")]))
    assert (blocked.kind, blocked.provider) == ("block", "acme-waf")
    assert blocked.markers[:2] == ("acme-waf/status:403", "acme-waf/acme-cookie")
    assert detector.classify(_page(429, [("X-Acme-Waf", "1")])).provider == "acme-waf"
    # all fails (status), any fails (no header/cookie), none fires (maintenance): the generic rules decide
    assert detector.classify(_page(200, [("X-Acme-Waf", "1")])).kind == "ok"
    assert detector.classify(_page(403)).provider == "generic"
    assert detector.classify(_page(403, [("X-Acme-Waf", "1")], "<p>Down for maintenance</p>")).provider == "generic"


def test_custom_signatures_run_before_shipped_ones():
    page = _page(403, [("Server", "cloudflare"), ("cf-mitigated", "challenge")])
    assert Detector(load_signatures()).classify(page).provider == "cloudflare"
    mine = {"name": "my-cdn", "kind": "challenge", "all": [{"header": "cf-mitigated"}]}
    assert Detector(load_signatures([mine])).classify(page).provider == "my-cdn"


def test_a_custom_signature_with_a_shipped_name_replaces_it():
    page = _page(200, (), '<script src="https://www.google.com/recaptcha/api.js"></script>')
    assert Detector(load_signatures()).classify(page).provider == "recaptcha"
    narrower = {"name": "recaptcha", "kind": "widget", "any": [{"body": 'class="g-recaptcha"'}]}
    signatures = load_signatures([narrower])
    assert [s.name for s in signatures.items].count("recaptcha") == 1
    assert Detector(signatures).classify(page).kind == "ok"


def test_widget_rule_lets_a_gate_require_an_embedded_captcha():
    gate = {"name": "shop-gate", "kind": "challenge", "all": [{"widget": "hcaptcha"}, {"url": r"/verify\b"}]}
    detector = Detector(load_signatures([gate]))
    body = '<script src="https://js.hcaptcha.com/1/api.js"></script>'
    on_verify = detector.classify(Response("https://shop.example/verify?next=/", 200, (), body))
    assert (on_verify.kind, on_verify.provider) == ("challenge", "shop-gate")
    assert on_verify.markers[0] == "shop-gate/widget:hcaptcha"
    assert detector.classify(Response("https://shop.example/login", 200, (), body)).kind == "widget"


def test_default_markers_say_what_was_tested():
    signature = {"name": "m", "kind": "context",
                 "any": [{"header": "X-Thing", "value": "on"}, {"title": "t" * 60}, {"max_body": 10}]}
    loaded = next(s for s in load_signatures([signature]).items if s.name == "m")
    assert [r.marker for r in loaded.any] == ["header:x-thing=on", "title:" + "t" * 37 + "...", "max_body:10"]


@pytest.mark.parametrize(("pattern", "literals"), [
    (r"_cf_chl_(opt|ctx)\b", [{"_cf_chl_"}, {"opt", "ctx"}]),
    (r"sec-if-cpt|sec-cpt-if|\bbehavioral-content\b", [{"sec-if-cpt", "sec-cpt-if", "behavioral-content"}]),
    (r"Press &(amp;)? Hold to confirm", [{"press &"}, {" hold to confirm"}]),
    (r"<center>\s*Cloudflare\s*</center>", [{"<center>"}, {"cloudflare"}, {"</center>"}]),
    (r"(abc)+def", [{"abc"}, {"def"}]),
    (r"(abc|xyzw)[0-9]", [{"abc", "xyzw"}]),
    (r"[a-z]+\d*", None),          # nothing literal
    (r"abc|[xy]z", None),          # one branch has no literal
    (r"ab", None),                 # too short to be worth it
])
def test_prefilter_literals_are_required_by_every_match(pattern, literals):
    found = required_literals(pattern)
    assert ([set(group) for group in found] if found else None) == literals


@given(text=st.text(alphabet="kisKIS\u0130\u0131\u017f\u212a x", max_size=30))
def test_prefilter_never_rejects_what_the_case_insensitive_regex_matches(text):
    """re.IGNORECASE equates some non-ASCII letters with i, s and k; fold() must too."""
    pattern = "kis|six"
    if re.search(pattern, text, re.IGNORECASE):
        assert any(literal in fold(text) for group in required_literals(pattern) for literal in group)


def test_the_documented_example_is_a_valid_config_value():
    doc = signatures_module.__doc__
    block = doc[doc.index(".. code-block:: yaml") + len(".. code-block:: yaml"):doc.index("Where a marker sits")]
    example = yaml.safe_load(textwrap.dedent(block))["detect"]["signatures"]
    assert check_custom(example) == []
    detector = Detector(load_signatures(example))
    verdict = detector.classify(_page(403, [("Set-Cookie", "acme_12ab=1")], "<title>Request denied</title>"))
    assert (verdict.kind, verdict.provider) == ("block", "acme-waf")
    verdict = detector.classify(_page(429, (), '<div id="acme-block">Slow down</div>'))
    assert (verdict.kind, verdict.provider) == ("block", "acme-waf")


SHIPPED_BODY_RULES = [rule for s in load_signatures().items for rule in s.all + s.any + s.none if rule.place]
PIECES = sorted({text for rule in SHIPPED_BODY_RULES for text in rule.prefixes or ()}
                | {"1020", "Reference #18.ab", "<", ">", '"', " ", "\n", "\u0130", "=", "'t':'bv'"})


@given(rule=st.sampled_from(SHIPPED_BODY_RULES),
       body=st.lists(st.one_of(st.sampled_from(PIECES), st.sampled_from(PIECES).map(str.upper), st.text(max_size=5)),
                     max_size=12).map("".join))
def test_prefix_anchored_search_agrees_with_a_plain_search(rule, body):
    page = Page(Response("https://site.example/", 200, (), body))
    assert _search(rule, page) == (rule.pattern.search(page.place(rule.place)) is not None)
