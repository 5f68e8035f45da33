"""No secret of the config shows on any surface: /config, the landing page, /probe/<id>, the SQLite
store, a log line, the evidence, a reload's answer.

Every surface test runs twice: with redaction, the secrets are gone; with ``exporter.redact``
switched off, the same test finds every one of them, so it does look where they would leak.
"""

from __future__ import annotations

import html
import io
import logging
import socket
import textwrap
import time

import pytest
import requests
import yaml
from support.spine_values import fetched, relay

from exporter import app, debug, redact
from exporter.config import ConfigError, config_yaml, load_config, parse_config
from exporter.logs import JsonFormatter, LogfmtFormatter, redact_with
from exporter.probe import ProbeResult, log_probe
from exporter.values import Response, Verdict

# every secret a config may hold, each distinct so a leak names its source
SECRETS = {
    "url user": "alice-in-url",
    "url password": "hunter2-in-url",
    "token query value": "tok-0123456789",
    "api_key query value": "ak-9876543210",
    "custom query word": "opaque-42-value",
    "Authorization header": "Bearer eyJhbGciOi.payload.sig",
    "Cookie header value": "c00kie-session-value",
    "X-Api-Key header": "xak-5555-4444",
    "Socks5ProxyPassword": "socks-pass-777",
    "HTTPSProxyAuthenticator": "proxyuser:proxypass-888",
    "tor.password": "tor-ctl-pw-999",
}
URL = ("https://alice-in-url:hunter2-in-url@shop.example/account?token=tok-0123456789&page=2"
       "&api_key=ak-9876543210&ticket=opaque-42-value")
SAFE = ("page=2", "Accept-Language", "en-GB", "Log", "notice stdout", "shop.example/account")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def secret_config(directory, mode: str = "launch") -> str:
    tor = ("tor:\n  torrc:\n    Socks5ProxyPassword: socks-pass-777\n"
           "    HTTPSProxyAuthenticator: proxyuser:proxypass-888\n    Log: notice stdout\n") if mode == "launch" else \
        f"tor:\n  mode: connect\n  control: 127.0.0.1:{free_port()}\n  password: tor-ctl-pw-999\n"
    return tor + textwrap.dedent(f"""\
        targets:
          - name: shop
            url: "{URL}"
        fetchers:
          http:
            headers:
              Authorization: Bearer eyJhbGciOi.payload.sig
              Cookie: "sid=c00kie-session-value; theme=dark"
              X-Api-Key: xak-5555-4444
              Accept-Language: en-GB
        redact:
          query_params: [token, key, ticket]
        web:
          listen: 127.0.0.1:{free_port()}
        data_dir: {directory / "data"}
        """)


@pytest.fixture(params=["redacted", "not redacted"])
def redaction(request, monkeypatch):
    """Whether exporter.redact works ("redacted") or is switched off (every function lets all through)."""
    if request.param == "not redacted":
        monkeypatch.setattr(redact.Redactor, "text", lambda self, text: text)
        monkeypatch.setattr(redact.Redactor, "page", lambda self, text: text)
        monkeypatch.setattr(redact.Redactor, "field", lambda self, name, value: value)
        monkeypatch.setattr(redact, "SAFE_HEADERS", type("Everything", (), {"__contains__": lambda s, x: True})())
        monkeypatch.setattr(redact, "SECRET_TORRC", frozenset())
    return request.param == "redacted"


def assert_redacted(text: str, redacted: bool, secrets=SECRETS) -> None:
    shown = {source for source, secret in secrets.items() if secret in text}
    if redacted:
        assert not shown, f"secrets shown: {sorted(shown)}"
        assert redact.MARK in text or html.escape(redact.MARK) in text
    else:  # the surface does show them when nothing redacts
        assert shown == set(secrets), f"not on this surface: {sorted(set(secrets) - shown)}"


def without(*sources: str) -> dict[str, str]:
    return {source: secret for source, secret in SECRETS.items() if source not in sources}


LAUNCH_SECRETS = without("tor.password")  # a launched tor takes no password; connect mode is tested alone


# -- /config -----------------------------------------------------------------------------------


def test_config_page(tmp_path, redaction):
    text = config_yaml(parse_config(secret_config(tmp_path), base_dir=tmp_path))
    assert_redacted(text, redaction, LAUNCH_SECRETS)
    assert all(safe in text for safe in SAFE)


def test_config_page_in_connect_mode(tmp_path, redaction):
    """tor.password was already redacted before this module existed; it still is."""
    text = config_yaml(parse_config(secret_config(tmp_path, "connect"), base_dir=tmp_path))
    assert "tor-ctl-pw-999" not in text


def test_a_redacted_config_loads_back_with_secret_marks_in_place(tmp_path):
    config = parse_config(secret_config(tmp_path), base_dir=tmp_path)
    again = parse_config(config_yaml(config), base_dir=tmp_path)
    assert again.targets[0].url == ("https://<secret>@shop.example/account?token=<secret>&page=2"
                                    "&api_key=<secret>&ticket=<secret>")
    assert again.fetchers.http.headers == {"Authorization": "<secret>", "Cookie": "<secret>",
                                           "X-Api-Key": "<secret>", "Accept-Language": "en-GB"}
    assert again.tor.torrc == {"Socks5ProxyPassword": ("<secret>",), "HTTPSProxyAuthenticator": ("<secret>",),
                               "Log": ("notice stdout",)}
    assert config_yaml(again) == config_yaml(config)


# -- the running exporter: pages, store, evidence, reload ----------------------------------------


def probes(config) -> tuple[ProbeResult, ProbeResult]:
    """A probe that met a challenge after a redirect that kept the query, and one that failed with
    the error text requests gives (the URL, then the path with its query); both recent, as
    history.retention keeps only those."""
    url, now = config.targets[0].url, time.time()
    first = Response(url, 302, (("Location", "/welcome?" + url.split("?", 1)[1]),
                                ("Set-Cookie", "sid=c00kie-session-value; Path=/")), "")
    final = Response("https://shop.example/welcome?" + url.split("?", 1)[1], 403, (),
                     "<title>Checking</title><a href='?token=tok-0123456789'>retry</a> Bearer eyJhbGciOi.payload.sig")
    answered = ProbeResult("20261204T120000Z-a1b2c3", "shop", "http", relay(1), now - 60, 1.0,
                           verdict=Verdict("challenge", "cloudflare", ("status:403",)),
                           fetch=fetched(first, final, redirects=(final.url,)))
    failed = ProbeResult("20261204T120100Z-d4e5f6", "shop", "http", relay(2), now, 1.0,
                         error_reason="connection",
                         error_message=f"connection to {url} failed: HTTPSConnectionPool(host='shop.example', "
                                       f"port=443): Max retries exceeded with url: /account?{url.split('?', 1)[1]}")
    return answered, failed


@pytest.fixture
def exporter(tmp_path, redaction):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(secret_config(tmp_path))
    running = app.Exporter(load_config(config_file))
    running.web.start()
    answered, failed = probes(running.config)
    running.record(failed)
    running.record(ProbeResult(**{**answered.__dict__, "evidence": running.keep_evidence(answered, None)}))
    running.store.flush()
    yield running
    running.stop()
    redact_with(redact.BY_SHAPE)


def get(exporter, path: str) -> str:
    host, port = exporter.web.address
    response = requests.get(f"http://{host}:{port}{path}", timeout=10)
    assert response.status_code == 200
    return response.text


def test_landing_page(exporter, redaction):
    assert_redacted(get(exporter, "/"), redaction, LAUNCH_SECRETS)


def test_config_endpoint(exporter, redaction):
    assert_redacted(get(exporter, "/config"), redaction, LAUNCH_SECRETS)


def test_probe_pages(exporter, redaction):
    """The answered probe shows its URLs, the failed one its error: between them, the URL's secrets."""
    text = get(exporter, "/probe/20261204T120000Z-a1b2c3") + get(exporter, "/probe/20261204T120100Z-d4e5f6")
    assert_redacted(text, redaction, without("Authorization header", "Cookie header value", "X-Api-Key header",
                                             "Socks5ProxyPassword", "HTTPSProxyAuthenticator", "tor.password"))


def test_probes_api(exporter, redaction):
    assert_redacted(get(exporter, "/api/v1/probes"), redaction,
                    without("Authorization header", "Cookie header value", "X-Api-Key header",
                            "Socks5ProxyPassword", "HTTPSProxyAuthenticator", "tor.password"))


def test_sqlite_store(exporter, redaction):
    data = b"".join(path.read_bytes() for path in (exporter.config.data_dir).glob("state.db*"))
    assert_redacted(data.decode(errors="replace"), redaction,
                    without("Authorization header", "Cookie header value", "X-Api-Key header",
                            "Socks5ProxyPassword", "HTTPSProxyAuthenticator", "tor.password"))


def test_evidence(exporter, redaction):
    """The HAR (URLs, Location, Set-Cookie) and the page, which echoed a token and a header."""
    directory = exporter.config.data_dir / "evidence" / "20261204T120000Z-a1b2c3"
    text = "".join(path.read_text() for path in directory.iterdir())
    assert_redacted(text, redaction, without("X-Api-Key header", "Socks5ProxyPassword", "HTTPSProxyAuthenticator",
                                             "tor.password"))


def test_reload_answer(exporter, redaction):
    """A rejected reload quotes the bad value: a URL with credentials, here with a bad port."""
    exporter.config.source.write_text(secret_config(exporter.config.source.parent).replace(
        "shop.example/account", "shop.example:99999/account"))
    host, port = exporter.web.address
    answer = requests.post(f"http://{host}:{port}/-/reload", headers={"X-Requested-By": "test"}, timeout=10)
    assert answer.status_code == 500 and "targets[0].url" in answer.text
    assert_redacted(answer.text, redaction, {"url user": "alice-in-url", "url password": "hunter2-in-url",
                                             "token query value": "tok-0123456789"})


def test_metrics_page(exporter, redaction):
    """No label or exemplar carries a URL, a header or a torrc value, redacted or not."""
    host, port = exporter.web.address
    text = requests.get(f"http://{host}:{port}/metrics", headers={"Accept": "application/openmetrics-text"},
                        timeout=10).text
    assert "20261204T120000Z-a1b2c3" in text  # the answered probe's exemplar
    assert not [source for source, secret in SECRETS.items() if secret in text]


def test_probe_command_report(tmp_path, redaction):
    """``exporter probe`` prints the probe's URLs, its error and its target's and fetcher's config."""
    config = parse_config(secret_config(tmp_path), base_dir=tmp_path)
    text = "".join(debug.report(probe, [], config, config.targets[0], "http") for probe in probes(config))
    assert_redacted(text, redaction, without("Socks5ProxyPassword", "HTTPSProxyAuthenticator", "tor.password"))


# -- log lines ---------------------------------------------------------------------------------


@pytest.mark.parametrize("formatter", [LogfmtFormatter(), JsonFormatter()], ids=["logfmt", "json"])
def test_log_line_of_a_failed_probe(tmp_path, redaction, formatter):
    config = parse_config(secret_config(tmp_path), base_dir=tmp_path)
    _, failed = probes(config)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("exporter.probe")
    logger.addHandler(handler)
    redact_with(redact.Redactor.of(config))
    try:
        log_probe(failed)
        try:
            raise ConnectionError(f"while fetching {config.targets[0].url}")
        except ConnectionError:
            logger.exception("probe failed unexpectedly", extra={"url": config.targets[0].url,
                                                                 "auth_token": "Bearer eyJhbGciOi.payload.sig"})
    finally:
        logger.removeHandler(handler)
        redact_with(redact.BY_SHAPE)
    text = stream.getvalue()
    assert text.count("\n") == 2
    assert_redacted(text, redaction, without("Cookie header value", "X-Api-Key header", "Socks5ProxyPassword",
                                             "HTTPSProxyAuthenticator", "tor.password"))


ONION = "ytsjjeqwpgh2k2gtqhnxw7a6wnlwxlqsredtzyym4dhuljduzwtqksad.onion"
ROUTE_SECRETS = {"onion user": "bob-in-onion", "onion sig": "sig-1357913579", "onionoo key": "oo-2468024680",
                 "variant header": "variant-token-77"}


def test_the_onion_route_onionoo_and_fetcher_variants_hold_secrets_too(tmp_path, redaction):
    """Keys the other halves of the config brought: a target's onion URL, onionoo.url, an http variant's
    headers; on /config and wherever the exporter writes text (a failed fetch quotes its URL)."""
    config = parse_config(textwrap.dedent(f"""\
        targets:
          - {{name: shop, url: "https://shop.example/", fetchers: [http, http-auth],
             onion: "http://bob-in-onion:pw@{ONION}/?sig=sig-1357913579"}}
        onionoo: {{url: "https://onionoo.example/details?key=oo-2468024680"}}
        fetchers:
          variants:
            http-auth: {{kind: http, headers: {{Authorization: Bearer variant-token-77}}}}
        """), base_dir=tmp_path)
    shown = config_yaml(config)
    assert_redacted(shown, redaction, ROUTE_SECRETS)
    assert f"{ONION}/?sig=" in shown and "direct: true" in shown and "onionoo.example/details" in shown
    errors = " ".join(f"connection to {url} failed" for url in (config.targets[0].onion, config.onionoo.url))
    assert_redacted(redact.Redactor.of(config).text(errors + "; the page echoed variant-token-77"), redaction,
                    ROUTE_SECRETS)


def test_a_config_error_about_a_url_does_not_quote_its_credentials():
    with pytest.raises(ConfigError) as caught:
        parse_config(f"targets: [{{name: a, url: '{URL.replace('shop.example', 'shop.example:0x')}'}}]\n")
    assert "hunter2-in-url" not in str(caught.value) and "tok-0123456789" not in str(caught.value)
    assert "targets[0].url: invalid URL 'https://<secret>@shop.example:0x/account?token=<secret>" in str(caught.value)


def test_rendered_yaml_is_what_the_loader_reads():
    assert yaml.safe_load("url: https://<secret>@a/?token=<secret>")["url"] == "https://<secret>@a/?token=<secret>"
