"""Self-tests of pgseal_ref alone (no pgseal binary needed)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct

import pytest
import zstandard
from conftest import (
    LEGACY_PW,
    SERVER_PW,
    USER_PW,
    blob_layout,
    reseal,
    run_ref,
    slot_a_replaced,
    write_hybrid_keypair,
    write_key,
    write_pub,
)
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import mlkem, padding, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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


# ---- hybrid recipients (FORMAT.md §6a)

MLKEM_OID_DER = bytes.fromhex("0609608648016503040402")  # 2.16.840.1.101.3.4.4.2


def _slot_a_at(lay) -> int:
    return lay.chunks_start - 2 * lay.hdr.slot_size


def test_hybrid_fingerprint_and_key_encodings(hyb2048):
    """The SPKI and PKCS#8 encodings §6a spells out, built by hand, match what the reference uses."""
    pub = hyb2048.pq.public_key()
    ek = pub.public_bytes_raw()
    assert len(ek) == ref.MLKEM768_EK_LEN
    # SEQUENCE { SEQUENCE { OID }, BIT STRING (0 unused bits) ek }
    alg = b"\x30\x0b" + MLKEM_OID_DER
    bits = b"\x03\x82" + (len(ek) + 1).to_bytes(2, "big") + b"\x00" + ek
    inner = alg + bits
    spki = b"\x30\x82" + len(inner).to_bytes(2, "big") + inner
    assert alg == ref.MLKEM768_ALG_ID_DER
    assert ref.mlkem_fingerprint(pub) == hashlib.sha256(spki).digest()
    # PKCS#8 seed form: privateKey OCTET STRING = 0x80 0x40 || d || z
    seed = hyb2048.pq.private_bytes_raw()
    assert len(seed) == 64
    inner = b"\x02\x01\x00" + alg + b"\x04\x42\x80\x40" + seed
    der = hyb2048.pq.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert der == b"\x30" + bytes([len(inner)]) + inner


def test_hybrid_stanza_layout(hyb2048):
    """§6a stanza body, taken apart by hand from the table."""
    K = os.urandom(32)
    pub = hyb2048.public_key()
    kind, body = ref.hybrid_stanza(pub, K)
    L = 256
    assert kind == 2 and len(body) == 1200 + L
    assert 4 + len(body) == 1460, "§6a: a hybrid stanza is 1,460 bytes with RSA-2048"
    f_rsa, f_pq, c_rsa, c_pq, w = body[:32], body[32:64], body[64 : 64 + L], body[64 + L : -48], body[-48:]
    assert f_rsa == ref.fingerprint(hyb2048.rsa.public_key())
    assert f_pq == ref.mlkem_fingerprint(hyb2048.pq.public_key())
    assert len(c_pq) == 1088
    s_rsa = hyb2048.rsa.decrypt(c_rsa, ref.OAEP)
    assert len(s_rsa) == 32
    s_pq = hyb2048.pq.decapsulate(c_pq)
    kek = ref.HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None,
        info=b"pgseal v2 hybrid stanza\x00" + f_rsa + f_pq + c_rsa + c_pq,
    ).derive(s_rsa + s_pq)
    assert AESGCM(kek).decrypt(b"\x00" * 12, w, None) == K
    assert ref.hybrid_unwrap(body, hyb2048) == K
    # fresh secrets per stanza: two stanzas for the same key and K share nothing but the fingerprints
    _, body2 = ref.hybrid_stanza(pub, K)
    assert body2[:64] == body[:64] and body2[64:] != body[64:]


@pytest.mark.parametrize("size,compression", [(0, 0), (5000, 0), (5000, 1)])
def test_hybrid_roundtrip_one_recipient(tmp_path, hyb2048, rsa3072, size, compression):
    data = os.urandom(size)
    sig = [rsa3072.public_key()]
    blob = ref.v2_encrypt(data, [hyb2048.public_key()], rsa3072, compression=compression, chunk_size=1024)
    assert dec(blob, tmp_path, [hyb2048], sig) == data
    info = ref.v2_inspect(str(tmp_path / "f.pgseal"))
    assert info["hybrid_recipients"] == 1
    assert info["slots"]["A"]["stanzas"] == [{
        "kind": 2,
        "recipient": ref.fingerprint_str(ref.fingerprint(hyb2048.rsa.public_key())),
        "pq_recipient": ref.fingerprint_str(ref.mlkem_fingerprint(hyb2048.pq.public_key())),
    }]
    res = ref.v2_verify(str(tmp_path / "f.pgseal"), sig)
    assert res["ok"] and res["hybrid_recipients"] is True
    # the RSA half alone does not hold the named ML-KEM key: nothing to unwrap with
    with pytest.raises(ref.KeyProblem):
        dec(blob, tmp_path, [hyb2048.rsa], sig)


def test_hybrid_two_recipients(tmp_path, hyb2048, hyb2048b, rsa3072):
    data = os.urandom(3000)
    sig = [rsa3072.public_key()]
    blob = ref.v2_encrypt(data, [hyb2048.public_key(), hyb2048b.public_key()], rsa3072, chunk_size=1024)
    assert dec(blob, tmp_path, [hyb2048], sig) == data
    assert dec(blob, tmp_path, [hyb2048b], sig) == data
    info = ref.v2_inspect(str(tmp_path / "f.pgseal"))
    assert info["hybrid_recipients"] == 1
    assert [s["kind"] for s in info["slots"]["A"]["stanzas"]] == [2, 2]
    other = ref.HybridPrivateKey(rsa3072, mlkem.MLKEM768PrivateKey.generate())
    with pytest.raises(ref.KeyProblem):
        dec(blob, tmp_path, [other], sig)


def test_hybrid_tamper_every_stanza_byte(tmp_path, hyb2048, rsa3072):
    """Each single-byte change of the hybrid stanza in the active slot, with the slot's MAC and
    checksum recomputed (so that only the stanza's own checks can catch it), is refused."""
    K = os.urandom(32)
    sig = [rsa3072.public_key()]
    blob = ref.v2_encrypt(b"tiny", [hyb2048.public_key()], rsa3072, file_key=K, chunk_size=1024)
    assert dec(blob, tmp_path, [hyb2048], sig) == b"tiny"
    lay = blob_layout(blob)
    S, a, H = lay.hdr.slot_size, _slot_a_at(lay), lay.hdr.H
    k_mac = ref.derive_keys(lay.hdr.fields["salt"], K).mac
    slot = blob[a : a + S]
    blen = struct.unpack_from(">H", slot, 12)[0]
    assert struct.unpack_from(">H", slot, 10)[0] == 2 and blen == 1456
    L = blen - 1200

    def expected(i: int):
        # offsets within the stanza (kind, length, body)
        if i < 2:
            return ref.KeyProblem  # unknown kind: skipped, no usable stanza
        if i == 2:
            return ref.FormatError  # 1456 -> 1200: too short to be a hybrid stanza
        if i == 3:
            return ref.AuthError  # 1456 -> 1457: takes a zero padding byte; C_rsa of 257 bytes fails
        if i < 4 + 64:
            return ref.KeyProblem  # F_rsa / F_pq no longer name the held key
        return ref.AuthError  # C_rsa, C_pq, W: the unwrap fails

    p = tmp_path / "t.pgseal"
    counts = {}
    for i in range(4 + blen):
        s = bytearray(slot)
        s[10 + i] ^= 0x01
        p.write_bytes(blob[:a] + reseal(s, k_mac, H) + blob[a + S :])
        exc = expected(i)
        with pytest.raises(ref.RefError) as ei:
            ref.v2_decrypt(str(p), io.BytesIO(), [hyb2048], sig)
        assert type(ei.value) is exc, (i, ei.value)
        counts[exc.__name__] = counts.get(exc.__name__, 0) + 1
    assert counts == {"KeyProblem": 2 + 64, "FormatError": 1, "AuthError": 1 + L + 1088 + 48}
    # kind 0x0002 -> 0x0001: the body is now an "RSA-OAEP stanza" in a hybrid file -> downgrade
    s = bytearray(slot)
    s[11] = 0x01
    p.write_bytes(blob[:a] + reseal(s, k_mac, H) + blob[a + S :])
    with pytest.raises(ref.AuthError, match="downgrade"):
        ref.v2_decrypt(str(p), io.BytesIO(), [hyb2048], sig)


def test_hybrid_downgrade_refused(tmp_path, hyb2048, rsa2048b, rsa3072):
    """A flagged file whose active slot holds an RSA-OAEP stanza (valid MAC: K is known) is refused
    by the decoder, whatever keys it holds, and by the keyless verifier."""
    K = os.urandom(32)
    sig = [rsa3072.public_key()]
    data = os.urandom(2000)
    rsa_pub = hyb2048.rsa.public_key()
    blob = ref.v2_encrypt(data, [hyb2048.public_key()], rsa3072, file_key=K, chunk_size=1024, slot_size=4096)
    cases = {
        "replaced": [ref.rsa_stanza(rsa_pub, K)],
        "added_after": [ref.hybrid_stanza(hyb2048.public_key(), K), ref.rsa_stanza(rsa2048b.public_key(), K)],
        "added_before": [ref.rsa_stanza(rsa2048b.public_key(), K), ref.hybrid_stanza(hyb2048.public_key(), K)],
    }
    for name, stanzas in cases.items():
        bad = slot_a_replaced(blob, K, stanzas)
        for ids in ([hyb2048], [hyb2048.rsa], [rsa2048b], []):
            with pytest.raises(ref.AuthError, match="downgrade"):
                dec(bad, tmp_path, ids, sig)
        with pytest.raises(ref.AuthError, match="downgrade"):
            ref.v2_verify(str(_w(tmp_path, bad)), sig)
    # control: the same RSA-only slot in a file without the flag opens (only the rule refuses it)
    plain = ref.v2_encrypt(data, [hyb2048.public_key()], rsa3072, file_key=K, chunk_size=1024, slot_size=4096,
                           hybrid_flag=False, unchecked=True)
    ok = slot_a_replaced(plain, K, cases["replaced"])
    assert dec(ok, tmp_path, [hyb2048.rsa], sig) == data
    assert dec(ok, tmp_path, [hyb2048], sig) == data  # the RSA half of a hybrid identity is held
    assert ref.v2_verify(str(_w(tmp_path, ok)), sig)["ok"]


def test_hybrid_downgrade_only_in_active_slot(tmp_path, hyb2048, rsa2048b, rsa3072):
    """An RSA-OAEP wrapping in the *inactive* slot is ignored (§6); in the active one it is refused."""
    sig = [rsa3072.public_key()]
    data = b"inactive slot"
    blob = ref.v2_encrypt(data, [], rsa3072, hybrid_flag=True, unchecked=True,
                          slots=((2, [hyb2048.public_key()]), (1, [rsa2048b.public_key()])))
    assert dec(blob, tmp_path, [hyb2048], sig) == data
    assert ref.v2_verify(str(_w(tmp_path, blob)), sig)["ok"]
    blob = ref.v2_encrypt(data, [], rsa3072, hybrid_flag=True, unchecked=True,
                          slots=((1, [hyb2048.public_key()]), (2, [rsa2048b.public_key()])))
    with pytest.raises(ref.AuthError, match="downgrade"):
        dec(blob, tmp_path, [hyb2048], sig)


def test_hybrid_pq_part_removed(tmp_path, hyb2048, rsa3072):
    K = os.urandom(32)
    sig = [rsa3072.public_key()]
    pub = hyb2048.public_key()
    blob = ref.v2_encrypt(b"pq", [pub], rsa3072, file_key=K, slot_size=4096)
    _, body = ref.hybrid_stanza(pub, K)
    L = 256
    f_rsa, f_pq, c_rsa, c_pq, w = body[:32], body[32:64], body[64 : 64 + L], body[64 + L : -48], body[-48:]
    # kind 2 cut to an RSA-style body, or without C_pq: too short to be well formed -> no valid slot
    for cut in (f_rsa + c_rsa, f_rsa + f_pq + c_rsa + w, body[:1200]):
        bad = slot_a_replaced(blob, K, [(2, cut)])
        with pytest.raises(ref.FormatError, match="no valid recipient slot"):
            dec(bad, tmp_path, [hyb2048], sig)
        with pytest.raises(ref.FormatError, match="hybrid body too short"):
            ref.v2_verify(str(_w(tmp_path, bad)), sig)
    # the RSA half relabelled as a kind-1 stanza: a downgrade in a flagged file
    bad = slot_a_replaced(blob, K, [(1, f_rsa + c_rsa)])
    with pytest.raises(ref.AuthError, match="downgrade"):
        dec(bad, tmp_path, [hyb2048], sig)
    # ... and without the flag, RSA alone yields s_rsa, not K: the commitment refuses it
    plain = ref.v2_encrypt(b"pq", [pub], rsa3072, file_key=K, slot_size=4096, hybrid_flag=False, unchecked=True)
    bad = slot_a_replaced(plain, K, [(1, f_rsa + c_rsa)])
    with pytest.raises(ref.AuthError, match="commitment"):
        dec(bad, tmp_path, [hyb2048.rsa], sig)
    # C_pq swapped for the ML-KEM ciphertext of another stanza to the same key: no mix-and-match
    _, other = ref.hybrid_stanza(pub, K)
    mixed = f_rsa + f_pq + c_rsa + other[64 + L : -48] + w
    bad = slot_a_replaced(blob, K, [(2, mixed)])
    with pytest.raises(ref.AuthError, match="W does not open"):
        dec(bad, tmp_path, [hyb2048], sig)
    mixed = f_rsa + f_pq + other[64 : 64 + L] + c_pq + w
    bad = slot_a_replaced(blob, K, [(2, mixed)])
    with pytest.raises(ref.AuthError, match="W does not open"):
        dec(bad, tmp_path, [hyb2048], sig)
    # the intact stanza in the same rebuilt slot opens (the helpers are not what refuses)
    assert dec(slot_a_replaced(blob, K, [(2, body)]), tmp_path, [hyb2048], sig) == b"pq"


def test_hybrid_wrong_half_cannot_open(tmp_path, hyb2048, hyb2048b, rsa3072):
    K = os.urandom(32)
    sig = [rsa3072.public_key()]
    blob = ref.v2_encrypt(b"halves", [hyb2048.public_key()], rsa3072, file_key=K)
    right_rsa_wrong_pq = ref.HybridPrivateKey(hyb2048.rsa, hyb2048b.pq)
    wrong_rsa_right_pq = ref.HybridPrivateKey(hyb2048b.rsa, hyb2048.pq)
    for ident in (right_rsa_wrong_pq, wrong_rsa_right_pq):
        # the stanza does not name this pair: no key is tried
        with pytest.raises(ref.KeyProblem):
            dec(blob, tmp_path, [ident], sig)
    # forced unwraps with one wrong half fail
    _, body = ref.hybrid_stanza(hyb2048.public_key(), K)
    assert ref.hybrid_unwrap(body, hyb2048) == K
    for ident in (right_rsa_wrong_pq, wrong_rsa_right_pq):
        with pytest.raises(ref.AuthError):
            ref.hybrid_unwrap(body, ident)
    # a stanza re-labelled to name the wrong ML-KEM key (valid MAC) is picked, and its unwrap fails
    relabelled = body[:32] + ref.mlkem_fingerprint(hyb2048b.pq.public_key()) + body[64:]
    bad = slot_a_replaced(blob, K, [(2, relabelled)])
    with pytest.raises(ref.AuthError, match="W does not open"):
        dec(bad, tmp_path, [right_rsa_wrong_pq], sig)


def _header_fields(blob: bytes) -> tuple[list, bytes]:
    hl = int.from_bytes(blob[8:12], "big")
    body, rest = blob[12 : 12 + hl], blob[12 + hl :]
    items, pos = [], 0
    while pos < len(body):
        tag, n = struct.unpack_from(">HI", body, pos)
        items.append((tag, body[pos + 6 : pos + 6 + n]))
        pos += 6 + n
    return items, rest


def _with_fields(items: list, rest: bytes) -> bytes:
    body = b"".join(ref.encode_field(t, v) for t, v in items)
    return b"PGSEAL\x00\x02" + struct.pack(">I", len(body)) + body + rest


def test_hybrid_header_flag(tmp_path, hyb2048, rsa3072):
    sig = [rsa3072.public_key()]
    blob = ref.v2_encrypt(b"flag", [hyb2048.public_key()], rsa3072)
    items, rest = _header_fields(blob)
    assert (0x8009, b"\x01") in items and items[-1][0] == 0x8009
    assert dec(_with_fields(items, rest), tmp_path, [hyb2048], sig) == b"flag"  # the rebuild is exact
    # removed: the header no longer matches its signature
    stripped = _with_fields([(t, v) for t, v in items if t != 0x8009], rest)
    with pytest.raises(ref.AuthError, match="header signature"):
        dec(stripped, tmp_path, [hyb2048], sig)
    with pytest.raises(ref.AuthError, match="header signature"):
        ref.v2_verify(str(_w(tmp_path, stripped)), sig)
    # changed value or length: invalid before any signature
    for v in (b"\x00", b"\x02", b"\xff", b"\x00\x01", b""):
        bad = _with_fields([(t, v if t == 0x8009 else x) for t, x in items], rest)
        with pytest.raises(ref.FormatError, match="hybrid_recipients"):
            dec(bad, tmp_path, [hyb2048], sig)
        with pytest.raises(ref.FormatError, match="hybrid_recipients"):
            ref.v2_inspect(str(_w(tmp_path, bad)))
    # validly signed with value 2: still invalid
    signed2 = ref.v2_encrypt(b"flag", [hyb2048.public_key()], rsa3072, extra_fields=[(0x8009, b"\x02")])
    with pytest.raises(ref.FormatError, match="invalid hybrid_recipients value 2"):
        dec(signed2, tmp_path, [hyb2048], sig)
    # an RSA-only file has no flag; an upgraded (unflagged) file with a hybrid slot opens
    rsa_only = ref.v2_encrypt(b"flag", [hyb2048.rsa.public_key()], rsa3072)
    assert 0x8009 not in [t for t, _ in _header_fields(rsa_only)[0]]
    upgraded = ref.v2_encrypt(b"flag", [hyb2048.public_key()], rsa3072, hybrid_flag=False, unchecked=True)
    assert dec(upgraded, tmp_path, [hyb2048], sig) == b"flag"
    assert ref.v2_inspect(str(_w(tmp_path, upgraded)))["hybrid_recipients"] == 0


def test_hybrid_writer_refuses_mix(tmp_path, hyb2048, rsa2048b, rsa3072):
    with pytest.raises(ref.UsageError, match="mix of hybrid and RSA-only"):
        ref.v2_encrypt(b"x", [hyb2048.public_key(), rsa2048b.public_key()], rsa3072)
    with pytest.raises(ref.UsageError, match="mix of hybrid and RSA-only"):
        ref.v2_encrypt(b"x", [rsa2048b.public_key(), hyb2048.public_key()], rsa3072)
    with pytest.raises(ref.UsageError, match="contradicts"):
        ref.v2_encrypt(b"x", [rsa2048b.public_key()], rsa3072, hybrid_flag=True)
    with pytest.raises(ref.UsageError, match="contradicts"):
        ref.v2_encrypt(b"x", [hyb2048.public_key()], rsa3072, hybrid_flag=False)
    # the escape hatch writes the bad file (and the decoder then refuses it as a downgrade)
    bad = ref.v2_encrypt(b"x", [hyb2048.public_key(), rsa2048b.public_key()], rsa3072, hybrid_flag=True,
                         unchecked=True)
    with pytest.raises(ref.AuthError, match="downgrade"):
        dec(bad, tmp_path, [hyb2048], [rsa3072.public_key()])
    # the CLI: usage error, no output
    hpub = tmp_path / "h.pub.pem"
    hpub.write_bytes(ref.hybrid_public_pem(hyb2048))
    rpub = write_pub(tmp_path / "r.pub.pem", rsa2048b)
    ukey = write_key(tmp_path / "u.key.pem", rsa3072, USER_PW)
    src = tmp_path / "in"
    src.write_bytes(b"x")
    p = run_ref("v2-encrypt", src, "-o", tmp_path / "out", "--recipient", hpub, "--recipient", rpub,
                "--sign-key", ukey, env={"PGSEAL_USER_KEY_PASSWORD": USER_PW}, check=False)
    assert p.returncode == 2 and b"mix of hybrid and RSA-only" in p.stderr, p.stderr
    assert not (tmp_path / "out").exists()


def test_hybrid_key_files(tmp_path, hyb2048, rsa2048b):
    pw = SERVER_PW
    kp = write_hybrid_keypair(tmp_path, "h", hyb2048, pw)
    text = kp.key.read_text()
    assert text.count("-----BEGIN ENCRYPTED PRIVATE KEY-----") == 2
    assert kp.pub.read_text().count("-----BEGIN PUBLIC KEY-----") == 2
    want = (ref.fingerprint(hyb2048.rsa.public_key()), ref.mlkem_fingerprint(hyb2048.pq.public_key()))
    ident = ref.load_identity_key(str(kp.key), None, password=pw)
    assert isinstance(ident, ref.HybridPrivateKey) and ident.public_key().fingerprints == want
    recip = ref.load_recipient_key(str(kp.pub))
    assert isinstance(recip, ref.HybridPublicKey) and recip.fingerprints == want
    # the RSA-only loaders give the RSA half
    assert ref.fingerprint(ref.load_public_key(str(kp.pub))) == want[0]
    assert ref.fingerprint(ref.load_private_key(str(kp.key), None, password=pw).public_key()) == want[0]
    # each block opens on its own, each with its own PBES2 salt and IV
    blocks = ref.pem_blocks(kp.key.read_bytes())
    assert [type(serialization.load_pem_private_key(b, pw.encode())).__name__ for _l, b in blocks] == [
        type(hyb2048.rsa).__name__, type(hyb2048.pq).__name__]
    assert len({b for _l, b in blocks}) == 2
    # unencrypted hybrid private file
    plain = write_hybrid_keypair(tmp_path, "p", hyb2048, None)
    assert plain.key.read_text().count("-----BEGIN PRIVATE KEY-----") == 2
    assert ref.load_identity_key(str(plain.key), None).public_key().fingerprints == want
    assert ref.load_recipient_key(str(plain.key)).fingerprints == want
    # refusals
    with pytest.raises(ref.KeyProblem, match="wrong password"):
        ref.load_identity_key(str(kp.key), None, password=pw + "x")
    with pytest.raises(ref.KeyProblem, match="encrypted"):
        ref.load_identity_key(str(kp.key), "NO_SUCH_PASSWORD_VAR_FOR_TEST")
    pub_blocks = ref.pem_blocks(kp.pub.read_bytes())
    bad_files = {
        "swapped": pub_blocks[1][1] + pub_blocks[0][1],
        "three": pub_blocks[0][1] + pub_blocks[1][1] + pub_blocks[1][1],
        "two_rsa": pub_blocks[0][1] + write_pub(tmp_path / "x.pem", rsa2048b).read_bytes(),
        "pq_only": pub_blocks[1][1],
    }
    for name, content in bad_files.items():
        f = tmp_path / f"{name}.pem"
        f.write_bytes(content)
        with pytest.raises(ref.KeyProblem):
            ref.load_recipient_key(str(f))
    mixed = tmp_path / "mixed.key.pem"
    mixed.write_bytes(ref.pem_blocks(kp.key.read_bytes())[0][1] + ref.pem_blocks(plain.key.read_bytes())[1][1])
    with pytest.raises(ref.KeyProblem, match="mixes PEM labels"):
        ref.load_identity_key(str(mixed), None, password=pw)
    # RSA-only files load as before
    rk = write_key(tmp_path / "r.key.pem", rsa2048b, pw)
    assert isinstance(ref.load_identity_key(str(rk), None, password=pw), type(rsa2048b))
    assert ref.load_private_key(str(rk), None, password=pw).private_numbers() == rsa2048b.private_numbers()


def test_hybrid_cli(tmp_path, hyb2048, rsa3072):
    kp = write_hybrid_keypair(tmp_path, "srv", hyb2048, SERVER_PW)
    ukey = write_key(tmp_path / "usr.key.pem", rsa3072, USER_PW)
    upub = write_pub(tmp_path / "usr.pub.pem", rsa3072)
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(10_000))
    enc = tmp_path / "in.pgseal"
    run_ref("v2-encrypt", src, "-o", enc, "--recipient", kp.pub, "--sign-key", ukey,
            env={"PGSEAL_USER_KEY_PASSWORD": USER_PW})
    out = tmp_path / "out.bin"
    run_ref("v2-decrypt", enc, "-o", out, "--identity", kp.key, "--signer", upub,
            env={"SERVER_KEY_PASSWORD": SERVER_PW})
    assert out.read_bytes() == src.read_bytes()
    assert json.loads(run_ref("v2-verify", enc, "--signer", upub).stdout)["hybrid_recipients"] is True
    info = json.loads(run_ref("v2-inspect", enc).stdout)
    assert info["hybrid_recipients"] == 1
    st = info["slots"]["A"]["stanzas"][0]
    assert st["kind"] == 2
    assert st["pq_recipient"] == ref.fingerprint_str(ref.mlkem_fingerprint(hyb2048.pq.public_key()))
    # the RSA half alone (one block) names no stanza: key problem
    rsa_only = tmp_path / "rsa-half.key.pem"
    rsa_only.write_bytes(ref.pem_blocks(kp.key.read_bytes())[0][1])
    p = run_ref("v2-decrypt", enc, "-o", tmp_path / "o2", "--identity", rsa_only, "--signer", upub,
                env={"SERVER_KEY_PASSWORD": SERVER_PW}, check=False)
    assert p.returncode == 5, p.stderr
    assert not (tmp_path / "o2").exists()


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
