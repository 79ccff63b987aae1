"""Self-tests of pgseal_ref alone (no pgseal binary needed)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct

import pytest
import zstandard
from conftest import LEGACY_PW, SERVER_PW, USER_PW, run_ref, write_key, write_pub
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, utils

import pgseal_ref as ref


def dec(blob: bytes, tmp_path, identities, signers, **kw) -> bytes:
    p = tmp_path / "f.pgseal"
    p.write_bytes(blob)
    out = io.BytesIO()
    ref.v2_decrypt(str(p), out, identities, signers, **kw)
    return out.getvalue()


# ---- v2


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 4096, 3 * 1024 + 7])
@pytest.mark.parametrize("compression", [0, 1])
def test_v2_roundtrip(tmp_path, rsa2048, rsa3072, size, compression):
    data = os.urandom(size)
    blob = ref.v2_encrypt(data, [rsa2048.public_key()], rsa3072, compression=compression, chunk_size=1024)
    assert dec(blob, tmp_path, [rsa2048], [rsa3072.public_key()]) == data
    res = ref.v2_verify(str(tmp_path / "f.pgseal"), [rsa3072.public_key()])
    assert res["ok"]
    if compression == 0:
        assert res["chunks"] == max(1, -(-size // 1024))


def test_zstd_store_frames_decode_with_zstandard():
    data = os.urandom(300_000)
    frames = ref.zstd_store_frames(data, frame_size=100_000)
    out = io.BytesIO()
    z = ref.ZstdStream(out)
    for i in range(0, len(frames), 777):
        z.feed(frames[i : i + 777])
    z.finish()
    assert out.getvalue() == data
    # zstandard itself agrees
    r = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(frames), read_across_frames=True)
    assert r.read() == data


def test_v2_zero_zstd_frames_is_empty(tmp_path, rsa2048):
    out = io.BytesIO()
    z = ref.ZstdStream(out)
    z.feed(b"")
    z.finish()
    assert out.getvalue() == b""


def test_v2_two_recipients(tmp_path, rsa2048, rsa2048b, rsa3072):
    data = os.urandom(5000)
    blob = ref.v2_encrypt(data, [rsa2048.public_key(), rsa2048b.public_key()], rsa3072, chunk_size=1024)
    assert dec(blob, tmp_path, [rsa2048], [rsa3072.public_key()]) == data
    assert dec(blob, tmp_path, [rsa2048b], [rsa3072.public_key()]) == data
    with pytest.raises(ref.KeyProblem):
        dec(blob, tmp_path, [rsa3072], [rsa3072.public_key()])


def test_v2_slot_generations(tmp_path, rsa2048, rsa2048b, rsa3072):
    data = b"x" * 3000
    sig = [rsa3072.public_key()]
    # B generation 2 is active: only its recipient can decrypt
    blob = ref.v2_encrypt(data, [], rsa3072, slots=((1, [rsa2048.public_key()]), (2, [rsa2048b.public_key()])))
    assert dec(blob, tmp_path, [rsa2048b], sig) == data
    with pytest.raises(ref.KeyProblem):
        dec(blob, tmp_path, [rsa2048], sig)
    # same generation twice: damaged
    blob = ref.v2_encrypt(data, [], rsa3072, slots=((1, [rsa2048.public_key()]), (1, [rsa2048b.public_key()])))
    with pytest.raises(ref.FormatError):
        dec(blob, tmp_path, [rsa2048], sig)
    # torn slot B (bad checksum) -> A
    blob = bytearray(
        ref.v2_encrypt(data, [], rsa3072, slots=((1, [rsa2048.public_key()]), (2, [rsa2048b.public_key()])))
    )
    lay = ref.read_v2_layout(open(_w(tmp_path, bytes(blob)), "rb"))
    b_start = lay.chunks_start - lay.hdr.slot_size
    blob[b_start + 20] ^= 1
    assert dec(bytes(blob), tmp_path, [rsa2048], sig) == data


def _w(tmp_path, blob):
    p = tmp_path / "g.pgseal"
    p.write_bytes(blob)
    return p


def test_v2_header_rules(tmp_path, rsa2048, rsa3072):
    sig = [rsa3072.public_key()]
    k = [rsa2048]
    ok = ref.v2_encrypt(b"abc", [rsa2048.public_key()], rsa3072, extra_fields=[(0x0100, b"hello")])
    assert dec(ok, tmp_path, k, sig) == b"abc"
    bad = ref.v2_encrypt(b"abc", [rsa2048.public_key()], rsa3072, extra_fields=[(0x8100, b"x")])
    with pytest.raises(ref.FormatError, match="critical"):
        dec(bad, tmp_path, k, sig)
    # wrong version byte
    with pytest.raises(ref.FormatError, match="version"):
        dec(ok[:7] + b"\x03" + ok[8:], tmp_path, k, sig)
    # out of order tags: swap the first two fields of the body
    body_len = int.from_bytes(ok[8:12], "big")
    body = ok[12 : 12 + body_len]
    l1 = 6 + int.from_bytes(body[2:6], "big")
    l2 = 6 + int.from_bytes(body[l1 + 2 : l1 + 6], "big")
    swapped = body[l1 : l1 + l2] + body[:l1] + body[l1 + l2 :]
    with pytest.raises(ref.FormatError, match="increasing"):
        dec(ok[:12] + swapped + ok[12 + body_len :], tmp_path, k, sig)
    # bad chunk size value
    bad = ref.v2_encrypt(b"abc", [rsa2048.public_key()], rsa3072, chunk_size=1000)
    with pytest.raises(ref.FormatError, match="chunk_size"):
        dec(bad, tmp_path, k, sig)


def test_v2_tamper(tmp_path, rsa2048, rsa3072):
    sig = [rsa3072.public_key()]
    data = os.urandom(3 * 1024 + 7)
    blob = ref.v2_encrypt(data, [rsa2048.public_key()], rsa3072, chunk_size=1024)
    lay = ref.read_v2_layout(open(_w(tmp_path, blob), "rb"))
    salt_off = 12 + lay.hdr.body.index(lay.hdr.fields["salt"])
    S = lay.hdr.slot_size
    slot_a = lay.chunks_start - 2 * S
    cases = {
        "chunk": (lay.chunks_start + 1030, ref.AuthError),
        "header": (salt_off, ref.AuthError),
        "header_sig": (12 + lay.hdr.header_len + 5, ref.AuthError),
        "final_sig": (len(blob) - 1, ref.AuthError),
    }
    for name, (off, exc) in cases.items():
        b = bytearray(blob)
        b[off] ^= 0x40
        with pytest.raises(exc):
            dec(bytes(b), tmp_path, [rsa2048], sig)
        with pytest.raises(exc):
            ref.v2_verify(str(_w(tmp_path, bytes(b))), sig)
    # MAC flipped and checksum recomputed: only the decoder (with K) notices
    b = bytearray(blob)
    b[slot_a + S - 64] ^= 1
    b[slot_a + S - 32 : slot_a + S] = hashlib.sha256(b[slot_a : slot_a + S - 32]).digest()
    assert ref.v2_verify(str(_w(tmp_path, bytes(b))), sig)["ok"]
    with pytest.raises(ref.AuthError, match="MAC"):
        dec(bytes(b), tmp_path, [rsa2048], sig)
    # truncations
    full = 1024 + 16
    L = lay.hdr.sig_len
    for t in (
        blob[:-1],
        blob[: lay.chunks_start + 3 * full] + blob[-L:],  # drop the last chunk, keep the signature
        blob[: lay.chunks_start + 100],
        blob[:20],
    ):
        with pytest.raises((ref.FormatError, ref.AuthError)):
            dec(t, tmp_path, [rsa2048], sig)


def test_v2_cli_decrypt_leaves_no_output(tmp_path, rsa2048, rsa3072):
    key = write_key(tmp_path / "srv.key.pem", rsa2048, SERVER_PW)
    spub = write_pub(tmp_path / "sgn.pub.pem", rsa3072)
    blob = bytearray(ref.v2_encrypt(os.urandom(5000), [rsa2048.public_key()], rsa3072, chunk_size=1024))
    blob[-600] ^= 1  # inside the last chunk
    f = _w(tmp_path, bytes(blob))
    out = tmp_path / "out.bin"
    p = run_ref("v2-decrypt", f, "-o", out, "--identity", key, "--signer", spub,
                env={"SERVER_KEY_PASSWORD": SERVER_PW}, check=False)
    assert p.returncode == 4, p.stderr
    assert not out.exists()
    assert [x.name for x in tmp_path.iterdir() if x.name.startswith(".pgseal_ref")] == []


def test_v2_cli(tmp_path, rsa2048, rsa3072):
    skey = write_key(tmp_path / "srv.key.pem", rsa2048, SERVER_PW)
    spub = write_pub(tmp_path / "srv.pub.pem", rsa2048)
    ukey = write_key(tmp_path / "usr.key.pem", rsa3072, USER_PW)
    upub = write_pub(tmp_path / "usr.pub.pem", rsa3072)
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(70_000))
    enc = tmp_path / "in.pgseal"
    run_ref("v2-encrypt", src, "-o", enc, "--recipient", spub, "--sign-key", ukey, "--compress", "zstd",
            env={"PGSEAL_USER_KEY_PASSWORD": USER_PW})
    out = tmp_path / "out.bin"
    run_ref("v2-decrypt", enc, "-o", out, "--identity", skey, "--signer", upub, env={"SERVER_KEY_PASSWORD": SERVER_PW})
    assert out.read_bytes() == src.read_bytes()
    run_ref("v2-verify", enc, "--signer", upub)
    info = json.loads(run_ref("v2-inspect", enc).stdout)
    assert info["compression"] == 1 and info["suite"] == 1
    assert info["signer_fingerprint"] == ref.fingerprint_str(ref.fingerprint(rsa3072.public_key()))
    # wrong password -> 5
    p = run_ref("v2-decrypt", enc, "-o", tmp_path / "o2", "--identity", skey, "--signer", upub,
                env={"SERVER_KEY_PASSWORD": "wrong-password-wrong-password"}, check=False)
    assert p.returncode == 5


# ---- legacy


def test_legacy_symmetric_roundtrip(tmp_path):
    data = os.urandom(1000)
    blob = ref.make_legacy_symmetric(data, LEGACY_PW)
    assert blob[:18] == b"PGBACKUP_AES256_V1" and len(blob) == 18 + 32 + 12 + 1000 + 16
    assert ref.legacy_symmetric_decrypt(blob, LEGACY_PW) == data
    with pytest.raises(ref.AuthError):
        ref.legacy_symmetric_decrypt(blob, LEGACY_PW + "x")
    src = tmp_path / "in"
    src.write_bytes(data)
    env = {"BACKUP_ENCRYPTION_PASSWORD": LEGACY_PW}
    run_ref("make-legacy-symmetric", src, tmp_path / "e", env=env)
    run_ref("legacy-symmetric-decrypt", tmp_path / "e", "-o", tmp_path / "d", env=env)
    assert (tmp_path / "d").read_bytes() == data


def test_legacy_hybrid_roundtrip(tmp_path, rsa2048, rsa3072):
    data = os.urandom(1234)
    blob = ref.make_legacy_hybrid(data, rsa3072.public_key(), rsa2048, 42, 1_700_000_000)
    # layout: 76 + N + M bytes of overhead (1100 with two 4096-bit keys)
    assert len(blob) == len(data) + 76 + 384 + 256
    assert blob[:20] == b"PGBACKUP_HYBRID_V1\0\0"
    assert struct.unpack_from("<IQQI", blob, 20) == (1, 42, 1_700_000_000, 384)
    pt, h = ref.legacy_hybrid_decrypt(blob, rsa3072, rsa2048.public_key())
    assert pt == data and h.user_id == 42
    # the double hash: the PSS message hash is SHA-256(SHA-256(ct)), salt = max
    D = hashlib.sha256(h.ct).digest()
    rsa2048.public_key().verify(
        h.signature,
        hashlib.sha256(D).digest(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=256 - 32 - 2),
        utils.Prehashed(hashes.SHA256()),
    )
    b = bytearray(blob)
    b[-20] ^= 1
    with pytest.raises(ref.AuthError):
        ref.legacy_hybrid_decrypt(bytes(b), rsa3072, rsa2048.public_key())


def test_legacy_hybrid_cli(tmp_path, rsa2048, rsa3072):
    skey = write_key(tmp_path / "srv.key.pem", rsa3072, SERVER_PW)
    spub = write_pub(tmp_path / "srv.pub.pem", rsa3072)
    ukey = write_key(tmp_path / "usr.key.pem", rsa2048, USER_PW)
    upub = write_pub(tmp_path / "usr.pub.pem", rsa2048)
    src = tmp_path / "in"
    src.write_bytes(os.urandom(999))
    run_ref("make-legacy-hybrid", src, tmp_path / "e", "--server-pub", spub, "--signer-key", ukey,
            "--user-id", 7, "--time", 1600000000, env={"PGSEAL_USER_KEY_PASSWORD": USER_PW})
    run_ref("legacy-hybrid-decrypt", tmp_path / "e", "-o", tmp_path / "d", "--identity", skey, "--signer", upub,
            env={"SERVER_KEY_PASSWORD": SERVER_PW})
    assert (tmp_path / "d").read_bytes() == src.read_bytes()
