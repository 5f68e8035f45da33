"""/config renders the config in the schema an operator writes, and that text loads back to an equal Config."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from exporter.cli import main
from exporter.config import ConfigError, config_yaml, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


def full_config(tmp_path) -> str:
    """Non-default values in every section, with the spellings that differ from the fields."""
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "tbb").mkdir()
    return textwrap.dedent("""\
        tor: {mode: connect, control: "[::1]:9151", socks: "localhost:9150", cookie_file: ~/c, circuit_timeout: 1m}
        targets:
          - {name: shop, url: "https://shop.example:8443/", interval: 90, fetchers: [tor-browser, http, tb-rfp],
             expect: {status: 200}, change: {ignore: ['\\d+ left'], mask_numbers: true, baseline_interval: 1h30m}}
          - {name: news, url: "http://news.example/", direct: false, fetchers: [chromium, chromium-de]}
        exits: {countries: [de], flags: [fast], top: 3}
        schedule: {cron: "*/15 * * * *", jitter: 500ms, concurrency: 4, window: 12h}
        fetchers:
          http: {max_body_bytes: 1MB, ca_file: ca.pem, headers: {DNT: 1}}
          chromium: {driver: ./bin/chromedriver, memory_limit: 2GiB, challenge_wait: 0.30000000000000004}
          tor-browser: {tbb_path: tbb, security_level: safest}
          variants:
            tb-rfp: {kind: tor-browser, security_level: standard, prefs: {privacy.resistFingerprinting: true}}
            chromium-de: {kind: chromium, arguments: [--lang=de-DE], prefs: {intl.accept_languages: de-DE}}
        web: {listen: "0.0.0.0:9100"}
        onionoo: {url: "http://onionoo.test:8080/details", interval: 1h}
        history: {retention: 2d, max_probes: 5000}
        reports: {daily: true, keep_days: 7, format: json}
        evidence: {max_bytes: 100000000000000000000}
        baseline: {resolve: {shop.example: 127.0.0.1}}
        """)


def test_rendered_config_loads_back_to_an_equal_config(tmp_path):
    config = parse_config(full_config(tmp_path), base_dir=tmp_path)
    assert parse_config(config_yaml(config)) == config


def test_the_example_with_every_key_loads_back_to_an_equal_config():
    config = replace(load_config(EXAMPLE), source=None)
    assert parse_config(config_yaml(config)) == config


def test_rendered_config_uses_the_keys_an_operator_writes(tmp_path):
    data = yaml.safe_load(config_yaml(parse_config(full_config(tmp_path), base_dir=tmp_path)))
    assert data["tor"]["control"] == "[::1]:9151" and data["tor"]["socks"] == "localhost:9150"
    assert "executable" not in data["tor"]  # launch-only keys are left out in connect mode
    assert data["fetchers"]["tor-browser"]["security_level"] == "safest"
    assert "tbb_path" not in data["fetchers"]["chromium"]
    assert data["fetchers"]["chromium"]["memory_limit"] == "2GiB"
    assert data["schedule"]["window"] == "12h" and "interval" not in data["schedule"]  # cron set
    assert "interval" not in data["targets"][1]  # follows schedule.cron
    assert data["targets"][0]["interval"] == "90s"
    assert data["fetchers"]["chromium"]["challenge_wait"] == 0.30000000000000004  # "0.3s" would round it
    # a variant shows the keys it changes from its kind's section
    assert data["fetchers"]["variants"] == {
        "tb-rfp": {"kind": "tor-browser", "security_level": "standard", "prefs": {"privacy.resistFingerprinting": True}},
        "chromium-de": {"kind": "chromium", "arguments": ["--lang=de-DE"], "prefs": {"intl.accept_languages": "de-DE"}}}
    assert data["web"] == {"listen": "0.0.0.0:9100"}
    assert data["baseline"] == {"resolve": {"shop.example": "127.0.0.1"}}


def test_a_variant_starts_from_its_kinds_section(tmp_path):
    config = parse_config(full_config(tmp_path), base_dir=tmp_path)
    kind, settings = config.fetchers.resolve("chromium-de")
    assert kind == "chromium" and settings.memory_limit_bytes == 2 * 2**30, "inherited from fetchers.chromium"
    assert settings.arguments == ("--lang=de-DE",) and config.fetchers.chromium.arguments == ()
    kind, settings = config.fetchers.resolve("tb-rfp")
    assert (kind, settings.security_level, settings.tbb_path) == ("tor-browser", "standard", tmp_path / "tbb")
    assert [config.fetchers.label(name) for name in ("tor-browser", "tb-rfp", "http")] == [
        "tor-browser-safest", "tb-rfp", "http"]
    assert config.targets[1].direct is False and config.targets[0].direct is True


def test_secrets_are_redacted(tmp_path):
    (tmp_path / "secret").write_text("hunter2\n")
    config = parse_config("targets: [{name: a, url: 'http://a/'}]\ntor: {mode: connect, password_file: secret}\n",
                          base_dir=tmp_path)
    assert config.tor.password == "hunter2"
    text = config_yaml(config)
    assert "hunter2" not in text
    assert yaml.safe_load(text)["tor"]["password"] == "<secret>"


TOR_BROWSER_WITHOUT_BUNDLE = """\
targets:
  - name: shop
    url: https://shop.example/
    fetchers:
      - http
      - tor-browser
"""


def test_tor_browser_without_tbb_path_is_refused_at_the_fetcher_that_asks_for_it():
    with pytest.raises(ConfigError) as caught:
        parse_config(TOR_BROWSER_WITHOUT_BUNDLE)
    assert str(caught.value) == ("<string>:6: targets[0].fetchers[1]: the tor-browser fetcher needs "
                                 "fetchers.tor-browser.tbb_path (the unpacked Tor Browser directory)")


def test_check_config_refuses_tor_browser_without_tbb_path(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(TOR_BROWSER_WITHOUT_BUNDLE)
    assert main(["check-config", str(path)]) == 1
    assert capsys.readouterr().err.strip() == (f"{path}:6: targets[0].fetchers[1]: the tor-browser fetcher needs "
                                              "fetchers.tor-browser.tbb_path (the unpacked Tor Browser directory)")
    (tmp_path / "tbb").mkdir()
    path.write_text(TOR_BROWSER_WITHOUT_BUNDLE + "fetchers: {tor-browser: {tbb_path: tbb}}\n")
    assert load_config(path).fetchers.tor_browser.tbb_path == tmp_path / "tbb"
