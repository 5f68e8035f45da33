"""Whatever the YAML holds, loading gives a Config or a one-line ConfigError, never another exception."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import Config, ConfigError, parse_config

EXAMPLE = yaml.safe_load((Path(__file__).resolve().parents[2] / "config.example.yaml").read_text())


def _leaf_paths(node, prefix=()):
    """Every (key or index) path in the example, containers included."""
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield from _leaf_paths(child, prefix + (key,))


PATHS = list(_leaf_paths(EXAMPLE))[1:]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-10**30, max_value=10**30), st.floats(allow_nan=True),
    st.text(max_size=20), st.sampled_from(["5m", "1h30m", "5MiB", "http://a/", "127.0.0.1:1", "*/5 * * * *", ""]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                            max_size=3), max_leaves=6)


def _with(document, path, value):
    copy = yaml.safe_load(yaml.safe_dump(document))
    node = copy
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return copy


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=values)
def test_any_value_anywhere_is_a_config_or_a_config_error(path, value):
    text = yaml.safe_dump(_with(EXAMPLE, path, value), allow_unicode=True)
    try:
        assert isinstance(parse_config(text), Config)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        assert exc.path.startswith(str(path[0])) or exc.path == ""


# values that once made a traceback, or come close to a limit (issue #19)
HOSTILE = st.sampled_from([
    "~nosuchuser/x", "~", "/" + "a" * 5000, "a\0b", "a{99999999999999999999}", "(" * 1000 + ")" * 1000,
    "a\r\nb", "\udc80", "http://[::1", "http://b\u00fccher.example/", "http://-b\u00fccher.example/",
    "http://u:p@h/?token=t", "0 0 31 2 *", "*/0 * * * *", "1:30", "9" * 5000, "1" * 400 + "d", "x" * 70000,
])
hostile_values = st.recursive(st.one_of(scalars, HOSTILE), lambda inner: st.lists(inner, max_size=3)
                              | st.dictionaries(st.one_of(st.text(max_size=8), HOSTILE), inner, max_size=3),
                              max_leaves=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=hostile_values)
def test_hostile_values_anywhere_are_a_config_or_one_line(path, value):
    test_any_value_anywhere_is_a_config_or_a_config_error.hypothesis.inner_test(path, value)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_a_config_or_a_config_error(text):
    try:
        parse_config(text)
    except ConfigError as exc:
        assert "\n" not in str(exc)
