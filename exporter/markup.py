"""HTML read in one pass, in time linear in the page's size: the tokens of the WHATWG tokenizer.

Pages are hostile by design, so nothing here builds a tree (tree construction
has quadratic corners: every nested element searches the stack of open
elements, and C parsers compare every attribute with the ones before it).
What ``detect`` and ``change`` need is the token stream: start and end tags
with their source, text, and the content of raw-text elements.

The states follow the HTML standard's tokenizer (§13.2.5): a tag name runs to
whitespace, ``/`` or ``>``; an attribute name may begin with ``=`` and hold
quotes; an attribute value is double-quoted, single-quoted or runs to
whitespace or ``>``; a quote that never closes runs to the end of the input, and a
tag still open there is dropped (eof-in-tag) with everything after it.
``<!--`` opens a comment that ``-->`` or ``--!>`` closes (``<!-->`` and
``<!--->`` are empty comments); ``<!``, ``<?`` and ``</`` followed by a non-letter
open a bogus comment up to the next ``>``.  The content of ``script``,
``style``, ``xmp``, ``iframe``, ``noembed``, ``noframes`` (raw text) and
``title``, ``textarea`` (RCDATA) runs to the first matching end tag;
``plaintext`` runs to the end.  Scripting is off: ``noscript`` holds markup,
as it does for a client that runs no JavaScript.  Not modelled: the script
data escape states (``<!--<script>`` inside a script).

Why it is linear: character classes are repeated possessively, a group's
alternatives start with different characters, and nothing after a repeated group
can fail, so the engine never backtracks into what it consumed (groups are
repeated greedily, not possessively: Python before 3.11.5, Debian bookworm's
3.11.2 among them, mismatches possessive repeats of groups, gh-106052); a tag expression cannot fail
once it saw ``<`` and a letter (it stops at ``>`` or the end of input, and the
end of input ends the stream); comments and raw text are found with
``str.find`` or a search for a fixed end tag.  Each character is looked at a
bounded number of times.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from functools import cache

from exporter.values import FetchError

# Token kinds: (kind, name, start, end, extra) with page[start:end] the token's source.
START = 1  # a start tag; extra is where its attributes begin; name is lowercased
END = 2  # an end tag
TEXT = 3  # character data (entities not decoded); name is ""
RAW = 4  # the content of a raw-text or RCDATA element, right after its START; name is the element's

RAW_TEXT = frozenset(("script", "style", "xmp", "iframe", "noembed", "noframes", "title", "textarea", "plaintext"))
# Generous for real pages (a long encyclopedia article has ~100,000 tokens), small enough
# that reading a page never takes more than a second or two of one core.
MAX_TOKENS = 1_000_000
# How far one match may look.  ``re`` holds the GIL for a whole match, and a tag of unclosed
# "<a <a <a" runs to the page's end: one 3 MB match held every other thread (the web
# server's too) for 0.2 s.  Text reads on a window at a time; a tag still open at the
# window's edge ends at the next ">" (str.find, fast), so only a quoted ">" beyond the
# window is misread.
MATCH_WINDOW = 65536

_WS = "\t\n\f\r "
_ATTRIBUTE = (rf"[^{_WS}/>][^{_WS}/>=]*+"
              rf"""(?:[{_WS}]*+=[{_WS}]*+(?:"[^"]*+"?|'[^']*+'?|[^{_WS}>]*+))?""")
# One token from where it starts: text (a "<" that opens nothing is text), a tag, a comment's
# opening, a bogus comment or doctype.
_TEXT_RUN = r"(?:[^<]++|<(?![A-Za-z!?/]))+"
_TOKEN = re.compile(_TEXT_RUN
                    + rf"|<(/?)([A-Za-z][^{_WS}/>]*+)((?:[{_WS}/]*+{_ATTRIBUTE})*)[{_WS}/]*+(>?)"
                    r"|<!--|<[!?/][^>]*+>?")
ATTRIBUTE = re.compile(rf"""([^{_WS}/>][^{_WS}/>=]*+)(?:[{_WS}]*+=[{_WS}]*+(?:"([^"]*+)"?|'([^']*+)'?|([^{_WS}>]*+)))?""")
_TEXT = re.compile(_TEXT_RUN)
_COMMENT_END = re.compile(r"--!?>")
# A JavaScript string literal or comment; one left open runs to the end of its line (of the
# input for templates and block comments), so a match never fails once it has started.
JS_LITERAL = re.compile(r"""'(?:[^'\\\n]++|\\[\s\S]?)*'?|"(?:[^"\\\n]++|\\[\s\S]?)*"?"""
                        r"|`(?:[^`\\]++|\\[\s\S]?)*`?|/\*(?:[^*]++|\*(?!/))*(?:\*/)?|//[^\n]*+")
_SPACE = re.compile(r"\s+")


class PageTooComplex(FetchError):
    """A page with more tokens than anyone needs to read: the probe gives up on it."""

    def __init__(self, tokens: int):
        super().__init__("page_too_complex", f"the page has more than {tokens} HTML tokens")


def tokens(page: str, max_tokens: int | None = None) -> Iterator[tuple[int, str, int, int, int]]:
    """The tokens of ``page`` in order (comments and doctypes left out); PageTooComplex past
    ``max_tokens`` tags (default MAX_TOKENS)."""
    max_tokens = MAX_TOKENS if max_tokens is None else max_tokens
    size = len(page)
    match = _TOKEN.match
    pos = count = 0
    while pos < size:
        edge = min(size, pos + MATCH_WINDOW)
        token = match(page, pos, edge)
        end = token.end()
        name = token[2]
        if name is None:
            text = page[pos] != "<" or page[pos + 1:pos + 2] not in ("!", "?", "/")
            if end == edge < size:  # cut by the window
                end = _text_end(page, end) if text else match(page, pos).end()  # [^>]*+: a fast scan
            if text:
                yield TEXT, "", pos, end, 0
            elif end - pos == 4 and page.startswith("<!--", pos):
                end = _comment_end(page, pos)
            pos = end  # past a comment, a bogus comment or a doctype
            continue
        count += 1
        if count > max_tokens:
            raise PageTooComplex(max_tokens)
        if not token[4]:
            # a tag longer than the window ends at the next ">"; one the input ends inside
            # is dropped with the rest (eof-in-tag)
            close = page.find(">", edge) if end == edge < size else -1
            if close < 0:
                return
            end = close + 1
        name = name.lower()
        if token[1]:
            yield END, name, pos, end, 0
            pos = end
            continue
        yield START, name, pos, end, token.start(3)
        pos = end
        if name in RAW_TEXT:
            close = _closer(name).search(page, pos) if name != "plaintext" else None
            stop = close.start() if close else size
            yield RAW, name, pos, stop, 0
            pos = stop


def _text_end(page: str, end: int) -> int:
    """Where text that a window cut at ``end`` ends: read on, a window at a time.  A "<" just
    before a window's edge is read again in the next window, where its lookahead sees the
    character after it."""
    size = len(page)
    while True:
        if page[end - 1] == "<":
            end -= 1
        edge = min(size, end + MATCH_WINDOW)
        more = _TEXT.match(page, end, edge)
        if more is None:
            return end
        end = more.end()
        if end < edge or edge == size:
            return end


def _comment_end(page: str, lt: int) -> int:
    """Where the comment that starts at ``lt`` (with ``<!--``) ends."""
    if page.startswith(">", lt + 4):
        return lt + 5
    if page.startswith("->", lt + 4):
        return lt + 6
    close = _COMMENT_END.search(page, lt + 4)
    return close.end() if close else len(page)


@cache
def _closer(name: str) -> re.Pattern[str]:
    return re.compile(rf"</{name}[{_WS}/>]", re.IGNORECASE)


def attributes(page: str, start: int, end: int) -> dict[str, str]:
    """The attributes in ``page[start:end]`` (a START token's attribute part), names lowercased,
    values with character references decoded; the first of a repeated name wins, as in HTML."""
    found: dict[str, str] = {}
    for match in ATTRIBUTE.finditer(page, start, end):
        name = match[1].lower()
        if name not in found:
            value = match[2] if match[2] is not None else match[3] if match[3] is not None else match[4] or ""
            found[name] = html.unescape(value) if "&" in value else value
    return found


def text_of(raw: str) -> str:
    """Character data as a reader sees it: references decoded, whitespace collapsed."""
    if "&" in raw:
        raw = html.unescape(raw)
    return _SPACE.sub(" ", raw)
