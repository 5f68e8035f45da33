"""Decide a page's verdict from signatures: the gate first, then the embedded CAPTCHA; then who runs the gate."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.detect.page import Page
from exporter.detect.providers import WIDGET_GATES
from exporter.detect.signatures import GATE_KINDS, Rule, Signature, Signatures
from exporter.values import Response, Verdict

# Attribution precedence (see ``signatures``): how strongly a rule of each field names a vendor.
STRENGTH = {"header": 4, "cookie": 3, "script": 2, "body": 1, "text": 1}
SENSOR_FIELDS = frozenset(("script", "body"))

Hits = list[tuple[Rule, str]]  # the rules that fired, with the marker each reports


@dataclass(frozen=True)
class Found:
    """What the signatures that never decide found: for ``widget``, ``sensor`` and ``vendor`` rules."""

    widgets: tuple[str, ...] = ()
    sensors: tuple[str, ...] = ()
    vendors: tuple[str, ...] = ()


class Detector:
    """Classifies responses with one set of signatures (see ``signatures`` for the rules)."""

    def __init__(self, signatures: Signatures):
        self._widgets = signatures.of_kind("widget")
        self._gates = signatures.of_kind(*GATE_KINDS)
        self._context = signatures.of_kind("context")
        self._origin = signatures.of_kind("origin")

    def classify(self, response: Response) -> Verdict:
        page = Page(response)
        nothing = Found()
        widgets = [(s, hits) for s in self._widgets if (hits := _match(s, page, nothing)) is not None]
        context = [(s, hits) for s in self._context if (hits := _match(s, page, nothing)) is not None]
        origin = [(s, hits) for s in self._origin if (hits := _match(s, page, nothing)) is not None]
        found = Found(widgets=tuple(s.provider for s, _ in widgets),
                      sensors=tuple(s.provider for s, hits in context if any(r.field in SENSOR_FIELDS for r, _ in hits)),
                      vendors=tuple(s.provider for s, _ in context))
        seen = _markers(context + origin)
        for signature in self._gates:
            hits = _match(signature, page, found)
            if hits is not None:
                provider = signature.provider
                if provider == "generic" and page.role == "gate" and not origin:
                    provider = _strongest_vendor(context, widgets) or provider
                return Verdict(signature.kind, provider, _markers([(signature, hits)]) + seen)
        if widgets:
            signature, hits = widgets[0]
            return Verdict("widget", signature.provider, _markers([(signature, hits)]) + seen)
        return Verdict("ok", "", seen)


def _strongest_vendor(context: list[tuple[Signature, Hits]], widgets: list[tuple[Signature, Hits]]) -> str | None:
    """The vendor named by the strongest evidence: headers, cookies, script hosts, body; the first on a tie."""
    best, best_strength = None, 0
    for signature, hits in context + widgets:
        vendor = signature.provider if signature.kind == "context" else WIDGET_GATES.get(signature.provider)
        if vendor is None or vendor == "generic":
            continue
        strength = max(STRENGTH.get(rule.field, 0) for rule, _ in hits)
        if strength > best_strength:
            best, best_strength = vendor, strength
    return best


def _match(signature: Signature, page: Page, found: Found) -> Hits | None:
    """The rules of ``signature`` that fired if it matches ``page``, else None."""
    fired: Hits = []
    for rule in signature.all:
        marker = _test(rule, page, found)
        if marker is None:
            return None
        fired.append((rule, marker))
    if signature.any:
        hits = [(rule, m) for rule in signature.any if (m := _test(rule, page, found)) is not None]
        if not hits:
            return None
        fired.extend(hits)
    if any(_test(rule, page, found) is not None for rule in signature.none):
        return None
    return fired


def _test(rule: Rule, page: Page, found: Found) -> str | None:
    """The marker ``rule`` reports when it holds on ``page``, else None."""
    field = rule.field
    if field == "status":
        ok = page.status in rule.statuses
        return (f"status:{page.status}" if rule.marker == "status" else rule.marker) if ok else None
    if field == "max_body":
        ok = len(page.response.body) <= rule.limit
    elif field == "role":
        ok = page.role == rule.role
    elif field == "header":
        values = page.headers.get(rule.header_name)
        ok = bool(values) and (rule.pattern is None or any(rule.pattern.search(v) for v in values))
    elif field == "cookie":
        ok = any(rule.pattern.fullmatch(name) for name in page.cookie_names)
    elif field == "title":
        ok = rule.pattern.search(page.title) is not None
    elif rule.place is not None:
        ok = _prefilter(rule, page) and _search(rule, page)
    elif field == "url":
        ok = rule.pattern.search(page.response.url) is not None
    else:  # widget, sensor, vendor
        names = {"widget": found.widgets, "sensor": found.sensors, "vendor": found.vendors}[field]
        vendor = next((name for name in names if rule.pattern.fullmatch(name)), None)
        return None if vendor is None else f"{field}:{vendor}" if rule.marker == field else rule.marker
    return rule.marker if ok else None


def _prefilter(rule: Rule, page: Page) -> bool:
    """False when the place lacks text every match of the rule's regex contains."""
    if rule.literals is None:
        return True
    text = page.folded(rule.place)
    return all(any(literal in text for literal in group) for group in rule.literals)


def _search(rule: Rule, page: Page) -> bool:
    """Whether the rule's regex matches its place, trying only where a match can start if known."""
    text, folded = page.place(rule.place), page.folded(rule.place)
    if rule.prefixes is None or len(folded) != len(text):  # positions differ if folding changed lengths
        return rule.pattern.search(text) is not None
    for prefix in rule.prefixes:
        position = folded.find(prefix)
        while position != -1:
            if rule.pattern.match(text, position):
                return True
            position = folded.find(prefix, position + 1)
    return False


def _markers(matched: list[tuple[Signature, Hits]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(f"{signature.name}/{marker}" for signature, hits in matched for _, marker in hits))
