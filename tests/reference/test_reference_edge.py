"""Hand-crafted v2 files at the edges of FORMAT.md: the reference and the real binary must agree.

Each case builds a file with `craft`, then runs both decoders and compares the exit code with the
one FORMAT.md implies. Where FORMAT.md does not say which error class applies, the case accepts
any refusal in `codes`.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import struct

import blake3
import pytest
from conftest import SERVER_PW, USER_PW, KeyPair

import pgseal_ref as ref
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


@pytest.fixture(scope="session")
def keys(user_key: KeyPair, server_key: KeyPair):
    sign = ref.load_private_key(str(user_key.key), None, password=USER_PW)
    srv = ref.load_private_key(str(server_key.key), None, password=SERVER_PW)
    return sign, srv


def craft(keys, data=b"", *, C=1024, S=1024, comp=0, L=None, fields_mut=None, raw_body=None,
          slots=None, chunks_mut=None, sealed_mut=None) -> bytes:
    """A v2 file with hooks to break one rule at a time.

    slots(K, dk, H, S, stanza) -> (slot A bytes, slot B bytes); stanza is the RSA-OAEP stanza bytes
    for the server key (kind, length and body).
    """
    sign, srv = keys
    K, salt = os.urandom(32), os.urandom(32)
    dk = ref.derive_keys(salt, K)
    L = L or ref.key_bytes(sign)
    items = sorted({
        ref.T_CREATED_AT: struct.pack(">Q", 1_700_000_000_000),
        ref.T_SUITE: b"\x01",
        ref.T_CHUNK_SIZE: struct.pack(">I", C),
        ref.T_SALT: salt,
        ref.T_KEY_COMMITMENT: dk.commitment,
        ref.T_COMPRESSION: bytes([comp]),
        ref.T_SLOT_SIZE: struct.pack(">I", S),
        ref.T_SIGNER_FP: ref.fingerprint(sign.public_key()),
        ref.T_SIG_LEN: struct.pack(">H", L),
    }.items())
    if fields_mut:
        items = fields_mut(items)
    body = raw_body if raw_body is not None else b"".join(ref.encode_field(t, v) for t, v in items)
    signed = b"PGSEAL\x00\x02" + struct.pack(">I", len(body)) + body
    H = hashlib.sha256(signed).digest()
    hsig = sign.sign(ref.HEADER_SIG_LABEL + H, ref.pss(32), hashes.SHA256())
    kind, sbody = ref.rsa_stanza(srv.public_key(), K)
    stanza = struct.pack(">HH", kind, len(sbody)) + sbody
    if slots:
        a, b = slots(K, dk, H, S, stanza)
    else:
        a, b = make_slot(S, 1, stanza, 1, dk.mac, H), bytes(S)
    chunks = [data[i : i + C] for i in range(0, len(data), C)] or [b""]
    if chunks_mut:
        chunks = chunks_mut(chunks)
    aead = AESGCM(dk.payload)
    sealed = [aead.encrypt(ref.chunk_nonce(dk.nonce_prefix, i, i == len(chunks) - 1), c, H)
              for i, c in enumerate(chunks)]
    if sealed_mut:
        sealed = sealed_mut(sealed)
    sealed = b"".join(sealed)
    fsig = sign.sign(ref.FINAL_SIG_LABEL + H + blake3.blake3(sealed).digest(), ref.pss(32), hashes.SHA256())
    return signed + struct.pack(">H", L) + hsig + a + b + sealed + fsig


def make_slot(S, gen, stanzas: bytes, n, k_mac, H, pad: bytes | None = None) -> bytes:
    body = struct.pack(">QH", gen, n) + stanzas
    slot = body + (pad if pad is not None else bytes(S - 64 - len(body)))
    slot += hmac.new(k_mac, ref.SLOT_MAC_LABEL + H + slot, hashlib.sha256).digest()
    return slot + hashlib.sha256(slot).digest()


def nonzero_pad(K, dk, H, S, st):
    pad = bytearray(S - 64 - 10 - len(st))
    pad[-1] = 1
    return make_slot(S, 1, st, 1, dk.mac, H, bytes(pad)), bytes(S)


def with_field(tag, value):
    return lambda items: sorted(items + [(tag, value)])


def replace_field(tag, value):
    return lambda items: [(t, value if t == tag else v) for t, v in items]


DATA = bytes(range(256)) * 12  # 3072 bytes: three 1 KiB chunks

# name: (craft kwargs, plaintext expected or None, acceptable exit codes)
CASES = {
    # accepted
    "unknown_noncritical_fields": (dict(fields_mut=lambda it: sorted(it + [(0x0000, b""), (0x7fff, b"z")])), DATA, {0}),
    "empty_string_field": (dict(fields_mut=with_field(ref.T_TOOL, b"")), DATA, {0}),
    "created_at_max": (dict(fields_mut=replace_field(ref.T_CREATED_AT, b"\xff" * 8)), DATA, {0}),
    "unknown_stanza_kind_skipped": (dict(slots=lambda K, dk, H, S, st: (
        make_slot(S, 1, struct.pack(">HH", 0x0077, 5) + b"abcde" + st, 2, dk.mac, H), bytes(S))), DATA, {0}),
    "only_slot_B": (dict(slots=lambda K, dk, H, S, st: (bytes(S), make_slot(S, 1, st, 1, dk.mac, H))), DATA, {0}),
    "slot_B_newer": (dict(slots=lambda K, dk, H, S, st: (
        make_slot(S, 1, st, 1, dk.mac, H), make_slot(S, 2, st, 1, dk.mac, H))), DATA, {0}),
    "generation_max": (dict(slots=lambda K, dk, H, S, st: (make_slot(S, 2**64 - 1, st, 1, dk.mac, H), bytes(S)))
                       , DATA, {0}),
    "slot_size_65536": (dict(S=65536), DATA, {0}),
    "chunk_size_16MiB": (dict(C=16 * 1024 * 1024), DATA, {0}),
    "zstd_many_frames_and_skippable": (dict(comp=1), "zstd-multi", {0}),
    # §7: "any number of concatenated zstd frames" -- zero frames is an empty payload
    "zstd_zero_frames": (dict(comp=1), "zstd-zero", {0}),
    # invalid (3)
    "unknown_critical_field": (dict(fields_mut=with_field(0x8100, b"x")), None, {3}),
    "duplicate_tag": (dict(fields_mut=lambda it: it[:1] + it), None, {3}),
    "missing_required": (dict(fields_mut=lambda it: [x for x in it if x[0] != ref.T_SALT]), None, {3}),
    "wrong_value_length": (dict(fields_mut=replace_field(ref.T_CREATED_AT, b"\0\0\0\1")), None, {3}),
    "invalid_utf8_string": (dict(fields_mut=with_field(ref.T_TOOL, b"\xff\xfe")), None, {3}),
    "suite_2": (dict(fields_mut=replace_field(ref.T_SUITE, b"\x02")), None, {3}),
    "compression_2": (dict(fields_mut=replace_field(ref.T_COMPRESSION, b"\x02")), None, {3}),
    "chunk_size_512": (dict(C=512), None, {3}),
    "chunk_size_not_pow2": (dict(C=3072), None, {3}),
    "chunk_size_32MiB": (dict(C=32 * 1024 * 1024), None, {3}),
    "slot_size_not_mult64": (dict(S=1000), None, {3}),
    "slot_size_448": (dict(S=448, slots=lambda K, dk, H, S, st: (bytes(S), bytes(S))), None, {3}),
    "slot_size_65600": (dict(S=65600), None, {3}),
    "body_trailing_bytes": ("trailing", None, {3}),
    "body_value_overflow": ("overflow", None, {3}),
    "header_length_65537": ("big-header", None, {3}),
    "generation_0": (dict(slots=lambda K, dk, H, S, st: (make_slot(S, 0, st, 1, dk.mac, H), bytes(S))), None, {3}),
    "stanza_count_0": (dict(slots=lambda K, dk, H, S, st: (make_slot(S, 1, b"", 0, dk.mac, H), bytes(S))), None, {3}),
    "stanza_count_17": (dict(slots=lambda K, dk, H, S, st: (make_slot(S, 1, st, 17, dk.mac, H), bytes(S))), None, {3}),
    "slot_nonzero_padding": (dict(slots=nonzero_pad), None, {3}),
    "both_slots_torn": (dict(slots=lambda K, dk, H, S, st: (
        make_slot(S, 1, st, 1, dk.mac, H)[:-1] + b"\x00", bytes(S))), None, {3}),
    # FORMAT.md §6: the same slot written twice is one slot; two different slots of one
    # generation are damage.
    "same_slot_twice": (dict(slots=lambda K, dk, H, S, st: (
        make_slot(S, 4, st, 1, dk.mac, H), make_slot(S, 4, st, 1, dk.mac, H))), DATA, {0}),
    "same_generation_different_slots": (dict(slots=lambda K, dk, H, S, st: (
        make_slot(S, 4, st, 1, dk.mac, H), make_slot(S, 4, st + st, 2, dk.mac, H))), None, {3}),
    "empty_last_chunk_after_data": (dict(chunks_mut=lambda c: c + [b""]), None, {3}),
    # authentication (4)
    "short_non_last_chunk": (dict(chunks_mut=lambda c: [c[0][:1000]] + c[1:]), None, {3, 4}),
    "newer_slot_bad_mac": (dict(slots=lambda K, dk, H, S, st: (
        make_slot(S, 1, st, 1, dk.mac, H), make_slot(S, 2, st, 1, os.urandom(32), H))), None, {4}),
    "chunks_reordered": (dict(sealed_mut=lambda s: [s[1], s[0]] + s[2:]), None, {4}),
    "chunk_duplicated": (dict(sealed_mut=lambda s: [s[0], s[0]] + s[2:]), None, {4}),
    "last_chunk_removed": (dict(sealed_mut=lambda s: s[:-1]), None, {4}),
    # FORMAT.md is silent on the error class: L differs from the signer's modulus length
    "signature_length_not_modulus": (dict(L=512), None, {3, 4}),
}


def build_case(keys, name):
    kw, expect, codes = CASES[name]
    data = DATA
    if kw == "trailing" or kw == "overflow" or kw == "big-header":
        good = craft(keys, data)
        hl = int.from_bytes(good[8:12], "big")
        body = good[12 : 12 + hl]
        if kw == "trailing":
            body = body + b"\x00\x20\x00"
        elif kw == "overflow":
            body = struct.pack(">HI", 0x0001, 1000) + body
        else:
            n = 65537 - len(body) - 6
            body = struct.pack(">HI", 0x0001, n) + bytes(n) + body
        return craft(keys, data, raw_body=body), expect, codes
    if expect == "zstd-multi":
        payload = ref.zstd_store_frames(DATA, 700) + struct.pack("<II", 0x184D2A50, 3) + b"abc"
        return craft(keys, payload, **kw), DATA, codes
    if expect == "zstd-zero":
        return craft(keys, b"", **kw), b"", codes
    return craft(keys, data, **kw), expect, codes


@pytest.mark.parametrize("name", list(CASES))
def test_edge(pgseal, tmp_path, keys, user_key, server_key, name):
    blob, expect, codes = build_case(keys, name)
    f = tmp_path / f"{name}.pgseal"
    f.write_bytes(blob)
    # the reference
    out = io.BytesIO()
    try:
        ref.v2_decrypt(str(f), out, [keys[1]], [keys[0].public_key()])
        ref_code = 0
    except ref.RefError as e:
        ref_code = e.exit_code
    assert ref_code in codes, f"pgseal_ref exit {ref_code}, expected {codes}"
    if ref_code == 0:
        assert out.getvalue() == expect
    # the binary
    o = tmp_path / "out.bin"
    p = pgseal("decrypt", f, "-o", o, "--identity", server_key.key, "--signer", user_key.pub,
               env={"SERVER_KEY_PASSWORD": SERVER_PW}, check=False)
    assert p.returncode in codes, f"pgseal exit {p.returncode}, expected {codes}: {p.stderr.decode()}"
    if p.returncode == 0:
        assert o.read_bytes() == expect
    else:
        assert not o.exists()
