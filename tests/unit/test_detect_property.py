"""Whatever arrives, the detector answers with a valid Verdict and never raises."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.detect import classify
from exporter.detect.providers import GATE_PROVIDERS, WIDGET_PROVIDERS
from exporter.detect.saved import SavedResponseError, load_saved
from exporter.values import Response, Verdict, VerdictKind

MARKUP = st.sampled_from([
    "<title>", "</title>", "Just a moment...", "_cf_chl_opt", "var dd={'t':'bv'", "<meta name=robots content=noindex,nofollow>",
    "_Incapsula_Resource", "g-recaptcha", "cf-error-code\">1020", "Reference #18.1", "\u0131", "\u017f", "\x00", "\ud7ff",
])
BODIES = st.one_of(
    st.binary(max_size=4096).map(lambda b: b.decode("utf-8", errors="replace")),
    st.binary(max_size=4096).map(lambda b: b.decode("latin-1")),
    st.lists(st.one_of(MARKUP, st.text(max_size=30)), max_size=40).map("".join),
)
HEADER_NAMES = st.one_of(st.sampled_from(["Server", "cf-mitigated", "Set-Cookie", "x-amzn-waf-action", "X-DataDome"]),
                         st.text(max_size=20))
HEADERS = st.lists(st.tuples(HEADER_NAMES, st.text(max_size=60)), max_size=8).map(tuple)


def _valid(verdict: Verdict) -> bool:
    if verdict.kind not in set(VerdictKind) or not all(isinstance(m, str) for m in verdict.markers):
        return False
    if verdict.kind == "ok":
        return verdict.provider == ""
    return verdict.provider in (WIDGET_PROVIDERS if verdict.kind == "widget" else GATE_PROVIDERS)


@settings(max_examples=300, deadline=None)
@given(status=st.integers(min_value=-1000, max_value=100_000), headers=HEADERS, body=BODIES, url=st.text(max_size=50))
def test_any_response_gets_a_valid_verdict(status, headers, body, url):
    assert _valid(classify(Response(url=url, status=status, headers=headers, body=body)))


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=2048))
def test_any_file_bytes_either_classify_or_fail_cleanly(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("saved") / "input"
    path.write_bytes(data)
    try:
        response = load_saved(path)
    except SavedResponseError as exc:
        assert str(exc)
    else:
        assert _valid(classify(response))


@settings(max_examples=100, deadline=None)
@given(doc=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                            st.sampled_from(["log", "entries", "response", "request", "content", "text", "status",
                                             "headers", "mimeType", "url", "redirectURL", "encoding", "cookies",
                                             "name", "value"]), inner, max_size=5),
                        max_leaves=30))
def test_any_json_either_classifies_or_fails_cleanly(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("har") / "input.har"
    path.write_text(json.dumps(doc), encoding="utf-8")
    try:
        response = load_saved(path)
    except SavedResponseError as exc:
        assert str(exc)
    else:
        assert _valid(classify(response))
