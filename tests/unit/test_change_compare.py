"""compare(): unchanged, injected, rewritten, different, on hand-written pages."""

from __future__ import annotations

import time

import pytest

from exporter.change.baseline import Baseline
from exporter.change.compare import DIFF_MAX_CHARS, compare
from exporter.values import Response

ARTICLE = """<!doctype html><html><head><title>The Daily Relay – News</title>{head}</head><body>
<header><a href="/">The Daily Relay</a><nav><a href="/world">World</a> <a href="/science">Science</a></nav></header>
<main><article><h1>{headline}</h1>
<p class="byline">By Marta Jensen, updated {stamp}</p>
<p>{lead}</p>
<p>Shop owners along the embankment had asked for delivery bays every two hundred metres; the plan includes them.</p>
<form action="/search"><input type="hidden" name="csrf_token" value="{token}">
<input name="q"><button>Search</button></form>
</article>{extra}</main>
<footer><p>Contact webmaster@relay.example · <a href="/about">About us</a></p></footer>
<!-- request {token} -->{tail}
</body></html>"""
HEADLINE = "City council approves new cycling lanes along the river"
LEAD = ("After two years of consultation the council voted to build protected cycling lanes on both banks "
        "of the river. Work on the first section starts in spring.")


def article(headline=HEADLINE, lead=LEAD, head="", extra="", tail="", token="4f9a0c2e8b7d6a5f4e3d2c1b0a99",
            stamp="2026-11-22 03:15 UTC"):
    body = ARTICLE.format(headline=headline, lead=lead, head=head, extra=extra, tail=tail, token=token, stamp=stamp)
    return Response("https://relay.example/", 200, (), body)


@pytest.fixture(scope="module")
def baseline():
    return Baseline.learn([article(), article(token="0b1c2d3e4f5a6b7c8d9e0f1a2b3c", stamp="2026-11-22 03:25 UTC")])


def test_the_same_page_with_new_tokens_and_time_is_unchanged(baseline):
    change = compare(baseline, article(token="ffffeeeeddddcccc0123456789ab", stamp="2027-01-01 00:00 UTC"))
    assert change.kind is None
    assert change.similarity == 1.0
    assert not change.title_changed
    assert change.injected == ()
    assert change.diff == ""


def test_an_added_inline_script_is_an_injection(baseline):
    change = compare(baseline, article(tail='<script>new Image().src="https://ads.example/p?"+Math.random()</script>'))
    assert change.kind == "injected"
    assert len(change.injected) == 1 and change.injected[0].startswith("inline:")
    assert "+injected: inline:" in change.diff


def test_known_cdn_injections_are_named(baseline):
    tail = ('<script defer src="https://static.cloudflareinsights.com/beacon.min.js/v84a3a40" data-cf-beacon="{}">'
            '</script>'
            '<script>(function(){var a=document.createElement("script");'
            'a.src="/cdn-cgi/challenge-platform/scripts/jsd/main.js";document.body.appendChild(a)})();</script>')
    change = compare(baseline, article(tail=tail))
    assert change.kind == "injected"
    assert change.injected == ("cloudflare-beacon", "cloudflare-jsd")


def test_cloudflare_email_protection_is_an_injection_not_a_rewrite(baseline):
    page = article().body.replace(
        "webmaster@relay.example",
        '<a href="/cdn-cgi/l/email-protection#7a1d">[email&#160;protected]</a>'
        '<script src="/cdn-cgi/scripts/5c5dd728/cloudflare-static/email-decode.min.js"></script>',
    )
    change = compare(baseline, Response("https://relay.example/", 200, (), page))
    assert change.kind == "injected"
    assert change.injected == ("cloudflare-email-protection",)


def test_an_added_external_script_and_iframe_are_named(baseline):
    change = compare(baseline, article(extra='<iframe src="https://ads.example/frame"></iframe>',
                                       tail='<script src="https://miner.example/m.js?k=1"></script>'))
    assert change.kind == "injected"
    assert change.injected == ("src:miner.example/m.js", "element:iframe")


def test_a_replaced_headline_and_lead_is_a_rewrite(baseline):
    change = compare(baseline, article(headline="Important: verify your account to continue",
                                       lead="Our payment address has changed. Send all transfers to the new wallet."))
    assert change.kind == "rewritten"
    assert 0.6 <= change.similarity < 1.0
    assert not change.title_changed
    assert "-City council approves new cycling lanes along the river" in change.diff
    assert "+Important: verify your account to continue" in change.diff


def test_another_page_is_different(baseline):
    lite = Response("https://relay.example/", 200, (), "<title>relay.example (lite)</title><p><b>Lite version</b></p>"
                    "<p>You are seeing the text-only edition.</p><hr><p>Contact: webmaster@relay.example</p>")
    change = compare(baseline, lite)
    assert change.kind == "different"
    assert change.title_changed
    assert change.similarity < 0.3


def test_the_threshold_decides_between_rewritten_and_different(baseline):
    page = article(headline="Important: verify your account", lead="Send all transfers to the new wallet.")
    similarity = compare(baseline, page).similarity
    assert compare(baseline, page, threshold=similarity).kind == "rewritten"
    assert compare(baseline, page, threshold=similarity + 0.01).kind == "different"


def test_a_changed_title_alone_is_a_rewrite(baseline):
    body = article().body.replace("The Daily Relay – News", "Win a prize")
    page = Response("https://relay.example/", 200, (), body)
    change = compare(baseline, page)
    assert change.kind == "rewritten"
    assert change.title_changed


def test_ignore_patterns_cut_text_out_before_comparing(baseline):
    page = article(lead=LEAD + " Weather: sunny.")
    assert compare(baseline, page).kind == "rewritten"
    assert compare(baseline, page, ignore=[r"Weather: \w+\."]).kind is None


def test_a_line_that_varied_between_direct_fetches_is_not_a_change():
    pages = [article(lead="Visitors today: twelve readers"), article(lead="Visitors today: ninety readers")]
    baseline = Baseline.learn(pages)
    assert compare(baseline, article(lead="Visitors today: many readers")).kind is None
    assert compare(baseline, article(lead="Send your coins to this wallet")).kind == "rewritten"


def test_the_diff_is_bounded(baseline):
    flood = "".join(f"<p>line {n} of a very long replacement page with many words</p>" for n in range(5000))
    change = compare(baseline, Response("https://relay.example/", 200, (), flood))
    assert change.kind == "different"
    assert len(change.diff) <= DIFF_MAX_CHARS + 20


def test_a_200_kb_page_compares_in_well_under_50_ms():
    paragraphs = "".join(f"<div class=c{n % 7}><h3>Item {n}</h3><p>Description of item number {n} with words "
                         f"that differ {n * 7919 % 1000} and a <a href=/i/{n}>link</a></p></div>" for n in range(1600))
    body = f"<title>Catalogue</title><body>{paragraphs}</body>"
    assert 190_000 < len(body) < 260_000
    baseline = Baseline.learn([Response("u", 200, (), body)] * 2)
    rewritten = Response("u", 200, (), body.replace("Description of item number 5", "Buy now item 5"))
    compare(baseline, rewritten)  # warm the regex cache
    started = time.process_time()
    runs = 5
    for _ in range(runs):
        change = compare(baseline, rewritten)
    per_compare = (time.process_time() - started) / runs
    assert change.kind == "rewritten"
    assert per_compare < 0.25, f"{per_compare * 1000:.0f} ms per compare"  # generous: CPU time on a shared machine
