"""Score the detector on a labelled directory of HAR files.

    python bench/detect_eval.py /work/shared/corpus [--verbose]

``labels.json`` in the directory maps each file name to at least
``{"verdict": KIND, "provider": NAME | null}``.  Prints verdict accuracy,
provider accuracy (verdict and provider both right), the false
challenge/block rate on ``ok`` pages and a confusion table.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from exporter.detect import classify
from exporter.detect.saved import SavedResponseError, load_saved
from exporter.values import VerdictKind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--verbose", action="store_true", help="list every misclassified file")
    args = parser.parse_args(argv)
    labels = json.loads((args.directory / "labels.json").read_text(encoding="utf-8"))

    confusion: Counter[tuple[str, str]] = Counter()
    verdict_right = provider_right = ok_pages = ok_gated = 0
    misses = []
    for name, label in sorted(labels.items()):
        try:
            verdict = classify(load_saved(args.directory / name))
        except SavedResponseError as exc:
            print(f"unreadable: {exc}", file=sys.stderr)
            return 2
        want_kind, want_provider = label["verdict"], label.get("provider") or ""
        confusion[(want_kind, verdict.kind)] += 1
        verdict_right += verdict.kind == want_kind
        provider_right += verdict.kind == want_kind and verdict.provider == want_provider
        if want_kind == "ok":
            ok_pages += 1
            ok_gated += verdict.kind in ("challenge", "block")
        if (verdict.kind, verdict.provider) != (want_kind, want_provider):
            misses.append((name, f"{want_kind}/{want_provider or '-'}",
                           f"{verdict.kind}/{verdict.provider or '-'}", verdict.markers))

    total = len(labels)
    print(f"pages: {total}")
    print(f"verdict accuracy:  {verdict_right / total:.3f} ({verdict_right}/{total})")
    print(f"provider accuracy: {provider_right / total:.3f} ({provider_right}/{total})")
    rate = ok_gated / ok_pages if ok_pages else 0.0
    print(f"ok pages called challenge/block: {rate:.3f} ({ok_gated}/{ok_pages})")
    print()
    print("confusion (rows: label, columns: verdict)")
    print(f"{'':>10}" + "".join(f"{kind:>10}" for kind in VerdictKind))
    for want in VerdictKind:
        print(f"{want:>10}" + "".join(f"{confusion[(want, got)]:>10}" for got in VerdictKind))
    if args.verbose and misses:
        print()
        for name, want, got, markers in misses:
            print(f"{name}: want {want}, got {got} {list(markers)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
