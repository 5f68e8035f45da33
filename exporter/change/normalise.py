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

The page is read with a few regular-expression passes over the whole
document (HTML's tokenizer states: comments, raw-text elements, tags, text;
no tree building and no error recovery): on a tag-dense page that takes
about a third of the time of ``html.parser``, whose callbacks run per tag.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

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

_ATTRIBUTES = r"""((?:[^>"']++|"[^"]*+"|'[^']*+')*+)"""
# What is taken out before tags and text are read: comments, doctype and processing
# instructions, elements whose content is text up to their end tag (raw text, RCDATA),
# and the <meta>/<input> elements that may carry a token.
SPECIAL = re.compile(
    r"<!--.*?(?:-->|\Z)|<[!?][^>]*>?"
    rf"|<(script|style|title|textarea|noscript|template)(?=[\s/>]){_ATTRIBUTES}>(.*?)(?:</\1\s*>|\Z)"
    rf"|<(?:meta|input)(?=[\s/>]){_ATTRIBUTES}>",
    re.DOTALL | re.IGNORECASE,
)
START_TAG = re.compile(r"<([A-Za-z][^\s/>]*)")
INLINE_TAG = re.compile(rf"</?(?:{'|'.join(INLINE_TAGS)})(?=[\s/>]){_ATTRIBUTES}>", re.IGNORECASE)
ANY_TAG = re.compile(rf"</?[A-Za-z][^\s/>]*{_ATTRIBUTES}>")
ATTRIBUTE = re.compile(r"""([^\s"'=<>/]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?""")
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
SCRIPT_LITERAL = re.compile(r"""'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|`(?:[^`\\]|\\.)*`|\b\d[\w.]*""")
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
    """``page`` (HTML) in normal form (see the module docstring for what is removed)."""
    title: list[str] = []
    scripts: list[str] = []

    def take_out(match: re.Match) -> str:
        tag, attributes, content, empty_attributes = match.group(1, 2, 3, 4)
        if empty_attributes is not None:  # <meta> or <input>
            return "" if _carries_token(match.group(0), _attributes(empty_attributes)) else match.group(0)
        if tag is None:  # comment, doctype, processing instruction
            return ""
        tag = tag.lower()
        if tag == "script":
            script = _script(_attributes(attributes).get("src"), content)
            if script:
                scripts.append(script)
            return ""  # invisible, and inline: no line break, no structure
        if tag == "title":
            title.append(content)
        if tag == "textarea":  # its text is shown; escaped so no later pass reads it as markup
            return f"<{tag}>{content.replace('<', '&lt;')}"
        return f"<{tag}>"

    markup = SPECIAL.sub(take_out, page)
    tags = [tag for tag in map(str.lower, START_TAG.findall(markup)) if tag not in IMPLIED_TAGS]
    text = ANY_TAG.sub(LINE_BREAK, INLINE_TAG.sub("", markup))
    return PageForm(
        title=clean_text("".join(title), mask_numbers=mask_numbers),
        lines=tuple(clean_lines(text, mask_numbers=mask_numbers)),
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
    skeleton = WHITESPACE.sub("", SCRIPT_LITERAL.sub("", body))
    return "inline:" + hashlib.sha256(skeleton.encode()).hexdigest()[:12]


def _script(src: str | None, body: str) -> str | None:
    """The script's id, or None for a known CDN injection (those are named in ``injections``)."""
    if known_injection(src if src is not None else body):
        return None
    return script_id(src, body)


def _attributes(text: str) -> dict[str, str]:
    attributes = {}
    for match in ATTRIBUTE.finditer(text):
        value = next((v for v in match.group(2, 3, 4) if v is not None), "")
        attributes.setdefault(match.group(1).lower(), html.unescape(value))
    return attributes


def _carries_token(element: str, attributes: dict[str, str]) -> bool:
    """A ``<meta name=csrf-token>`` or a hidden input named like a CSRF token."""
    if element[1:5].lower() == "meta":
        return bool(TOKEN_NAME.search(attributes.get("name", "")))
    return attributes.get("type", "").lower() == "hidden" and bool(TOKEN_NAME.search(attributes.get("name", "")))
