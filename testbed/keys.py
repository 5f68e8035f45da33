"""Identity keys for the test-bed relays, made before any tor starts.

A relay's fingerprint is the SHA-1 of the DER encoding of its RSA-1024
identity public key (PKCS#1 ``RSAPublicKey``), and tor loads that key from
``DataDirectory/keys/secret_id_key`` as a PEM ``RSA PRIVATE KEY``.  Writing the
key ourselves gives every fingerprint up front (the authorities need them for
``DirAuthority`` and ``TestingDirAuthVoteExit``) without starting tor once per
relay.  Directory authorities also need a v3 identity key and a signing
certificate, which ``tor-gencert`` makes; the ``v3ident`` is the certificate's
``fingerprint`` line.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def write_relay_identity(data_dir: Path) -> str:
    """Write a fresh RSA-1024 identity key into ``data_dir/keys``; return its fingerprint (HEX40)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    keys = data_dir / "keys"
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = keys / "secret_id_key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return fingerprint(key.public_key())


def fingerprint(public_key: rsa.RSAPublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return hashlib.sha1(der).hexdigest().upper()


AUTHORITY_FILES = ("authority_identity_key", "authority_signing_key", "authority_certificate")
CERTIFICATE_MONTHS = 12
RENEW_BEFORE = timedelta(days=30)


# Where authority key sets are kept between boots.
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "captcha-exporter" / "testbed-authority-keys"


def install_authority_keys(data_dirs: list[Path], cache: Path | None) -> list[str]:
    """Give each authority data directory a v3 key set; return their v3idents, in order.

    The certificates carry no ``dir-address`` (it is optional), so a key set
    does not depend on ports and can be reused from ``cache``: ``tor-gencert``
    spends most of its time finding RSA-3072 primes, seconds on a busy machine.
    Missing or nearly expired sets are made anew, all at once.
    """
    sources = [
        cache / f"auth{i}" if cache else data_dir / "authority-keys" for i, data_dir in enumerate(data_dirs, 1)
    ]
    stale = [source for source in sources if not _usable(source)]
    for job in [_start_gencert(source) for source in stale]:  # in parallel
        _finish_gencert(job)
    idents = []
    for source, data_dir in zip(sources, data_dirs):
        keys = data_dir / "keys"
        keys.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name in AUTHORITY_FILES:
            shutil.copy2(source / name, keys / name)
        idents.append(_certificate_field(keys / "authority_certificate", "fingerprint"))
    return idents


def _usable(source: Path) -> bool:
    certificate = source / "authority_certificate"
    if not all((source / name).exists() for name in AUTHORITY_FILES):
        return False
    expires = datetime.strptime(_certificate_field(certificate, "dir-key-expires"), "%Y-%m-%d %H:%M:%S")
    return expires.replace(tzinfo=UTC) - datetime.now(UTC) > RENEW_BEFORE


def _certificate_field(certificate: Path, keyword: str) -> str:
    for line in certificate.read_text().splitlines():
        if line.startswith(keyword + " "):
            return line.split(" ", 1)[1]
    raise RuntimeError(f"{certificate}: no {keyword} line")


def _start_gencert(target: Path) -> tuple[subprocess.Popen, Path, Path]:
    """Start ``tor-gencert`` into a fresh directory next to ``target`` (renamed into place when done)."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    proc = subprocess.Popen(
        [
            "tor-gencert", "--create-identity-key", "-m", str(CERTIFICATE_MONTHS),
            "-i", str(work / "authority_identity_key"),
            "-s", str(work / "authority_signing_key"),
            "-c", str(work / "authority_certificate"),
            "--passphrase-fd", "0",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    proc.stdin.write(b"\n")  # an empty passphrase
    proc.stdin.close()
    return proc, work, target


def _finish_gencert(started: tuple[subprocess.Popen, Path, Path]) -> None:
    proc, work, target = started
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.wait() != 0:
        shutil.rmtree(work, ignore_errors=True)
        raise RuntimeError(f"tor-gencert failed: {stderr.strip()}")
    if _usable(target):  # another boot just made one: use that
        shutil.rmtree(work, ignore_errors=True)
        return
    shutil.rmtree(target, ignore_errors=True)  # stale or incomplete
    try:
        work.rename(target)
    except OSError:  # another boot renamed its fresh set into place first: use that one
        shutil.rmtree(work, ignore_errors=True)


def write_onion_service_keys(service_dir: Path, seed: bytes) -> None:
    """Give a v3 onion service the Ed25519 identity made from ``seed``, so its address is known
    before tor starts (rend-spec-v3: the address is the public key's).  Tor reads
    ``hs_ed25519_secret_key``: a 32-byte header, then the expanded secret key, the clamped
    scalar and the second half of SHA-512(seed) (RFC 8032 §5.1.5)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    digest = bytearray(hashlib.sha512(seed).digest())
    digest[0] &= 248
    digest[31] &= 127
    digest[31] |= 64
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    service_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    service_dir.chmod(0o700)  # tor refuses a HiddenServiceDir others can read
    (service_dir / "hs_ed25519_secret_key").write_bytes(b"== ed25519v1-secret: type0 ==\0\0\0" + bytes(digest))
    (service_dir / "hs_ed25519_public_key").write_bytes(b"== ed25519v1-public: type0 ==\0\0\0" + public)
