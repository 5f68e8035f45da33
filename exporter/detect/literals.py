"""Literal prefilters for body regexes.

Python's ``re`` has no fast path for case-insensitive patterns or top-level
alternations, so searching a few dozen of them through a large page costs
milliseconds per kilobyte.  Most marker regexes contain text that every match
must include (``_cf_chl_(opt|ctx)`` always contains ``_cf_chl_``); looking for
that text in the lowercased page with ``str.__contains__`` first rules most
pages out in microseconds.  The prefilter may let through pages the regex then
rejects, never the reverse.
"""

from __future__ import annotations

from re import _constants as sre  # the stdlib's own regex parser (stable since 3.11)
from re import _parser

MIN_LITERAL = 3
# Non-ASCII letters that re.IGNORECASE equates with an ASCII letter but that
# str.lower() leaves alone (the other two, "İ" and "K", lower to "i̇" and "k").
_IGNORECASE_EXTRAS = str.maketrans({"ı": "i", "ſ": "s"})


def fold(text: str) -> str:
    """``text`` in the form prefilter literals are compared with."""
    folded = text.lower()
    return folded if folded.isascii() else folded.translate(_IGNORECASE_EXTRAS)


def required_literals(pattern: str) -> frozenset[str] | None:
    """Folded strings one of which every match of ``pattern`` contains, or None if unknown."""
    try:
        parsed = _parser.parse(pattern)
    except Exception:  # noqa: BLE001 - a pattern we cannot analyse just gets no prefilter
        return None
    best = _sequence(list(parsed))
    if best is None or min(map(len, best)) < MIN_LITERAL:
        return None
    return frozenset(fold(text) for text in best)


def _sequence(items: list) -> frozenset[str] | None:
    """The best required-literal set of a sequence of parsed regex items."""
    candidates: list[frozenset[str]] = []
    run: list[str] = []

    def end_run() -> None:
        if run:
            candidates.append(frozenset({"".join(run)}))
            run.clear()

    for op, arg in items:
        if op is sre.LITERAL and chr(arg).isascii():
            run.append(chr(arg))
        elif op is sre.AT:
            continue  # zero-width (^, $, \b): the text on both sides is contiguous
        else:
            end_run()
            nested = _nested(op, arg)
            if nested:
                candidates.append(nested)
    end_run()
    return max(candidates, key=lambda c: min(map(len, c)), default=None)


def _nested(op, arg) -> frozenset[str] | None:
    if op is sre.SUBPATTERN:
        return _sequence(list(arg[-1]))
    if op is sre.BRANCH:
        alternatives = [_sequence(list(branch)) for branch in arg[1]]
        if any(a is None for a in alternatives):
            return None
        return frozenset().union(*alternatives)
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT) and arg[0] >= 1:
        return _sequence(list(arg[2]))
    return None
