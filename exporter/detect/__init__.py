"""Name the gate and the CAPTCHA on a page: ``classify(Response) -> Verdict``.

The signatures are data (``signatures.yaml``, plus the operator's own from the
config); see ``exporter.detect.signatures`` for the format and the decision order.
"""

from __future__ import annotations

from functools import lru_cache

from exporter.detect.detector import Detector
from exporter.detect.signatures import Signatures, load_signatures
from exporter.values import Response, Verdict

__all__ = ["Detector", "Signatures", "Verdict", "classify", "load_signatures"]


@lru_cache(maxsize=1)
def _shipped_detector() -> Detector:
    return Detector(load_signatures())


def classify(response: Response) -> Verdict:
    """The verdict for ``response`` with the shipped signatures."""
    return _shipped_detector().classify(response)
