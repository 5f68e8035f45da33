"""The web endpoint behind a web-config file: basic auth on every route, TLS, headers."""

import base64
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter

import bcrypt
import pytest
import requests
from test_web import PROBE, FakeView, evidence  # noqa: F401 (evidence is a fixture)
from test_web_config import hashed, self_signed

from exporter.config import ConfigError
from exporter.evidence import HTML_FILE
from exporter.web import WebServer
from exporter.webconfig import SETTLE_SECONDS

ROUTES = [("GET", "/"), ("GET", "/metrics"), ("GET", "/config"), ("GET", "/-/healthy"), ("GET", "/-/ready"),
          ("GET", f"/probe/{PROBE}"), ("GET", f"/evidence/{PROBE}/{HTML_FILE}"), ("POST", "/-/reload"),
          ("GET", "/api/v1/probes?target=news&since=1h"), ("GET", "/nope")]
ACTION = {"X-Requested-By": "test"}  # what an action (POST) needs besides credentials


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


def eventually(check, seconds=SETTLE_SECONDS + 5):
    """Poll ``check`` until it is true (a changed web config takes effect once it has settled)."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the change never took effect"
        time.sleep(0.1)


def test_basic_auth_guards_every_route(tmp_path, start):
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  alice: {hashed('right')}\n")
    server = start(config)
    for method, path in ROUTES:
        anonymous = requests.request(method, http(server, path), headers=ACTION, timeout=10)
        assert anonymous.status_code == 401, path
        assert anonymous.headers["WWW-Authenticate"].startswith("Basic realm=")
        wrong = requests.request(method, http(server, path), auth=("alice", "wrong"), headers=ACTION, timeout=10)
        assert wrong.status_code == 401, path
        assert requests.request(method, http(server, path), auth=("bob", "right"), headers=ACTION,
                                timeout=10).status_code == 401
        right = requests.request(method, http(server, path), auth=("alice", "right"), headers=ACTION, timeout=10)
        assert right.status_code == (404 if path == "/nope" else 200), path


def test_rotated_credentials_apply_without_a_restart(tmp_path, start):
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  alice: {hashed('old')}\n")
    server = start(config)
    assert requests.get(http(server, "/"), auth=("alice", "old"), timeout=10).status_code == 200
    rewrite(config, f"basic_auth_users:\n  alice: {hashed('new-password')}\n")
    eventually(lambda: requests.get(http(server, "/"), auth=("alice", "old"), timeout=10).status_code == 401)
    assert requests.get(http(server, "/"), auth=("alice", "new-password"), timeout=10).status_code == 200


@pytest.mark.parametrize("broken", ["basic_auth_users: [\n", "", "# basic_auth_users: {}\n", "basic_auth_users: {}\n",
                                    "{}\n"])
def test_a_web_config_broken_while_running_keeps_the_last_good_one(tmp_path, start, broken):
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  alice: {hashed('pw')}\n")
    server = start(config)
    rewrite(config, broken)
    time.sleep(SETTLE_SECONDS + 0.2)
    for _ in range(2):  # seen, then settled
        assert requests.get(http(server, "/metrics"), timeout=10).status_code == 401
        assert requests.get(http(server, "/metrics"), auth=("alice", "pw"), timeout=10).status_code == 200
    rewrite(config, f"basic_auth_users:\n  bob: {hashed('pw2')}\n")
    eventually(lambda: requests.get(http(server, "/metrics"), auth=("bob", "pw2"), timeout=10).status_code == 200)


def test_rewriting_the_file_in_place_never_opens_a_window(tmp_path, start):
    """An editor truncates, then writes: 10 s of that must never let a request through without the password,
    nor put a half-written file (one user of two) in force."""
    config = tmp_path / "web.yml"
    text = f"basic_auth_users:\n  alice: {hashed('pw')}\n  bob: {hashed('pw')}\n"
    config.write_text(text)
    server = start(config)
    stop = threading.Event()
    anonymous, bob = Counter(), Counter()

    def rewrite_in_place():
        while not stop.is_set():
            with config.open("w") as file:  # truncates
                file.write(text[:len(text) * 2 // 3])  # cut inside bob's line: alice alone is valid YAML
                file.flush()
                time.sleep(0.001)
                file.write(text[len(text) * 2 // 3:])

    def ask(counter, auth):
        with requests.Session() as session:
            while not stop.is_set():
                counter[session.get(http(server, "/config"), auth=auth, timeout=10).status_code] += 1

    threads = [threading.Thread(target=rewrite_in_place)] + [
        threading.Thread(target=ask, args=(anonymous, None)) for _ in range(3)] + [
        threading.Thread(target=ask, args=(bob, ("bob", "pw")))]
    for thread in threads:
        thread.start()
    time.sleep(10)
    stop.set()
    for thread in threads:
        thread.join()
    print(f"\n10 s of in-place rewrites: anonymous answers {dict(anonymous)}, bob's {dict(bob)}")
    assert sum(anonymous.values()) > 1000 and set(anonymous) == {401}, anonymous
    assert set(bob) == {200}, bob


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


def raw_request(server, request: bytes) -> bytes:
    """Send ``request`` as written and return everything the server answers."""
    with socket.create_connection(server.address, timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def test_an_authorization_header_with_non_ascii_bytes_is_a_401(tmp_path, start):
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  alice: {hashed('pw')}\n")
    server = start(config)
    for token in (b"Basic \xff\xfe\xfd", b"Basic " + base64.b64encode("alice:pw\u00e9".encode("latin-1")),
                  b"Basic \xc3\xa9" + base64.b64encode(b"alice:pw")):
        answer = raw_request(server, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + token
                             + b"\r\nConnection: close\r\n\r\n")
        assert answer.startswith((b"HTTP/1.0 401 ", b"HTTP/1.1 401 ")), answer[:200]


GUESSERS = """
import base64, http.client, sys, threading
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
wrong = "Basic " + base64.b64encode(b"alice:wrong").decode()
def guess():
    connection = http.client.HTTPConnection(host, port, timeout=30)
    while True:
        connection.request("GET", "/metrics", headers={"Authorization": wrong})
        connection.getresponse().read()
for _ in range(count):
    threading.Thread(target=guess).start()
"""


def test_thirty_clients_with_a_wrong_password_do_not_delay_a_correct_login(tmp_path, start):
    config = tmp_path / "web.yml"
    cost_12 = bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=12)).decode()  # a quarter second per check
    config.write_text(f"basic_auth_users:\n  alice: {cost_12}\n")
    server = start(config)
    guessers = subprocess.Popen([sys.executable, "-c", GUESSERS, *map(str, server.address), "30"])
    try:
        time.sleep(1.5)
        started = time.monotonic()
        login = requests.get(http(server, "/metrics"), auth=("alice", "right"), timeout=30)
        first = time.monotonic() - started
        started = time.monotonic()
        again = requests.get(http(server, "/metrics"), auth=("alice", "right"), timeout=30)
        second = time.monotonic() - started
    finally:
        guessers.kill()
        guessers.wait()
    print(f"\n30 clients with a wrong password: a correct login took {first:.2f} s, the next {second:.3f} s")
    assert (login.status_code, again.status_code) == (200, 200)
    assert first < 2.0 and second < 0.5, (first, second)  # alone: 0.3 s and 0.01 s; the lock made it 7 s


def test_an_unknown_user_costs_a_check_at_the_highest_configured_cost(tmp_path, monkeypatch):
    from exporter.basic_auth import BasicAuth

    users = {"cheap": bcrypt.hashpw(b"a", bcrypt.gensalt(rounds=4)),
             "dear": bcrypt.hashpw(b"b", bcrypt.gensalt(rounds=6))}
    checked = []
    real = bcrypt.checkpw
    monkeypatch.setattr("exporter.basic_auth.bcrypt.checkpw",
                        lambda password, hashed: checked.append(hashed[:7]) or real(password, hashed))
    auth = BasicAuth()
    header = "Basic " + base64.b64encode(b"mallory:guess").decode()
    assert not auth.authorized(users, header)
    assert checked == [b"$2b$06$"]
    assert not auth.authorized(users, header)  # the same wrong answer again: remembered, no second check
    assert checked == [b"$2b$06$"]


def test_many_distinct_guesses_are_shed_rather_than_queued(tmp_path, start):
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  alice: {bcrypt.hashpw(b'pw', bcrypt.gensalt(rounds=11)).decode()}\n")
    server = start(config)
    answers, slowest = Counter(), []

    def guess(index):
        started = time.monotonic()
        answer = requests.get(http(server, "/metrics"), auth=("alice", f"guess-{index}"), timeout=30)
        answers[answer.status_code] += 1
        slowest.append(time.monotonic() - started)

    threads = [threading.Thread(target=guess, args=(index,)) for index in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(answers) == {401, 429} and answers[429] > 0, answers
    assert max(slowest) < 3.0, max(slowest)


def test_health_checks_skip_basic_auth_only_when_the_web_config_says_so(tmp_path, start):
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  alice: {hashed('pw')}\nbasic_auth_excluded_paths: [/-/healthy, /-/ready]\n")
    server = start(config)
    assert requests.get(http(server, "/-/healthy"), timeout=10).status_code == 200
    assert requests.get(http(server, "/-/ready"), timeout=10).status_code == 200
    for path in ("/metrics", "/config", "/", "/-/healthy/", "/-/ready/x"):
        assert requests.get(http(server, path), timeout=10).status_code == 401, path


@pytest.fixture
def plain(evidence):  # noqa: F811
    """A server without a web config, answering to the default names and ``exporter.example``."""
    view = FakeView(evidence)
    server = WebServer(view, "127.0.0.1", 0, allowed_hosts=("exporter.example", "localhost"))
    server.start()
    yield server, view
    server.stop()


def get_with_host(server, host: str, path: str = "/config") -> bytes:
    return raw_request(server, f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())


@pytest.mark.parametrize("host", ["evil.example", "evil.example:9981", "127.0.0.1.nip.io", "localhost.evil.example",
                                  "exporter.example.evil"])
def test_a_foreign_host_is_refused(plain, host):
    server, _ = plain
    for path in ("/config", "/", "/metrics", "/-/healthy"):
        answer = get_with_host(server, host, path)
        assert answer.startswith(b"HTTP/1.0 421 "), answer[:100]
        assert b"web.allowed_hosts" in answer and b"targets" not in answer


@pytest.mark.parametrize("host", ["exporter.example", "Exporter.Example.:9981", "localhost:9981", "127.0.0.1:9981",
                                  "10.1.2.3", "[::1]:9981", "[2001:db8::1]"])
def test_allowed_hosts_and_any_address_are_answered(plain, host):
    server, _ = plain
    assert get_with_host(server, host).startswith(b"HTTP/1.0 200 ")


def test_the_default_allowed_hosts_are_the_listen_host_localhost_and_the_machine_name(evidence):  # noqa: F811
    server = WebServer(FakeView(evidence), "127.0.0.1", 0)
    server.start()
    try:
        for host in ("localhost", socket.gethostname(), "127.0.0.1"):
            assert get_with_host(server, host).startswith(b"HTTP/1.0 200 "), host
        assert get_with_host(server, "evil.example").startswith(b"HTTP/1.0 421 ")
    finally:
        server.stop()


def post_reload(server, headers: dict[str, str], body: bytes = b"") -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return raw_request(server, (f"POST /-/reload HTTP/1.1\r\nHost: 127.0.0.1:{server.address[1]}\r\n{head}"
                                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body)


@pytest.mark.parametrize("headers, body", [
    ({"Origin": "https://evil.example", "Content-Type": "application/x-www-form-urlencoded"}, b"a=b"),
    ({"Origin": "https://evil.example", "Content-Type": "text/plain"}, b"x"),
    ({"Origin": "null", "Content-Type": "multipart/form-data; boundary=x"}, b"--x--"),
    ({"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"}, b"x"),
    ({"Sec-Fetch-Site": "same-site", "X-Requested-By": "x"}, b""),  # a sibling subdomain is another origin
    ({"Origin": "https://evil.example", "Content-Type": "application/json"}, b"{}"),
    ({"Origin": "http://127.0.0.1:1", "X-Requested-By": "x"}, b""),
    ({}, b""),  # no browser would know, but a no-cors fetch() sends exactly this
    ({"Content-Type": "text/plain"}, b""),
])
def test_cross_site_or_simple_reload_requests_are_refused(plain, headers, body):
    server, view = plain
    answer = post_reload(server, headers, body)
    assert answer.startswith(b"HTTP/1.0 403 "), answer[:120]
    assert view.reloads == 0


@pytest.mark.parametrize("headers", [
    {"X-Requested-By": "curl"},
    {"Content-Type": "application/json"},
    {"Content-Type": "application/json; charset=utf-8", "Sec-Fetch-Site": "same-origin"},
    {"X-Requested-By": "x", "Origin": "http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"},
])
def test_a_reload_from_a_client_or_our_own_origin_runs(plain, headers):
    server, view = plain
    headers = {name: value.format(port=server.address[1]) for name, value in headers.items()}
    assert post_reload(server, headers).startswith(b"HTTP/1.0 200 ")
    assert view.reloads == 1


def test_the_readme_reload_command_works(plain):
    import re
    import subprocess
    from pathlib import Path

    server, view = plain
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    command = re.search(r"`(curl [^`]*/-/reload)`", readme).group(1).replace("127.0.0.1:10981",
                                                                           f"127.0.0.1:{server.address[1]}")
    done = subprocess.run(["sh", "-c", command + " -sS -o /dev/null -w '%{http_code}'"], capture_output=True,
                          text=True, timeout=30, check=False)
    assert (done.stdout, view.reloads) == ("200", 1), done.stderr
