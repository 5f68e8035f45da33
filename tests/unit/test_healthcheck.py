"""`captcha-exporter healthcheck`: the container's probe, with and without TLS and basic auth."""

import subprocess
import sys

from test_web import evidence  # noqa: F401 (a fixture of the fixture below)
from test_web_config import hashed, self_signed
from test_web_security import start  # noqa: F401 (a fixture: start(web_config) → a running WebServer)


def healthcheck(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exporter", "healthcheck", "--address",
                           f"127.0.0.1:{server.address[1]}", *args], capture_output=True, text=True, timeout=30,
                          check=False)


def test_plain_http(start):  # noqa: F811
    server = start(None)
    assert healthcheck(server).returncode == 0
    assert healthcheck(server, "--ready").returncode == 0


def test_not_ready_is_unhealthy_with_the_reason(start):  # noqa: F811
    server = start(None)
    server.httpd.RequestHandlerClass.view.is_ready = False
    done = healthcheck(server, "--ready")
    expected = f"unhealthy: 127.0.0.1:{server.address[1]}/-/ready answered 503: tor is not bootstrapped\n"
    assert (done.returncode, done.stderr) == (1, expected)


def test_with_tls_and_basic_auth(start, tmp_path):  # noqa: F811
    self_signed(tmp_path)
    config = tmp_path / "web.yml"
    config.write_text(f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                      f"basic_auth_users:\n  probe: {hashed('s3cret')}\n")
    server = start(config)
    assert healthcheck(server).returncode == 0  # a 401 still says the server answers
    anonymous = healthcheck(server, "--ready")
    assert anonymous.returncode == 1 and "answered 401" in anonymous.stderr
    (tmp_path / "credentials").write_text("probe:s3cret\n")
    assert healthcheck(server, "--ready", "--auth-file", str(tmp_path / "credentials")).returncode == 0
    (tmp_path / "credentials").write_text("probe:wrong\n")
    assert healthcheck(server, "--ready", "--auth-file", str(tmp_path / "credentials")).returncode == 1
    absent = healthcheck(server, "--ready", "--auth-file", str(tmp_path / "absent"))  # an optional Secret not made
    assert absent.returncode == 1 and "answered 401" in absent.stderr


def test_health_checks_let_through_by_the_web_config(start, tmp_path):  # noqa: F811
    config = tmp_path / "web.yml"
    config.write_text(f"basic_auth_users:\n  alice: {hashed('pw')}\nbasic_auth_excluded_paths: [/-/ready]\n")
    assert healthcheck(start(config), "--ready").returncode == 0


def test_nothing_listening_is_unhealthy():
    done = subprocess.run([sys.executable, "-m", "exporter", "healthcheck", "--address", "127.0.0.1:9"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1 and done.stderr.startswith("unhealthy: cannot ask 127.0.0.1:9/-/healthy: ")
    assert done.stderr.count("\n") == 1
