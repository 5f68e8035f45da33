"""Relay identity keys written the way tor reads them."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import serialization

from exporter.testbed.keys import write_relay_identity


def test_identity_key_is_a_pem_rsa1024_key_whose_sha1_is_the_fingerprint(tmp_path):
    fingerprint = write_relay_identity(tmp_path)
    pem = (tmp_path / "keys" / "secret_id_key").read_bytes()
    assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    key = serialization.load_pem_private_key(pem, password=None)
    assert key.key_size == 1024 and key.public_key().public_numbers().e == 65537
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    assert fingerprint == hashlib.sha1(der).hexdigest().upper()
    assert (tmp_path / "keys" / "secret_id_key").stat().st_mode & 0o077 == 0


def test_every_relay_gets_its_own_key(tmp_path):
    assert write_relay_identity(tmp_path / "a") != write_relay_identity(tmp_path / "b")
