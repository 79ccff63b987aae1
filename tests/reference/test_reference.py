"""Interop tests: the real pgseal binary against the independent reference (pgseal_ref.py) and OpenSSL.

The binary is $PGSEAL_BIN, default /work/main/target/debug/pgseal (relative to this repo). If it is
missing every test here fails (never skips).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import struct
import subprocess
import time
from pathlib import Path

import pytest
from conftest import (
    KEYGEN_PW,
    LEGACY_PW,
    SERVER2_PW,
    SERVER_PW,
    USER_PW,
    KeyPair,
    blob_layout,
    clean_env,
    openssl,
    reseal,
    run_ref,
    slot_a_replaced,
    write_hybrid_keypair,
)
from cryptography.hazmat.primitives import hashes, padding as sym_padding, serialization
from cryptography.hazmat.primitives.asymmetric import mlkem, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

import pgseal_ref as ref

def uenv(user: KeyPair) -> dict:
    return user.env("PGSEAL_USER_KEY_PASSWORD")


def senv(server: KeyPair) -> dict:
    return server.env("SERVER_KEY_PASSWORD")


def pg_encrypt(pgseal, src, dst, recipients, user: KeyPair, *extra):
    args = ["encrypt", src, "-o", dst]
    for r in recipients:
        args += ["--recipient", r]
    args += ["--sign-key", user.key, *extra]
    return pgseal(*args, env=uenv(user))


def ref_decrypt(enc, out, server: KeyPair, user: KeyPair, check=True):
    return run_ref(
        "v2-decrypt", enc, "-o", out, "--identity", server.key, "--signer", user.pub, env=senv(server), check=check
    )


def fp_str(pub_path) -> str:
    return ref.fingerprint_str(ref.fingerprint(ref.load_public_key(str(pub_path))))


def flip(path: Path, offset: int, mask: int = 0x01) -> Path:
    b = bytearray(path.read_bytes())
    b[offset] ^= mask
    out = path.with_name(path.name + f".flip{offset}")
    out.write_bytes(bytes(b))
    return out


def layout(path: Path) -> ref.V2Layout:
    with open(path, "rb") as f:
        return ref.read_v2_layout(f)


# --------------------------------------------------------------------------------------------
# v2 written by pgseal, read by the reference

SIZES = [0, 1, 1023, 1024, 4096, 3 * 1024 + 7]


@pytest.mark.parametrize("compress", ["none", "zstd"])
@pytest.mark.parametrize("size", SIZES)
def test_v2_pgseal_to_ref_small_chunks(pgseal, tmp_path, user_key, server_key, size, compress):
    data = os.urandom(size)
    src = tmp_path / "input.bin"
    src.write_bytes(data)
    enc = tmp_path / "input.pgseal"
    t0 = int(time.time() * 1000)
    pg_encrypt(pgseal, src, enc, [server_key.pub], user_key, "--compress", compress, "--chunk-size", "1024")
    t1 = int(time.time() * 1000)
    out = tmp_path / "out.bin"
    ref_decrypt(enc, out, server_key, user_key)
    assert out.read_bytes() == data
    v = json.loads(run_ref("v2-verify", enc, "--signer", user_key.pub).stdout)
    assert v["ok"] and v["active_slot"] == "A" and v["generation"] == 1

    info = json.loads(run_ref("v2-inspect", enc).stdout)
    assert info["chunk_size"] == 1024
    assert info["compression"] == (1 if compress == "zstd" else 0)
    assert info["suite"] == 1
    assert info["signer_fingerprint"] == fp_str(user_key.pub)
    assert info["signature_length"] == 384
    assert t0 - 2000 <= info["created_at"] <= t1 + 2000
    assert info["slots"]["A"]["state"] == "valid" and info["slots"]["A"]["generation"] == 1
    assert info["slots"]["B"]["state"] == "empty"
    assert [s["recipient"] for s in info["slots"]["A"]["stanzas"]] == [fp_str(server_key.pub)]
    if "content_name" in info:
        assert info["content_name"] == "input.bin"
    if compress == "none":
        # chunking per §7: full chunks of C, the last 0..C bytes, empty only for an empty payload
        assert info["chunks"] == max(1, -(-size // 1024))
        assert info["sealed_bytes"] == size + 16 * info["chunks"]


@pytest.mark.parametrize("compress", ["none", "zstd"])
def test_v2_pgseal_to_ref_5mib_default_chunk(pgseal, tmp_path, user_key, server_key, compress):
    data = os.urandom(5 * 1024 * 1024 + 333)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    enc = tmp_path / "big.pgseal"
    pg_encrypt(pgseal, src, enc, [server_key.pub], user_key, "--compress", compress)
    out = tmp_path / "out.bin"
    ref_decrypt(enc, out, server_key, user_key)
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
    run_ref("v2-verify", enc, "--signer", user_key.pub)
    info = json.loads(run_ref("v2-inspect", enc).stdout)
    assert info["chunk_size"] == 65536, "FORMAT.md §10: pgseal writes 64 KiB chunks"
    if compress == "none":
        assert info["chunks"] == -(-len(data) // 65536)


def test_v2_two_recipients(pgseal, tmp_path, user_key, server_key, server2_key):
    data = os.urandom(10_000)
    src = tmp_path / "two.bin"
    src.write_bytes(data)
    enc = tmp_path / "two.pgseal"
    pg_encrypt(pgseal, src, enc, [server_key.pub, server2_key.pub], user_key, "--chunk-size", "1024")
    for srv in (server_key, server2_key):
        out = tmp_path / f"out-{srv.key.stem}"
        ref_decrypt(enc, out, srv, user_key)
        assert out.read_bytes() == data
    info = json.loads(run_ref("v2-inspect", enc).stdout)
    assert sorted(s["recipient"] for s in info["slots"]["A"]["stanzas"]) == sorted(
        [fp_str(server_key.pub), fp_str(server2_key.pub)]
    )
    # a key the file does not name is refused with "key problem"
    p = run_ref("v2-decrypt", enc, "-o", tmp_path / "x", "--identity", user_key.key, "--signer", user_key.pub,
                env={"SERVER_KEY_PASSWORD": USER_PW}, check=False)
    assert p.returncode == 5, p.stderr


def test_v2_header_metadata(pgseal, tmp_path, user_key, server_key):
    src = tmp_path / "meta.bin"
    src.write_bytes(b"metadata test")
    enc = tmp_path / "meta.pgseal"
    pg_encrypt(pgseal, src, enc, [server_key.pub], user_key, "--user-id", "77", "--username", "alice")
    info = json.loads(run_ref("v2-inspect", enc).stdout)
    assert info.get("creator_user_id") == 77
    assert info.get("creator_username") == "alice"
    assert info.get("tool", "").startswith("pgseal")


# --------------------------------------------------------------------------------------------
# tampering and truncation


@pytest.fixture
def sealed_file(pgseal, tmp_path, user_key, server_key):
    data = os.urandom(3 * 1024 + 7)
    src = tmp_path / "t.bin"
    src.write_bytes(data)
    enc = tmp_path / "t.pgseal"
    pg_encrypt(pgseal, src, enc, [server_key.pub], user_key, "--chunk-size", "1024", "--compress", "none")
    return enc, data


def tamper_offsets(enc: Path) -> dict:
    lay = layout(enc)
    salt_off = 12 + lay.hdr.body.index(lay.hdr.fields["salt"])
    return {
        "chunk": lay.chunks_start + 1024 + 16 + 100,  # inside chunk 1
        "header": salt_off + 3,  # inside the salt value: still parses, signature must fail
        "final_signature": enc.stat().st_size - 7,
    }


@pytest.mark.parametrize("where", ["chunk", "header", "final_signature"])
def test_v2_ref_verify_detects_flip(sealed_file, user_key, where):
    enc, _ = sealed_file
    run_ref("v2-verify", enc, "--signer", user_key.pub)
    bad = flip(enc, tamper_offsets(enc)[where])
    p = run_ref("v2-verify", bad, "--signer", user_key.pub, check=False)
    assert p.returncode == 4, p.stderr


@pytest.mark.parametrize("where", ["chunk", "header", "final_signature"])
def test_v2_pgseal_verify_and_decrypt_detect_flip(pgseal, tmp_path, sealed_file, user_key, server_key, where):
    enc, _ = sealed_file
    bad = flip(enc, tamper_offsets(enc)[where])
    p = pgseal("verify", bad, "--signer", user_key.pub, check=False)
    assert p.returncode == 4, (p.returncode, p.stderr)
    out = tmp_path / "out.bin"
    p = pgseal("decrypt", bad, "-o", out, "--identity", server_key.key, "--signer", user_key.pub,
               env=senv(server_key), check=False)
    assert p.returncode == 4, (p.returncode, p.stderr)
    assert not out.exists()


def truncations(enc: Path) -> dict:
    blob = enc.read_bytes()
    lay = layout(enc)
    L = lay.hdr.sig_len
    full = lay.hdr.chunk_size + 16
    return {
        "last_byte": blob[:-1],
        "drop_last_chunk_keep_sig": blob[: lay.chunks_start + 3 * full] + blob[-L:],
        "mid_chunk": blob[: lay.chunks_start + 1500],
        "in_header": blob[:30],
    }


@pytest.mark.parametrize("cut", ["last_byte", "drop_last_chunk_keep_sig", "mid_chunk", "in_header"])
def test_v2_truncation(pgseal, tmp_path, sealed_file, user_key, server_key, cut):
    enc, _ = sealed_file
    t = tmp_path / f"trunc-{cut}.pgseal"
    t.write_bytes(truncations(enc)[cut])
    out = tmp_path / "ref-out.bin"
    p = ref_decrypt(t, out, server_key, user_key, check=False)
    assert p.returncode in (3, 4), p.stderr
    assert not out.exists()
    out2 = tmp_path / "pg-out.bin"
    p = pgseal("decrypt", t, "-o", out2, "--identity", server_key.key, "--signer", user_key.pub,
               env=senv(server_key), check=False)
    assert p.returncode in (3, 4), (p.returncode, p.stderr)
    assert not out2.exists()


def test_v2_slot_mac_tamper(pgseal, tmp_path, sealed_file, user_key, server_key):
    """Flip a MAC byte of slot A and fix its checksum: signatures still hold, decryption must refuse."""
    enc, _ = sealed_file
    lay = layout(enc)
    S = lay.hdr.slot_size
    a = lay.chunks_start - 2 * S
    b = bytearray(enc.read_bytes())
    b[a + S - 64] ^= 1
    b[a + S - 32 : a + S] = hashlib.sha256(b[a : a + S - 32]).digest()
    bad = tmp_path / "mac.pgseal"
    bad.write_bytes(bytes(b))
    run_ref("v2-verify", bad, "--signer", user_key.pub)  # slots are not signed
    p = ref_decrypt(bad, tmp_path / "o1", server_key, user_key, check=False)
    assert p.returncode == 4, p.stderr
    p = pgseal("decrypt", bad, "-o", tmp_path / "o2", "--identity", server_key.key, "--signer", user_key.pub,
               env=senv(server_key), check=False)
    assert p.returncode == 4, (p.returncode, p.stderr)
    assert not (tmp_path / "o2").exists()


def test_v2_same_slot_written_twice_opens(pgseal, tmp_path, sealed_file, user_key, server_key):
    """Slot A copied byte for byte over slot B: one slot written twice, not damage (FORMAT.md §6)."""
    enc, data = sealed_file
    lay = layout(enc)
    S = lay.hdr.slot_size
    a = lay.chunks_start - 2 * S
    b = bytearray(enc.read_bytes())
    b[a + S : a + 2 * S] = b[a : a + S]
    twice = tmp_path / "twice.pgseal"
    twice.write_bytes(bytes(b))
    out = tmp_path / "o1"
    ref_decrypt(twice, out, server_key, user_key)
    assert out.read_bytes() == data
    out2 = tmp_path / "o2"
    pgseal("decrypt", twice, "-o", out2, "--identity", server_key.key, "--signer", user_key.pub,
           env=senv(server_key))
    assert out2.read_bytes() == data


# --------------------------------------------------------------------------------------------
# v2 written by the reference, read by pgseal


def ref_v2(user_key: KeyPair, data: bytes, recipients: list, **kw) -> bytes:
    sk = ref.load_private_key(str(user_key.key), None, password=user_key.password)
    pubs = [ref.load_recipient_key(str(r.pub)) for r in recipients]
    return ref.v2_encrypt(data, pubs, sk, **kw)


def pg_decrypt_blob(pgseal, tmp_path, blob, server: KeyPair, user: KeyPair, name="r.pgseal"):
    f = tmp_path / name
    f.write_bytes(blob)
    out = tmp_path / (name + ".out")
    p = pgseal("decrypt", f, "-o", out, "--identity", server.key, "--signer", user.pub, env=senv(server),
               check=False)
    return p, out


@pytest.mark.parametrize(
    "kw",
    [
        dict(compression=0, chunk_size=1024),
        dict(compression=1, chunk_size=1024, zstd_frame_size=1000),  # many concatenated frames
        dict(compression=0, chunk_size=65536),
    ],
    ids=["none-1k", "zstd-multiframe", "none-64k"],
)
def test_v2_ref_to_pgseal(pgseal, tmp_path, user_key, server_key, kw):
    data = os.urandom(5000)
    blob = ref_v2(user_key, data, [server_key], **kw)
    p, out = pg_decrypt_blob(pgseal, tmp_path, blob, server_key, user_key)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == data
    p = pgseal("verify", tmp_path / "r.pgseal", "--signer", user_key.pub, check=False)
    assert p.returncode == 0, p.stderr


def test_v2_ref_to_pgseal_empty(pgseal, tmp_path, user_key, server_key):
    blob = ref_v2(user_key, b"", [server_key], compression=0)
    p, out = pg_decrypt_blob(pgseal, tmp_path, blob, server_key, user_key)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == b""


def test_v2_ref_unknown_fields(pgseal, tmp_path, user_key, server_key):
    ok = ref_v2(user_key, b"payload", [server_key], extra_fields=[(0x0100, b"ignored")])
    p, out = pg_decrypt_blob(pgseal, tmp_path, ok, server_key, user_key, "ok.pgseal")
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == b"payload"
    bad = ref_v2(user_key, b"payload", [server_key], extra_fields=[(0x8100, b"must refuse")])
    p, out = pg_decrypt_blob(pgseal, tmp_path, bad, server_key, user_key, "crit.pgseal")
    assert p.returncode == 3, (p.returncode, p.stderr)
    assert not out.exists()


def test_v2_ref_bad_version(pgseal, tmp_path, user_key, server_key):
    blob = ref_v2(user_key, b"payload", [server_key])
    p, out = pg_decrypt_blob(pgseal, tmp_path, blob[:7] + b"\x03" + blob[8:], server_key, user_key)
    assert p.returncode == 3, (p.returncode, p.stderr)


def test_v2_ref_rewrapped_slots(pgseal, tmp_path, user_key, server_key, server2_key):
    """Slot A gen 1 -> server, slot B gen 2 -> server2: B is active (§6)."""
    data = os.urandom(3000)
    srv1 = ref.load_public_key(str(server_key.pub))
    srv2 = ref.load_public_key(str(server2_key.pub))
    blob = ref_v2(user_key, data, [], slots=((1, [srv1]), (2, [srv2])))
    p, out = pg_decrypt_blob(pgseal, tmp_path, blob, server2_key, user_key, "b.pgseal")
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == data
    # the old key is named only by the inactive slot: refused as a key problem
    p, out = pg_decrypt_blob(pgseal, tmp_path, blob, server_key, user_key, "a.pgseal")
    assert p.returncode == 5, (p.returncode, p.stderr)
    # slot B torn (bad checksum): A is the only valid slot
    lay = layout(tmp_path / "b.pgseal")
    b = bytearray(blob)
    b[lay.chunks_start - 10] ^= 1
    p, out = pg_decrypt_blob(pgseal, tmp_path, bytes(b), server_key, user_key, "torn.pgseal")
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == data
    # both slots with the same generation: damaged
    blob = ref_v2(user_key, data, [], slots=((3, [srv1]), (3, [srv2])))
    p, out = pg_decrypt_blob(pgseal, tmp_path, blob, server_key, user_key, "same.pgseal")
    assert p.returncode == 3, (p.returncode, p.stderr)


# --------------------------------------------------------------------------------------------
# legacy formats


def test_legacy_symmetric_ref_to_pgseal(pgseal, tmp_path):
    data = os.urandom(4321)
    src = tmp_path / "db.backup"
    src.write_bytes(data)
    enc = tmp_path / "db.backup.encrypted"
    run_ref("make-legacy-symmetric", src, enc, env={"BACKUP_ENCRYPTION_PASSWORD": LEGACY_PW})
    out = tmp_path / "out.bin"
    pgseal("decrypt", enc, "-o", out, env={"BACKUP_ENCRYPTION_PASSWORD": LEGACY_PW})
    assert out.read_bytes() == data
    p = pgseal("decrypt", enc, "-o", tmp_path / "o2", env={"BACKUP_ENCRYPTION_PASSWORD": LEGACY_PW + "x"},
               check=False)
    assert p.returncode in (4, 5), (p.returncode, p.stderr)
    assert not (tmp_path / "o2").exists()


@pytest.fixture
def legacy_hybrid_file(tmp_path, user_key, server_key):
    data = os.urandom(7777)
    src = tmp_path / "db.backup"
    src.write_bytes(data)
    enc = tmp_path / "db.backup.hybrid"
    run_ref("make-legacy-hybrid", src, enc, "--server-pub", server_key.pub, "--signer-key", user_key.key,
            "--user-id", "42", "--time", "1700000000", env=uenv(user_key))
    return enc, data


def test_legacy_hybrid_ref_to_pgseal(pgseal, tmp_path, legacy_hybrid_file, user_key, server_key):
    enc, data = legacy_hybrid_file
    out = tmp_path / "out.bin"
    pgseal("decrypt", enc, "-o", out, "--identity", server_key.key, "--signer", user_key.pub, env=senv(server_key))
    assert out.read_bytes() == data
    pgseal("verify", enc, "--signer", user_key.pub)


def test_legacy_hybrid_flip_fails_verify(pgseal, tmp_path, legacy_hybrid_file, user_key, server_key):
    enc, _ = legacy_hybrid_file
    bad = flip(enc, enc.stat().st_size - 100)  # a ciphertext byte
    p = pgseal("verify", bad, "--signer", user_key.pub, check=False)
    assert p.returncode == 4, (p.returncode, p.stderr)
    out = tmp_path / "out.bin"
    p = pgseal("decrypt", bad, "-o", out, "--identity", server_key.key, "--signer", user_key.pub,
               env=senv(server_key), check=False)
    assert p.returncode == 4, (p.returncode, p.stderr)
    assert not out.exists()


def test_legacy_hybrid_wrong_signer(pgseal, tmp_path, legacy_hybrid_file, server2_key):
    enc, _ = legacy_hybrid_file
    p = pgseal("verify", enc, "--signer", server2_key.pub, check=False)
    assert p.returncode in (4, 5), (p.returncode, p.stderr)


@pytest.mark.parametrize("size", [0, 1, 70_000])
def test_legacy_hybrid_sizes_mixed_keys(pgseal, tmp_path, user_key, server2_key, size):
    """N (2048-bit server: 256) and M (3072-bit signer: 384) differ; empty and small plaintexts."""
    data = os.urandom(size)
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    enc = tmp_path / "in.hybrid"
    run_ref("make-legacy-hybrid", src, enc, "--server-pub", server2_key.pub, "--signer-key", user_key.key,
            "--user-id", "3", "--time", "1500000000", env=uenv(user_key))
    assert enc.stat().st_size == size + 76 + 256 + 384
    out = tmp_path / "out.bin"
    pgseal("decrypt", enc, "-o", out, "--identity", server2_key.key, "--signer", user_key.pub, env=senv(server2_key))
    assert out.read_bytes() == data
    # and the legacy symmetric format at the same size
    senc = tmp_path / "in.sym"
    run_ref("make-legacy-symmetric", src, senc, env={"BACKUP_ENCRYPTION_PASSWORD": LEGACY_PW})
    out2 = tmp_path / "out2.bin"
    pgseal("decrypt", senc, "-o", out2, env={"BACKUP_ENCRYPTION_PASSWORD": LEGACY_PW})
    assert out2.read_bytes() == data


def test_pgseal_v1_to_ref(pgseal, tmp_path, user_key, server_key):
    data = os.urandom(2500)
    src = tmp_path / "x.bin"
    src.write_bytes(data)
    enc = tmp_path / "x.v1"
    t0 = int(time.time())
    pg_encrypt(pgseal, src, enc, [server_key.pub], user_key, "--format", "v1", "--user-id", "42")
    t1 = int(time.time())
    out = tmp_path / "out.bin"
    p = run_ref("legacy-hybrid-decrypt", enc, "-o", out, "--identity", server_key.key, "--signer", user_key.pub,
                env=senv(server_key))
    assert out.read_bytes() == data
    assert json.loads(p.stderr.decode().strip().splitlines()[-1])["signature_checked"] is True
    h = ref.parse_legacy_hybrid(enc.read_bytes())
    assert (h.version, h.user_id) == (1, 42)
    assert t0 - 2 <= h.time <= t1 + 2
    assert len(h.wrapped) == 384 and len(h.signature) == 384
    assert enc.stat().st_size == len(data) + 76 + 384 + 384


# --------------------------------------------------------------------------------------------
# keys: pgseal keygen <-> OpenSSL, OpenSSL keys in pgseal


@pytest.fixture(scope="session")
def pg_keygen(pgseal_bin, tmp_path_factory) -> KeyPair:
    d = tmp_path_factory.mktemp("keygen")
    p = subprocess.run(
        [pgseal_bin, "keygen", "--out", str(d / "alice"), "--key-size", "2048"],
        env=clean_env(PGSEAL_KEY_PASSWORD=KEYGEN_PW),
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr.decode()
    return KeyPair(d / "alice.key.pem", d / "alice.pub.pem", KEYGEN_PW)


def test_keygen_files_and_openssl(pg_keygen):
    k = pg_keygen
    assert k.key.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert k.pub.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert stat.S_IMODE(k.key.stat().st_mode) == 0o600
    p = openssl("pkey", "-in", k.key, "-passin", "env:PGSEAL_KEY_PASSWORD", "-noout",
                env={"PGSEAL_KEY_PASSWORD": KEYGEN_PW})
    assert p.returncode == 0, p.stderr.decode()
    p = openssl("pkey", "-pubin", "-in", k.pub, "-noout")
    assert p.returncode == 0, p.stderr.decode()
    p = openssl("pkey", "-in", k.key, "-passin", "env:PGSEAL_KEY_PASSWORD", "-noout",
                env={"PGSEAL_KEY_PASSWORD": KEYGEN_PW + "x"})
    assert p.returncode != 0
    # the public file belongs to the private key, e = 65537, 2048 bits
    p = openssl("pkey", "-in", k.key, "-passin", "env:PGSEAL_KEY_PASSWORD", "-pubout",
                env={"PGSEAL_KEY_PASSWORD": KEYGEN_PW})
    assert p.stdout.decode().strip() == k.pub.read_text().strip()
    p = openssl("asn1parse", "-in", k.key)
    text = p.stdout.decode()
    assert "PBES2" in text and "PBKDF2" in text and "aes-256-cbc" in text.lower(), text
    pub = ref.load_public_key(str(k.pub))
    assert pub.key_size == 2048 and pub.public_numbers().e == 65537


def test_keygen_refuses_overwrite_and_short_password(pgseal, pg_keygen, tmp_path):
    p = pgseal("keygen", "--out", pg_keygen.key.parent / "alice", "--key-size", "2048",
               env={"PGSEAL_KEY_PASSWORD": KEYGEN_PW}, check=False)
    assert p.returncode != 0, "keygen overwrote an existing key without --force"
    p = pgseal("keygen", "--out", tmp_path / "short", "--key-size", "2048",
               env={"PGSEAL_KEY_PASSWORD": "short"}, check=False)
    assert p.returncode != 0
    assert not (tmp_path / "short.key.pem").exists()


def test_key_info_fingerprint(pgseal, pg_keygen):
    want = fp_str(pg_keygen.pub)
    p = pgseal("key", "info", pg_keygen.pub, "--json")
    assert want in p.stdout.decode(), p.stdout
    json.loads(p.stdout)
    p = pgseal("key", "info", pg_keygen.key, "--json", env={"PGSEAL_KEY_PASSWORD": KEYGEN_PW})
    assert want in p.stdout.decode(), p.stdout


def test_keygen_keys_work_with_ref(pgseal, tmp_path, pg_keygen):
    """A pgseal keygen key as both signer and recipient; pgseal_ref decrypts."""
    data = os.urandom(3000)
    src = tmp_path / "k.bin"
    src.write_bytes(data)
    enc = tmp_path / "k.pgseal"
    pg_encrypt(pgseal, src, enc, [pg_keygen.pub], pg_keygen)
    out = tmp_path / "out.bin"
    ref_decrypt(enc, out, pg_keygen, pg_keygen)
    assert out.read_bytes() == data


def pg_roundtrip(pgseal, tmp_path, recipient_pub, identity: KeyPair, signer: KeyPair, signer_pub=None):
    data = os.urandom(2000)
    src = tmp_path / "rt.bin"
    src.write_bytes(data)
    enc = tmp_path / "rt.pgseal"
    pg_encrypt(pgseal, src, enc, [recipient_pub], signer)
    out = tmp_path / "rt.out"
    pgseal("decrypt", enc, "-o", out, "--identity", identity.key, "--signer", signer_pub or signer.pub,
           env=senv(identity))
    assert out.read_bytes() == data
    return enc, data


def test_openssl_encrypted_pkcs8_keys(pgseal, tmp_path, user_key, server_key):
    enc, data = pg_roundtrip(pgseal, tmp_path, server_key.pub, server_key, user_key)
    out = tmp_path / "ref.out"
    ref_decrypt(enc, out, server_key, user_key)
    assert out.read_bytes() == data


def test_openssl_plain_pkcs8_keys(pgseal, tmp_path, plain_key):
    # plain key as recipient, identity and signer; no password variables at all
    pg_roundtrip(pgseal, tmp_path, plain_key.pub, plain_key, plain_key)


def test_openssl_pkcs1_private_and_public(pgseal, tmp_path, pkcs1_keys, user_key):
    # PKCS#1 public key as recipient, PKCS#1 private key as identity
    enc, data = pg_roundtrip(pgseal, tmp_path, pkcs1_keys.pub, pkcs1_keys, user_key)
    # PKCS#1 private key as signer, PKCS#1 public key as --signer
    sub = tmp_path / "s"
    sub.mkdir()
    pg_roundtrip(pgseal, sub, pkcs1_keys.pub, pkcs1_keys, pkcs1_keys, signer_pub=pkcs1_keys.pub)
    # the reference agrees on the recipient's fingerprint (SPKI DER of the PKCS#1 key)
    info = json.loads(run_ref("v2-inspect", enc).stdout)
    assert info["slots"]["A"]["stanzas"][0]["recipient"] == fp_str(pkcs1_keys.pub)


# --------------------------------------------------------------------------------------------
# exit codes for key problems


def test_exit_codes_key_problems(pgseal, tmp_path, sealed_file, user_key, server_key, server2_key):
    enc, _ = sealed_file
    base = ["decrypt", enc, "-o", tmp_path / "o"]
    # wrong identity password
    p = pgseal(*base, "--identity", server_key.key, "--signer", user_key.pub,
               env={"SERVER_KEY_PASSWORD": SERVER2_PW}, check=False)
    assert p.returncode == 5, (p.returncode, p.stderr)
    # identity the file does not name
    p = pgseal(*base, "--identity", server2_key.key, "--signer", user_key.pub, env=senv(server2_key), check=False)
    assert p.returncode == 5, (p.returncode, p.stderr)
    # signer key not the creator's
    p = pgseal(*base, "--identity", server_key.key, "--signer", server2_key.pub, env=senv(server_key), check=False)
    assert p.returncode in (4, 5), (p.returncode, p.stderr)
    # §4: no signer key and no explicit waiver -> refuse
    p = pgseal(*base, "--identity", server_key.key, env=senv(server_key), check=False)
    assert p.returncode != 0, "decrypt without --signer and without --no-verify must refuse (FORMAT.md §4)"
    assert not (tmp_path / "o").exists()
    # wrong sign-key password on encrypt
    src = tmp_path / "s.bin"
    src.write_bytes(b"x")
    p = pgseal("encrypt", src, "-o", tmp_path / "s.pgseal", "--recipient", server_key.pub, "--sign-key",
               user_key.key, env={"PGSEAL_USER_KEY_PASSWORD": SERVER_PW}, check=False)
    assert p.returncode == 5, (p.returncode, p.stderr)


# --------------------------------------------------------------------------------------------
# streams and inspect


def test_stdin_stdout(pgseal, tmp_path, user_key, server_key):
    data = os.urandom(200_000)
    p = pgseal("encrypt", "-", "-o", "-", "--recipient", server_key.pub, "--sign-key", user_key.key,
               "--chunk-size", "4096", env=uenv(user_key), input=data)
    enc = tmp_path / "stream.pgseal"
    enc.write_bytes(p.stdout)
    out = tmp_path / "out.bin"
    ref_decrypt(enc, out, server_key, user_key)
    assert out.read_bytes() == data
    p = pgseal("decrypt", "-", "-o", "-", "--identity", server_key.key, "--signer", user_key.pub,
               env=senv(server_key), input=enc.read_bytes())
    assert p.stdout == data


def test_pgseal_inspect_json(pgseal, sealed_file, user_key, server_key):
    enc, _ = sealed_file
    p = pgseal("inspect", enc, "--json")
    info = json.loads(p.stdout)
    text = json.dumps(info)
    assert fp_str(user_key.pub) in text, "signer fingerprint (SHA256:<unpadded base64>) not shown"
    assert fp_str(server_key.pub) in text, "recipient fingerprint not shown"


# --------------------------------------------------------------------------------------------
# hybrid recipients: RSA-OAEP + ML-KEM-768 (FORMAT.md §6a)

PBES2_OID = "1.2.840.113549.1.5.13"
PBKDF2_OID = "1.2.840.113549.1.5.12"
PRF_HASHES = {
    "1.2.840.113549.2.7": hashes.SHA1,
    "1.2.840.113549.2.9": hashes.SHA256,
    "1.2.840.113549.2.10": hashes.SHA384,
    "1.2.840.113549.2.11": hashes.SHA512,
}
AES_CBC_OIDS = {"2.16.840.1.101.3.4.1.2": 16, "2.16.840.1.101.3.4.1.22": 24, "2.16.840.1.101.3.4.1.42": 32}


def der_items(b: bytes) -> list:
    """[(tag, value)] of the DER TLVs concatenated in `b` (definite lengths only)."""
    out, pos = [], 0
    while pos < len(b):
        tag, n = b[pos], b[pos + 1]
        pos += 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(b[pos : pos + k], "big")
            pos += k
        out.append((tag, b[pos : pos + n]))
        pos += n
    assert pos == len(b), "DER: trailing bytes"
    return out


def der_oid(v: bytes) -> str:
    first = v[0]
    arcs, n = [first // 40 if first < 80 else 2, first % 40 if first < 80 else first - 80], 0
    for c in v[1:]:
        n = n << 7 | (c & 0x7F)
        if not c & 0x80:
            arcs.append(n)
            n = 0
    return ".".join(map(str, arcs))


def pbes2_decrypt(pem_block: bytes, password: str) -> tuple[bytes, bytes, bytes]:
    """Decrypt an ENCRYPTED PRIVATE KEY block by hand (PBES2, PBKDF2, AES-CBC): the PKCS#8 DER, and
    the salt and IV it used."""
    der = base64.b64decode(b"".join(pem_block.strip().splitlines()[1:-1]))
    [(t, epki)] = der_items(der)
    (_, alg), (_, enc) = der_items(epki)
    (_, oid), (_, params) = der_items(alg)
    assert der_oid(oid) == PBES2_OID, der_oid(oid)
    (_, kdf), (_, scheme) = der_items(params)
    (_, kdf_oid), (_, kdf_params) = der_items(kdf)
    assert der_oid(kdf_oid) == PBKDF2_OID, der_oid(kdf_oid)
    kp = der_items(kdf_params)
    salt, iters = kp[0][1], int.from_bytes(kp[1][1], "big")
    prf = hashes.SHA1
    for tag, v in kp[2:]:
        if tag == 0x30:
            prf = PRF_HASHES[der_oid(der_items(v)[0][1])]
    (_, c_oid), (_, iv) = der_items(scheme)
    klen = AES_CBC_OIDS[der_oid(c_oid)]
    key = PBKDF2HMAC(algorithm=prf(), length=klen, salt=salt, iterations=iters).derive(password.encode())
    d = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = d.update(enc) + d.finalize()
    u = sym_padding.PKCS7(128).unpadder()
    return u.update(padded) + u.finalize(), salt, iv


def mlkem_fp_str(pub) -> str:
    return ref.fingerprint_str(ref.mlkem_fingerprint(pub))


def hybrid_fps(pub_path) -> tuple[str, str]:
    k = ref.load_recipient_key(str(pub_path))
    assert isinstance(k, ref.HybridPublicKey), f"{pub_path} is not a hybrid public key file"
    return fp_str(pub_path), mlkem_fp_str(k.pq)


@pytest.fixture(scope="session")
def pg_keygen_pq(pgseal_bin, tmp_path_factory) -> KeyPair:
    d = tmp_path_factory.mktemp("keygen-pq")
    p = subprocess.run(
        [pgseal_bin, "keygen", "--out", str(d / "pq"), "--pq", "--key-size", "2048"],
        env=clean_env(PGSEAL_KEY_PASSWORD=KEYGEN_PW),
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr.decode()
    return KeyPair(d / "pq.key.pem", d / "pq.pub.pem", KEYGEN_PW)


@pytest.fixture(scope="session")
def py_hybrid(hyb2048, tmp_path_factory) -> KeyPair:
    """A hybrid key pair made and written by Python `cryptography` (two PEM blocks each)."""
    return write_hybrid_keypair(tmp_path_factory.mktemp("pyhyb"), "pyhyb", hyb2048, SERVER_PW)


def test_keygen_pq_files(pg_keygen_pq):
    """FORMAT.md §6a key files: two blocks, RSA first; each opens on its own; ML-KEM in seed form."""
    k = pg_keygen_pq
    assert stat.S_IMODE(k.key.stat().st_mode) == 0o600
    priv_blocks = ref.pem_blocks(k.key.read_bytes())
    pub_blocks = ref.pem_blocks(k.pub.read_bytes())
    assert [lbl for lbl, _ in priv_blocks] == ["ENCRYPTED PRIVATE KEY"] * 2, k.key.read_text()[:200]
    assert [lbl for lbl, _ in pub_blocks] == ["PUBLIC KEY"] * 2
    rsa_priv = serialization.load_pem_private_key(priv_blocks[0][1], KEYGEN_PW.encode())
    pq_priv = serialization.load_pem_private_key(priv_blocks[1][1], KEYGEN_PW.encode())
    assert isinstance(rsa_priv, rsa.RSAPrivateKey) and rsa_priv.key_size == 2048
    assert rsa_priv.public_key().public_numbers().e == 65537
    assert isinstance(pq_priv, mlkem.MLKEM768PrivateKey)
    rsa_pub = serialization.load_pem_public_key(pub_blocks[0][1])
    pq_pub = serialization.load_pem_public_key(pub_blocks[1][1])
    assert ref.fingerprint(rsa_pub) == ref.fingerprint(rsa_priv.public_key())
    assert ref.mlkem_fingerprint(pq_pub) == ref.mlkem_fingerprint(pq_priv.public_key())
    # the ML-KEM SPKI: id-alg-ml-kem-768 without parameters, the 1,184-byte key as the BIT STRING
    spki = base64.b64decode(b"".join(pub_blocks[1][1].strip().splitlines()[1:-1]))
    [(_, seq)] = der_items(spki)
    (_, alg), (bt, bits) = der_items(seq)
    assert b"\x30" + bytes([len(alg)]) + alg == ref.MLKEM768_ALG_ID_DER
    assert bt == 0x03 and bits[0] == 0 and bits[1:] == pq_pub.public_bytes_raw() and len(bits) == 1185
    # each block its own PBES2 salt and IV; the ML-KEM privateKey is the seed form 0x80 0x40 d||z
    rsa_der, salt1, iv1 = pbes2_decrypt(priv_blocks[0][1], KEYGEN_PW)
    pq_der, salt2, iv2 = pbes2_decrypt(priv_blocks[1][1], KEYGEN_PW)
    assert salt1 != salt2 and iv1 != iv2
    [(_, pki)] = der_items(pq_der)
    (_, version), (_, alg), (ot, pk) = der_items(pki)
    assert version == b"\x00" and b"\x30" + bytes([len(alg)]) + alg == ref.MLKEM768_ALG_ID_DER
    assert ot == 0x04 and len(pk) == 66 and pk[:2] == b"\x80\x40", pk[:4].hex()
    seed_key = mlkem.MLKEM768PrivateKey.from_seed_bytes(pk[2:])
    assert ref.mlkem_fingerprint(seed_key.public_key()) == ref.mlkem_fingerprint(pq_pub)
    assert serialization.load_der_private_key(rsa_der, None).private_numbers() == rsa_priv.private_numbers()
    # the RSA block opens in OpenSSL on its own; the wrong password opens neither block
    rsa_only = k.key.with_name("pq.rsa-only.key.pem")
    rsa_only.write_bytes(priv_blocks[0][1])
    p = openssl("pkey", "-in", rsa_only, "-passin", "env:PW", "-noout", env={"PW": KEYGEN_PW})
    assert p.returncode == 0, p.stderr.decode()
    for _lbl, b in priv_blocks:
        with pytest.raises(ValueError):
            serialization.load_pem_private_key(b, (KEYGEN_PW + "x").encode())
    # and the reference loads the pair
    ident = ref.load_identity_key(str(k.key), None, password=KEYGEN_PW)
    assert ident.public_key().fingerprints == ref.load_recipient_key(str(k.pub)).fingerprints


def key_info(pgseal, path, password=None) -> dict:
    p = pgseal("key", "info", path, "--json", env={"PGSEAL_KEY_PASSWORD": password} if password else None)
    return json.loads(p.stdout)


def test_key_info_pq_fingerprints(pgseal, pg_keygen_pq):
    want_rsa, want_pq = hybrid_fps(pg_keygen_pq.pub)
    for path, pw in ((pg_keygen_pq.pub, None), (pg_keygen_pq.key, KEYGEN_PW)):
        info = key_info(pgseal, path, pw)
        assert (info.get("fingerprint"), info.get("pq_fingerprint")) == (want_rsa, want_pq), (path.name, info)


def test_key_info_rsa_key_has_no_pq_fingerprint(pgseal, pg_keygen):
    info = key_info(pgseal, pg_keygen.pub)
    assert info.get("fingerprint") == fp_str(pg_keygen.pub)
    assert not info.get("pq_fingerprint"), info


def test_key_info_python_hybrid(pgseal, py_hybrid, hyb2048):
    want = (fp_str(py_hybrid.pub), mlkem_fp_str(hyb2048.pq.public_key()))
    assert hybrid_fps(py_hybrid.pub) == want
    for path, pw in ((py_hybrid.pub, None), (py_hybrid.key, SERVER_PW)):
        info = key_info(pgseal, path, pw)
        assert (info.get("fingerprint"), info.get("pq_fingerprint")) == want, (path.name, info)


@pytest.mark.parametrize("which", ["python", "rust_keygen"])
def test_v2_ref_hybrid_to_pgseal(pgseal, tmp_path, user_key, py_hybrid, pg_keygen_pq, which):
    """The reference seals to a hybrid key; pgseal decrypts and verifies."""
    kp = py_hybrid if which == "python" else pg_keygen_pq
    data = os.urandom(5000)
    blob = ref_v2(user_key, data, [kp], chunk_size=1024)
    assert blob_layout(blob).hdr.hybrid
    p, out = pg_decrypt_blob(pgseal, tmp_path, blob, kp, user_key)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == data
    p = pgseal("verify", tmp_path / "r.pgseal", "--signer", user_key.pub, check=False)
    assert p.returncode == 0, p.stderr


def test_v2_ref_hybrid_two_recipients_to_pgseal(pgseal, tmp_path, user_key, py_hybrid, pg_keygen_pq):
    data = os.urandom(3000)
    blob = ref_v2(user_key, data, [py_hybrid, pg_keygen_pq], compression=1, chunk_size=1024)
    for kp in (py_hybrid, pg_keygen_pq):
        p, out = pg_decrypt_blob(pgseal, tmp_path, blob, kp, user_key, f"two-{kp.key.stem}.pgseal")
        assert p.returncode == 0, p.stderr
        assert out.read_bytes() == data


def test_v2_pgseal_hybrid_to_ref(pgseal, tmp_path, user_key, py_hybrid, pg_keygen_pq):
    """pgseal encrypt --recipient HYBRID.pub: the reference decrypts; the header and stanzas follow §6a."""
    data = os.urandom(70_000)
    src = tmp_path / "h.bin"
    src.write_bytes(data)
    for recips, name in (([pg_keygen_pq], "one"), ([pg_keygen_pq, py_hybrid], "two")):
        enc = tmp_path / f"h-{name}.pgseal"
        pg_encrypt(pgseal, src, enc, [r.pub for r in recips], user_key, "--compress", "zstd")
        info = json.loads(run_ref("v2-inspect", enc).stdout)
        assert info["hybrid_recipients"] == 1, "FORMAT.md §6a: every recipient hybrid -> the header flag"
        stanzas = info["slots"]["A"]["stanzas"]
        assert [s["kind"] for s in stanzas] == [2] * len(recips)
        assert sorted((s["recipient"], s["pq_recipient"]) for s in stanzas) == sorted(
            hybrid_fps(r.pub) for r in recips
        )
        assert info["recipient_slot_size"] == 4096, "FORMAT.md §6a: 4,096-byte slots for <= 2 such recipients"
        lay = layout(enc)
        assert [len(st.body) for st in lay.slot_a.stanzas] == [1200 + 256] * len(recips)
        for kp in recips:
            out = tmp_path / f"h-{name}-{kp.key.stem}.out"
            ref_decrypt(enc, out, kp, user_key)
            assert out.read_bytes() == data
        run_ref("v2-verify", enc, "--signer", user_key.pub)
        # and pgseal reads its own file
        out = tmp_path / f"h-{name}.pg.out"
        pgseal("decrypt", enc, "-o", out, "--identity", pg_keygen_pq.key, "--signer", user_key.pub,
               env=senv(pg_keygen_pq))
        assert out.read_bytes() == data


def test_v2_pgseal_refuses_mixed_recipients(pgseal, tmp_path, user_key, server_key, pg_keygen_pq):
    """FORMAT.md §6a: a mix of hybrid and RSA-only recipients is refused by writers."""
    src = tmp_path / "m.bin"
    src.write_bytes(b"mixed")
    for order in ((pg_keygen_pq.pub, server_key.pub), (server_key.pub, pg_keygen_pq.pub)):
        out = tmp_path / "m.pgseal"
        p = pgseal("encrypt", src, "-o", out, "--recipient", order[0], "--recipient", order[1],
                   "--sign-key", user_key.key, env=uenv(user_key), check=False)
        assert p.returncode != 0, "pgseal sealed a file for a mix of hybrid and RSA-only recipients"
        assert not out.exists()


def test_v2_pgseal_inspect_hybrid(pgseal, tmp_path, user_key, py_hybrid):
    blob = ref_v2(user_key, b"inspect", [py_hybrid])
    f = tmp_path / "i.pgseal"
    f.write_bytes(blob)
    text = pgseal("inspect", f, "--json").stdout.decode()
    json.loads(text)
    rsa_fp, pq_fp = hybrid_fps(py_hybrid.pub)
    assert rsa_fp in text and pq_fp in text, text


def flagged_and_plain(user_key: KeyPair, hybrid: KeyPair, data: bytes, K: bytes) -> tuple[bytes, bytes]:
    """Two reference files for `hybrid` with file key K: one with hybrid_recipients, one without."""
    flagged = ref_v2(user_key, data, [hybrid], file_key=K, slot_size=4096)
    plain = ref_v2(user_key, data, [hybrid], file_key=K, slot_size=4096, hybrid_flag=False, unchecked=True)
    assert blob_layout(flagged).hdr.hybrid and not blob_layout(plain).hdr.hybrid
    return flagged, plain


def test_v2_pgseal_refuses_downgrade(pgseal, tmp_path, user_key, server_key, py_hybrid):
    """A hybrid_recipients file whose active slot holds an RSA-OAEP stanza (valid MAC, built with
    the known file key) is refused by pgseal decrypt and by keyless verify (FORMAT.md §6a)."""
    K = os.urandom(32)
    data = os.urandom(2000)
    flagged, plain = flagged_and_plain(user_key, py_hybrid, data, K)
    srv = ref.load_public_key(str(server_key.pub))
    hyb = ref.load_recipient_key(str(py_hybrid.pub))
    replaced = [ref.rsa_stanza(srv, K)]
    added = [ref.hybrid_stanza(hyb, K), ref.rsa_stanza(srv, K)]
    # control: without the flag, the RSA-only slot opens for its key (so only the rule refuses below)
    p, out = pg_decrypt_blob(pgseal, tmp_path, slot_a_replaced(plain, K, replaced), server_key, user_key, "c.pgseal")
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == data
    for name, stanzas, ident in (("replaced", replaced, server_key), ("added", added, py_hybrid),
                                 ("added-rsa-id", added, server_key)):
        bad = slot_a_replaced(flagged, K, stanzas)
        p, out = pg_decrypt_blob(pgseal, tmp_path, bad, ident, user_key, f"{name}.pgseal")
        assert p.returncode == 4, (name, p.returncode, p.stderr)
        assert not out.exists()
        p = pgseal("verify", tmp_path / f"{name}.pgseal", "--signer", user_key.pub, check=False)
        assert p.returncode == 4, (name, "verify", p.returncode, p.stderr)
        # the reference agrees
        p = ref_decrypt(tmp_path / f"{name}.pgseal", tmp_path / f"{name}.ref.out", ident, user_key, check=False)
        assert p.returncode == 4 and b"downgrade" in p.stderr, p.stderr


def test_v2_pgseal_hybrid_stanza_tamper(pgseal, tmp_path, user_key, py_hybrid):
    """Bytes of C_rsa, C_pq and W changed, slot MAC and checksum recomputed: the unwrap fails; the PQ
    part cut away: not well formed (3) or refused (4). FORMAT.md names no error class for a failed
    unwrap ("the key is wrong or the stanza damaged"): the reference says 4, pgseal says 5 (as it
    does for RSA-OAEP stanzas), and either is accepted."""
    K = os.urandom(32)
    flagged, _ = flagged_and_plain(user_key, py_hybrid, b"tamper", K)
    lay = blob_layout(flagged)
    S, a, H = lay.hdr.slot_size, lay.chunks_start - 2 * lay.hdr.slot_size, lay.hdr.H
    k_mac = ref.derive_keys(lay.hdr.fields["salt"], K).mac
    slot = flagged[a : a + S]
    L = 256
    body_at = 14  # generation 8, count 2, kind 2, length 2
    for where, off in (("C_rsa", 64 + 5), ("C_rsa_last", 64 + L - 1), ("C_pq", 64 + L + 500),
                       ("W_ct", 64 + L + 1088 + 3), ("W_tag", 64 + L + 1088 + 47)):
        s = bytearray(slot)
        s[body_at + off] ^= 0x20
        bad = flagged[:a] + reseal(s, k_mac, H) + flagged[a + S :]
        p, out = pg_decrypt_blob(pgseal, tmp_path, bad, py_hybrid, user_key, f"t-{where}.pgseal")
        assert p.returncode in (4, 5), (where, p.returncode, p.stderr)
        assert not out.exists()
    body = lay.slot_a.stanzas[0].body
    for where, cut in (("rsa_style", body[:32] + body[64 : 64 + L]),
                       ("no_c_pq", body[: 64 + L] + body[-48:])):
        bad = slot_a_replaced(flagged, K, [(2, cut)])
        p, out = pg_decrypt_blob(pgseal, tmp_path, bad, py_hybrid, user_key, f"cut-{where}.pgseal")
        assert p.returncode in (3, 4), (where, p.returncode, p.stderr)
        assert not out.exists()
    # the RSA half relabelled as an RSA-OAEP stanza: a downgrade
    bad = slot_a_replaced(flagged, K, [(1, body[:32] + body[64 : 64 + L])])
    p, out = pg_decrypt_blob(pgseal, tmp_path, bad, py_hybrid, user_key, "relabel.pgseal")
    assert p.returncode == 4, (p.returncode, p.stderr)
    # sanity: the untouched stanza in a rebuilt slot opens
    p, out = pg_decrypt_blob(pgseal, tmp_path, slot_a_replaced(flagged, K, [(2, body)]), py_hybrid, user_key,
                             "intact.pgseal")
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == b"tamper"


def test_v2_pgseal_hybrid_header_flag(pgseal, tmp_path, user_key, py_hybrid):
    blob = ref_v2(user_key, b"flag", [py_hybrid])
    hl = int.from_bytes(blob[8:12], "big")
    body = blob[12 : 12 + hl]
    field = ref.encode_field(ref.T_HYBRID, b"\x01")
    assert body.endswith(field)
    # removed: the header signature fails
    stripped = body[: -len(field)]
    bad = blob[:8] + struct.pack(">I", len(stripped)) + stripped + blob[12 + hl :]
    p, out = pg_decrypt_blob(pgseal, tmp_path, bad, py_hybrid, user_key, "noflag.pgseal")
    assert p.returncode == 4, (p.returncode, p.stderr)
    p = pgseal("verify", tmp_path / "noflag.pgseal", "--signer", user_key.pub, check=False)
    assert p.returncode == 4, (p.returncode, p.stderr)
    # another value: invalid (3), even when validly signed
    for v in (b"\x00", b"\x02"):
        bad = blob[:12] + body[: -1] + v + blob[12 + hl :]
        p, out = pg_decrypt_blob(pgseal, tmp_path, bad, py_hybrid, user_key, "val.pgseal")
        assert p.returncode == 3, (v, p.returncode, p.stderr)
        assert not out.exists()
    signed2 = ref_v2(user_key, b"flag", [py_hybrid], extra_fields=[(ref.T_HYBRID, b"\x02")])
    p, out = pg_decrypt_blob(pgseal, tmp_path, signed2, py_hybrid, user_key, "signed2.pgseal")
    assert p.returncode == 3, (p.returncode, p.stderr)


def test_v2_pgseal_hybrid_wrong_half(pgseal, tmp_path, user_key, py_hybrid, hyb2048, hyb2048b):
    """An identity with the right RSA key and the wrong ML-KEM key (or the reverse) cannot open."""
    blob = ref_v2(user_key, b"halves", [py_hybrid])
    for name, ident in (("wrong_pq", ref.HybridPrivateKey(hyb2048.rsa, hyb2048b.pq)),
                        ("wrong_rsa", ref.HybridPrivateKey(hyb2048b.rsa, hyb2048.pq))):
        kp = write_hybrid_keypair(tmp_path, name, ident, SERVER_PW)
        p, out = pg_decrypt_blob(pgseal, tmp_path, blob, kp, user_key, f"{name}.pgseal")
        assert p.returncode == 5, (name, p.returncode, p.stderr)
        assert not out.exists()
    # and the right pair opens it
    p, out = pg_decrypt_blob(pgseal, tmp_path, blob, py_hybrid, user_key, "right.pgseal")
    assert p.returncode == 0, p.stderr
