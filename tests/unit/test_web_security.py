"""The web endpoint behind a web-config file: basic auth on every route, TLS, headers."""

import socket
import ssl
import time

import pytest
import requests
from test_web import PROBE, FakeView, evidence  # noqa: F401 (evidence is a fixture)
from test_web_config import hashed, self_signed

from exporter.config import ConfigError
from exporter.evidence import HTML_FILE
from exporter.web import WebServer

ROUTES = [("GET", "/"), ("GET", "/metrics"), ("GET", "/config"), ("GET", "/-/healthy"), ("GET", "/-/ready"),
          ("GET", f"/probe/{PROBE}"), ("GET", f"/evidence/{PROBE}/{HTML_FILE}"), ("POST", "/-/reload"),
          ("GET", "/api/v1/probes?target=news&since=1h"), ("GET", "/nope")]


@pytest.fixture
def start(evidence):  # noqa: F811
    servers = []

    def start(web_config):
        server = WebServer(FakeView(evidence), "127.0.0.1", 0, web_config=web_config)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def rewrite(path, text):
    """Replace the file's content so its size or mtime (nanoseconds) visibly changes."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    while path.stat().st_mtime_ns == before:
        time.sleep(0.01)
        path.write_text(text)


def http(server, path=""):
    return "http://{}:{}".format(*server.address) + path


def test_basic_auth_guards_every_route(tmp_path, start):
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  alice: {hashed('right')}\n")
    server = start(config)
    for method, path in ROUTES:
        anonymous = requests.request(method, http(server, path), timeout=10)
        assert anonymous.status_code == 401, path
        assert anonymous.headers["WWW-Authenticate"].startswith("Basic realm=")
        wrong = requests.request(method, http(server, path), auth=("alice", "wrong"), timeout=10)
        assert wrong.status_code == 401, path
        assert requests.request(method, http(server, path), auth=("bob", "right"), timeout=10).status_code == 401
        right = requests.request(method, http(server, path), auth=("alice", "right"), timeout=10)
        assert right.status_code == (404 if path == "/nope" else 200), path


def test_rotated_credentials_apply_without_a_restart(tmp_path, start):
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  alice: {hashed('old')}\n")
    server = start(config)
    assert requests.get(http(server, "/"), auth=("alice", "old"), timeout=10).status_code == 200
    rewrite(config, f"basic_auth_users:\n  alice: {hashed('new-password')}\n")
    assert requests.get(http(server, "/"), auth=("alice", "old"), timeout=10).status_code == 401
    assert requests.get(http(server, "/"), auth=("alice", "new-password"), timeout=10).status_code == 200


def test_a_web_config_broken_while_running_fails_closed(tmp_path, start):
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  alice: {hashed('pw')}\n")
    server = start(config)
    rewrite(config, "basic_auth_users: [\n")
    broken = requests.get(http(server, "/metrics"), auth=("alice", "pw"), timeout=10)
    assert broken.status_code == 500 and "web config is invalid" in broken.text
    rewrite(config, f"basic_auth_users:\n  alice: {hashed('pw')}\n")
    assert requests.get(http(server, "/metrics"), auth=("alice", "pw"), timeout=10).status_code == 200


def test_an_invalid_web_config_at_start_is_refused(tmp_path):
    config = tmp_path / "web.yml"
    config.write_text("basic_auth_users:\n  alice: not-a-hash\n")
    with pytest.raises(ConfigError, match=r"web\.yml:2: basic_auth_users\.alice"):
        WebServer(FakeView(None), "127.0.0.1", 0, web_config=config)


def test_configured_headers_are_added_but_never_weaken_ours(tmp_path, start):
    config = tmp_path / "web.yml"
    config.write_text("http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=60\n"
                      "    Content-Security-Policy: default-src *\n")
    server = start(config)
    metrics = requests.get(http(server, "/metrics"), timeout=10).headers
    assert metrics["Strict-Transport-Security"] == "max-age=60"
    assert metrics["Content-Security-Policy"] == "default-src *"
    page = requests.get(http(server, "/"), timeout=10).headers
    assert page["Content-Security-Policy"].startswith("default-src 'none'")
    assert page["Strict-Transport-Security"] == "max-age=60"
    evidence_headers = requests.get(http(server, f"/evidence/{PROBE}/{HTML_FILE}"), timeout=10).headers
    assert evidence_headers["Content-Security-Policy"] == "sandbox; default-src 'none'"


def test_tls_with_a_self_signed_certificate(tmp_path, start):
    cert, _ = self_signed(tmp_path)
    config = tmp_path / "web.yml"
    config.write_text(f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                      f"basic_auth_users:\n  alice: {hashed('pw')}\n")
    server = start(config)
    assert server.tls
    base = "https://{}:{}".format(*server.address)
    response = requests.get(base + "/-/healthy", verify=str(cert), auth=("alice", "pw"), timeout=10)
    assert (response.status_code, response.text) == (200, "Healthy.\n")
    assert requests.get(base + "/-/healthy", verify=str(cert), timeout=10).status_code == 401
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(base + "/-/healthy", timeout=10)  # the system CAs do not know our certificate
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(http(server, "/-/healthy"), timeout=10)  # plain HTTP on the TLS port


def test_tls_minimum_version_is_enforced(tmp_path, start):
    cert, _ = self_signed(tmp_path)
    config = tmp_path / "web.yml"
    config.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n")
    server = start(config)
    old_client = ssl.create_default_context(cafile=str(cert))
    old_client.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError), old_client.wrap_socket(
            socket.create_connection(server.address, timeout=10), server_hostname="127.0.0.1"):
        pass
    new_client = ssl.create_default_context(cafile=str(cert))
    with new_client.wrap_socket(socket.create_connection(server.address, timeout=10),
                                server_hostname="127.0.0.1") as tls:
        assert tls.version() == "TLSv1.3"


def test_client_certificates_when_required(tmp_path, start):
    cert, _ = self_signed(tmp_path)
    client_cert, client_key = self_signed(tmp_path, "client")
    config = tmp_path / "web.yml"
    config.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                      "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client.crt\n")
    server = start(config)
    base = "https://{}:{}".format(*server.address)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(base + "/-/healthy", verify=str(cert), timeout=10)
    response = requests.get(base + "/-/healthy", verify=str(cert), cert=(str(client_cert), str(client_key)),
                            timeout=10)
    assert response.status_code == 200


def test_a_stalled_tls_handshake_does_not_block_other_clients(tmp_path, start):
    cert, _ = self_signed(tmp_path)
    config = tmp_path / "web.yml"
    config.write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    server = start(config)
    silent = socket.create_connection(server.address, timeout=10)  # connects, never says hello
    try:
        response = requests.get("https://{}:{}/-/healthy".format(*server.address), verify=str(cert), timeout=5)
        assert response.status_code == 200
    finally:
        silent.close()


def test_rate_limit_answers_429_beyond_the_burst(tmp_path, start):
    config = tmp_path / "web.yml"
    config.write_text("rate_limit:\n  interval: 1h\n  burst: 2\n")
    server = start(config)
    codes = [requests.get(http(server, "/-/healthy"), timeout=10).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
