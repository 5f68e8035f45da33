"""Score the detector on labelled corpora.

    python bench/detect_eval.py ../shared/corpus
    python bench/detect_eval.py tests/corpus tests/unit/fixtures/detect/cases.yaml [--verbose]

Each CORPUS is a directory whose ``labels.json`` maps file names to at least
``{"verdict": KIND, "provider": NAME | null}`` (HAR files carry their own
status and headers; for HTML files the label gives ``status`` and
``headers``), or the unit tests' ``cases.yaml``.  For each corpus, and for all
of them together when there are several, it prints verdict accuracy, provider
accuracy (verdict and provider both right), the share of normal pages called
a challenge or a block, precision and recall per verdict and per provider,
and a confusion table.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from exporter.detect import classify
from exporter.detect.saved import SavedResponseError, load_saved
from exporter.values import Response, VerdictKind


@dataclass(frozen=True)
class Case:
    name: str
    response: Response
    kind: str
    provider: str


def load_corpus(path: Path) -> list[Case]:
    if path.is_file():
        return _cases_yaml(path)
    labels = json.loads((path / "labels.json").read_text(encoding="utf-8"))
    cases = []
    for name, label in sorted(labels.items()):
        if name.endswith(".har"):
            response = load_saved(path / name)
        else:  # the page as served: its status, headers and URL are in the label
            headers = tuple((str(n), str(v)) for n, v in label.get("headers") or ())
            body = (path / name).read_text(encoding="utf-8")
            response = Response(label.get("url", ""), label.get("status", 200), headers, body)
        cases.append(Case(name, response, label["verdict"], label.get("provider") or ""))
    return cases


def _cases_yaml(path: Path) -> list[Case]:
    cases = []
    for index, case in enumerate(yaml.safe_load(path.read_text(encoding="utf-8"))["cases"]):
        body = (path.parent / case["file"]).read_text(encoding="utf-8") if "file" in case else case["body"]
        headers = tuple((str(n), str(v)) for n, v in (case.get("headers") or {}).items())
        kind, _, provider = case["expect"].partition("/")
        name = f"{path.name}#{index}:{case.get('file') or case.get('name') or body[:30]}"
        cases.append(Case(name, Response("https://site.example/", case["status"], headers, body), kind, provider))
    return cases


def report(title: str, cases: list[Case], verbose: bool) -> None:
    confusion: Counter[tuple[str, str]] = Counter()
    providers: Counter[tuple[str, str]] = Counter()  # (label, verdict) provider pairs
    misses = []
    for case in cases:
        verdict = classify(case.response)
        confusion[(case.kind, verdict.kind)] += 1
        providers[(case.provider, verdict.provider)] += 1
        if (verdict.kind, verdict.provider) != (case.kind, case.provider):
            misses.append((case.name, f"{case.kind}/{case.provider or '-'}", f"{verdict.kind}/{verdict.provider or '-'}",
                           verdict.markers))
    total = len(cases)
    right = sum(n for (want, got), n in confusion.items() if want == got)
    both = total - len(misses)
    ok_pages = sum(n for (want, _), n in confusion.items() if want == "ok")
    false_gates = sum(n for (want, got), n in confusion.items() if want == "ok" and got in ("challenge", "block"))
    print(f"== {title}: {total} pages")
    print(f"verdict accuracy:  {right / total:.3f} ({right}/{total})")
    print(f"provider accuracy: {both / total:.3f} ({both}/{total})")
    print(f"normal pages called challenge/block: {false_gates / max(ok_pages, 1):.3f} ({false_gates}/{ok_pages})")
    print()
    _precision_recall("verdict", confusion, [str(kind) for kind in VerdictKind])
    names = sorted({p for pair in providers for p in pair if p})
    _precision_recall("provider", providers, names)
    print("confusion (rows: label, columns: verdict)")
    print(f"{'':>10}" + "".join(f"{kind:>10}" for kind in VerdictKind))
    for want in VerdictKind:
        print(f"{want:>10}" + "".join(f"{confusion[(want, got)]:>10}" for got in VerdictKind))
    print()
    if verbose and misses:
        for name, want, got, markers in misses:
            print(f"{name}: want {want}, got {got} {list(markers)}")
        print()


def _precision_recall(what: str, pairs: Counter[tuple[str, str]], names: list[str]) -> None:
    print(f"{what:>16} {'precision':>10} {'recall':>8} {'labelled':>9}")
    for name in names:
        labelled = sum(n for (want, _), n in pairs.items() if want == name)
        called = sum(n for (_, got), n in pairs.items() if got == name)
        hits = pairs[(name, name)]
        precision = f"{hits / called:.3f}" if called else "-"
        recall = f"{hits / labelled:.3f}" if labelled else "-"
        print(f"{name:>16} {precision:>10} {recall:>8} {labelled:>9}")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpora", nargs="+", type=Path, metavar="CORPUS")
    parser.add_argument("--verbose", action="store_true", help="list every misclassified page")
    args = parser.parse_args(argv)
    everything = []
    for corpus in args.corpora:
        try:
            cases = load_corpus(corpus)
        except (OSError, SavedResponseError, KeyError, ValueError) as exc:
            print(f"unreadable corpus {corpus}: {exc}", file=sys.stderr)
            return 2
        report(str(corpus), cases, args.verbose)
        everything += cases
    if len(args.corpora) > 1:
        report("all of the above", everything, verbose=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
