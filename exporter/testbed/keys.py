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
import subprocess
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


def start_authority_certificate(data_dir: Path, dir_address: str) -> subprocess.Popen:
    """Start ``tor-gencert`` for an authority (its RSA-3072 key takes a while; run several at once)."""
    keys = data_dir / "keys"
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    proc = subprocess.Popen(
        [
            "tor-gencert", "--create-identity-key", "-m", "12", "-a", dir_address,
            "-i", str(keys / "authority_identity_key"),
            "-s", str(keys / "authority_signing_key"),
            "-c", str(keys / "authority_certificate"),
            "--passphrase-fd", "0",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    proc.stdin.write(b"\n")  # an empty passphrase
    proc.stdin.close()
    return proc


def finish_authority_certificate(proc: subprocess.Popen, data_dir: Path) -> str:
    """Wait for ``tor-gencert``; return the authority's v3 identity (``v3ident``)."""
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.wait() != 0:
        raise RuntimeError(f"tor-gencert failed: {stderr.strip()}")
    for line in (data_dir / "keys" / "authority_certificate").read_text().splitlines():
        if line.startswith("fingerprint "):
            return line.split()[1]
    raise RuntimeError("tor-gencert wrote a certificate without a fingerprint line")
