"""Every parser of page content runs in time linear in the page's size, whatever the page holds.

Pages are hostile by design: an unclosed tag, a quote that never ends, ten
thousand attributes or a million nested elements must cost what a normal page
of that size costs.  Each shape is fed to every reader of page content (the
tokenizer, the detector with its title and marker extraction, page-change
normalisation, HAR writing) and each must stay under 0.5 s of CPU per MB.
Quadratic behaviour misses that bound by orders of magnitude (the regexes this
replaced took 5 s on 60 KB), so the bound holds on a busy machine too.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.change.normalise import normalise
from exporter.detect import classify, load_signatures
from exporter.evidence import har
from exporter.markup import PageTooComplex, tokens
from exporter.values import FetchResult, Response

SECONDS_PER_MB = 0.5
MB = 1024 * 1024


def _prefixes() -> list[str]:
    """Every literal a shipped signature's regex starts from: repeated, each makes the regex
    try again, so a regex that scans past the next occurrence is quadratic."""
    rules = (rule for s in load_signatures().items for rule in s.all + s.any + s.none)
    return sorted({text for rule in rules for text in rule.prefixes or ()})


# Each shape: a unit repeated to the wanted size (with a head and a tail around it).
SHAPES = {
    "unclosed tags": ("", "<a ", ""),
    "unclosed quote": ("<a title='", "x\"<b>", ""),
    "attribute soup": ("<div ", "a=b c='d' e=\"f\" ", ">x</div>"),
    "attribute soup, unclosed": ("<script ", "a=b =c d ", ""),
    "nested quotes": ("<p title='\"' ", "'\"'\"=", ">"),
    "deep nesting": ("", "<div><b>", ""),
    "deep nesting with attributes": ("", "<span class=a id=b>", ""),
    "unclosed title": ("<title>", "Just a moment ", ""),
    "unclosed comments": ("", "<!--", ""),
    "bogus comments": ("", "<!x", ""),
    "lone angle brackets": ("", "< <3 </ ", ""),
    "end tags": ("", "</p ", ""),
    "unclosed script with escapes": ("<script>", "'\\'\\\"`/*", ""),
    "script end tag near misses": ("<script>", "</scrip</scriptx <!--", ""),
    "character references": ("<p>", "&amp&#x26;&#999999999;&", "</p>"),
    "signature prefixes": ("<script>", "|".join(_prefixes()), "</script>"),
    "signature prefixes in text": ("<p>", " ".join(_prefixes()), "</p>"),
    "signature prefixes in attributes": ("<div class=\"", " ".join(_prefixes()).replace('"', ""), "\">"),
    "forms and fields": ("", "<form><input type=text><textarea>x</textarea>", ""),
}


def shaped(shape: str, size: int) -> str:
    head, unit, tail = SHAPES[shape]
    return head + unit * max(1, (size - len(head) - len(tail)) // len(unit)) + tail


def _classify(page: str) -> None:
    classify(Response("https://site.example/", 403, (("Server", "cloudflare"),), page))


def _normalise(page: str) -> None:
    try:
        normalise(page)
    except PageTooComplex:
        pass  # giving up is allowed: it is bounded too


def _tokens(page: str) -> None:
    try:
        for _ in tokens(page):
            pass
    except PageTooComplex:
        pass


def _har(page: str) -> None:
    response = Response("https://site.example/", 200, (("Content-Type", "text/html"),), page)
    json.dumps(har(FetchResult(first=response, final=response), datetime(2026, 1, 1, tzinfo=UTC)))


READERS = {"tokenizer": _tokens, "detector": _classify, "normalise": _normalise, "HAR": _har}


def cpu_seconds(read, page: str) -> float:
    started = time.process_time()
    read(page)
    return time.process_time() - started


@settings(max_examples=40, deadline=None)
@given(shape=st.sampled_from(sorted(SHAPES)), reader=st.sampled_from(sorted(READERS)),
       size=st.integers(min_value=64 * 1024, max_value=MB))
def test_every_reader_is_linear_on_every_shape(shape, reader, size):
    page = shaped(shape, size)
    seconds = cpu_seconds(READERS[reader], page)
    assert seconds <= SECONDS_PER_MB * max(len(page) / MB, 0.25), (shape, reader, len(page), seconds)


@pytest.mark.parametrize("shape", ["unclosed tags", "attribute soup", "deep nesting", "unclosed script with escapes",
                                   "signature prefixes", "character references"])
def test_a_5_mib_page_is_read_within_the_bound(shape):
    """What a probe does with a page of the HTTP fetcher's largest size: judge it, compare it, save it."""
    page = shaped(shape, 5 * MB)
    seconds = sum(cpu_seconds(read, page) for read in (_classify, _normalise, _har))
    assert seconds <= SECONDS_PER_MB * len(page) / MB, (shape, seconds)


def test_the_shapes_are_hostile_to_the_old_regexes():
    """The bound means something: the shapes include what made the old tag regexes quadratic."""
    assert shaped("unclosed tags", 60_000).count("<a ") == 20_000
