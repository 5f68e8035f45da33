"""Firefox options and prefs: everything through the lane's SocksPort, BiDi on, no phoning home."""

import pytest

from exporter.fetch.firefox import firefox_options
from exporter.fetch.gecko import (
    browser_prefs,
    driver_service,
    net_error_reason,
    proxy_prefs,
)
from exporter.values import FetchError, Lane

LANE = Lane(2, "127.0.0.1", 19052, 3)


def test_proxy_prefs_send_everything_to_the_lane_with_remote_dns_and_loopback_included():
    prefs = proxy_prefs(LANE)
    assert prefs["network.proxy.type"] == 1
    assert (prefs["network.proxy.socks"], prefs["network.proxy.socks_port"]) == ("127.0.0.1", 19052)
    assert prefs["network.proxy.socks_version"] == 5
    assert prefs["network.proxy.socks_remote_dns"] is True
    assert prefs["network.dns.disabled"] is True
    assert prefs["network.proxy.no_proxies_on"] == ""
    assert prefs["network.proxy.allow_hijacking_localhost"] is True
    assert prefs["network.http.http3.enable"] is False


def test_browser_prefs_turn_off_updates_and_https_only_and_keep_the_proxy():
    prefs = browser_prefs(LANE)
    assert prefs["app.update.auto"] is False and prefs["app.update.enabled"] is False
    assert prefs["app.update.disabledForTesting"] is True and prefs["media.gmp-manager.updateEnabled"] is False
    assert prefs["dom.security.https_only_mode"] is False and prefs["dom.security.https_only_mode_pbm"] is False
    assert prefs["network.proxy.socks_port"] == 19052


def test_firefox_options_carry_prefs_bidi_headless_and_binary():
    options = firefox_options("/opt/firefox/firefox", True, LANE, None)
    caps = options.to_capabilities()
    moz = caps["moz:firefoxOptions"]
    assert caps["webSocketUrl"] is True
    assert moz["binary"] == "/opt/firefox/firefox"
    assert "-headless" in moz["args"] and "-remote-allow-system-access" in moz["args"]
    assert moz["prefs"]["network.proxy.socks_port"] == 19052
    assert moz["prefs"]["network.proxy.allow_hijacking_localhost"] is True
    assert "profile" not in moz


def test_firefox_options_without_headless_have_no_headless_flag():
    moz = firefox_options("/opt/firefox/firefox", False, LANE, None).to_capabilities()["moz:firefoxOptions"]
    assert "-headless" not in moz.get("args", [])


@pytest.mark.parametrize("text, reason", [
    ("NS_ERROR_NET_TIMEOUT", "timeout"),
    ("Reached error page: about:neterror?e=netTimeout&u=http%3A//news.test/", "timeout"),
    ("NS_ERROR_CONNECTION_REFUSED", "circuit"),  # tor's SOCKS5 replies 1, 2, 3, 5, 7
    ("NS_ERROR_UNKNOWN_HOST", "circuit"),  # replies 4, 8
    ("Reached error page: about:neterror?e=connectionFailure&u=x", "circuit"),
    ("Reached error page: about:neterror?e=dnsNotFound&u=x", "circuit"),
    ("NS_ERROR_PROXY_CONNECTION_REFUSED", "connection"),  # our tor's SocksPort is not there
    ("NS_ERROR_NET_RESET", "connection"),
    ("SEC_ERROR_UNKNOWN_ISSUER", "tls"),
    ("SSL_ERROR_NO_CYPHER_OVERLAP", "tls"),
    ("MOZILLA_PKIX_ERROR_SELF_SIGNED_CERT", "tls"),
    ("Reached error page: about:certerror?e=nssBadCert&u=x", "tls"),
    ("Reached error page: about:neterror?e=nssFailure2&u=x", "tls"),
])
def test_firefox_error_texts_map_to_fetch_error_reasons(text, reason):
    assert net_error_reason(text) == reason


def test_driver_service_without_geckodriver_is_a_browser_error(monkeypatch):
    monkeypatch.setattr("exporter.fetch.gecko.shutil.which", lambda name: None)
    with pytest.raises(FetchError) as error:
        driver_service(None, {})
    assert error.value.reason == "browser" and "geckodriver" in str(error.value)


def test_driver_service_leads_a_session_of_its_own(tmp_path):
    service = driver_service("/usr/local/bin/geckodriver", {"TMPDIR": str(tmp_path)}, cwd=tmp_path)
    assert service.popen_kw == {"start_new_session": True, "cwd": str(tmp_path)}
    assert service.env == {"TMPDIR": str(tmp_path)}
