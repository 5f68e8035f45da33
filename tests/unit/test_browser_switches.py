"""Every browser switch that keeps a browser's own traffic off the probed exit is in the README's list."""

from __future__ import annotations

from pathlib import Path

from exporter.fetch.chromium import (
    BACKGROUND_SWITCHES,
    CHROMIUM_ARGUMENTS,
    DISABLED_FEATURES,
)
from exporter.fetch.gecko import QUIET_PREFS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
SECTION = README.split("## What leaves the exporter, and through which exit", 1)[1].split("\n## ", 1)[0]


def test_the_readme_lists_every_chromium_switch_and_disabled_feature():
    missing = [name for name in (*BACKGROUND_SWITCHES, *DISABLED_FEATURES) if f"`{name}`" not in SECTION]
    assert missing == []


def test_the_readme_lists_every_firefox_pref():
    assert [name for name in QUIET_PREFS if f"`{name}`" not in SECTION] == []


def test_chromium_gets_one_disable_features_switch_with_every_feature():
    """Chromium keeps the last --disable-features it is given: two would silently drop a list."""
    given = [a for a in CHROMIUM_ARGUMENTS if a.startswith("--disable-features=")]
    assert given == ["--disable-features=" + ",".join(DISABLED_FEATURES)]
    assert set(BACKGROUND_SWITCHES) <= set(CHROMIUM_ARGUMENTS)
