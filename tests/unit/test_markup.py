"""The shared tokenizer: the HTML standard's token boundaries, and nothing it reads can stall it."""

from __future__ import annotations

import pytest

from exporter import markup
from exporter.markup import (
    END,
    JS_LITERAL,
    RAW,
    START,
    TEXT,
    PageTooComplex,
    attributes,
    text_of,
    tokens,
)

KIND = {START: "start", END: "end", TEXT: "text", RAW: "raw"}


def read(page: str) -> list[tuple]:
    return [(KIND[kind], name, page[start:end]) for kind, name, start, end, _ in tokens(page)]


@pytest.mark.parametrize(("page", "expected"), [
    ("<P Class=a>x</p >", [("start", "p", "<P Class=a>"), ("text", "", "x"), ("end", "p", "</p >")]),
    # a quoted ">" does not end the tag; a quote inside an attribute name is part of the name
    ("<a title='x>y' b\"c=d>t", [("start", "a", "<a title='x>y' b\"c=d>"), ("text", "", "t")]),
    # the input ends inside a tag: the tag and what follows are dropped (eof-in-tag)
    ("text<a href='x", [("text", "", "text")]),
    ("<a " * 5, []),
    # comments, doctypes, processing instructions and "</" + non-letter are left out
    ("<!doctype html><!-- <p>x</p> -->y<?xml v?>z</3 >w</>v", [("text", "", "y"), ("text", "", "z"),
                                                              ("text", "", "w"), ("text", "", "v")]),
    ("<!-->a<!--->b<!-- c --!>d<!-- open", [("text", "", "a"), ("text", "", "b"), ("text", "", "d")]),
    # a "<" that opens nothing is text
    ("a < b <3 <é>", [("text", "", "a < b <3 <é>")]),
    ("<", [("text", "", "<")]),
    ("x<!", [("text", "", "x")]),
    # raw text and RCDATA run to their own end tag, whatever they hold
    ("<script>if (a<b) x('</p>')</script><style>p{}</style >", [
        ("start", "script", "<script>"), ("raw", "script", "if (a<b) x('</p>')"), ("end", "script", "</script>"),
        ("start", "style", "<style>"), ("raw", "style", "p{}"), ("end", "style", "</style >")]),
    ("<title>a <b> &amp; c</TITLE>", [("start", "title", "<title>"), ("raw", "title", "a <b> &amp; c"),
                                       ("end", "title", "</TITLE>")]),
    ("<textarea><p>x", [("start", "textarea", "<textarea>"), ("raw", "textarea", "<p>x")]),
    ("<plaintext></plaintext><p>", [("start", "plaintext", "<plaintext>"), ("raw", "plaintext", "</plaintext><p>")]),
    # scripting is off: noscript holds markup
    ("<noscript><p>on</p></noscript>", [("start", "noscript", "<noscript>"), ("start", "p", "<p>"),
                                        ("text", "", "on"), ("end", "p", "</p>"), ("end", "noscript", "</noscript>")]),
])
def test_token_boundaries_follow_the_html_tokenizer(page, expected):
    assert read(page) == expected


def test_attributes_are_read_as_html_reads_them():
    page = """<input TYPE=hidden value="a&amp;b" data-x='1 2' =odd checked type=text src=x/>"""
    _, _, _, end, extra = next(tokens(page))
    assert attributes(page, extra, end) == {"type": "hidden", "value": "a&b", "data-x": "1 2", "=odd": "",
                                            "checked": "", "src": "x/"}


def test_text_is_decoded_and_collapsed():
    assert text_of("  a &amp;\n\tb&nbsp;c ") == " a & b c "


def test_too_many_tokens_give_up_with_a_probe_error_reason():
    with pytest.raises(PageTooComplex) as raised:
        list(tokens("<i>" * 11, max_tokens=10))
    assert raised.value.reason == "page_too_complex"
    assert len(list(tokens("<i>" * 10, max_tokens=10))) == 10


@pytest.mark.parametrize(("code", "literals"), [
    ('a="x//y";//c\nb', ['"x//y"', "//c"]),
    ("s='it\\'s'; /* x */ t", ["'it\\'s'", "/* x */"]),
    ("`multi\nline`+1", ["`multi\nline`"]),
    ("'open\nnext", ["'open"]),  # an unclosed string ends with its line
    ("'\\", ["'\\"]),
])
def test_javascript_literals_and_comments(code, literals):
    assert [m.group() for m in JS_LITERAL.finditer(code)] == literals


def test_no_group_is_repeated_possessively_which_python_before_3_11_5_gets_wrong():
    """Debian bookworm's Python 3.11.2 mismatches ``(?:a|b)++`` (CPython gh-106052): 88 tests
    failed there while passing on 3.11.7."""
    import re as regex

    from exporter import markup

    patterns = [value.pattern for value in vars(markup).values() if isinstance(value, regex.Pattern)]
    assert patterns and not [p for p in patterns if regex.search(r"\)[*+?]\+", p)]


class Recorded:
    """The token expression, with the longest stretch any one match was allowed to read."""

    def __init__(self, pattern):
        self.pattern, self.longest = pattern, 0

    def match(self, page, pos, endpos=None):
        self.longest = max(self.longest, (len(page) if endpos is None else endpos) - pos)
        return self.pattern.match(page, pos, len(page) if endpos is None else endpos)


@pytest.mark.parametrize("page", ["<a " * 100_000 + "</body>", "<a " * 100_000, "<3 " * 100_000 + "<p>x",
                                  "x" * 300_000 + "<p>y", "<img alt='" + "x" * 300_000 + "'>z"])
def test_no_match_reads_past_the_window_so_no_page_holds_the_gil_long(monkeypatch, page):
    """``re`` holds the GIL for a whole match: a 3 MB tag held the web server for 0.2 s."""
    expected = read(page)
    recorded = Recorded(markup._TOKEN)
    monkeypatch.setattr(markup, "_TOKEN", recorded)
    assert read(page) == expected
    assert recorded.longest <= markup.MATCH_WINDOW


@pytest.mark.parametrize("page", [
    "<img src=data:" + "x" * 100 + ">after",  # a tag longer than the window ends at its ">"
    "<a " * 50,  # and one that never closes is dropped with the rest (eof-in-tag)
    "x" * 15 + "<p>y</p>" + "z" * 40 + "<b>",  # text cut by a window reads on
    "x" * 15 + "<" + "p>y",  # a "<" at a window's edge: its lookahead sees the letter after it
    "x" * 15 + "<" + " y" * 30,
    "<!" + "x" * 40 + ">t",  # a bogus comment longer than the window
])
def test_a_small_window_reads_every_page_as_one_that_fits(monkeypatch, page):
    expected = read(page)
    monkeypatch.setattr(markup, "MATCH_WINDOW", 16)
    assert read(page) == expected
