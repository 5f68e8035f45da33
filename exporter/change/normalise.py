"""A page reduced to what a reader sees and what runs on it, per-request values taken out.

The normal form keeps four things: the title, the visible text as lines (one
per block element), the element structure (start-tag names in document
order) and the scripts.  What changes on every request without changing the
page is removed here, before any comparison:

- comments, ``nonce``/``integrity`` and every other attribute (only tag names
  are kept), ``<meta>`` and hidden ``<input>`` elements that carry a token
  (CSRF tokens are per session or per request);
- in the text: e-mail addresses (Cloudflare's e-mail protection replaces
  them with ``[email protected]``), ISO dates and clock times, and long
  tokens mixing letters and digits; numbers too when ``mask_numbers`` is set;
- in inline scripts: string literals and numbers (where nonces, tokens and
  timestamps live) before the body is hashed.

Scripts a CDN is known to inject (Cloudflare's analytics beacon, its
JavaScript detections and its e-mail protection) are recognised by the URL
they load and listed by name, apart from the page's own scripts.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urlsplit

# Cloudflare's injections, by a URL fragment each one loads or links to.
KNOWN_INJECTIONS = (
    ("cloudflare-beacon", "static.cloudflareinsights.com/beacon.min.js"),
    ("cloudflare-jsd", "/cdn-cgi/challenge-platform/scripts/jsd/main.js"),
    ("cloudflare-email-protection", "/cdn-cgi/l/email-protection"),
    ("cloudflare-email-protection", "/cloudflare-static/email-decode.min.js"),
)

# Elements that render text inline: they do not end a line of visible text.
INLINE_TAGS = frozenset(
    "a abbr b bdi bdo cite code data dfn em font i kbd label mark q s samp small span strong sub sup time u var"
    .split()
)
# Content a reader never sees as text.
HIDDEN_CONTENT = frozenset(("script", "style", "template", "noscript", "title"))
# Elements an HTML parser adds when the source leaves them out (a browser's DOM always has them).
IMPLIED_TAGS = frozenset(("html", "head", "body", "tbody"))
TOKEN_NAME = re.compile(r"csrf|xsrf|token|nonce|authenticity", re.I)

VOLATILE_TEXT = (
    (re.compile(r"\[email\s*protected\]|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<email>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2}|\s?UTC)?)?"), "<time>"),
    (re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?(?:\s?[AaPp][Mm])?\b"), "<time>"),
    (re.compile(r"(?<![\w/+=-])(?=[\w+/=-]*\d)(?=[\w+/=-]*[A-Za-z])[\w+/=-]{20,}"), "<token>"),
)
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
SCRIPT_LITERAL = re.compile(r"""'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|`(?:[^`\\]|\\.)*`|\b\d[\w.]*""")
WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class PageForm:
    """A page in normal form.

    ``scripts`` holds ``src:HOST/PATH`` for an external script (query and
    fragment dropped) and ``inline:HASH`` for an inline one; known CDN
    injections are in ``injections`` (by name) instead.
    """

    title: str
    lines: tuple[str, ...]
    tags: tuple[str, ...]
    scripts: tuple[str, ...]
    injections: tuple[str, ...]


def normalise(html: str, *, mask_numbers: bool = False) -> PageForm:
    """``html`` in normal form (see the module docstring for what is removed)."""
    parser = _Reader(mask_numbers)
    parser.feed(html)
    parser.close()
    return parser.form()


def clean_text(text: str, *, mask_numbers: bool = False) -> str:
    """One line of visible text: whitespace collapsed, volatile values replaced by placeholders."""
    for pattern, placeholder in VOLATILE_TEXT:
        text = pattern.sub(placeholder, text)
    if mask_numbers:
        text = NUMBER.sub("<n>", text)
    return WHITESPACE.sub(" ", text).strip()


def known_injection(url_or_code: str) -> str | None:
    """The name of the known CDN injection ``url_or_code`` loads, if any."""
    for name, fragment in KNOWN_INJECTIONS:
        if fragment in url_or_code:
            return name
    return None


def script_id(src: str | None, body: str) -> str:
    """``src:HOST/PATH`` for an external script, ``inline:HASH`` of the literal-free body for an inline one."""
    if src is not None:
        parts = urlsplit(src.strip())
        return f"src:{(parts.hostname or '')}{parts.path}"
    skeleton = WHITESPACE.sub("", SCRIPT_LITERAL.sub("", body))
    return "inline:" + hashlib.sha256(skeleton.encode()).hexdigest()[:12]


class _Reader(HTMLParser):
    def __init__(self, mask_numbers: bool):
        super().__init__(convert_charrefs=True)
        self.mask_numbers = mask_numbers
        self.title_parts: list[str] = []
        self.lines: list[str] = []
        self.tags: list[str] = []
        self.scripts: list[str] = []
        self.injections: list[str] = []
        self._line: list[str] = []
        self._hidden: list[str] = []  # open elements whose content is not visible text
        self._script: tuple[str | None, list[str]] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = {name: value or "" for name, value in attrs}
        for name in ("src", "href"):
            injection = known_injection(attributes.get(name, ""))
            if injection:
                self.injections.append(injection)
        if tag not in INLINE_TAGS:
            self._end_line()
        if tag in HIDDEN_CONTENT:
            self._hidden.append(tag)
        if tag == "script":
            self._script = (attributes.get("src"), [])
        elif tag not in IMPLIED_TAGS and not _carries_token(tag, attributes):
            self.tags.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag in HIDDEN_CONTENT:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag not in INLINE_TAGS:
            self._end_line()
        if tag in self._hidden:
            while self._hidden.pop() != tag:
                pass
        if tag == "script" and self._script is not None:
            self._add_script(*self._script)
            self._script = None

    def handle_data(self, data):
        if self._script is not None:
            self._script[1].append(data)
        elif self._hidden:
            if self._hidden[-1] == "title":
                self.title_parts.append(data)
        else:
            self._line.append(data)

    def _add_script(self, src: str | None, body_parts: list[str]) -> None:
        if src is not None:  # a known injection's URL was recorded with its start tag
            if not known_injection(src):
                self.scripts.append(script_id(src, ""))
            return
        body = "".join(body_parts)
        injection = known_injection(body)
        if injection:
            self.injections.append(injection)
        else:
            self.scripts.append(script_id(None, body))

    def _end_line(self) -> None:
        if self._line:
            line = clean_text("".join(self._line), mask_numbers=self.mask_numbers)
            if line:
                self.lines.append(line)
            self._line = []

    def form(self) -> PageForm:
        self._end_line()
        if self._script is not None:  # an unclosed script runs to the end of the document
            self._add_script(*self._script)
            self._script = None
        return PageForm(
            title=clean_text("".join(self.title_parts), mask_numbers=self.mask_numbers),
            lines=tuple(self.lines),
            tags=tuple(self.tags),
            scripts=tuple(self.scripts),
            injections=tuple(dict.fromkeys(self.injections)),
        )


def _carries_token(tag: str, attributes: dict[str, str]) -> bool:
    """A ``<meta name=csrf-token>`` or a hidden input named like a CSRF token."""
    if tag == "meta":
        return bool(TOKEN_NAME.search(attributes.get("name", "")))
    if tag == "input" and attributes.get("type", "").lower() == "hidden":
        return bool(TOKEN_NAME.search(attributes.get("name", "")))
    return False
