"""The detector names every gate the test bed's edge serves (the e2e tests rely on it)."""

from __future__ import annotations

import pytest

from exporter.detect import classify
from exporter.values import Response
from testbed.behaviours import Visit, answer
from testbed.passes import Passes
from testbed.policy import Behaviour

EXPECTED = {
    "ok": ("ok", ""),
    "nonce": ("ok", ""),
    "injected": ("ok", ""),
    "rewritten": ("ok", ""),
    "different": ("ok", ""),
    "challenge": ("challenge", "cloudflare"),
    "interactive": ("challenge", "cloudflare"),
    "block": ("block", "cloudflare"),
    "datadome": ("challenge", "datadome"),
    "perimeterx": ("challenge", "perimeterx"),
    "anubis": ("challenge", "anubis"),
    "mcaptcha": ("challenge", "mcaptcha"),
    "error": ("error", "cloudflare"),
}
PARAMS = {"challenge": {"delay": 2.0}, "anubis": {"difficulty": 4},
          "mcaptcha": {"difficulty_factor": 50_000}, "error": {"code": 522}}


@pytest.mark.parametrize("site", ["news", "login", "shop"])  # Cloudflare-fronted and nginx-fronted
@pytest.mark.parametrize("behaviour", sorted(EXPECTED))
def test_edge_pages_get_the_expected_verdict(site, behaviour):
    reply = answer(Visit(site, "exit1", "https", "GET", "/"), Behaviour(behaviour, PARAMS.get(behaviour, {})), Passes())
    response = Response(f"https://{site}.test/", reply.status, tuple(reply.headers), reply.body.decode("utf-8"))
    verdict = classify(response)
    assert (verdict.kind, verdict.provider) == EXPECTED[behaviour], verdict.markers
