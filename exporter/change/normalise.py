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
JavaScript detections and its e-mail protection) are recognised by a URL
they load, found anywhere in the page, and listed by name apart from the
page's own scripts.

The page is read with the shared tokenizer (``exporter.markup``): one pass,
time linear in the page's size, no tree building.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from exporter.markup import JS_LITERAL, RAW, START, TEXT, attributes, tokens

# Cloudflare's injections, by a URL fragment each one loads or links to.
KNOWN_INJECTIONS = (
    ("cloudflare-beacon", "static.cloudflareinsights.com/beacon.min.js"),
    ("cloudflare-jsd", "/cdn-cgi/challenge-platform/scripts/jsd/main.js"),
    ("cloudflare-email-protection", "/cdn-cgi/l/email-protection"),
    ("cloudflare-email-protection", "/cloudflare-static/email-decode.min.js"),
)

# Elements rendered inline: they do not end a line of visible text.
INLINE_TAGS = (
    "a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "dfn", "em", "font", "i", "kbd", "label", "mark", "q",
    "s", "samp", "small", "span", "strong", "sub", "sup", "time", "u", "var",
)
# Elements an HTML parser adds when the source leaves them out (a browser's DOM always has them).
IMPLIED_TAGS = frozenset(("html", "head", "body", "tbody"))
TOKEN_NAME = re.compile(r"csrf|xsrf|token|nonce|authenticity", re.IGNORECASE)

INLINE = frozenset(INLINE_TAGS)
# Elements whose content is not shown: neither their text nor their elements are read.
HIDDEN = frozenset(("noscript", "template"))
# Raw-text elements whose text is shown (the others, script and style, are not).
SHOWN_RAW = frozenset(("textarea", "xmp", "plaintext"))
LINE_BREAK = "\x00"  # stands for a block element's edge until the text is split into lines
LINE_BREAKS = re.compile(" ?\x00[\x00 ]*")

# (pattern, placeholder, a string the text must hold for the pattern to match: a cheap pre-check)
VOLATILE_TEXT = (
    (re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<email>", "@"),
    (re.compile(r"\[email ?protected\]"), "<email>", "[email"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2}| ?UTC)?)?"),
     "<time>", "-"),
    (re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?(?: ?[AaPp][Mm])?\b"), "<time>", ":"),
    (re.compile(r"(?<![\w/+=-])(?=[\w+/=-]{20})(?=[\w+/=-]*\d)(?=[\w+/=-]*[A-Za-z])[\w+/=-]+"), "<token>", ""),
)
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
NUMBER_LITERAL = re.compile(r"\b\d[\w.]*+")
WHITESPACE = re.compile(r"\s+")
SPACE_RUN = re.compile(r"[^\S ]\s*| \s+")  # whitespace that is not already a single space


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


def normalise(page: str, *, mask_numbers: bool = False) -> PageForm:
    """``page`` (HTML) in normal form (see the module docstring for what is removed).

    Raises ``PageTooComplex`` for a page with more tokens than ``exporter.markup`` reads.
    """
    title = None
    text: list[str] = []
    tags: list[str] = []
    scripts: list[str] = []
    hidden = 0  # depth inside elements whose content is not shown
    src = None  # of the script element being read
    for kind, name, start, end, extra in tokens(page):
        if kind == TEXT:
            if not hidden:
                text.append(page[start:end])
        elif hidden:
            if name in HIDDEN and kind != RAW:
                hidden += 1 if kind == START else -1
        elif kind == START:
            if name == "script":
                src = attributes(page, extra, end).get("src")
                continue  # invisible, and inline: no line break, no structure
            if name in ("meta", "input") and _carries_token(name, attributes(page, extra, end)):
                continue
            if name not in IMPLIED_TAGS:
                tags.append(name)
            if name not in INLINE:
                text.append(LINE_BREAK)
            if name in HIDDEN:
                hidden = 1
        elif kind == RAW:
            content = page[start:end]
            if name == "script":
                script = _script(src, content)
                if script:
                    scripts.append(script)
            elif name == "title":
                title = content if title is None else title
            elif name in SHOWN_RAW:
                text.append(content.replace("<", "&lt;"))  # shown as written, never read as markup
        elif name != "script" and name not in INLINE:
            text.append(LINE_BREAK)
    return PageForm(
        title=clean_text(title or "", mask_numbers=mask_numbers),
        lines=tuple(clean_lines("".join(text), mask_numbers=mask_numbers)),
        tags=tuple(tags),
        scripts=tuple(scripts),
        injections=tuple(dict.fromkeys(name for name, fragment in KNOWN_INJECTIONS if fragment in page)),
    )


def clean_lines(text: str, *, mask_numbers: bool = False) -> list[str]:
    """Lines of visible text from ``text`` (lines separated by LINE_BREAK): entities decoded,
    whitespace collapsed, volatile values replaced by placeholders, empty lines dropped.

    Each step is one pass over the whole text; no pattern matches a newline.
    """
    if "&" in text:
        text = html.unescape(text)
    text = LINE_BREAKS.sub("\n", SPACE_RUN.sub(" ", text)).strip()
    for pattern, placeholder, needed in VOLATILE_TEXT:
        if needed in text:
            text = pattern.sub(placeholder, text)
    if mask_numbers:
        text = NUMBER.sub("<n>", text)
    return text.split("\n") if text else []


def clean_text(text: str, *, mask_numbers: bool = False) -> str:
    """One line of visible text, as ``clean_lines`` leaves it."""
    return " ".join(clean_lines(text, mask_numbers=mask_numbers))


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
    skeleton = WHITESPACE.sub("", NUMBER_LITERAL.sub("", JS_LITERAL.sub("", body)))
    return "inline:" + hashlib.sha256(skeleton.encode()).hexdigest()[:12]


def _script(src: str | None, body: str) -> str | None:
    """The script's id, or None for a known CDN injection (those are named in ``injections``)."""
    if known_injection(src if src is not None else body):
        return None
    return script_id(src, body)


def _carries_token(tag: str, attributes: dict[str, str]) -> bool:
    """A ``<meta name=csrf-token>`` or a hidden input named like a CSRF token."""
    if tag == "meta":
        return bool(TOKEN_NAME.search(attributes.get("name", "")))
    return attributes.get("type", "").lower() == "hidden" and bool(TOKEN_NAME.search(attributes.get("name", "")))
