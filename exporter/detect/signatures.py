"""Detector signatures: the shipped data file plus the operator's own.

A signature names one verdict and the evidence that proves it.  The shipped
ones live in ``signatures.yaml`` next to this module; operators add theirs
under ``detect: {signatures: [...]}`` in the exporter's YAML config, in the
same format:

.. code-block:: yaml

    detect:
      signatures:
        - name: acme-waf-block        # unique; markers are reported as "<name>/<marker>"
          kind: block                 # challenge | block | error | widget | context | origin
          provider: acme-waf          # optional; defaults to the name
          all:                        # every rule here must match ...
            - status: [403, 429]      # an int, a list, or a range "500-599"
          any:                        # ... and at least one of these (if given) ...
            - header: x-acme-waf      # header present; add `value: REGEX` to test its value
            - cookie: "acme_[0-9a-f]+"   # REGEX, full match on a Set-Cookie name
            - body: 'id="acme-block"'    # REGEX, where markup acts (see below)
              marker: block-element   # optional: what this rule reports when it fires (default
                                      # "body:<regex>"; status and widget rules report what they saw)
          none:                       # ... and none of these
            - text: "maintenance"     # REGEX, in the visible text

Where a marker sits decides whether it is evidence, so the page is read
(``exporter.detect.page``, in one linear pass) into places, and each rule
searches one:

- ``body: REGEX``: where markup acts: the page's elements as written (names
  and attributes: ids, classes, a form's action, a frame's or stylesheet's
  URL; links, images and meta tags by their ids and classes only) and the
  code of executable scripts, less comments and less string literals that
  hold prose or markup.  Never visible text, ``<pre>``/``<code>``/
  ``<textarea>``/``<template>`` content, comments, JSON data or escaped
  markup (``&lt;``): a page that quotes a vendor's challenge does not match.
- ``text: REGEX``: the visible text (references decoded, whitespace collapsed).
- ``script: REGEX``: the URLs of the scripts and frames the page loads.
- ``title: REGEX``: the first ``<title>``.

Other rules: ``url: REGEX`` (the response URL), ``role: gate|content`` (the
page's role from its structure: a ``gate`` page is the gate and little else,
no site navigation, no form of the site's own; titles play no part),
``widget: REGEX`` (full match on an embedded CAPTCHA vendor found by the
``widget`` signatures, so a gate can say "a CAPTCHA on a 403"), ``sensor:
REGEX`` (full match on a vendor whose code a ``context`` signature found on
the page by a ``script`` or ``body`` rule), ``vendor: REGEX`` (the same for a
vendor a ``context`` signature found by any rule: a header, a cookie, its
code), ``max_body: N`` (the body has at
most N characters).  Regexes are case-insensitive (Python syntax), searched
in the first 1 MB of the body.

How a page is decided: widget, context and origin signatures run first; then
gate signatures (challenge, block, error) in order — custom ones before the
shipped ones — and the first that matches is the verdict; failing that, the
first matching widget signature makes the page a ``widget``; otherwise it is
``ok``.  ``context`` signatures never decide: they only add markers (a CDN's
headers, a vendor's sensor script on a normal page), so an operator sees
them, and name vendors for attribution.  A custom signature with the name of
a shipped one replaces it.

Who the provider is: a gate signature names its provider.  When the one that
decided names ``generic`` (a refusing status, a title, an embedded CAPTCHA:
nothing that says whose gate it is), the provider is the vendor named by the
strongest evidence on the response, in this order of precedence:

1. headers (``cf-ray``, ``x-datadome``, a CDN's request id, its ``Server``),
2. cookies the response sets (``__cf_bm``, ``datadome``, ``_abck``),
3. script hosts: the scripts and frames the page loads (a vendor's sensor,
   Turnstile's ``api.js``: a CAPTCHA vendor that runs gates names itself),
4. the body (the vendor's code, then its words);

that is, the ``context`` signatures that matched (and the ``widget`` ones of
a vendor that is also a gate vendor), ranked by their strongest rule; on a
tie the signature earlier in the file wins (bot managers come before CDNs
there).  ``generic`` stays only when nothing names a vendor, or when the body
is not plain: the page has the site's own structure (role ``content``), or an
``origin`` signature says the origin's own server made it (nginx's or
Apache's default error page: a CDN's headers are on every response it passes
on, so they do not make the CDN the one that refused).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from exporter.config_yaml import regex_problem
from exporter.detect.literals import match_prefixes, required_literals

GATE_KINDS = ("challenge", "block", "error")
SIGNATURE_KINDS = GATE_KINDS + ("widget", "context", "origin")
# Rules searching text, and the place of the page (exporter.detect.page) each one searches.
PLACES = {"body": "code", "text": "text", "script": "scripts"}
RULE_FIELDS = ("status", "header", "cookie", "title", "url", "role", "widget", "sensor", "vendor", "max_body",
               *PLACES)
ROLES = ("gate", "content")
GROUPS = ("all", "any", "none")
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
RANGE_RE = re.compile(r"\s*(\d{3})\s*-\s*(\d{3})\s*")


class SignatureError(ValueError):
    """A signature that does not follow the format."""


@dataclass(frozen=True)
class Rule:
    """One test on a page; ``field`` is one of RULE_FIELDS."""

    field: str
    marker: str
    pattern: re.Pattern[str] | None = None
    header_name: str = ""
    statuses: frozenset[int] = frozenset()
    limit: int = 0
    role: str = ""
    literals: tuple[frozenset[str], ...] | None = None  # place rules: see exporter.detect.literals
    prefixes: frozenset[str] | None = None

    @property
    def place(self) -> str | None:
        """The place of the page a body, text or script rule searches."""
        return PLACES.get(self.field)


@dataclass(frozen=True)
class Signature:
    name: str
    kind: str
    provider: str
    all: tuple[Rule, ...] = ()
    any: tuple[Rule, ...] = ()
    none: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class Signatures:
    """Signatures in evaluation order."""

    items: tuple[Signature, ...]

    def of_kind(self, *kinds: str) -> tuple[Signature, ...]:
        return tuple(s for s in self.items if s.kind in kinds)


def check_custom(raw: Any) -> list[tuple[list[str | int], str]]:
    """Errors in the ``detect.signatures`` config value, as (path, message); [] if valid."""
    if raw is None:
        return []
    if not isinstance(raw, (list, tuple)):
        return [([], "must be a list of signatures")]
    errors: list[tuple[list[str | int], str]] = []
    names: set[str] = set()
    for index, item in enumerate(raw):
        errors.extend(([index, *path], message) for path, message in _check_signature(item))
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            if item["name"] in names:
                errors.append(([index, "name"], f"duplicate signature name {item['name']!r}"))
            names.add(item["name"])
    return errors


def load_signatures(custom: list[dict] | tuple[dict, ...] | None = None) -> Signatures:
    """The shipped signatures plus ``custom`` ones (evaluated first; same name replaces)."""
    errors = check_custom(custom)
    if errors:
        path, message = errors[0]
        where = ".".join(str(p) for p in path)
        raise SignatureError(f"detect.signatures.{where}: {message}" if where else f"detect.signatures: {message}")
    own = [_build(item) for item in custom or ()]
    replaced = {s.name for s in own}
    shipped = [s for s in _shipped() if s.name not in replaced]
    return Signatures(tuple(own + shipped))


@cache
def _shipped() -> tuple[Signature, ...]:
    text = resources.files(__package__).joinpath("signatures.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)["signatures"]
    errors = check_custom(raw)
    if errors:
        raise SignatureError(f"shipped signatures.yaml is invalid: {errors[0]}")
    return tuple(_build(item) for item in raw)


def _check_signature(item: Any) -> list[tuple[list[str | int], str]]:
    if not isinstance(item, dict):
        return [([], "must be a mapping with name, kind and rules")]
    errors: list[tuple[list[str | int], str]] = []
    for key in item:
        if key not in ("name", "kind", "provider", *GROUPS):
            errors.append(([key], f"unknown key (expected name, kind, provider, {', '.join(GROUPS)})"))
    for key in ("name", "provider"):
        value = item.get(key)
        if value is None and key == "provider":
            continue
        if not isinstance(value, str) or not NAME_RE.fullmatch(value):
            errors.append(([key], "must be a lowercase name (letters, digits, - _ .)"))
    if item.get("kind") not in SIGNATURE_KINDS:
        errors.append((["kind"], f"must be one of {', '.join(SIGNATURE_KINDS)}"))
    if not any(item.get(group) for group in ("all", "any")):
        errors.append(([], "needs at least one rule under all or any"))
    for group in GROUPS:
        rules = item.get(group)
        if rules is None:
            continue
        if not isinstance(rules, list):
            errors.append(([group], "must be a list of rules"))
            continue
        for index, rule in enumerate(rules):
            errors.extend(([group, index, *path], message) for path, message in _check_rule(rule))
    return errors


def _check_rule(rule: Any) -> list[tuple[list[str | int], str]]:
    if not isinstance(rule, dict):
        return [([], "must be a mapping such as {body: REGEX}")]
    fields = [key for key in rule if key in RULE_FIELDS]
    if len(fields) != 1:
        return [([], f"needs exactly one of {', '.join(RULE_FIELDS)}")]
    field_name = fields[0]
    allowed = {field_name, "marker"} | ({"value"} if field_name == "header" else set())
    errors: list[tuple[list[str | int], str]] = [
        ([key], "unknown key in this rule") for key in rule if key not in allowed
    ]
    if "marker" in rule and not isinstance(rule["marker"], str):
        errors.append((["marker"], "must be a string"))
    value = rule[field_name]
    if field_name == "status":
        try:
            _statuses(value)
        except SignatureError as exc:
            errors.append((["status"], str(exc)))
    elif field_name == "max_body":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            errors.append((["max_body"], "must be a non-negative integer"))
    elif field_name == "role":
        if value not in ROLES:
            errors.append((["role"], f"must be one of {', '.join(ROLES)}"))
    elif field_name == "header":
        if not isinstance(value, str) or not value.strip():
            errors.append((["header"], "must be a header name"))
        if "value" in rule:
            errors.extend((["value"], message) for message in _regex_errors(rule["value"]))
    else:
        errors.extend(([field_name], message) for message in _regex_errors(value))
    return errors


def _regex_errors(value: Any) -> list[str]:
    if not isinstance(value, str):
        return ["must be a regular expression (string)"]
    problem = regex_problem(value)
    return [f"invalid regular expression: {problem}"] if problem else []


def _statuses(value: Any) -> frozenset[int]:
    items = value if isinstance(value, list) else [value]
    codes: set[int] = set()
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
            codes.add(item)
        elif isinstance(item, str) and (match := RANGE_RE.fullmatch(item)):
            low, high = int(match[1]), int(match[2])
            if not 100 <= low <= high <= 599:
                raise SignatureError(f"bad status range {item!r}")
            codes.update(range(low, high + 1))
        else:
            raise SignatureError("must be a status code, a list of them, or a range like '500-599'")
    if not codes:
        raise SignatureError("must name at least one status code")
    return frozenset(codes)


def _build(item: dict) -> Signature:
    name = item["name"]
    groups = {group: tuple(_build_rule(rule) for rule in item.get(group) or ()) for group in GROUPS}
    return Signature(name=name, kind=item["kind"], provider=item.get("provider") or name, **groups)


def _build_rule(rule: dict) -> Rule:
    field_name = next(key for key in rule if key in RULE_FIELDS)
    value = rule[field_name]
    marker = rule.get("marker") or _default_marker(field_name, value, rule.get("value"))
    if field_name == "status":
        return Rule(field_name, marker, statuses=_statuses(value))
    if field_name == "max_body":
        return Rule(field_name, marker, limit=value)
    if field_name == "role":
        return Rule(field_name, marker, role=value)
    if field_name == "header":
        pattern = re.compile(rule["value"], re.IGNORECASE) if "value" in rule else None
        return Rule(field_name, marker, pattern=pattern, header_name=value.strip().lower())
    pattern = re.compile(value, re.IGNORECASE)
    if field_name not in PLACES:
        return Rule(field_name, marker, pattern=pattern)
    return Rule(field_name, marker, pattern=pattern, literals=required_literals(value), prefixes=match_prefixes(value))


def _default_marker(field_name: str, value: Any, header_value: str | None) -> str:
    if field_name == "header":
        return f"header:{value.lower()}" + (f"={header_value}" if header_value else "")
    if field_name in ("status", "widget", "sensor", "vendor"):
        return field_name  # the detector reports the status / vendor it saw
    if field_name == "role":
        return f"role:{value}"
    text = str(value)
    return f"{field_name}:{text if len(text) <= 40 else text[:37] + '...'}"
