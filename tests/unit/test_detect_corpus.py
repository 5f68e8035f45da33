"""The detector on the project's corpus (tests/corpus): pages written from public examples.

Every page is a test.  The pages of the four shapes issue #15 names are
counted, so each shape keeps several pages: normal pages that quote a gate
(``quotes-a-gate``), a vendor's sensor interstitial (``sensor-interstitial``),
a proof-of-work gate and its widget twin (``proof-of-work``), and a refusal
named only by its edge (``named-by-edge``).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from exporter.detect import classify
from exporter.values import Response

CORPUS = Path(__file__).parents[1] / "corpus"
LABELS = json.loads((CORPUS / "labels.json").read_text(encoding="utf-8"))


def served(name: str) -> Response:
    label = LABELS[name]
    headers = tuple((str(key), str(value)) for key, value in label["headers"])
    return Response(label["url"], label["status"], headers, (CORPUS / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(LABELS))
def test_corpus_page(name):
    verdict = classify(served(name))
    label = LABELS[name]
    assert (verdict.kind, verdict.provider) == (label["verdict"], label["provider"] or ""), verdict.markers


def test_every_page_has_its_provenance():
    for name, label in LABELS.items():
        assert (CORPUS / name).is_file(), name
        source = label["source"]
        assert source.get("url") or {"repo", "path"} <= set(source), name
        assert label["note"], name


def test_each_shape_of_the_issue_has_several_pages():
    shapes = Counter(label.get("shape") for label in LABELS.values())
    for shape in ("quotes-a-gate", "sensor-interstitial", "proof-of-work", "named-by-edge"):
        assert shapes[shape] >= 5, shape
    verdicts = Counter(label["verdict"] for label in LABELS.values())
    assert sum(verdicts.values()) >= 120 and verdicts["ok"] >= 60
