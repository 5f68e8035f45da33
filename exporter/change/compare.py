"""Is a page fetched through an exit the page the site serves?  One fixed answer per page.

``kind`` is one of:

- None: the same page, up to what varies by itself (tokens, dates, lines
  the baseline saw change between direct fetches);
- ``injected``: the same text and title, a structure at least ``threshold``
  similar, plus scripts or active elements (``iframe``, ``img``, ``link``...)
  the site never sent; known CDN injections are named (``cloudflare-beacon``, ``cloudflare-jsd``,
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
from itertools import pairwise

from exporter.change.baseline import Baseline
from exporter.change.normalise import PageForm, normalise
from exporter.values import Response

KINDS = ("injected", "rewritten", "different")
DEFAULT_THRESHOLD = 0.6
TEXT_WEIGHT, STRUCTURE_WEIGHT, TITLE_WEIGHT = 0.6, 0.3, 0.1
# Elements that load or run something: one the site never sent is an injection.
ACTIVE_TAGS = frozenset(("iframe", "frame", "object", "embed", "img", "link", "style", "meta", "base", "form"))
DIFF_MAX_LINES = 80
DIFF_MAX_CHARS = 8000


@dataclass(frozen=True)
class Change:
    """The answer for one page: ``kind`` is None or one of KINDS; ``diff`` is evidence (empty when unchanged)."""

    kind: str | None
    similarity: float
    title_changed: bool
    injected: tuple[str, ...] = ()
    diff: str = ""


def compare(baseline: Baseline, page: Response, *, threshold: float = DEFAULT_THRESHOLD,
            ignore: Sequence[str] = ()) -> Change:
    """How ``page`` differs from ``baseline``; ``ignore`` regexes are cut out of every text line first."""
    ignore = tuple(ignore)
    reference = _reference_view(baseline, ignore)
    form = normalise(page.body, mask_numbers=baseline.mask_numbers)
    seen = _View.of(form, baseline, ignore)
    title_changed = seen.title != reference.title
    structure = _dice(reference.tag_pairs, seen.tag_pairs)
    text = _dice(reference.words, seen.words)
    similarity = round(TEXT_WEIGHT * text + STRUCTURE_WEIGHT * structure + TITLE_WEIGHT * (not title_changed), 4)
    injected = _injections(baseline.reference, form, reference.active, seen.active)

    if seen.lines == reference.lines and not title_changed and structure >= threshold:
        kind = "injected" if injected else None
    elif similarity >= threshold and not (title_changed and structure < threshold):
        kind = "rewritten"
    else:
        kind = "different"
    evidence = _diff(baseline.reference, form, reference.lines, seen.lines, injected) if kind else ""
    return Change(kind, similarity, title_changed, injected, evidence)


@dataclass(frozen=True)
class _View:
    """A page in normal form as compared: volatile lines and tags out, multisets counted."""

    title: list[str]
    lines: list[str]
    words: Counter
    tag_pairs: Counter
    active: Counter

    @classmethod
    def of(cls, form: PageForm, baseline: Baseline, ignore: tuple[str, ...]) -> _View:
        drop = _line_filter(tuple(baseline.volatile_lines), ignore)
        lines = drop(form.lines)
        tags = [tag for tag in form.tags if tag not in baseline.volatile_tags]
        return cls(
            title=drop((form.title,)),
            lines=lines,
            words=Counter(" ".join(lines).lower().split()),
            tag_pairs=Counter(pairwise(tags)),
            active=Counter(tag for tag in tags if tag in ACTIVE_TAGS),
        )


@lru_cache(maxsize=64)
def _reference_view(baseline: Baseline, ignore: tuple[str, ...]) -> _View:
    """The baseline's side, counted once per baseline and ignore list."""
    return _View.of(baseline.reference, baseline, ignore)


def _injections(reference: PageForm, form: PageForm, reference_active: Counter,
                page_active: Counter) -> tuple[str, ...]:
    """Known CDN injections, scripts and active elements the page has and the baseline lacks."""
    known = [name for name in form.injections if name not in reference.injections]
    scripts = sorted((Counter(form.scripts) - Counter(reference.scripts)).elements())
    elements = [f"element:{tag}" for tag in sorted(page_active - reference_active)]
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


def _dice(a: Counter, b: Counter) -> float:
    """2·|A∩B| / (|A|+|B|) over multisets; two empty multisets are equal."""
    total = sum(a.values()) + sum(b.values())
    return 1.0 if total == 0 else 2 * sum((a & b).values()) / total


def _diff(reference: PageForm, form: PageForm, reference_lines: list[str], page_lines: list[str],
          injected: tuple[str, ...]) -> str:
    """A unified diff of title, visible text and injections, cut to a bounded size.

    Lines both sides share at the start and end are left out before diffing
    (difflib's matcher costs more than linear time), so a small rewrite of a
    long page stays cheap; hunk line numbers count from the first line shown.
    """
    before = [f"title: {reference.title}", *reference_lines]
    after = [f"title: {form.title}", *page_lines, *(f"injected: {name}" for name in injected)]
    start = 0
    while start < min(len(before), len(after)) and before[start] == after[start]:
        start += 1
    end = 0
    while end < min(len(before), len(after)) - start and before[-1 - end] == after[-1 - end]:
        end += 1
    start, end = max(start - 1, 0), max(end - 1, 0)  # keep one line of context each side
    lines = list(difflib.unified_diff(before[start:len(before) - end], after[start:len(after) - end],
                                      f"baseline (from line {start + 1})", f"page (from line {start + 1})",
                                      n=1, lineterm=""))
    text = "\n".join(lines[:DIFF_MAX_LINES])
    if len(lines) > DIFF_MAX_LINES or len(text) > DIFF_MAX_CHARS:
        text = text[:DIFF_MAX_CHARS] + "\n… (diff cut)"
    return text
