"""Valid configs load into the expected frozen values."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from exporter.config import (
    ChromiumConfig,
    Config,
    ConfigError,
    Evidence,
    ExitSelection,
    Expectation,
    Fetchers,
    HttpFetcherConfig,
    Schedule,
    Target,
    TorBrowserConfig,
    TorConfig,
    Web,
    load_config,
    parse_config,
)
from exporter.config_yaml import parse_duration, parse_size

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90.0), ("2.5", 2.5), ("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0),
    ("1d", 86400.0), ("1h30m", 5400.0), ("1d2h3m4s", 93784.0), ("1.5h", 5400.0), ("1m500ms", 60.5),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "5 m", "5x", "-5s", "5m-", "1h30", "5M", "ms"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(("text", "count"), [
    ("1024", 1024), ("100B", 100), ("512KB", 512_000), ("512kb", 512_000), ("5MiB", 5 * 2**20),
    ("1GB", 10**9), ("1.5GiB", 3 * 2**29), ("2TiB", 2 * 2**40), ("1 MB", 10**6),
])
def test_sizes(text, count):
    assert parse_size(text) == count


@pytest.mark.parametrize("text", ["", "MB", "5XB", "5 M", "-1KB", "0.5B"])
def test_bad_sizes(text):
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


def test_example_config_round_trips_to_the_documented_defaults():
    config = load_config(EXAMPLE)
    base = EXAMPLE.parent
    assert config == Config(
        targets=(
            Target(name="example", url="https://www.example.com/", interval=600.0, fetchers=("http",),
                   exits_per_run=10, expect=Expectation(status=200, title="Example Domain")),
            Target(name="example-browser", url="https://www.example.org/", interval=600.0,
                   fetchers=("http", "chromium"), exits_per_run=10),
        ),
        data_dir=base / "data",
        source=EXAMPLE,
    )


def test_example_config_sets_every_key_of_the_schema():
    """A key missing from the example would silently keep its default: compare key sets."""
    import yaml

    from exporter import config as schema

    example = yaml.safe_load(EXAMPLE.read_text())
    assert set(example) == set(schema.TOP_LEVEL_KEYS)
    assert set(example["tor"]) == set(schema.TOR_KEYS)
    assert set(example["targets"][0]) == set(schema.TARGET_KEYS)
    assert set(example["fetchers"]["firefox"]) == set(schema.BROWSER_KEYS)
    assert set(example["fetchers"]["chromium"]) == set(schema.CHROMIUM_KEYS)
    assert set(example["fetchers"]["tor-browser"]) == set(schema.TOR_BROWSER_KEYS)


def test_a_full_config_loads_every_section(tmp_path):
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "country.mmdb").write_bytes(b"\0")
    (tmp_path / "secret").write_text("hunter2\nignored\n")
    (tmp_path / "tbb").mkdir()
    fingerprint = "0123456789abcdef0123456789abcdef01234567"
    (tmp_path / "config.yaml").write_text(textwrap.dedent(f"""\
        data_dir: state
        tor:
          mode: connect
          control: "[::1]:9151"
          socks: localhost:9150
          password_file: secret
          cookie_file: ~/cookie
          circuit_timeout: 1m
          hops: 2
          deny_hosts: [Tracker.Example, "*.ads.example"]
        targets:
          - name: shop
            url: https://shop.example:8443/cart?x=1
            interval: 90
            fetchers: [tor-browser, http]
            exits_per_run: 3
            expect: {{status: 200, title: 2024}}
          - name: news_1
            url: http://news.example/
        exits:
          fingerprints: [{fingerprint}]
          countries: [de, Us]
          flags: [fast, Stable]
          sample: 7
        schedule:
          cron: "*/15 * * * *"
          jitter: 500ms
          concurrency: 64
          exits_per_run: 4
          window: 12h
        fetchers:
          http:
            max_body_bytes: 1MB
            ca_file: ca.pem
            headers: {{Accept-Language: "en", X-Count: 3}}
          chromium:
            binary: /usr/bin/chromium
            driver: ./bin/chromedriver
            headless: false
            memory_limit: 2GiB
          tor-browser:
            tbb_path: tbb
            security_level: safest
        web: {{listen: "0.0.0.0:9100"}}
        geoip: {{country_db: country.mmdb}}
        evidence: {{max_files: 0, max_bytes: 100000000000000000000}}
        """))
    config = load_config(tmp_path / "config.yaml")
    assert config.data_dir == tmp_path / "state"
    assert config.tor == TorConfig(
        mode="connect", control_host="::1", control_port=9151, socks_host="localhost", socks_port=9150,
        password="hunter2", cookie_file=Path.home() / "cookie", circuit_timeout=60.0, hops=2,
        deny_hosts=("tracker.example", "*.ads.example"))
    assert "hunter2" not in repr(config)
    assert config.targets == (
        Target(name="shop", url="https://shop.example:8443/cart?x=1", interval=90.0, fetchers=("tor-browser", "http"),
               exits_per_run=3, expect=Expectation(status=200, title="2024")),
        Target(name="news_1", url="http://news.example/", interval=600.0, fetchers=("http",), exits_per_run=4,
               cron="*/15 * * * *"),
    )
    assert config.exits == ExitSelection(fingerprints=(fingerprint.upper(),), countries=("DE", "US"),
                                         flags=("Fast", "Stable"), sample=7)
    assert config.schedule == Schedule(cron="*/15 * * * *", jitter=0.5, concurrency=64, exits_per_run=4,
                                       window=43200.0)
    assert config.fetchers == Fetchers(
        http=HttpFetcherConfig(max_body_bytes=10**6, ca_file=tmp_path / "ca.pem",
                               headers={"Accept-Language": "en", "X-Count": "3"}),
        chromium=ChromiumConfig(binary="/usr/bin/chromium", driver=str(tmp_path / "bin/chromedriver"),
                                headless=False, memory_limit_bytes=2 * 2**30),
        tor_browser=TorBrowserConfig(tbb_path=tmp_path / "tbb", security_level="safest"),
    )
    assert config.web == Web(listen_host="0.0.0.0", listen_port=9100)
    assert config.geoip.country_db == tmp_path / "country.mmdb"
    assert config.evidence == Evidence(max_files=0, max_bytes=10**20)


def test_torrc_options_keep_repeated_lines():
    config = parse_config(textwrap.dedent("""\
        targets: [{name: a, url: "http://a.example/"}]
        tor:
          executable: tor
          torrc:
            Log: [notice stdout, info file /tmp/tor.log]
            NumEntryGuards: 1
        """))
    assert config.tor.torrc == {"Log": ("notice stdout", "info file /tmp/tor.log"), "NumEntryGuards": ("1",)}
    assert config.tor.executable == "tor"


def test_relative_paths_resolve_against_the_base_directory(tmp_path):
    config = parse_config("targets: [{name: a, url: 'http://a/'}]\ndata_dir: ../var\ntor: {executable: bin/tor}\n",
                          base_dir=tmp_path / "etc")
    assert config.data_dir == tmp_path / "etc" / "../var"
    assert config.tor.executable == str(tmp_path / "etc" / "bin/tor")


def test_null_means_the_default_only_for_optional_keys():
    config = parse_config("targets: [{name: a, url: 'http://a/', expect: null}]\nexits: {top: null}\ngeoip:\n")
    assert config.targets[0].expect is None
    assert config.exits.top is None
    assert config.geoip.country_db is None


def test_target_interval_overrides_a_global_cron():
    config = parse_config(textwrap.dedent("""\
        schedule: {cron: "0 * * * *", exits_per_run: 2}
        targets:
          - {name: a, url: "http://a/", interval: 2m}
          - {name: b, url: "http://b/"}
        """))
    schedules = [(t.interval, t.cron, t.exits_per_run) for t in config.targets]
    assert schedules == [(120.0, None, 2), (600.0, "0 * * * *", 2)]



def test_a_targets_onion_route_is_off_auto_or_an_onion_url():
    onion = "http://ytsjjeqwpgh2k2gtqhnxw7a6wnlwxlqsredtzyym4dhuljduzwtqksad.onion/"
    config = parse_config(f"""\
targets:
  - {{name: a, url: "https://a.example/"}}
  - {{name: b, url: "https://b.example/", onion: auto}}
  - {{name: c, url: "https://c.example/", onion: "{onion}"}}
""")
    assert [t.onion for t in config.targets] == ["off", "auto", onion]


def test_web_allowed_hosts(tmp_path):
    config = parse_config("targets: [{name: a, url: 'http://a.example/'}]\n"
                          "web: {allowed_hosts: [Exporter.Example.org., localhost]}\n")
    assert config.web.allowed_hosts == ("exporter.example.org", "localhost")
    assert parse_config("targets: [{name: a, url: 'http://a.example/'}]\n").web.allowed_hosts is None
    idn = parse_config("targets: [{name: a, url: 'http://a.example/'}]\nweb: {allowed_hosts: [B\u00fccher.example]}\n")
    assert idn.web.allowed_hosts == ("xn--bcher-kva.example",)  # the Host header a browser sends
    for bad in ("[exporter:9981]", "['http://exporter']", "['a b']", "exporter"):
        with pytest.raises(ConfigError, match=r"web.allowed_hosts.*(host name without a port|expected a list)"):
            parse_config(f"targets: [{{name: a, url: 'http://a.example/'}}]\nweb: {{allowed_hosts: {bad}}}\n")


def test_chromium_sandbox_is_on_unless_turned_off():
    target = "targets: [{name: a, url: 'http://a.example/'}]\n"
    assert parse_config(target).fetchers.chromium.sandbox is True
    assert parse_config(target + "fetchers: {chromium: {sandbox: false}}\n").fetchers.chromium.sandbox is False
    with pytest.raises(ConfigError, match=r"fetchers.firefox.sandbox: unknown key 'sandbox'"):
        parse_config(target + "fetchers: {firefox: {sandbox: false}}\n")


def test_internationalised_hosts_become_the_punycode_browsers_and_tor_see():
    """The browser asks tor and the resolver for the A-label, so the config holds the A-label too
    (IDNA 2008, UTS 46 non-transitional, as Chromium: ß stays ß), wherever a host is compared."""
    config = parse_config(textwrap.dedent("""\
        targets:
          - {name: books, url: "https://user:pw@B\u00fccher.example:8443/k\u00e4se?q=\u00e4"}
          - {name: street, url: "http://stra\u00dfe.example/"}
          - {name: plain, url: "https://Shop.example/"}
        baseline:
          resolve: {b\u00fccher.example: 127.0.0.1, SHOP.example: 127.0.0.2}
        tor: {deny_hosts: [Stra\u00dfe.example, "*.B\u00fccher.example.", Ads.example]}
        """))
    assert [t.url for t in config.targets] == [
        "https://user:pw@xn--bcher-kva.example:8443/k\u00e4se?q=\u00e4",
        "http://xn--strae-oqa.example/",
        "https://Shop.example/",  # an ASCII URL is kept as written
    ]
    assert config.baseline_resolve == {"xn--bcher-kva.example": "127.0.0.1", "shop.example": "127.0.0.2"}
    assert config.tor.deny_hosts == ("xn--strae-oqa.example", "*.xn--bcher-kva.example", "ads.example")


def test_configs_near_the_impossible_ones_still_load():
    config = parse_config(textwrap.dedent("""\
        targets: [{name: a, url: "http://a/"}]
        schedule: {cron: "0 0 29 2 *", window: 3650d}
        fetchers: {http: {headers: {X-Tabbed: "a\\tb", X-Latin-1: "caf\u00e9"}, user_agent: "Mozilla/5.0 (X11)"}}
        tor: {torrc: {Log: ["notice stdout", "info file /tmp/tor.log"], SocksPolicy: accept 127.0.0.1}}
        """))
    assert config.schedule.cron == "0 0 29 2 *"  # fires every fourth year
    assert config.fetchers.http.headers == {"X-Tabbed": "a\tb", "X-Latin-1": "caf\u00e9"}
    assert config.tor.torrc["SocksPolicy"] == ("accept 127.0.0.1",)


def test_every_tor_option_the_exporter_sets_is_refused_as_a_torrc_key(monkeypatch, tmp_path):
    """The options the exporter gives its launched tor and sets when it takes over streams."""
    import stem.process

    from exporter.config import TOR_OWNED
    from exporter.tor import circuit, control

    given = {}

    def launch(config, **kwargs):
        given.update(config)
        raise OSError("not starting tor in a unit test")

    monkeypatch.setattr(stem.process, "launch_tor_with_config", launch)
    with pytest.raises(control.TorUnavailable):
        control.open_tor(parse_config("targets: [{name: a, url: 'http://a/'}]\n", base_dir=tmp_path).tor, lanes=1)
    assert {name.lower() for name in [*given, *circuit._SETTINGS]} <= set(TOR_OWNED)
