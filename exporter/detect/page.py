"""What the detector reads from one response, computed once per page.

The body is read with the shared tokenizer (``exporter.markup``) into the
places a marker can sit, because where it sits decides whether it is evidence:

- ``code``: where a vendor's marker acts.  Every element as written (its name
  and attributes: ids, classes, a form's action, a frame's or a stylesheet's
  URL), except links, images and meta tags, whose URLs, alt texts and
  descriptions are only talk, which count by their ids and classes (an image
  by its source too, a refresh or robots meta by its content); and the code of executable
  scripts, less their comments and the string literals that hold prose or
  markup (serialised page content, as frameworks ship it to hydrate a page).
- ``text``: the visible text, character references decoded.
- ``scripts``: the URLs of the scripts and frames the page loads.

Nothing inside ``<pre>``, ``<code>``, ``<samp>``, ``<kbd>``, ``<template>``,
``<textarea>`` or a comment counts anywhere, nor do non-JavaScript scripts
(JSON data, templates) nor text that shows markup as characters (``&lt;``).

The page's *role* comes from its structure, never from its title: a page is
a ``gate`` when the gate is all there is (little text, few links, no site
navigation, no form of the site's own, no article, quotation or more than a
line or two of quoted code), else ``content``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from exporter.detect.literals import fold
from exporter.markup import JS_LITERAL, RAW, START, TEXT, attributes, text_of, tokens
from exporter.values import Response

# Gate markers sit in the head or near the top; a page can be megabytes.
BODY_SCAN_CHARS = 1_000_000
# Where markers are only quoted: shown as code, inert, or text a user typed.
QUOTING = frozenset(("pre", "code", "samp", "kbd", "listing", "template"))
QUOTING_RAW = frozenset(("textarea", "xmp", "plaintext", "noembed", "noframes", "iframe"))
# Elements whose URLs and texts are talk (a link to a vendor's page is no vendor's code).
TALKING = frozenset(("a", "area", "img", "meta"))
ACTING_ATTRIBUTE_PREFIXES = ("id", "class", "name", "data-", "role", "type")
SCRIPT_TYPES = ("", "module", "text/javascript", "application/javascript", "text/ecmascript",
                "application/ecmascript", "application/x-javascript", "text/jscript")
# Form fields a person fills in: a form with one of these (or two text boxes) is the site's own.
USER_FIELDS = frozenset(("password", "email", "tel", "search", "file", "url", "number", "date"))
TEXT_FIELDS = frozenset(("", "text"))
# A gate page says little: the longest real ones (Anubis, a Cloudflare block) have 100-250 words.
GATE_MAX_WORDS = 300
NAVIGATION_ROLE = re.compile(r"""\brole\s*=\s*["']?(?:navigation|menubar)\b""", re.IGNORECASE)
GATE_MAX_LINKS = 12
# Writing that no gate has: an article, a quotation, more than a line or two of quoted code.
WRITING = frozenset(("article", "blockquote"))
GATE_MAX_QUOTED_CHARS = 200


@dataclass(frozen=True)
class Structure:
    """What the page's role is decided from."""

    words: int
    links: int  # <a href> to somewhere else than the page itself
    navigation: bool  # a <nav>, or an element with role navigation or menubar
    site_forms: int  # forms with fields a person fills in (login, search, comment, sign-up)
    writing: bool = False  # an <article> or <blockquote>, or more than a little quoted code

    @property
    def role(self) -> str:
        if (self.navigation or self.site_forms or self.writing or self.links > GATE_MAX_LINKS
                or self.words > GATE_MAX_WORDS):
            return "content"
        return "gate"


@dataclass(frozen=True)
class Places:
    code: str
    text: str
    scripts: str
    title: str
    structure: Structure


@dataclass
class Page:
    """A response reduced to the fields signatures test."""

    response: Response

    @property
    def status(self) -> int:
        return self.response.status

    @cached_property
    def headers(self) -> dict[str, list[str]]:
        """Header values by lowercased name."""
        headers: dict[str, list[str]] = {}
        for name, value in self.response.headers:
            headers.setdefault(str(name).strip().lower(), []).append(str(value))
        return headers

    @cached_property
    def cookie_names(self) -> list[str]:
        return [value.split("=", 1)[0].strip() for value in self.headers.get("set-cookie", ()) if "=" in value]

    @cached_property
    def places(self) -> Places:
        return read_places(self.response.body[:BODY_SCAN_CHARS])

    @property
    def title(self) -> str:
        """The first <title>, unescaped with whitespace collapsed ("" if none)."""
        return self.places.title

    @property
    def role(self) -> str:
        return self.places.structure.role

    def place(self, name: str) -> str:
        """The text of one place: ``code``, ``text`` or ``scripts``."""
        return getattr(self.places, name)

    def folded(self, name: str) -> str:
        """A place as literal prefilters compare it."""
        cache = self.__dict__.setdefault("_folded", {})
        if name not in cache:
            cache[name] = fold(self.place(name))
        return cache[name]


def read_places(body: str) -> Places:
    """Sort the page's tokens into places (see the module docstring); one pass."""
    code: list[str] = []
    text: list[str] = []
    scripts: list[str] = []
    title = None
    quoting = 0  # depth inside QUOTING elements
    quoted: list[str] = []  # the text inside them
    writing = False
    executable = False  # the script being read runs
    links = 0
    navigation = False
    site_forms = 0
    form_fields: list[str] | None = None  # the input types of the open form
    for kind, name, start, end, extra in tokens(body):
        if kind == TEXT:
            if not quoting:
                text.append(body[start:end])
            else:
                quoted.append(body[start:end])
        elif kind == START:
            if name in QUOTING:
                quoting += 1
            if quoting:
                continue
            if name == "script" or name == "iframe" or name == "frame":
                found = attributes(body, extra, end)
                if found.get("src"):
                    scripts.append(found["src"])
                executable = name == "script" and _runs(found.get("type", ""))
                code.append(body[start:end])
            elif name in TALKING:
                found = attributes(body, extra, end)
                code.append(_acting_part(name, found))
                if name == "a" and found.get("href", "#")[:1] not in ("#", "") \
                        and not found["href"].lower().startswith("javascript:"):
                    links += 1
            else:
                code.append(body[start:end])
                if name == "nav" or "role" in body[extra:end] and NAVIGATION_ROLE.search(body, extra, end):
                    navigation = True
                elif name in WRITING:
                    writing = True
                elif name == "form":
                    form_fields = []
                elif form_fields is not None and name in ("input", "textarea", "select"):
                    form_fields.append(_field_kind(name, attributes(body, extra, end)))
        elif kind == RAW:
            if quoting or name in QUOTING_RAW:
                continue
            if name == "title":
                title = body[start:end] if title is None else title
            elif name == "script" and executable:
                code.append(JS_LITERAL.sub(_code_only, body[start:end]))
        else:  # END
            if name in QUOTING and quoting:
                quoting -= 1
            elif name == "form" and form_fields is not None:
                site_forms += _is_site_form(form_fields)
                form_fields = None
    if form_fields is not None:
        site_forms += _is_site_form(form_fields)
    visible = text_of(" ".join(text)).strip()
    quoted_chars = sum(map(len, quoted))
    if not visible and quoted:  # the page is nothing but preformatted text: a browser's view of a text or JSON body
        visible, quoted_chars = text_of(" ".join(quoted)).strip(), 0
    structure = Structure(len(visible.split()), links, navigation, site_forms,
                          writing or quoted_chars > GATE_MAX_QUOTED_CHARS)
    return Places(code="\n".join(code), text=visible, scripts="\n".join(scripts),
                  title=text_of(title or "").strip(), structure=structure)


def _runs(script_type: str) -> bool:
    """Whether a browser runs a script of this type (or a loader such as Rocket Loader does:
    ``<hash>-text/javascript``)."""
    script_type = script_type.strip().lower()
    return script_type in SCRIPT_TYPES or script_type.endswith("-text/javascript")


def _acting_part(name: str, found: dict[str, str]) -> str:
    """A talking element as it acts: its ids, classes and data attributes; a meta's content
    only when it refreshes the page or speaks to robots."""
    parts = [f'{key}="{value}"' for key, value in found.items() if key.startswith(ACTING_ATTRIBUTE_PREFIXES)]
    if name == "img" and "src" in found:  # an image loads; its alt and title only talk
        parts.append(f'src="{found["src"]}"')
    if name == "meta" and found.get("http-equiv", "").lower() == "refresh":
        parts.append(f'http-equiv="refresh" content="{found.get("content", "")}"')
    elif name == "meta" and found.get("name", "").lower() == "robots":
        parts.append(f'content="{found.get("content", "")}"')
    return f"<{name} {' '.join(parts)}>"


def _code_only(literal) -> str:
    """A script literal as code sees it: comments go; strings that hold prose or markup
    are data (a page's content), not code, and go too."""
    text = literal.group()
    if text[0] == "/":
        return " "
    if text.count(" ") >= 3 or "<" in text or "\\u003c" in text or "\\x3c" in text:
        return '""'
    return text


def _field_kind(name: str, found: dict[str, str]) -> str:
    """A form field's kind: its input type, ``textarea`` or ``select``; ``captcha`` for the
    answer field of a CAPTCHA (``g-recaptcha-response``, ``captcha``, ``mcaptcha__token``)."""
    if "captcha" in (found.get("name", "") + found.get("id", "")).lower():
        return "captcha"
    return found.get("type", "").strip().lower() if name == "input" else name


def _is_site_form(fields: list[str]) -> bool:
    if any(field in USER_FIELDS or field in ("textarea", "select") for field in fields):
        return True
    return sum(field in TEXT_FIELDS for field in fields) >= 2
