import base64
import datetime
import ipaddress
import re
import shutil
import ssl
import subprocess
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exporter.basic_auth import BasicAuth
from exporter.config import ConfigError
from exporter.webconfig import RateLimit, TokenBucket, WebConfigFile, load_web_config

HASH = "$2y$04$abcdefghijklmnopqrstuu5Q8P8b3Qb7v7YbQ0H7bWqkI9Y6XJpZy"  # well-formed; matches no password here


def self_signed(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (IP SAN) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def hashed(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(text)
    return path


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_web_config(write(tmp_path, text))
    return str(caught.value)


def test_an_empty_mapping_means_plain_http_without_auth(tmp_path):
    config = load_web_config(write(tmp_path, "{}\n"))
    assert (config.tls, config.ssl_context, config.users, config.auth_required) == (None, None, {}, False)


@pytest.mark.parametrize("text", ["", "\n\n", "# basic_auth_users:\n#   alice: $2y$...\n", "---\n"])
def test_an_empty_or_comment_only_file_is_refused(tmp_path, text):
    assert error(tmp_path, text) == (f"{tmp_path / 'web.yml'}:1: the file is empty or only comments; "
                                      "write {} for no TLS and no basic auth")


@pytest.mark.parametrize("text", ["basic_auth_users: {}\n", "basic_auth_users:\n", "basic_auth_users: ~\n"])
def test_basic_auth_users_naming_no_one_is_refused(tmp_path, text):
    assert error(tmp_path, text).endswith(
        ":1: basic_auth_users: names no users; leave the key out to turn basic auth off")


def test_a_full_file_with_paths_relative_to_its_directory(tmp_path):
    self_signed(tmp_path)
    self_signed(tmp_path, "clients")
    alice = hashed("secret")
    config = load_web_config(write(tmp_path, f"""
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: clients.crt
  min_version: TLS13
http_server_config:
  http2: false
  headers:
    Strict-Transport-Security: max-age=31536000
    X-XSS-Protection: ""
basic_auth_users:
  alice: {alice}
"""))
    assert config.tls.cert_file == tmp_path / "server.crt"
    assert config.ssl_context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert config.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert config.headers == (("Strict-Transport-Security", "max-age=31536000"),)
    assert config.users == {"alice": alice.encode()}


@pytest.mark.parametrize("text, expected", [
    ("tls_server_confg: {}\n", r"web\.yml:1: tls_server_confg: unknown key 'tls_server_confg' \(did you mean"),
    ("tls_server_config:\n  cert_file: server.crt\n", r":2: tls_server_config.key_file: required key is missing"),
    ("tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n", r":2: .*cert_file: no such file"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS14\n",
     r":4: .*min_version: unknown TLS version 'TLS14'"),
    (("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n"
      "  max_version: TLS12\n"), r":5: .*max_version: max_version TLS12 is below min_version TLS13"),
    (("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
      "  client_auth_type: RequireAnyClientCert\n"), r":4: .*RequireAnyClientCert is not supported"),
    (("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
      "  client_auth_type: VerifyClientCertIfGiven\n"), r":4: .*needs client_ca_file"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: server.crt\n",
     r":4: .*client_auth_type is NoClientCert"),
    ("tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n", r":1: .*cannot load the certificate"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", r":3: .*unknown X-Frame-Options value 'allow'"),
    ("http_server_config:\n  headers:\n    Set-Cookie: a=b\n", r":3: .*unknown key 'Set-Cookie'"),
    ("http_server_config:\n  http2: maybe\n", r":2: http_server_config.http2: expected true or false"),
    ("basic_auth_users:\n  'al:ice': $2y$10$abc\n", r":2: basic_auth_users.al:ice: .*cannot contain ':'"),
    ("basic_auth_users: [alice]\n", r":1: basic_auth_users: expected a mapping"),
    ("rate_limit:\n  interval: 1s\n", r":2: rate_limit.burst: required key is missing"),
    ("rate_limit:\n  interval: 1s\n  burst: 0\n", r":3: rate_limit.burst: must be at least 1"),
    ("rate_limit:\n  interval: soon\n  burst: 1\n", r":2: rate_limit.interval: invalid duration"),
    (f"basic_auth_users:\n  a: {HASH}\nbasic_auth_excluded_paths: [/metrics]\n",
     r":3: basic_auth_excluded_paths\[0\]: unknown path .*'/metrics'"),
    ("basic_auth_excluded_paths: [/-/healthy]\n", r":1: basic_auth_excluded_paths: only means something with"),
    ("tls_server_config: [\n", r":2: invalid YAML"),
])
def test_mistakes_are_one_line_errors_with_line_and_key(tmp_path, text, expected):
    self_signed(tmp_path)
    message = error(tmp_path, text)
    assert "\n" not in message
    assert re.search(expected, message), message


def test_a_bad_hash_is_refused_without_repeating_it(tmp_path):
    message = error(tmp_path, "basic_auth_users:\n  alice: plain-password-oops\n")
    assert "basic_auth_users.alice: expected a bcrypt hash" in message
    assert "plain-password-oops" not in message


def test_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_web_config(tmp_path / "absent.yml")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs Debian's prometheus package")
def test_promtool_accepts_what_we_accept(tmp_path):
    self_signed(tmp_path)
    path = write(tmp_path, f"""tls_server_config:
  cert_file: server.crt
  key_file: server.key
  min_version: TLS12
basic_auth_users:
  alice: {hashed("secret")}
""")
    load_web_config(path)
    check = subprocess.run(["promtool", "check", "web-config", str(path)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_basic_auth_checks_user_and_password(tmp_path):
    users = load_web_config(write(tmp_path, f"basic_auth_users:\n  alice: {hashed('s3cret:with colon')}\n")).users
    auth = BasicAuth()
    assert auth.authorized(users, basic("alice", "s3cret:with colon"))
    assert auth.authorized(users, basic("alice", "s3cret:with colon"))  # remembered, still right
    assert not auth.authorized(users, basic("alice", "wrong"))
    assert not auth.authorized(users, basic("bob", "s3cret:with colon"))
    assert not auth.authorized(users, basic("alice", "x" * 100))  # longer than bcrypt's 72 bytes
    for header in (None, "", "Bearer abc", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode()):
        assert not auth.authorized(users, header)


def test_an_htpasswd_2y_hash_works(tmp_path):
    two_y = "$2y$" + hashed("pw")[4:]
    users = load_web_config(write(tmp_path, f"basic_auth_users:\n  alice: {two_y}\n")).users
    assert BasicAuth().authorized(users, basic("alice", "pw"))


def settled(web: WebConfigFile):
    """The config in force once a change has been seen and has settled (settle 0: on the second look)."""
    web.settle = 0.0
    web.current()
    return web.current()


def test_the_file_is_reread_when_it_changes(tmp_path):
    path = write(tmp_path, f"basic_auth_users:\n  alice: {hashed('old')}\n")
    web = WebConfigFile(path)
    auth = BasicAuth()
    assert auth.authorized(web.current().users, basic("alice", "old"))
    path.write_text(f"basic_auth_users:\n  alice: {hashed('new')}\n  bob: {hashed('bob')}\n")
    users = settled(web).users
    assert not auth.authorized(users, basic("alice", "old"))
    assert auth.authorized(users, basic("alice", "new")) and auth.authorized(users, basic("bob", "bob"))


@pytest.mark.parametrize("broken, why", [
    ("basic_auth_users: [\n", "invalid YAML"),
    ("", "the file is empty or only comments"),
    ("# all commented out\n", "the file is empty or only comments"),
    ("basic_auth_users: {}\n", "basic_auth_users: names no users"),
    ("{}\n", "basic_auth_users: left out; turning basic auth off takes a restart"),
    ("rate_limit:\n  interval: 0\n", "basic_auth_users: left out; turning basic auth off takes a restart"),
    (None, "cannot read: No such file or directory"),
])
def test_a_changed_file_that_is_bad_or_turns_auth_off_leaves_the_last_good_one_in_force(tmp_path, caplog,
                                                                                          broken, why):
    path = write(tmp_path, f"basic_auth_users:\n  alice: {hashed('pw')}\n")
    web = WebConfigFile(path)
    good = web.current()
    if broken is None:
        path.unlink()
    else:
        path.write_text(broken)
    for _ in range(3):
        assert settled(web) is good
    refusals = [r for r in caplog.records if "web config change refused" in r.getMessage()]
    assert len(refusals) == 1 and why in refusals[0].err and "\n" not in refusals[0].err
    path.write_text(f"basic_auth_users:\n  alice: {hashed('newer')}\n")
    assert BasicAuth().authorized(settled(web).users, basic("alice", "newer"))


def test_a_changed_file_that_turns_tls_off_is_refused(tmp_path, caplog):
    self_signed(tmp_path)
    path = write(tmp_path, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    web = WebConfigFile(path)
    good = web.current()
    path.write_text("{}\n")
    assert settled(web) is good and good.ssl_context is not None
    assert any("turning TLS off takes a restart" in r.err for r in caplog.records if hasattr(r, "err"))


def test_a_change_is_taken_only_once_the_file_has_settled(tmp_path, monkeypatch):
    now = [100.0]
    monkeypatch.setattr("exporter.webconfig.time.monotonic", lambda: now[0])
    path = write(tmp_path, f"basic_auth_users:\n  alice: {hashed('pw')}\n  bob: {hashed('pw')}\n")
    web = WebConfigFile(path)
    first = web.current()
    path.write_text(f"basic_auth_users:\n  alice: {hashed('pw')}\n")  # as if cut off after alice
    assert web.current() is first
    now[0] += 0.5
    assert web.current() is first
    path.write_text(path.read_text() + f"  bob: {hashed('pw')}\n  carol: {hashed('pw')}\n")  # the writer goes on
    now[0] += 0.9
    assert web.current() is first  # changed again: its settling starts over
    now[0] += 0.9
    assert web.current() is first
    now[0] += 0.2
    assert set(web.current().users) == {"alice", "bob", "carol"}


def test_a_renewed_certificate_is_picked_up(tmp_path):
    self_signed(tmp_path)
    web = WebConfigFile(write(tmp_path, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"))
    first = web.current().ssl_context
    assert web.current().ssl_context is first
    self_signed(tmp_path)
    assert settled(web).ssl_context is not first


def test_rate_limit_zero_interval_disables_it(tmp_path):
    assert load_web_config(write(tmp_path, "rate_limit:\n  interval: 0\n  burst: 5\n")).rate_limit is None
    limited = load_web_config(write(tmp_path, "rate_limit:\n  interval: 500ms\n  burst: 5\n"))
    assert limited.rate_limit == RateLimit(0.5, 5)


def test_the_token_bucket_allows_a_burst_then_one_per_interval(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("exporter.webconfig.time.monotonic", lambda: now[0])
    bucket = TokenBucket(RateLimit(interval=2.0, burst=3))
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 1.0
    assert not bucket.take()
    now[0] += 1.0
    assert bucket.take() and not bucket.take()
    now[0] += 100.0  # saved tokens stop at the burst
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert all(TokenBucket(None).take() for _ in range(100))
