"""A config is small: at most 1 MiB, and at most 100,000 values, 1 MiB of text and 64 levels with its
aliases expanded.  Each limit is a one-line error, reached before the work it prevents."""

from __future__ import annotations

import pytest

from exporter.config import ConfigError, load_config, parse_config
from exporter.config_yaml import MAX_BYTES

TARGET = "targets:\n  - {name: shop, url: 'https://shop.example/'}\n"


def torrc_bomb(items: int, options: int, value: str) -> str:
    """``options`` torrc options, each an alias of one list of ``items`` aliases of one ``value``: a few
    KB that stand for options × items values (each torrc value may be any string, so it passed)."""
    listed = ", ".join(["&v " + value] + ["*v"] * (items - 1))
    return TARGET + f"tor:\n  torrc:\n    Opt0: &list [{listed}]\n" + "".join(
        f"    Opt{n}: *list\n" for n in range(1, options))


def error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="c.yaml")
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_a_file_over_1_mib_is_refused_before_it_is_read_further(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(TARGET + "# " + "x" * MAX_BYTES + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: larger than 1 MiB; a config needs far less"
    assert error(path.read_text()) == "c.yaml: larger than 1 MiB; a config needs far less"


def test_an_endless_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_config("/dev/zero")


def test_a_file_of_exactly_1_mib_is_read(tmp_path):
    text = TARGET + "#" * (MAX_BYTES - len(TARGET) - 1) + "\n"
    assert len(text.encode()) == MAX_BYTES
    assert parse_config(text).targets[0].name == "shop"


def test_aliases_that_expand_to_more_than_1_mib_of_text_are_refused():
    bomb = torrc_bomb(items=100, options=100, value="x" * 1000)  # 10 MB of text in 3 KB
    assert len(bomb) < 4000
    assert error(bomb) == ("c.yaml:15: tor.torrc.Opt10: the document holds more than 1 MiB of text with its "
                           "aliases expanded")


def test_aliases_that_expand_to_more_than_100000_values_are_refused():
    bomb = torrc_bomb(items=1000, options=1000, value="x")  # a million values in 22 KB
    assert len(bomb) < 25000
    assert error(bomb) == ("c.yaml:104: tor.torrc.Opt99: the document holds more than 100,000 values with its "
                           "aliases expanded; a config needs far fewer")


def test_a_long_plain_list_stops_at_the_limit_not_at_its_end():
    text = TARGET + "tor: {torrc: {Log: [" + "a, " * 200_000 + "a]}}\n"
    assert error(text).startswith("c.yaml:3: tor.torrc.Log[99986]: the document holds more than 100,000 values")


def test_nesting_deeper_than_64_levels_is_refused_even_through_aliases():
    assert error(TARGET + "x: " + "[" * 65 + "]" * 65 + "\n").startswith("c.yaml:3: x[0]: nested too deeply")
    deep = "a: &a " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 30 + "*a" + "]" * 30 + "\n"
    assert error(TARGET + deep) == "c.yaml:4: b[0]: nested too deeply (more than 64 levels, aliases expanded)"


def test_an_alias_inside_its_own_anchor_is_refused():
    assert error(TARGET + "detect:\n  signatures: &loop [*loop]\n") == (
        "c.yaml:4: detect.signatures[0]: the alias *loop is inside its own anchor (a structure that contains itself)")


def test_aliases_within_the_limits_still_work():
    text = ("targets:\n"
            "  - {name: a, url: 'http://a/', change: &change {ignore: ['\\d+ left'], mask_numbers: true}}\n"
            "  - {name: b, url: 'http://b/', change: *change}\n")
    config = parse_config(text)
    assert config.targets[0].change == config.targets[1].change
    assert config.targets[1].change.ignore == ("\\d+ left",)


def test_aliases_are_counted_under_fetcher_variants_as_anywhere():
    """The composer counts nodes whatever key holds them: #14's variants (their arguments and prefs
    are free text and free keys) are no way around the limits."""
    listed = ", ".join(["&v " + "x" * 1000] + ["*v"] * 99)
    others = "".join(f"    c{n}: {{kind: chromium, arguments: *args}}\n" for n in range(1, 100))
    text = TARGET + f"fetchers:\n  variants:\n    c0: {{kind: chromium, arguments: &args [{listed}]}}\n" + others
    assert len(text) < 6000  # 10 MB of text in 6 KB
    assert error(text).endswith(": the document holds more than 1 MiB of text with its aliases expanded")
