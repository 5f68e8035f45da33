"""The edge policy: YAML in, behaviour per site × exit out, errors that name the key."""

from __future__ import annotations

import pytest

from testbed.pages import SITES
from testbed.policy import (
    BEHAVIOURS,
    Behaviour,
    PolicyError,
    default_policy,
    load_policy,
)

EXAMPLE = """
sites:
  news:  {default: ok, exits: {exit2: {behaviour: challenge, delay: 2}, exit3: block}}
  shop:  {default: nonce, exits: {exit1: datadome}}
"""

FAMILIES = {
    "cloudflare": {"challenge", "interactive", "block"},
    "other vendors": {"datadome", "perimeterx", "anubis"},
    "modified": {"injected", "rewritten", "different"},
    "onion": {"alt-svc", "onion-location"},
    "failures": {"slow", "hang", "reset", "huge", "error"},
}


def test_example_policy_answers_per_site_and_exit():
    policy = load_policy(EXAMPLE)
    assert policy.behaviour("news", "exit2") == Behaviour("challenge", {"delay": 2.0})
    assert policy.behaviour("news", "exit3") == Behaviour("block")
    assert policy.behaviour("news", "exit1").name == "ok"
    assert policy.behaviour("shop", "exit1").name == "datadome"
    assert policy.behaviour("shop", "exit2").name == "nonce"
    assert policy.behaviour("forum", "exit2").name == "ok"  # unlisted site


def test_parameters_get_their_defaults_and_keep_their_kind():
    policy = load_policy({"sites": {"news": {"exits": {"e": "anubis", "f": {"behaviour": "huge", "size": 1000}}}}})
    assert policy.behaviour("news", "e").params == {"difficulty": 4}
    assert isinstance(policy.behaviour("news", "f")["size"], int)


def test_direct_gets_the_real_page_unless_listed():
    policy = load_policy(
        "sites: {news: {default: block, exits: {exit1: ok}}, shop: {default: block, exits: {direct: anubis}}}"
    )
    assert policy.behaviour("news", "direct").name == "ok"
    assert policy.behaviour("news", "exit9").name == "block"
    assert policy.behaviour("news", None).name == "block"  # an unidentified peer gets the site default
    assert policy.behaviour("shop", "direct").name == "anubis"


def test_a_site_may_be_given_as_a_bare_behaviour():
    assert load_policy("sites: {forum: perimeterx}").behaviour("forum", "x").name == "perimeterx"


def test_load_from_a_file(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(EXAMPLE)
    assert load_policy(path).to_dict() == load_policy(str(path)).to_dict() == load_policy(EXAMPLE).to_dict()


def test_to_dict_round_trips():
    policy = default_policy(["exit1", "exit2", "exit3", "exit4"])
    assert load_policy(policy.to_dict()) == policy


@pytest.mark.parametrize(
    "text, message",
    [
        ("sites: {news: {exits: {exit2: chalenge}}}", "sites.news.exits.exit2: unknown behaviour 'chalenge'"),
        ("sites: {news: {default: {behaviour: slow, dealy: 2}}}", "sites.news.default.dealy: unknown parameter"),
        ("sites: {news: {exits: {e: {behaviour: challenge, delay: soon}}}}", "sites.news.exits.e.delay: expected a"),
        ("sites: {news: {exits: {e: {behaviour: error, code: 404}}}}", "sites.news.exits.e.code: 404 is outside 520"),
        ("sites: {news: {exits: {e: {behaviour: anubis, difficulty: 2.5}}}}", "expected a whole number"),
        ("sites: {news: {exits: {e: {delay: 2}}}}", "sites.news.exits.e: a mapping needs the key 'behaviour'"),
        ("sites: {weather: ok}", "sites.weather: unknown site"),
        ("sites: {news: {defualt: ok}}", "sites.news.defualt: unknown key"),
        ("site: {news: ok}", "policy.site: unknown key"),
        ("sites: [news]", "sites: expected a mapping"),
        ("sites: {news: {exits: [a, b]}}", "sites.news.exits: expected a mapping"),
        ("sites: {news: {exits: {e: [block]}}}", "sites.news.exits.e: expected a behaviour name or a mapping"),
        ("sites: {news: [", "policy is not valid YAML"),
    ],
)
def test_errors_name_the_offending_key(text, message):
    with pytest.raises(PolicyError) as error:
        load_policy(text)
    assert message in str(error.value)


def test_unknown_behaviour_error_lists_the_known_ones():
    with pytest.raises(PolicyError, match="known: ok, nonce, challenge"):
        load_policy("sites: {news: captcha}")


def test_default_policy_keeps_the_first_exit_on_real_pages():
    exits = ["exit1", "exit2", "exit3"]
    policy = default_policy(exits)
    for site in SITES:
        assert policy.behaviour(site, "exit1").name in {"ok", "nonce"}
        assert policy.behaviour(site, "direct").name == "ok"
    assert {policy.behaviour("news", e).name for e in exits[1:]} == {"challenge", "block"}


def test_default_policy_shows_every_family_with_three_exits():
    policy = default_policy(["exit1", "exit2", "exit3"])
    seen = {policy.behaviour(site, e).name for site in SITES for e in ["exit2", "exit3"]}
    for family, members in FAMILIES.items():
        assert seen & members, f"no {family} behaviour in the default policy"


def test_default_policy_with_many_exits_uses_every_behaviour():
    exits = [f"exit{i}" for i in range(1, 6)]
    policy = default_policy(exits)
    seen = {policy.behaviour(site, e).name for site in SITES for e in exits}
    assert seen == set(BEHAVIOURS)


def test_default_policy_with_one_exit_is_all_real_pages():
    policy = default_policy(["only"])
    assert {policy.behaviour(site, "only").name for site in SITES} <= {"ok", "nonce"}
