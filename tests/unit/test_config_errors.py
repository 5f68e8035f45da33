"""Every config mistake is one line naming the file, the line and the key path."""

from __future__ import annotations

import sys
import textwrap
import types

import pytest

from exporter.config import ConfigError, load_config, parse_config

TARGET = "targets:\n  - {name: shop, url: 'https://shop.example/'}\n"

# (id, YAML, line, key path, part of the message)
CHANGED = "targets:\n  - name: shop\n    url: https://shop.example/\n    change:\n"

BAD_CONFIGS = [
    ("change-threshold-out-of-range", CHANGED + "      threshold: 1.5\n",
     5, "targets[0].change.threshold", "expected a number from 0 to 1, got 1.5"),
    ("change-bad-ignore-regex", CHANGED + "      ignore: ['price: (']\n",
     5, "targets[0].change.ignore[0]", "invalid regular expression 'price: ('"),
    ("change-one-baseline-fetch", CHANGED + "      baseline_fetches: 1\n",
     5, "targets[0].change.baseline_fetches", "between 2 and 20"),
    ("onion-not-an-onion-url", "targets:\n  - name: shop\n    url: https://shop.example/\n    onion: https://shop.example/\n",
     4, "targets[0].onion", "expected off, auto or an http:// or https:// URL of a v3 onion service"),
    ("onion-bad-checksum", ("targets:\n  - name: shop\n    url: https://shop.example/\n"
                            "    onion: http://ytsjjeqwpgh2k2gtqhnxw7a6wnlwxlqsredtzyym4dhuljduzwtqksaa.onion/\n"),
     4, "targets[0].onion", "URL of a v3 onion service"),
    ("baseline-resolve-not-an-address", TARGET + "baseline:\n  resolve:\n    shop.example: localhost\n",
     5, "baseline.resolve.shop.example", "expected an IP address for 'shop.example'"),
    ("unknown-key", """\
        targets:
          - name: shop
            url: https://shop.example/
            intervall: 5m
        """, 4, "targets[0].intervall", "unknown key 'intervall' (did you mean 'interval'?)"),
    ("unknown-top-level-key", TARGET + "schedul:\n  interval: 5m\n",
     3, "schedul", "did you mean 'schedule'?"),
    ("unknown-key-no-close-match", TARGET + "zzz: 1\n", 3, "zzz", "known: tor, targets"),
    ("wrong-type-list", "targets: shop\n", 1, "targets", "expected a list, got str 'shop'"),
    ("wrong-type-integer", TARGET + "schedule:\n  concurrency: four\n",
     4, "schedule.concurrency", "expected an integer"),
    ("wrong-type-bool", TARGET + "fetchers:\n  chromium:\n    headless: 1\n",
     5, "fetchers.chromium.headless", "expected true or false"),
    ("wrong-type-mapping", TARGET + "tor: launch\n", 3, "tor", "expected a mapping"),
    ("bad-url-scheme", """\
        targets:
          - name: shop
            url: ftp://shop.example/
        """, 3, "targets[0].url", "http:// or https://"),
    ("url-without-host", """\
        targets:
          - name: a
            url: https://a.example/
          - name: b
            url: "https:///path"
        """, 5, "targets[1].url", "with a host"),
    ("url-bad-port", "targets:\n  - name: a\n    url: http://a.example:70000/\n",
     3, "targets[0].url", "Port out of range"),
    ("missing-url", "targets:\n  - name: a\n", 2, "targets[0].url", "required key is missing"),
    ("missing-ca-file", TARGET + "fetchers:\n  http:\n    ca_file: /nonexistent/ca.pem\n",
     5, "fetchers.http.ca_file", "no such file: /nonexistent/ca.pem"),
    ("missing-geoip-db", TARGET + "geoip:\n  country_db: /nonexistent/country.mmdb\n",
     4, "geoip.country_db", "no such file"),
    ("missing-tbb-path", TARGET + "fetchers:\n  tor-browser:\n    tbb_path: /nonexistent/tbb\n",
     5, "fetchers.tor-browser.tbb_path", "no such directory"),
    ("bad-duration", TARGET + "schedule:\n  interval: 5 minutes\n",
     4, "schedule.interval", "invalid duration '5 minutes'"),
    ("negative-duration", TARGET + "tor:\n  circuit_timeout: -3\n",
     4, "tor.circuit_timeout", "must be more than 0 seconds, got -3"),
    ("one-hop", TARGET + "tor:\n  hops: 1\n", 4, "tor.hops", "must be between 2 and 3, got 1"),
    ("deny-url", TARGET + "tor:\n  deny_hosts: [https://ads.example/]\n", 4, "tor.deny_hosts[0]",
     "invalid value 'https://ads.example/': expected a host name or *.suffix"),
    ("bad-size", TARGET + "fetchers:\n  http:\n    max_body_bytes: 5 MeB\n",
     5, "fetchers.http.max_body_bytes", "invalid size '5 MeB'"),
    ("fractional-bytes", TARGET + "evidence:\n  max_bytes: 1.5\n",
     4, "evidence.max_bytes", "not a whole number of bytes"),
    ("duplicate-target-name", """\
        targets:
          - name: shop
            url: https://shop.example/
          - name: news
            url: https://news.example/
          - name: shop
            url: https://shop.example/cart
        """, 6, "targets[2].name", "duplicate target name 'shop' (first used at line 2)"),
    ("duplicate-yaml-key", """\
        targets:
          - name: shop
            url: https://shop.example/
        schedule:
          interval: 5m
          interval: 10m
        """, 6, "schedule.interval", "duplicate key 'interval' (first given at line 5)"),
    ("empty-targets", "targets: []\n", 1, "targets", "needs at least one target"),
    ("missing-targets", "schedule:\n  interval: 5m\n", 1, "targets", "required key is missing"),
    ("bad-target-name", "targets:\n  - name: Shop.Example\n    url: https://shop.example/\n",
     2, "targets[0].name", "lowercase letters"),
    ("concurrency-too-high", TARGET + "schedule:\n  concurrency: 65\n",
     4, "schedule.concurrency", "must be between 1 and 64, got 65"),
    ("top-zero", TARGET + "exits:\n  top: 0\n", 4, "exits.top", "must be at least 1, got 0"),
    ("status-out-of-range", """\
        targets:
          - name: shop
            url: https://shop.example/
            expect:
              status: 99
        """, 5, "targets[0].expect.status", "between 100 and 599"),
    ("bad-host-port", TARGET + "web:\n  listen: 9981\n", 4, "web.listen", "expected host:port"),
    ("bad-port", TARGET + "tor:\n  socks: 127.0.0.1:0\n", 4, "tor.socks", "port must be between 1 and 65535"),
    ("bad-fingerprint", TARGET + "exits:\n  fingerprints:\n    - " + "A" * 40 + "\n    - ABCD\n",
     6, "exits.fingerprints[1]", "expected 40 hex characters"),
    ("bad-country", TARGET + "exits:\n  countries: [de, DEU]\n",
     4, "exits.countries[1]", "ISO 3166 alpha-2"),
    ("unknown-flag", TARGET + "exits:\n  flags: [Fast, Stabel]\n",
     4, "exits.flags[1]", "did you mean 'Stable'?"),
    ("unknown-fetcher", """\
        targets:
          - name: shop
            url: https://shop.example/
            fetchers:
              - http
              - chrome
        """, 6, "targets[0].fetchers[1]", "unknown fetcher 'chrome' (did you mean 'chromium'?)"),
    ("fetcher-twice", "targets:\n  - {name: a, url: 'http://a/', fetchers: [http, http]}\n",
     2, "targets[0].fetchers[1]", "listed twice"),
    ("top-and-sample", TARGET + "exits:\n  top: 5\n  sample: 3\n",
     5, "exits.sample", "top and sample are mutually exclusive"),
    ("interval-and-cron", TARGET + "schedule:\n  interval: 5m\n  cron: '*/5 * * * *'\n",
     5, "schedule.cron", "interval and cron are mutually exclusive"),
    ("bad-cron", TARGET + "schedule:\n  cron: '*/5 * * *'\n",
     4, "schedule.cron", "Wrong number of fields"),
    ("cron-out-of-range", TARGET + "schedule:\n  cron: '0 25 * * *'\n",
     4, "schedule.cron", "higher than the maximum value"),
    ("unknown-mode", TARGET + "tor:\n  mode: lunch\n", 4, "tor.mode", "did you mean 'launch'?"),
    ("report-format", TARGET + "reports:\n  daily: true\n  format: xlsx\n", 5, "reports.format",
     "unknown report format 'xlsx'"),
    ("report-keep-no-days", TARGET + "reports:\n  keep_days: 0\n", 4, "reports.keep_days", "at least 1"),
    ("torrc-in-connect-mode", TARGET + "tor:\n  mode: connect\n  torrc:\n    Log: notice stdout\n",
     5, "tor.torrc", "only used with mode: launch"),
    ("torrc-bad-value", TARGET + "tor:\n  torrc:\n    Log:\n      - {a: b}\n",
     6, "tor.torrc.Log[0]", "expected a string or a list of strings"),
    ("password-and-file", TARGET + "tor:\n  mode: connect\n  password: x\n  password_file:\n    pw.txt\n",
     6, "tor.password_file", "mutually exclusive"),
    ("password-in-launch-mode", TARGET + "tor:\n  cookie_file: null\n  password: x\n",
     5, "tor.password", "only used with mode: connect (tor.mode is launch)"),
    ("browser-only-key", TARGET + "fetchers:\n  chromium:\n    security_level: safest\n",
     5, "fetchers.chromium.security_level", "unknown key"),
    ("bad-security-level", TARGET + "fetchers:\n  tor-browser:\n    security_level: safe\n",
     5, "fetchers.tor-browser.security_level", "unknown security level 'safe'"),
    ("bad-header-name", TARGET + "fetchers:\n  http:\n    headers:\n      'Bad Header': x\n",
     6, "fetchers.http.headers['Bad Header']", "invalid header name"),
    ("application-tag", TARGET + "data_dir: !!python/object/apply:os.getcwd []\n",
     3, "data_dir", "unsupported YAML tag"),
    ("merge-key", "targets:\n  - &shop {name: shop, url: 'https://shop.example/'}\nschedule:\n  <<: *shop\n",
     4, "schedule", "merge keys (<<) are not supported"),
    ("huge-integer", TARGET + "schedule:\n  concurrency: " + "9" * 5000 + "\n",
     4, "schedule.concurrency", "finite number of sensible size, got 999"),
    ("huge-duration", TARGET + "schedule:\n  window: " + "9" * 400 + "h\n",
     4, "schedule.window", "too large"),
    ("infinite-duration", TARGET + "schedule:\n  window: .inf\n", 4, "schedule.window", "finite number"),
    ("null-required", "targets:\n  - name:\n    url: https://a.example/\n",
     2, "targets[0].name", "expected a string, got nothing"),
    ("expect-a-redirect", CHANGED.removesuffix("change:\n") + "expect:\n      status: 301\n",
     5, "targets[0].expect.status", "never has status 301; expect a status from 200-299 or 400-599"),
    ("expect-informational", CHANGED.removesuffix("change:\n") + "expect: {status: 101}\n",
     4, "targets[0].expect.status", "never has status 101"),
    ("expect-nothing", CHANGED.removesuffix("change:\n") + "expect: {}\n",
     4, "targets[0].expect", "needs a status, a title or both"),
    ("direct-not-a-bool", CHANGED.removesuffix("change:\n") + "direct: no-tor\n",
     4, "targets[0].direct", "expected true or false"),
    ("variant-unknown-kind", TARGET + "fetchers:\n  variants:\n    chromium-de: {kind: chrome}\n",
     5, "fetchers.variants.chromium-de.kind", "unknown fetcher kind 'chrome' (did you mean 'chromium'?)"),
    ("variant-without-kind", TARGET + "fetchers:\n  variants:\n    quiet:\n      headless: true\n",
     6, "fetchers.variants.quiet.kind", "required key is missing"),
    ("variant-key-of-another-kind", TARGET + "fetchers:\n  variants:\n    c:\n      kind: chromium\n"
                                             "      security_level: safest\n",
     7, "fetchers.variants.c.security_level", "unknown key 'security_level'"),
    ("variant-named-like-a-label", TARGET + "fetchers:\n  variants:\n    tor-browser-safest: {kind: tor-browser}\n",
     5, "fetchers.variants.tor-browser-safest", "already the label of a fetcher kind"),
    ("variant-bad-name", TARGET + "fetchers:\n  variants:\n    Chromium.DE: {kind: chromium}\n",
     5, "fetchers.variants.Chromium.DE", "invalid variant name"),
    ("variant-bad-pref", TARGET + "fetchers:\n  variants:\n    f:\n      kind: firefox\n"
                                  "      prefs: {a.b: [1]}\n",
     7, "fetchers.variants.f.prefs.a.b", "expected true, false, an integer or a string"),
    ("target-names-no-variant", """\
        targets:
          - name: shop
            url: https://shop.example/
            fetchers: [chromium, chromium-dee]
        fetchers:
          variants:
            chromium-de: {kind: chromium, arguments: [--lang=de-DE]}
        """, 4, "targets[0].fetchers[1]", "unknown fetcher 'chromium-dee' (did you mean 'chromium-de'?)"),
    ("tor-browser-variant-without-bundle", """\
        targets:
          - name: shop
            url: https://shop.example/
            fetchers: [tb-safest]
        fetchers:
          variants:
            tb-safest: {kind: tor-browser, security_level: safest}
        """, 4, "targets[0].fetchers[0]", "needs fetchers.variants.tb-safest.tbb_path"),
    # configs that once passed and could never work (issue #19, item 8)
    ("sexagesimal-interval", TARGET + "schedule:\n  interval: 1:30\n", 4, "schedule.interval",
     "1:30 is a base-60 number in YAML 1.1 (90); for a duration write e.g. 1m30s, for text put it in quotes"),
    ("sexagesimal-integer", TARGET + "exits:\n  top: 1:00\n", 4, "exits.top", "base-60 number in YAML 1.1 (60)"),
    ("duration-beyond-timers", TARGET + "schedule:\n  window: 99999999999999999999d\n", 4, "schedule.window",
     "must be at most 3650d (ten years)"),
    ("header-with-crlf", TARGET + "fetchers:\n  http:\n    headers:\n      X-Id: \"a\\r\\nX-Evil: 1\"\n", 6,
     "fetchers.http.headers.X-Id", "a header value must be one line of text: it holds a carriage return (CR)"),
    ("header-with-lf", TARGET + "fetchers:\n  http:\n    headers:\n      X-Id: |\n        a\n        b\n", 6,
     "fetchers.http.headers.X-Id", "it holds a line feed (LF) at character 2"),
    ("header-with-nul", TARGET + "fetchers:\n  http:\n    headers:\n      X-Id: \"a\\0\"\n", 6,
     "fetchers.http.headers.X-Id", "it holds a NUL at character 2"),
    ("header-with-leading-space", TARGET + "fetchers:\n  http:\n    headers:\n      X-Id: \" a\"\n", 6,
     "fetchers.http.headers.X-Id", "cannot start or end with whitespace"),
    ("header-beyond-latin-1", TARGET + "fetchers:\n  http:\n    headers:\n      X-Price: 5 \u20ac\n", 6,
     "fetchers.http.headers.X-Price", "holds '\u20ac' (U+20AC), which an HTTP header cannot carry (Latin-1 only)"),
    ("variant-header-with-crlf", TARGET + "fetchers:\n  variants:\n    h:\n      kind: http\n      headers:\n"
                                         "        X-Id: \"a\\r\\nX-Evil: 1\"\n", 8, "fetchers.variants.h.headers.X-Id",
     "a header value must be one line of text: it holds a carriage return (CR)"),
    ("browser-argument-with-nul", TARGET + "fetchers:\n  chromium:\n    arguments: [\"--lang=de\\0\"]\n", 5,
     "fetchers.chromium.arguments[0]", "a browser argument must be one line of text: it holds a NUL at character 10"),
    ("user-agent-with-lf", TARGET + "fetchers:\n  http:\n    user_agent: \"Mozilla\\nX-Evil: 1\"\n", 5,
     "fetchers.http.user_agent", "a header value must be one line of text: it holds a line feed (LF)"),
    ("torrc-value-with-newline", TARGET + "tor:\n  torrc:\n    Log: \"notice stdout\\nControlPort 9999\"\n", 5,
     "tor.torrc.Log", "a torrc value must be one line of text: it holds a line feed (LF) at character 14"),
    ("torrc-owned-control-port", TARGET + "tor:\n  torrc:\n    ControlPort: 9999\n", 5, "tor.torrc.ControlPort",
     "ControlPort is set by the exporter itself and cannot be changed here (tor.control gives its host)"),
    ("torrc-owned-any-case", TARGET + "tor:\n  torrc:\n    Log: notice stdout\n    cookieauthentication: 0\n", 6,
     "tor.torrc.cookieauthentication", "CookieAuthentication is set by the exporter itself"),
    ("torrc-owned-data-directory", TARGET + "tor:\n  torrc:\n    DataDirectory: /var/lib/tor\n", 5,
     "tor.torrc.DataDirectory", "cannot be changed here (use tor.data_directory)"),
    ("torrc-owned-hashed-password", TARGET + "tor:\n  torrc:\n    HashedControlPassword: 16:00\n", 5,
     "tor.torrc.HashedControlPassword", "HashedControlPassword is set by the exporter itself"),
    ("torrc-owned-stream-attachment", TARGET + "tor:\n  torrc:\n    __LeaveStreamsUnattached: 0\n", 5,
     "tor.torrc.__LeaveStreamsUnattached", "is set by the exporter itself"),
    ("cron-never-fires", TARGET + "schedule:\n  cron: '0 0 31 2 *'\n", 4, "schedule.cron",
     "the cron expression '0 0 31 2 *' never fires: no date matches it"),
    ("cron-never-fires-in-short-months", TARGET + "schedule:\n  cron: '0 0 31 4,6,9,11 *'\n", 4, "schedule.cron",
     "never fires"),
    ("invalid-idn-host", "targets:\n  - name: a\n    url: https://-b\u00fccher.example/\n", 3, "targets[0].url",
     "invalid host name '-b\u00fccher.example'"),
    ("invalid-idn-resolve", TARGET + "baseline:\n  resolve:\n    -b\u00fccher.example: 127.0.0.1\n", 5,
     "baseline.resolve.-b\u00fccher.example", "invalid host name"),
]


@pytest.mark.parametrize(("text", "line", "path", "message"),
                         [case[1:] for case in BAD_CONFIGS], ids=[case[0] for case in BAD_CONFIGS])
def test_bad_config_names_line_and_key_path(text, line, path, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(text), source="bad.yaml")
    error = str(caught.value)
    assert "\n" not in error
    assert error.startswith(f"bad.yaml:{line}: {path}: "), error
    assert message in error
    assert (caught.value.line, caught.value.path) == (line, path)


def test_cases_are_distinct():
    assert len({case[0] for case in BAD_CONFIGS}) == len(BAD_CONFIGS) >= 20
    assert len({case[1] for case in BAD_CONFIGS}) == len(BAD_CONFIGS)


@pytest.mark.parametrize(("text", "line", "message"), [
    ("targets: [\n  {name: a\n", 3, "invalid YAML at column 1"),
    ("targets: a: b\n", 1, "invalid YAML at column 11: mapping values are not allowed here"),
    ("targets:\n  - name: a\n   url: b\n", 3, "invalid YAML at column 4: expected <block end>"),
    ("targets: 'unterminated\n", 2, "invalid YAML at column 1: found unexpected end of stream"),
    ("a: 1\n---\nb: 2\n", 2, "but found another document"),
    ("- one\n- two\n", 1, "the top level must be a mapping with keys like 'targets', got a list"),
    ("", 1, "the file is empty"),
    ("# only a comment\n", 1, "the file is empty"),
    ("targets: \x07\n", 1, "special characters are not allowed (U+0007)"),
])
def test_document_level_errors_name_the_line(text, line, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="bad.yaml")
    error = str(caught.value)
    assert "\n" not in error
    assert error.startswith(f"bad.yaml:{line}: "), error
    assert message in error


@pytest.mark.parametrize(("key", "path"), [
    ("\\n", "['\\n']"),
    ("x\\ry", "fetchers['x\\ry']"),
    ("Log\\u2028x", "tor.torrc['Log\\u2028x']"),
    ("\\x85", "tor.torrc['\\x85']"),
    ("a b", "fetchers['a b']"),
    ("", "fetchers['']"),
])
def test_an_error_at_any_key_is_one_line_naming_the_key_escaped(key, path):
    """A key holding a line break (YAML reads "\\n", U+2028 and U+0085 as such) still gives one line,
    and the path says which key, escaped as a Python string."""
    parent = "tor:\n  torrc:\n    " if path.startswith("tor.") else "fetchers:\n  " if path.startswith("fetchers") else ""
    text = f'targets: [{{name: a, url: "http://a/"}}]\n{parent}"{key}": x\n'
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="bad.yaml")
    error = str(caught.value)
    assert len(error.splitlines()) == 1 and error.isprintable(), error
    assert caught.value.path == path and f": {path}: " in error, error


def test_deep_nesting_is_an_error_not_a_crash():
    with pytest.raises(ConfigError, match="nested too deeply"):
        parse_config("targets: " + "[" * 5000 + "]" * 5000)


def test_password_never_appears_in_errors():
    with pytest.raises(ConfigError) as caught:
        parse_config(TARGET + "tor:\n  mode: connect\n  password: [hunter2]\n")
    assert "hunter2" not in str(caught.value)
    assert str(caught.value) == "<string>:5: tor.password: expected a string, got a list"


@pytest.mark.parametrize(("content", "message"), [
    (b"\xff\xfe\x00garbage\n", "bad.yaml:1: not UTF-8 text"),
    (b"targets:\n  - name: caf\xe9\n", "bad.yaml:2: not UTF-8 text"),
    (b"\x7fELF\x02\x01\x01\x00\x00", "bad.yaml:1: invalid YAML: special characters are not allowed (U+007F)"),
])
def test_binary_files_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == message.replace("bad.yaml", str(path))


def test_unreadable_paths_are_errors(tmp_path):
    with pytest.raises(ConfigError) as missing:
        load_config(tmp_path / "absent.yaml")
    assert str(missing.value) == f"{tmp_path / 'absent.yaml'}: cannot read: No such file or directory"
    with pytest.raises(ConfigError) as directory:
        load_config(tmp_path)
    assert str(directory.value) == f"{tmp_path}: cannot read: Is a directory"


def fake_signature_checker(monkeypatch, errors):
    """Stand in for exporter.detect.signatures (its own tests cover its rules); returns the raw lists seen."""
    seen = []

    def check_custom(raw):
        seen.append(raw)
        return errors

    monkeypatch.setitem(sys.modules, "exporter.detect.signatures", types.SimpleNamespace(check_custom=check_custom))
    return seen


def test_custom_signatures_are_passed_as_plain_data_and_kept(monkeypatch):
    seen = fake_signature_checker(monkeypatch, [])
    config = parse_config(TARGET + "detect:\n  signatures:\n    - {name: one, status: [403, 429], body: x}\n")
    assert seen == [[{"name": "one", "status": [403, 429], "body": "x"}]]
    assert config.detect_signatures == ({"name": "one", "status": [403, 429], "body": "x"},)


def test_custom_signature_errors_point_into_the_list(monkeypatch):
    fake_signature_checker(monkeypatch, [([1, "markers", 0], "bad regex"), ([0], "second error")])
    text = TARGET + textwrap.dedent("""\
        detect:
          signatures:
            - {name: one, markers: []}
            - name: two
              markers:
                - "(unclosed"
        """)
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert str(caught.value) == "<string>:8: detect.signatures[1].markers[0]: bad regex"


def test_custom_signature_error_below_the_tree_keeps_the_full_path(monkeypatch):
    fake_signature_checker(monkeypatch, [([0, "provider"], "required")])
    with pytest.raises(ConfigError) as caught:
        parse_config(TARGET + "detect:\n  signatures:\n    - name: one\n")
    assert str(caught.value) == "<string>:5: detect.signatures[0].provider: required"


def test_custom_signatures_are_checked_by_the_detector():
    """With the real exporter.detect.signatures: a bad regex is reported at its own line."""
    text = TARGET + textwrap.dedent("""\
        detect:
          signatures:
            - name: acme
              kind: block
              all:
                - status: 403
                - title: "(unclosed"
        """)
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert str(caught.value).startswith("<string>:9: detect.signatures[0].all[1].title: ")
