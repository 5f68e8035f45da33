"""Is a page fetched through an exit the page the site serves?  One fixed answer per page.

``kind`` is one of:

- None: the same page, up to what varies by itself (tokens, dates, lines
  the baseline saw change between direct fetches);
- ``injected``: the same text, title and structure, plus scripts or active
  elements (``iframe``, ``img``, ``link``...) the site never sent; known CDN
  injections are named (``cloudflare-beacon``, ``cloudflare-jsd``,
  ``cloudflare-email-protection``), others as ``src:HOST/PATH``,
  ``inline:HASH`` or ``element:TAG``;
- ``rewritten``: the visible text or title differs, but the page stays
  similar (similarity at or above ``threshold``);
- ``different``: another page (similarity below ``threshold``, or another
  title and another structure).

``similarity`` (0..1) weighs the visible words (0.6), the element structure
(tag pairs, 0.3) and the title (0.1), each as a Dice coefficient over
multisets, which costs time linear in the page size.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from exporter.change.baseline import Baseline
from exporter.change.normalise import PageForm, normalise
from exporter.fetch.response import Response

KINDS = ("injected", "rewritten", "different")
DEFAULT_THRESHOLD = 0.6
TEXT_WEIGHT, STRUCTURE_WEIGHT, TITLE_WEIGHT = 0.6, 0.3, 0.1
# Elements that load or run something: one the site never sent is an injection.
ACTIVE_TAGS = frozenset(("iframe", "frame", "object", "embed", "img", "link", "style", "meta", "base", "form"))
DIFF_MAX_LINES = 80
DIFF_MAX_CHARS = 8000


@dataclass(frozen=True)
class Change:
    kind: str | None
    similarity: float
    title_changed: bool
    injected: tuple[str, ...] = ()
    diff: str = ""


def compare(baseline: Baseline, page: Response, *, threshold: float = DEFAULT_THRESHOLD,
            ignore: Sequence[str] = ()) -> Change:
    """How ``page`` differs from ``baseline``; ``ignore`` regexes are cut out of every text line first."""
    reference = baseline.reference
    form = normalise(page.body, mask_numbers=baseline.mask_numbers)
    drop = _line_filter(tuple(baseline.volatile_lines), tuple(ignore))
    reference_lines, page_lines = drop(reference.lines), drop(form.lines)
    title_changed = drop((reference.title,)) != drop((form.title,))
    reference_tags = [tag for tag in reference.tags if tag not in baseline.volatile_tags]
    page_tags = [tag for tag in form.tags if tag not in baseline.volatile_tags]
    structure = _dice(Counter(zip(reference_tags, reference_tags[1:])), Counter(zip(page_tags, page_tags[1:])))
    text = _dice(Counter(_words(reference_lines)), Counter(_words(page_lines)))
    similarity = TEXT_WEIGHT * text + STRUCTURE_WEIGHT * structure + TITLE_WEIGHT * (not title_changed)
    injected = _injections(reference, form, reference_tags, page_tags)

    if page_lines == reference_lines and not title_changed and structure >= threshold:
        kind = "injected" if injected else None
    elif similarity >= threshold and not (title_changed and structure < threshold):
        kind = "rewritten"
    else:
        kind = "different"
    evidence = _diff(reference, form, reference_lines, page_lines, injected) if kind else ""
    return Change(kind, round(similarity, 4), title_changed, injected, evidence)


def _injections(reference: PageForm, form: PageForm, reference_tags: list[str], page_tags: list[str]) -> tuple[str, ...]:
    """Known CDN injections, scripts and active elements the page has and the baseline lacks."""
    known = [name for name in form.injections if name not in reference.injections]
    scripts = sorted((Counter(form.scripts) - Counter(reference.scripts)).elements())
    active = Counter(t for t in page_tags if t in ACTIVE_TAGS) - Counter(t for t in reference_tags if t in ACTIVE_TAGS)
    elements = [f"element:{tag}" for tag in sorted(active)]
    return tuple(dict.fromkeys(known + scripts + elements))


@lru_cache(maxsize=256)
def _line_filter(volatile: tuple[str, ...], ignore: tuple[str, ...]):
    """A function that cuts ``ignore`` matches out of lines and drops empty and volatile lines."""
    volatile_line = re.compile("|".join(f"(?:{p})" for p in volatile)) if volatile else None
    cut = re.compile("|".join(f"(?:{p})" for p in ignore)) if ignore else None

    def keep(lines: Iterable[str]) -> list[str]:
        kept = []
        for line in lines:
            if cut is not None:
                line = " ".join(cut.sub(" ", line).split())
            if line and not (volatile_line is not None and volatile_line.fullmatch(line)):
                kept.append(line)
        return kept

    return keep


def _words(lines: Iterable[str]):
    for line in lines:
        yield from line.lower().split()


def _dice(a: Counter, b: Counter) -> float:
    """2·|A∩B| / (|A|+|B|) over multisets; two empty multisets are equal."""
    total = sum(a.values()) + sum(b.values())
    return 1.0 if total == 0 else 2 * sum((a & b).values()) / total


def _diff(reference: PageForm, form: PageForm, reference_lines: list[str], page_lines: list[str],
          injected: tuple[str, ...]) -> str:
    """A unified diff of title, visible text and injections, cut to a bounded size."""
    before = [f"title: {reference.title}", *reference_lines]
    after = [f"title: {form.title}", *page_lines, *(f"injected: {name}" for name in injected)]
    lines = list(difflib.unified_diff(before, after, "baseline", "page", n=1, lineterm=""))
    text = "\n".join(lines[:DIFF_MAX_LINES])
    if len(lines) > DIFF_MAX_LINES or len(text) > DIFF_MAX_CHARS:
        text = text[:DIFF_MAX_CHARS] + "\n… (diff cut)"
    return text
