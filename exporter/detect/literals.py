r"""Literal prefilters for body regexes.

Python's ``re`` has no fast path for case-insensitive patterns or top-level
alternations, so searching a few dozen of them through a large page costs
milliseconds per kilobyte.  Most marker regexes contain text that every match
must include (``_cf_chl_(opt|ctx)`` always contains ``_cf_chl_``;
``<center>\s*cloudflare`` contains both ``<center>`` and ``cloudflare``);
looking for that text in the lowercased page with ``str.__contains__`` first
rules most pages out in microseconds.  The prefilter may let through pages the regex then
rejects, never the reverse.

When every match also *starts* with known text, the regex need only be tried
where that text occurs (``str.find`` then ``Pattern.match``) instead of at
every position of the page.
"""

from __future__ import annotations

from re import _constants as sre  # the stdlib's own regex parser (3.11+)
from re import _parser

MIN_LITERAL = 3
# Non-ASCII letters that re.IGNORECASE equates with an ASCII letter but that
# str.lower() does not map to it ("K", the Kelvin sign, lowers to "k" already).
_IGNORECASE_EXTRAS = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s"})


def fold(text: str) -> str:
    """``text`` in the form prefilter literals are compared with."""
    if not text.isascii():
        text = text.translate(_IGNORECASE_EXTRAS)
    return text.lower()


def required_literals(pattern: str) -> tuple[frozenset[str], ...] | None:
    """Groups of folded strings: every match of ``pattern`` contains one string of each group.

    None when nothing useful is known (no literal of at least MIN_LITERAL characters).
    """
    try:
        parsed = _parser.parse(pattern)
    except Exception:  # noqa: BLE001 - a pattern we cannot analyse just gets no prefilter
        return None
    groups = tuple(frozenset(fold(text) for text in group)
                   for group in _sequence(list(parsed)) if min(map(len, group)) >= MIN_LITERAL)
    return tuple(dict.fromkeys(groups)) or None


def match_prefixes(pattern: str) -> frozenset[str] | None:
    """Folded strings one of which every match of ``pattern`` starts with, or None if unknown."""
    try:
        parsed = _parser.parse(pattern)
    except Exception:  # noqa: BLE001 - as in required_literals
        return None
    prefixes = _prefixes(list(parsed))
    if prefixes is None or min(map(len, prefixes)) < MIN_LITERAL:
        return None
    return frozenset(fold(text) for text in prefixes)


def _prefixes(items: list) -> frozenset[str] | None:
    run: list[str] = []
    for op, arg in items:
        if op is sre.AT:
            continue  # zero-width; Pattern.match(text, pos) checks it against the real neighbours
        if op is sre.LITERAL and chr(arg).isascii():
            run.append(chr(arg))
            continue
        if run:
            break
        if op is sre.SUBPATTERN:
            return _prefixes(list(arg[-1]))
        if op is sre.BRANCH:
            alternatives = [_prefixes(list(branch)) for branch in arg[1]]
            return None if any(a is None for a in alternatives) else frozenset().union(*alternatives)
        return None
    return frozenset({"".join(run)}) if run else None


def _sequence(items: list) -> list[frozenset[str]]:
    """What a sequence of parsed regex items requires: each group has one string in every match."""
    groups: list[frozenset[str]] = []
    run: list[str] = []

    def end_run() -> None:
        if run:
            groups.append(frozenset({"".join(run)}))
            run.clear()

    for op, arg in items:
        if op is sre.LITERAL and chr(arg).isascii():
            run.append(chr(arg))
        elif op is sre.AT:
            continue  # zero-width (^, $, \b): the text on both sides is contiguous
        else:
            end_run()
            groups.extend(_nested(op, arg))
    end_run()
    return groups


def _nested(op, arg) -> list[frozenset[str]]:
    if op is sre.SUBPATTERN:
        return _sequence(list(arg[-1]))
    if op is sre.BRANCH:
        alternatives = [_best(_sequence(list(branch))) for branch in arg[1]]
        if any(a is None for a in alternatives):
            return []
        return [frozenset().union(*alternatives)]
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT) and arg[0] >= 1:
        return _sequence(list(arg[2]))
    return []


def _best(groups: list[frozenset[str]]) -> frozenset[str] | None:
    """The group whose shortest string is longest (the most selective), or None."""
    return max(groups, key=lambda group: min(map(len, group)), default=None)
