"""Decide a page's verdict from signatures: the gate first, then the embedded CAPTCHA."""

from __future__ import annotations

from exporter.detect.page import Page
from exporter.detect.signatures import GATE_KINDS, Rule, Signature, Signatures
from exporter.values import Response, Verdict


class Detector:
    """Classifies responses with one set of signatures (see ``signatures`` for the rules)."""

    def __init__(self, signatures: Signatures):
        self._widgets = signatures.of_kind("widget")
        self._gates = signatures.of_kind(*GATE_KINDS)
        self._context = signatures.of_kind("context")

    def classify(self, response: Response) -> Verdict:
        page = Page(response)
        widgets = [(s, m) for s in self._widgets if (m := _match(s, page, ())) is not None]
        widget_providers = tuple(s.provider for s, _ in widgets)
        context = [marker for s in self._context for marker in _match(s, page, widget_providers) or ()]
        for signature in self._gates:
            markers = _match(signature, page, widget_providers)
            if markers is not None:
                return Verdict(signature.kind, signature.provider, _unique(markers + context))
        if widgets:
            signature, markers = widgets[0]
            return Verdict("widget", signature.provider, _unique(markers + context))
        return Verdict("ok", "", _unique(context))


def _match(signature: Signature, page: Page, widgets: tuple[str, ...]) -> list[str] | None:
    """The markers of ``signature`` if it matches ``page``, else None."""
    fired: list[str] = []
    for rule in signature.all:
        marker = _test(rule, page, widgets)
        if marker is None:
            return None
        fired.append(marker)
    if signature.any:
        hits = [m for rule in signature.any if (m := _test(rule, page, widgets)) is not None]
        if not hits:
            return None
        fired.extend(hits)
    if any(_test(rule, page, widgets) is not None for rule in signature.none):
        return None
    return [f"{signature.name}/{marker}" for marker in fired]


def _test(rule: Rule, page: Page, widgets: tuple[str, ...]) -> str | None:
    """The marker ``rule`` reports when it holds on ``page``, else None."""
    field = rule.field
    if field == "status":
        ok = page.status in rule.statuses
        return (f"status:{page.status}" if rule.marker == "status" else rule.marker) if ok else None
    if field == "max_body":
        ok = len(page.response.body) <= rule.limit
    elif field == "header":
        values = page.headers.get(rule.header_name)
        ok = bool(values) and (rule.pattern is None or any(rule.pattern.search(v) for v in values))
    elif field == "cookie":
        ok = any(rule.pattern.fullmatch(name) for name in page.cookie_names)
    elif field == "title":
        ok = rule.pattern.search(page.title) is not None
    elif field == "body":
        ok = _prefilter(rule, page) and _search(rule, page)
    elif field == "url":
        ok = rule.pattern.search(page.response.url) is not None
    else:  # widget
        found = next((provider for provider in widgets if rule.pattern.fullmatch(provider)), None)
        return None if found is None else f"widget:{found}" if rule.marker == "widget" else rule.marker
    return rule.marker if ok else None


def _prefilter(rule: Rule, page: Page) -> bool:
    """False when the body lacks text every match of the rule's regex contains."""
    if rule.literals is None:
        return True
    body = page.folded_body
    return all(any(text in body for text in group) for group in rule.literals)


def _search(rule: Rule, page: Page) -> bool:
    """Whether the rule's regex matches the body, trying only where a match can start if known."""
    body, folded = page.body, page.folded_body
    if rule.prefixes is None or len(folded) != len(body):  # positions differ if folding changed lengths
        return rule.pattern.search(body) is not None
    for prefix in rule.prefixes:
        position = folded.find(prefix)
        while position != -1:
            if rule.pattern.match(body, position):
                return True
            position = folded.find(prefix, position + 1)
    return False


def _unique(markers: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(markers))
