"""What a target's page looks like without tor, learnt from several direct fetches.

The first fetch is the reference.  Whatever differs between the direct
fetches varies by itself and is masked from then on:

- a text line changed in place becomes a pattern: the words the fetches
  share stay literal, the words that differ match anything (``Visitors
  today: 1234`` and ``Visitors today: 1301`` give ``Visitors\\s*today:\\s*.*?``);
  a line with more words changed than kept, and a line only some fetches
  have, is masked as each value seen (a rotating advert is learnt only as
  far as the fetches saw its values);
- element names inserted or dropped between fetches leave the structure
  comparison;
- every script and known CDN injection seen in any fetch belongs to the page.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, replace
from difflib import SequenceMatcher

from exporter.change.normalise import PageForm, normalise
from exporter.values import Response

FORMAT_VERSION = 2  # 2: pages read by exporter.markup (first title only, literal-free script ids)
ANY_WORDS = ".*?"


@dataclass(frozen=True)
class Baseline:
    """The reference page in normal form, plus what was seen to vary between direct fetches.

    ``volatile_lines`` are regular expressions; a text line that matches one
    in full is left out of comparisons.
    """

    reference: PageForm
    volatile_lines: tuple[str, ...] = ()
    volatile_tags: tuple[str, ...] = ()
    mask_numbers: bool = False
    fetches: int = 1

    @classmethod
    def learn(cls, pages: list[Response], *, mask_numbers: bool = False) -> Baseline:
        """Learn from two or more direct fetches of the same URL."""
        if len(pages) < 2:
            raise ValueError("a baseline needs at least two direct fetches to learn what varies by itself")
        forms = [normalise(page.body, mask_numbers=mask_numbers) for page in pages]
        first = forms[0]
        volatile_lines: dict[str, None] = {}
        volatile_tags: set[str] = set()
        scripts: Counter[str] = Counter(first.scripts)
        injections = dict.fromkeys(first.injections)
        for other in forms[1:]:
            volatile_lines.update(dict.fromkeys(_varying_lines(first.lines, other.lines)))
            volatile_tags.update(_varying_items(first.tags, other.tags))
            scripts |= Counter(other.scripts)
            injections.update(dict.fromkeys(other.injections))
        reference = replace(first, scripts=tuple(sorted(scripts.elements())), injections=tuple(injections))
        return cls(reference, tuple(volatile_lines), tuple(sorted(volatile_tags)), mask_numbers, len(forms))

    def to_json(self) -> str:
        form = self.reference
        return json.dumps(
            {
                "version": FORMAT_VERSION,
                "fetches": self.fetches,
                "mask_numbers": self.mask_numbers,
                "title": form.title,
                "lines": form.lines,
                "tags": form.tags,
                "scripts": form.scripts,
                "injections": form.injections,
                "volatile_lines": self.volatile_lines,
                "volatile_tags": self.volatile_tags,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> Baseline:
        """Read what ``to_json`` wrote; ValueError for another format version or missing keys."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise ValueError(f"not a version {FORMAT_VERSION} page baseline")
        try:
            reference = PageForm(
                title=data["title"],
                lines=tuple(data["lines"]),
                tags=tuple(data["tags"]),
                scripts=tuple(data["scripts"]),
                injections=tuple(data["injections"]),
            )
            return cls(
                reference,
                volatile_lines=tuple(data["volatile_lines"]),
                volatile_tags=tuple(data["volatile_tags"]),
                mask_numbers=bool(data["mask_numbers"]),
                fetches=int(data["fetches"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"page baseline lacks {exc}") from None


def _varying_lines(reference: tuple[str, ...], other: tuple[str, ...]):
    """Patterns for the lines that differ between two fetches."""
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, reference, other, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if tag == "replace" and i2 - i1 == j2 - j1:
            for before, after in zip(reference[i1:i2], other[j1:j2]):
                yield from _line_patterns(before, after)
        else:
            yield from (re.escape(line) for line in reference[i1:i2] + other[j1:j2])


def _line_patterns(before: str, after: str):
    """One pattern matching both lines if they share most words, else each line literally."""
    old, new = before.split(), after.split()
    parts: list[str] = []
    kept = 0
    for tag, i1, i2, _, _ in SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag == "equal":
            parts.extend(re.escape(word) for word in old[i1:i2])
            kept += i2 - i1
        elif not parts or parts[-1] != ANY_WORDS:
            parts.append(ANY_WORDS)
    if kept * 2 >= max(len(old), len(new)):
        yield r"\s*".join(parts)
    else:
        yield re.escape(before)
        yield re.escape(after)


def _varying_items(reference: tuple[str, ...], other: tuple[str, ...]) -> set[str]:
    """Items inserted, dropped or replaced between two sequences."""
    varying = set()
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, reference, other, autojunk=False).get_opcodes():
        if tag != "equal":
            varying.update(reference[i1:i2] + other[j1:j2])
    return varying
