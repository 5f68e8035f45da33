"""Learning what varies by itself between direct fetches, and keeping it on disk."""

from __future__ import annotations

import re

import pytest

from exporter.change.baseline import Baseline
from exporter.values import Response


def direct(body: str) -> Response:
    return Response("https://shop.example/", 200, (("Content-Type", "text/html"),), body)


def shop(visitors: str, advert: str, extra: str = "") -> str:
    return (f"<title>Shop</title><h1>Autumn sale</h1><p>Visitors today: {visitors} people</p>"
            f"<aside>{advert}</aside>{extra}<p>Returns within thirty days.</p>")


def test_needs_two_fetches():
    with pytest.raises(ValueError, match="at least two"):
        Baseline.learn([direct(shop("12", "Tents"))])


def test_a_line_changed_in_place_becomes_a_pattern_keeping_the_shared_words():
    baseline = Baseline.learn([direct(shop("twelve", "Tents")), direct(shop("thirteen", "Tents"))])
    [pattern] = baseline.volatile_lines
    assert re.fullmatch(pattern, "Visitors today: seventy people")
    assert not re.fullmatch(pattern, "Send money to this wallet")
    assert baseline.reference.lines[0] == "Autumn sale"
    assert baseline.fetches == 2


def test_a_line_with_most_words_changed_is_masked_as_each_value_seen():
    baseline = Baseline.learn([direct(shop("1", "Tents on sale")), direct(shop("1", "Cheap flights to Oslo"))])
    assert sorted(baseline.volatile_lines) == sorted([re.escape("Tents on sale"), re.escape("Cheap flights to Oslo")])


def test_lines_and_elements_only_some_fetches_have_vary():
    baseline = Baseline.learn([direct(shop("1", "Tents")), direct(shop("1", "Tents", "<section>Flash deal</section>"))])
    assert baseline.volatile_lines == (re.escape("Flash deal"),)
    assert baseline.volatile_tags == ("section",)


def test_scripts_from_any_fetch_belong_to_the_page():
    one = shop("1", "Tents", '<script src="/a.js"></script>')
    beacon = '<script src="https://static.cloudflareinsights.com/beacon.min.js"></script>'
    two = shop("1", "Tents", '<script src="/b.js"></script>' + beacon)
    baseline = Baseline.learn([direct(one), direct(two)])
    assert baseline.reference.scripts == ("src:/a.js", "src:/b.js")
    assert baseline.reference.injections == ("cloudflare-beacon",)


def test_json_round_trip():
    baseline = Baseline.learn([direct(shop("1", "Tents")), direct(shop("2", "Tents", "<script>x()</script>"))],
                              mask_numbers=True)
    assert Baseline.from_json(baseline.to_json()) == baseline


def test_json_of_another_version_is_refused():
    with pytest.raises(ValueError, match="version"):
        Baseline.from_json('{"version": 99}')
    with pytest.raises(ValueError, match="version"):  # read before pages were read by exporter.markup
        Baseline.from_json('{"version": 1, "title": "x", "lines": [], "tags": [], "scripts": [], "injections": []}')
    with pytest.raises(ValueError, match="lacks"):
        Baseline.from_json('{"version": 2, "title": "x"}')
