"""Reading a proof-of-work gate's difficulty from its page: the test bed's pages, odd and hostile ones."""

from __future__ import annotations

import time

import pytest

from exporter.detect import classify
from exporter.detect.proof_of_work import difficulty
from exporter.values import Response
from testbed.behaviours import Visit, answer
from testbed.passes import Passes
from testbed.policy import Behaviour


def page(body: str, status: int = 200) -> Response:
    return Response("http://news.test/", status, (), body)


@pytest.mark.parametrize(("behaviour", "params", "expected"), [
    ("anubis", {"difficulty": 3}, 3),
    ("anubis", {"difficulty": 5}, 5),
    ("mcaptcha", {"difficulty_factor": 1_000}, 1_000),
    ("mcaptcha", {"difficulty_factor": 250_000}, 250_000),
])
def test_the_test_beds_gates_say_the_difficulty_their_policy_set(behaviour, params, expected):
    reply = answer(Visit("news", "exit1", "http", "GET", "/"), Behaviour(behaviour, params), Passes())
    response = Response("http://news.test/", reply.status, tuple(reply.headers), reply.body.decode())
    verdict = classify(response)
    assert (verdict.kind, verdict.provider) == ("challenge", behaviour)
    assert difficulty(verdict.provider, response) == expected


def test_anubis_difficulty_is_read_from_its_challenge_script_only():
    decoy = '<p>"difficulty": 9</p>'
    challenge = '<script id="anubis_challenge" type="application/json">{"rules": {"algorithm": "fast", ' \
                '"difficulty":  4, "report_as": 4}, "challenge": "abc"}</script>'
    assert difficulty("anubis", page(decoy + challenge + decoy)) == 4
    assert difficulty("anubis", page(decoy)) is None, "outside the challenge script it is not the gate's"
    unterminated = '<script id="anubis_challenge" type="application/json">{"rules": {"difficulty": 2'
    assert difficulty("anubis", page(unterminated)) == 2
    after_script = '<script id="anubis_challenge">{}</script><p>"difficulty": 3</p>'
    assert difficulty("anubis", page(after_script)) is None


def test_mcaptcha_factor_and_pages_that_do_not_say():
    assert difficulty("mcaptcha", page('{"string":"x","difficulty_factor":50000,"salt":"y"}')) == 50_000
    assert difficulty("mcaptcha", page('<label data-mcaptcha_url="https://m.example/widget/?sitekey=k">')) is None
    assert difficulty("mcaptcha", page('"difficulty_factor": "many"')) is None
    assert difficulty("mcaptcha", page('"difficulty_factor": 1' + "0" * 40)) is None, "no absurd number"
    assert difficulty("cloudflare", page('"difficulty_factor": 5')) is None, "only proof-of-work vendors"


@pytest.mark.parametrize("provider", ["anubis", "mcaptcha"])
def test_hostile_pages_are_read_in_linear_time(provider):
    """Many near-misses: each costs one step, so 10x the page costs about 10x the time."""
    unit = ('<script id="anubis_challenge">' if provider == "anubis" else "") + '"difficulty_factor"' + " " * 15 \
        + '"difficulty"' + " " * 15 + ":" + " " * 15

    def seconds(copies: int) -> float:
        body = page(unit * copies)
        started = time.perf_counter()
        difficulty(provider, body)
        return time.perf_counter() - started

    small, large = min(seconds(2_000) for _ in range(3)), min(seconds(20_000) for _ in range(3))
    assert large < 0.5
    assert large < 30 * max(small, 1e-4)
