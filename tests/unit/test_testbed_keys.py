"""Relay identity keys written the way tor reads them."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import serialization

from testbed.keys import install_authority_keys, write_relay_identity


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


def test_authority_key_sets_are_made_once_and_reused_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    first = install_authority_keys([tmp_path / "a1", tmp_path / "a2"], cache)
    assert len(set(first)) == 2 and all(len(ident) == 40 for ident in first)
    certificate = (tmp_path / "a1" / "keys" / "authority_certificate").read_text()
    assert "dir-address" not in certificate and f"fingerprint {first[0]}" in certificate
    assert install_authority_keys([tmp_path / "b1", tmp_path / "b2"], cache) == first


def test_without_a_cache_each_boot_gets_new_authority_keys_beside_the_relay_key(tmp_path):
    relay_fingerprint = write_relay_identity(tmp_path / "a1")
    [ident] = install_authority_keys([tmp_path / "a1"], None)
    assert (tmp_path / "a1" / "keys" / "secret_id_key").exists()
    assert write_relay_identity(tmp_path / "x") != relay_fingerprint
    assert install_authority_keys([tmp_path / "b1"], None) != [ident]


def test_exit_keys_are_redrawn_until_two_shards_each_own_an_exit(tmp_path):
    from exporter.shard import Shard
    from testbed.keys import fingerprint
    from testbed.network import TorNetwork

    network = TorNetwork(tmp_path, resolv_conf=tmp_path / "resolv.conf", exits=4)
    first_half = Shard(0, 2)
    one_sided = [fp for fp in (f"{n:040X}" for n in range(200)) if first_half.owns(fp)][:4]
    for exit, fp in zip(network.exits, one_sided):
        exit.fingerprint = fp  # as if the random keys had all fallen into shard 0

    network._split_exits_over_two_shards()

    owners = {first_half.owns(e.fingerprint) for e in network.exits}
    assert owners == {True, False}
    assert [e.fingerprint for e in network.exits[:3]] == one_sided[:3]  # only the last exit was redrawn
    pem = (network.exits[-1].data_dir / "keys" / "secret_id_key").read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    assert fingerprint(key.public_key()) == network.exits[-1].fingerprint  # tor reads the new key
