#!/usr/bin/env python3
"""Independent Python reference implementation of the pgseal file formats.

* v2 (docs/FORMAT.md): decoder, verifier and inspector written from the spec alone, plus a small
  writer used only to feed test files to the Rust implementation. Recipients are RSA keys or hybrid
  RSA-OAEP + ML-KEM-768 keys (§6a: two-block PEM files, RSA first).
* Legacy PGBACKUP_AES256_V1 and PGBACKUP_HYBRID_V1 (shared/docs/legacy-formats.md): writer and
  reader.

Only the `cryptography` package is used for primitives; `zstandard` is used to *decompress* v2
payloads. The v2 writer never compresses: when asked for compression=1 it emits zstd frames made
of raw (stored) blocks, built by hand in `zstd_store_frames`.

Private key passwords are read from environment variables only, never from argv.

Exit codes mirror pgseal's: 1 I/O/other, 2 usage, 3 invalid/corrupt/unsupported input,
4 authentication failure, 5 key or password problem.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import struct
import sys
import tempfile
import time

import blake3
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import mlkem, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC


# --------------------------------------------------------------------------------------------
# Errors


class RefError(Exception):
    exit_code = 1


class FormatError(RefError):
    """Invalid, corrupt, truncated or unsupported input."""

    exit_code = 3


class AuthError(RefError):
    """Bad signature, bad tag, bad MAC, commitment mismatch: tampering."""

    exit_code = 4


class KeyProblem(RefError):
    """Missing or wrong key, wrong password."""

    exit_code = 5


class UsageError(RefError):
    """A request the writer refuses (e.g. a mix of hybrid and RSA-only recipients)."""

    exit_code = 2


# --------------------------------------------------------------------------------------------
# Keys


def fingerprint(pub: rsa.RSAPublicKey) -> bytes:
    """SHA-256 of the SubjectPublicKeyInfo DER."""
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest()


def fingerprint_str(fp: bytes) -> str:
    return "SHA256:" + base64.b64encode(fp).decode().rstrip("=")


def mlkem_fingerprint(pub: mlkem.MLKEM768PublicKey) -> bytes:
    """ML-KEM fingerprint (FORMAT.md §6a): SHA-256 of the SubjectPublicKeyInfo DER."""
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest()


# FORMAT.md §6a: id-alg-ml-kem-768, 2.16.840.1.101.3.4.4.2, no parameters
MLKEM768_ALG_ID_DER = bytes.fromhex("300b0609608648016503040402")
MLKEM768_EK_LEN = 1184
MLKEM768_CT_LEN = 1088


@dataclass(frozen=True, eq=False)
class HybridPublicKey:
    """A hybrid recipient (FORMAT.md §6a): an RSA public key plus an ML-KEM-768 encapsulation key."""

    rsa: rsa.RSAPublicKey
    pq: mlkem.MLKEM768PublicKey

    @property
    def fingerprints(self) -> tuple[bytes, bytes]:
        return fingerprint(self.rsa), mlkem_fingerprint(self.pq)


@dataclass(frozen=True, eq=False)
class HybridPrivateKey:
    """A hybrid identity: both private keys."""

    rsa: rsa.RSAPrivateKey
    pq: mlkem.MLKEM768PrivateKey

    def public_key(self) -> HybridPublicKey:
        return HybridPublicKey(self.rsa.public_key(), self.pq.public_key())


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.S)


def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """[(label, block bytes)] of every PEM block in `data`, in file order."""
    return [(m.group(1).decode(), m.group(0)) for m in _PEM_BLOCK.finditer(data)]


def _read_key_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise KeyProblem(f"cannot read {what} {path}: {e}") from e


def _load_public_pem(data: bytes, path: str):
    """One PEM block (or an RSA-only file): a public key, or the public half of an unencrypted
    private key."""
    try:
        return serialization.load_pem_public_key(data)
    except Exception:  # noqa: BLE001
        try:
            return serialization.load_pem_private_key(data, password=None).public_key()
        except Exception as e:  # noqa: BLE001
            raise KeyProblem(f"{path}: not a PEM public key: {e}") from e


def _load_private_pem(data: bytes, path: str, password: str | None, password_env: str | None):
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # encrypted: a password is required
        if not password:
            raise KeyProblem(f"{path} is encrypted; set {password_env}")
        try:
            return serialization.load_pem_private_key(data, password=password.encode("utf-8"))
        except (ValueError, TypeError) as e:
            raise KeyProblem(f"{path}: cannot decrypt private key (wrong password?): {e}") from e
    except ValueError as e:
        raise KeyProblem(f"{path}: not a PEM private key: {e}") from e


def _hybrid_pair(path: str, blocks: list) -> tuple[bytes, bytes] | None:
    """The (RSA block, ML-KEM block) of a hybrid key file, or None for a one-block file.

    FORMAT.md §6a: exactly two PEM blocks with the same label, RSA first."""
    if len(blocks) <= 1:
        return None
    if len(blocks) != 2:
        raise KeyProblem(f"{path}: {len(blocks)} PEM blocks; a hybrid key file holds exactly two (RSA, ML-KEM-768)")
    (l1, b1), (l2, b2) = blocks
    if l1 != l2:
        raise KeyProblem(f"{path}: hybrid key file mixes PEM labels {l1!r} and {l2!r}")
    return b1, b2


def _check_hybrid_halves(path: str, r, q) -> None:
    if not isinstance(r, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        raise KeyProblem(f"{path}: the first PEM block of a hybrid key file must be the RSA key")
    if not isinstance(q, (mlkem.MLKEM768PublicKey, mlkem.MLKEM768PrivateKey)):
        raise KeyProblem(f"{path}: the second PEM block of a hybrid key file must be an ML-KEM-768 key")


def load_recipient_key(path: str) -> rsa.RSAPublicKey | HybridPublicKey:
    """An RSA public key, or a HybridPublicKey from a two-block hybrid file (FORMAT.md §6a).
    Unencrypted private key files also work."""
    data = _read_key_file(path, "public key")
    pair = _hybrid_pair(path, pem_blocks(data))
    if pair is None:
        key = _load_public_pem(data, path)
        if not isinstance(key, rsa.RSAPublicKey):
            raise KeyProblem(f"{path}: not an RSA key")
        return key
    r, q = (_load_public_pem(b, path) for b in pair)
    _check_hybrid_halves(path, r, q)
    return HybridPublicKey(r, q)


def load_identity_key(
    path: str, password_env: str | None, password: str | None = None
) -> rsa.RSAPrivateKey | HybridPrivateKey:
    """An RSA private key, or a HybridPrivateKey from a two-block hybrid file (both blocks under the
    same password). The password comes from $password_env (or, for library callers, `password`)."""
    data = _read_key_file(path, "private key")
    if password is None and password_env:
        password = os.environ.get(password_env)
    pair = _hybrid_pair(path, pem_blocks(data))
    if pair is None:
        key = _load_private_pem(data, path, password, password_env)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyProblem(f"{path}: not an RSA key")
        return key
    r, q = (_load_private_pem(b, path, password, password_env) for b in pair)
    _check_hybrid_halves(path, r, q)
    return HybridPrivateKey(r, q)


def load_public_key(path: str) -> rsa.RSAPublicKey:
    """PEM SubjectPublicKeyInfo or PKCS#1 RSAPublicKey; a private key file also works. For a hybrid
    key file, the RSA half (signers are RSA keys)."""
    k = load_recipient_key(path)
    return k.rsa if isinstance(k, HybridPublicKey) else k


def load_private_key(path: str, password_env: str | None, password: str | None = None) -> rsa.RSAPrivateKey:
    """PEM PKCS#8 (encrypted or not) or PKCS#1. The password comes from $password_env
    (or, for library callers, from `password`). For a hybrid key file, the RSA half."""
    k = load_identity_key(path, password_env, password)
    return k.rsa if isinstance(k, HybridPrivateKey) else k


def hybrid_private_pem(key: HybridPrivateKey, password: str | None) -> bytes:
    """A hybrid private key file (FORMAT.md §6a): two PKCS#8 blocks, RSA first, each encrypted on
    its own (own salt and IV) under the same password, or both unencrypted."""
    enc = (
        serialization.BestAvailableEncryption(password.encode("utf-8"))
        if password
        else serialization.NoEncryption()
    )
    return b"".join(
        k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
        for k in (key.rsa, key.pq)
    )


def hybrid_public_pem(pub: HybridPublicKey | HybridPrivateKey) -> bytes:
    if isinstance(pub, HybridPrivateKey):
        pub = pub.public_key()
    return b"".join(
        k.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        for k in (pub.rsa, pub.pq)
    )


def key_bytes(k) -> int:
    return (k.key_size + 7) // 8


OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def pss(salt_length) -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt_length)


# --------------------------------------------------------------------------------------------
# v2 constants (FORMAT.md §2-§8)

V2_MAGIC = b"PGSEAL\x00"
V2_VERSION = 2
MAX_HEADER = 65536

T_CREATED_AT = 0x0010
T_TOOL = 0x0011
T_CREATOR_USER_ID = 0x0012
T_CREATOR_USERNAME = 0x0013
T_SOURCE_DATABASE = 0x0014
T_SOURCE_HOST = 0x0015
T_DUMP_FORMAT = 0x0016
T_CONTENT_NAME = 0x0017
T_SUITE = 0x8001
T_CHUNK_SIZE = 0x8002
T_SALT = 0x8003
T_KEY_COMMITMENT = 0x8004
T_COMPRESSION = 0x8005
T_SLOT_SIZE = 0x8006
T_SIGNER_FP = 0x8007
T_SIG_LEN = 0x8008
T_HYBRID = 0x8009

# tag -> (name, kind, required); kinds: u8/u16/u32/u64/str/b32
FIELDS = {
    T_CREATED_AT: ("created_at", "u64", True),
    T_TOOL: ("tool", "str", False),
    T_CREATOR_USER_ID: ("creator_user_id", "u64", False),
    T_CREATOR_USERNAME: ("creator_username", "str", False),
    T_SOURCE_DATABASE: ("source_database", "str", False),
    T_SOURCE_HOST: ("source_host", "str", False),
    T_DUMP_FORMAT: ("dump_format", "str", False),
    T_CONTENT_NAME: ("content_name", "str", False),
    T_SUITE: ("suite", "u8", True),
    T_CHUNK_SIZE: ("chunk_size", "u32", True),
    T_SALT: ("salt", "b32", True),
    T_KEY_COMMITMENT: ("key_commitment", "b32", True),
    T_COMPRESSION: ("compression", "u8", True),
    T_SLOT_SIZE: ("recipient_slot_size", "u32", True),
    T_SIGNER_FP: ("signer_fingerprint", "b32", True),
    T_SIG_LEN: ("signature_length", "u16", True),
    T_HYBRID: ("hybrid_recipients", "u8", False),
}
INT_SIZES = {"u8": 1, "u16": 2, "u32": 4, "u64": 8}

HEADER_SIG_LABEL = b"pgseal v2 header\x00"
FINAL_SIG_LABEL = b"pgseal v2 final\x00"
SLOT_MAC_LABEL = b"pgseal v2 recipients\x00"
INFO_PAYLOAD = b"pgseal v2 payload key"
INFO_NONCE = b"pgseal v2 nonce prefix"
INFO_COMMIT = b"pgseal v2 key commitment"
INFO_MAC = b"pgseal v2 recipients mac"
STANZA_RSA_OAEP = 0x0001
STANZA_HYBRID = 0x0002
HYBRID_FIXED = 32 + 32 + MLKEM768_CT_LEN + 48  # F_rsa, F_pq, C_pq, W: the body less C_rsa (1,200)
INFO_HYBRID = b"pgseal v2 hybrid stanza\x00"
GCM_TAG = 16
ZSTD_MAX_WINDOW = 1 << 27


def is_pow2(x: int) -> bool:
    return x > 0 and x & (x - 1) == 0


def hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


@dataclass
class DerivedKeys:
    payload: bytes
    nonce_prefix: bytes
    commitment: bytes
    mac: bytes


def derive_keys(salt: bytes, file_key: bytes) -> DerivedKeys:
    return DerivedKeys(
        payload=hkdf(salt, file_key, INFO_PAYLOAD, 32),
        nonce_prefix=hkdf(salt, file_key, INFO_NONCE, 4),
        commitment=hkdf(salt, file_key, INFO_COMMIT, 32),
        mac=hkdf(salt, file_key, INFO_MAC, 32),
    )


def chunk_nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if not 0 <= index < (1 << 56):
        raise FormatError("chunk counter overflow (more than 2^56 chunks)")
    return prefix + index.to_bytes(7, "big") + (b"\x01" if last else b"\x00")


def slot_mac(k_mac: bytes, H: bytes, slot: bytes) -> bytes:
    S = len(slot)
    return hmac.new(k_mac, SLOT_MAC_LABEL + H + slot[: S - 64], hashlib.sha256).digest()


# --------------------------------------------------------------------------------------------
# v2 header parsing


@dataclass
class V2Header:
    version: int
    header_len: int
    body: bytes
    signed: bytes  # preamble || header length || body
    H: bytes
    fields: dict  # name -> python value (ints, str, bytes)
    raw_fields: list  # [(tag, value bytes)] in file order
    unknown: list  # [(tag, value bytes)] unknown non-critical

    @property
    def chunk_size(self) -> int:
        return self.fields["chunk_size"]

    @property
    def slot_size(self) -> int:
        return self.fields["recipient_slot_size"]

    @property
    def sig_len(self) -> int:
        return self.fields["signature_length"]

    @property
    def hybrid(self) -> bool:
        return self.fields.get("hybrid_recipients") == 1


def parse_header_body(body: bytes) -> tuple[dict, list, list]:
    fields: dict = {}
    raw: list = []
    unknown: list = []
    pos = 0
    prev_tag = -1
    while pos < len(body):
        if len(body) - pos < 6:
            raise FormatError(f"header field at body offset {pos}: truncated tag/length")
        tag, vlen = struct.unpack_from(">HI", body, pos)
        pos += 6
        if vlen > len(body) - pos:
            raise FormatError(f"header field 0x{tag:04x}: value length {vlen} runs past the header body")
        value = body[pos : pos + vlen]
        pos += vlen
        if tag <= prev_tag:
            raise FormatError(f"header field 0x{tag:04x} after 0x{prev_tag:04x}: tags not strictly increasing")
        prev_tag = tag
        raw.append((tag, value))
        spec = FIELDS.get(tag)
        if spec is None:
            if tag & 0x8000:
                raise FormatError(f"unknown critical header field 0x{tag:04x}")
            unknown.append((tag, value))
            continue
        name, kind, _req = spec
        if kind in INT_SIZES:
            if vlen != INT_SIZES[kind]:
                raise FormatError(f"header field {name}: length {vlen}, expected {INT_SIZES[kind]}")
            v = int.from_bytes(value, "big")
        elif kind == "b32":
            if vlen != 32:
                raise FormatError(f"header field {name}: length {vlen}, expected 32")
            v = value
        else:
            try:
                v = value.decode("utf-8")
            except UnicodeDecodeError as e:
                raise FormatError(f"header field {name}: not valid UTF-8") from e
        fields[name] = v
    for tag, (name, _k, req) in FIELDS.items():
        if req and name not in fields:
            raise FormatError(f"required header field {name} (0x{tag:04x}) missing")
    # value checks
    if fields["suite"] != 1:
        raise FormatError(f"unsupported suite {fields['suite']}")
    C = fields["chunk_size"]
    if not (is_pow2(C) and 1024 <= C <= 16 * 1024 * 1024):
        raise FormatError(f"invalid chunk_size {C}")
    if fields["compression"] not in (0, 1):
        raise FormatError(f"unsupported compression {fields['compression']}")
    S = fields["recipient_slot_size"]
    if not (S % 64 == 0 and 512 <= S <= 65536):
        raise FormatError(f"invalid recipient_slot_size {S}")
    L = fields["signature_length"]
    if not 256 <= L <= 1024:
        raise FormatError(f"invalid signature_length {L}")
    if "hybrid_recipients" in fields and fields["hybrid_recipients"] != 1:
        raise FormatError(f"invalid hybrid_recipients value {fields['hybrid_recipients']} (only 1 is valid)")
    return fields, raw, unknown


class Reader:
    def __init__(self, f: BinaryIO):
        self.f = f
        self.pos = 0

    def read_exact(self, n: int, what: str) -> bytes:
        b = self.f.read(n)
        if len(b) != n:
            raise FormatError(f"truncated file: {what} at offset {self.pos} needs {n} bytes, got {len(b)}")
        self.pos += n
        return b


def read_v2_header(r: Reader) -> V2Header:
    pre = r.f.read(8)
    r.pos += len(pre)
    if len(pre) < 7 or pre[:7] != V2_MAGIC:
        raise FormatError("not a pgseal v2 file (bad magic)")
    if len(pre) < 8:
        raise FormatError("truncated file: no format version byte")
    if pre[7] != V2_VERSION:
        raise FormatError(f"unsupported format version {pre[7]}")
    hl_b = r.read_exact(4, "header length")
    hl = int.from_bytes(hl_b, "big")
    if hl > MAX_HEADER:
        raise FormatError(f"header length {hl} exceeds {MAX_HEADER}")
    body = r.read_exact(hl, "header body")
    fields, raw, unknown = parse_header_body(body)
    signed = pre + hl_b + body
    return V2Header(
        version=pre[7],
        header_len=hl,
        body=body,
        signed=signed,
        H=hashlib.sha256(signed).digest(),
        fields=fields,
        raw_fields=raw,
        unknown=unknown,
    )


def find_signer(hdr: V2Header, signers: Iterable[rsa.RSAPublicKey]) -> rsa.RSAPublicKey:
    want = hdr.fields["signer_fingerprint"]
    for k in signers:
        if hmac.compare_digest(fingerprint(k), want):
            if key_bytes(k) != hdr.sig_len:
                raise FormatError(
                    f"signer key modulus is {key_bytes(k)} bytes but signature_length is {hdr.sig_len}"
                )
            return k
    raise KeyProblem(f"signer public key {fingerprint_str(want)} not available")


def verify_header_sig(hdr: V2Header, sig: bytes, signer: rsa.RSAPublicKey) -> None:
    try:
        signer.verify(sig, HEADER_SIG_LABEL + hdr.H, pss(32), hashes.SHA256())
    except InvalidSignature as e:
        raise AuthError("header signature is invalid") from e


# --------------------------------------------------------------------------------------------
# slots


@dataclass
class Stanza:
    kind: int
    body: bytes

    @property
    def fingerprint(self) -> bytes | None:
        """The RSA fingerprint the stanza names (F_rsa for a hybrid one)."""
        return self.body[:32] if self.kind in (STANZA_RSA_OAEP, STANZA_HYBRID) else None

    @property
    def pq_fingerprint(self) -> bytes | None:
        return self.body[32:64] if self.kind == STANZA_HYBRID else None

    def describe(self) -> dict:
        if self.kind == STANZA_RSA_OAEP:
            return {"kind": self.kind, "recipient": fingerprint_str(self.fingerprint)}
        if self.kind == STANZA_HYBRID:
            return {
                "kind": self.kind,
                "recipient": fingerprint_str(self.fingerprint),
                "pq_recipient": fingerprint_str(self.pq_fingerprint),
            }
        return {"kind": self.kind, "length": len(self.body)}


@dataclass
class HybridParts:
    f_rsa: bytes
    f_pq: bytes
    c_rsa: bytes
    c_pq: bytes
    w: bytes


def split_hybrid_body(body: bytes) -> HybridParts:
    """FORMAT.md §6a: F_rsa 32 | F_pq 32 | C_rsa (body length - 1,200) | C_pq 1,088 | W 48."""
    if len(body) <= HYBRID_FIXED:
        raise FormatError(f"hybrid stanza body of {len(body)} bytes (must be longer than {HYBRID_FIXED})")
    L = len(body) - HYBRID_FIXED
    c_pq_at = 64 + L
    return HybridParts(
        body[:32], body[32:64], body[64:c_pq_at], body[c_pq_at : c_pq_at + MLKEM768_CT_LEN], body[-48:]
    )


def hybrid_kek(s_rsa: bytes, s_pq: bytes, parts: HybridParts) -> bytes:
    info = INFO_HYBRID + parts.f_rsa + parts.f_pq + parts.c_rsa + parts.c_pq
    return hkdf(b"", s_rsa + s_pq, info, 32)


def hybrid_unwrap(body: bytes, ident: HybridPrivateKey) -> bytes:
    """Unwrap K from a hybrid stanza body with both private keys (FORMAT.md §6a). Does not compare
    the fingerprints: the caller picks the stanza. Any failure is an AuthError (a body too short
    to be a hybrid stanza, a FormatError)."""
    parts = split_hybrid_body(body)
    try:
        s_rsa = ident.rsa.decrypt(parts.c_rsa, OAEP)
    except ValueError as e:
        raise AuthError("hybrid stanza: RSA-OAEP decryption of s_rsa failed") from e
    if len(s_rsa) != 32:
        raise AuthError(f"hybrid stanza: s_rsa is {len(s_rsa)} bytes, expected 32")
    try:
        s_pq = ident.pq.decapsulate(parts.c_pq)
    except ValueError as e:
        raise AuthError(f"hybrid stanza: ML-KEM-768 decapsulation failed: {e}") from e
    try:
        return AESGCM(hybrid_kek(s_rsa, s_pq, parts)).decrypt(bytes(12), parts.w, None)
    except InvalidTag as e:
        raise AuthError("hybrid stanza: the wrapped key W does not open (wrong key or damaged stanza)") from e


@dataclass
class Slot:
    raw: bytes
    state: str  # "empty" | "invalid" | "valid"
    reason: str = ""
    generation: int = 0
    stanzas: list = field(default_factory=list)


def parse_slot(raw: bytes) -> Slot:
    S = len(raw)
    if raw.count(0) == S:
        return Slot(raw, "empty")
    if not hmac.compare_digest(hashlib.sha256(raw[: S - 32]).digest(), raw[S - 32 :]):
        return Slot(raw, "invalid", "checksum mismatch")
    gen, n = struct.unpack_from(">QH", raw, 0)
    if gen < 1:
        return Slot(raw, "invalid", "generation 0")
    if not 1 <= n <= 16:
        return Slot(raw, "invalid", f"stanza count {n}")
    pos = 10
    limit = S - 64
    stanzas = []
    for i in range(n):
        if limit - pos < 4:
            return Slot(raw, "invalid", f"stanza {i} header past the slot area")
        kind, blen = struct.unpack_from(">HH", raw, pos)
        pos += 4
        if blen > limit - pos:
            return Slot(raw, "invalid", f"stanza {i} body past the slot area")
        body = raw[pos : pos + blen]
        pos += blen
        if kind == STANZA_RSA_OAEP and blen <= 32:
            return Slot(raw, "invalid", f"stanza {i}: RSA-OAEP body too short ({blen})")
        if kind == STANZA_HYBRID and blen <= HYBRID_FIXED:
            return Slot(raw, "invalid", f"stanza {i}: hybrid body too short ({blen})")
        stanzas.append(Stanza(kind, body))
    if raw[pos:limit].count(0) != limit - pos:
        return Slot(raw, "invalid", "non-zero padding after the stanzas")
    return Slot(raw, "valid", generation=gen, stanzas=stanzas)


def pick_active(a: Slot, b: Slot) -> tuple[str, Slot]:
    valid = [(n, s) for n, s in (("A", a), ("B", b)) if s.state == "valid"]
    if not valid:
        raise FormatError(
            f"no valid recipient slot (A: {a.state} {a.reason}; B: {b.state} {b.reason})".replace("  ", " ")
        )
    if len(valid) == 2:
        if a.generation == b.generation and a.raw == b.raw:
            return ("A", a)  # the same slot written twice (FORMAT.md §6)
        if a.generation == b.generation:
            raise FormatError(f"both recipient slots valid with the same generation {a.generation}")
        return ("A", a) if a.generation > b.generation else ("B", b)
    return valid[0]


def check_downgrade(hdr: "V2Header", name: str, active: Slot) -> None:
    """FORMAT.md §6a: with hybrid_recipients, an active slot holding any RSA-OAEP stanza is a
    downgrade, whatever keys the decoder holds."""
    if not hdr.hybrid:
        return
    rsa_only = [fingerprint_str(st.fingerprint) for st in active.stanzas if st.kind == STANZA_RSA_OAEP]
    if rsa_only:
        raise AuthError(
            f"downgrade: the header says hybrid_recipients but active slot {name} holds RSA-OAEP "
            f"(kind 1) stanzas for {rsa_only}"
        )


# --------------------------------------------------------------------------------------------
# v2 file structure


@dataclass
class V2Layout:
    hdr: V2Header
    header_sig: bytes
    slot_a: Slot
    slot_b: Slot
    chunks_start: int
    chunks_end: int
    n_chunks: int
    last_len: int
    final_sig: bytes


def read_v2_layout(f: BinaryIO) -> V2Layout:
    """Read everything but the chunk bodies; check the chunk region's geometry."""
    size = os.fstat(f.fileno()).st_size
    r = Reader(f)
    hdr = read_v2_header(r)
    L = hdr.sig_len
    lp = int.from_bytes(r.read_exact(2, "header signature length"), "big")
    if lp != L:
        raise FormatError(f"header signature length {lp} != signature_length {L}")
    header_sig = r.read_exact(L, "header signature")
    S = hdr.slot_size
    slot_a = parse_slot(r.read_exact(S, "recipient slot A"))
    slot_b = parse_slot(r.read_exact(S, "recipient slot B"))
    start = r.pos
    end = size - L
    R = end - start
    if R < GCM_TAG:
        raise FormatError(f"truncated file: {R} bytes between the slots and the final signature (< 16)")
    full = hdr.chunk_size + GCM_TAG
    n = (R + full - 1) // full
    last_len = R - (n - 1) * full
    if last_len < GCM_TAG:
        raise FormatError(f"truncated file: last sealed chunk would be {last_len} bytes (< 16)")
    if n > 1 and last_len == GCM_TAG:
        raise FormatError("empty last chunk after non-empty chunks (not a canonical v2 file)")
    f.seek(end)
    final_sig = f.read(L)
    if len(final_sig) != L:
        raise FormatError("truncated final signature")
    f.seek(start)
    return V2Layout(hdr, header_sig, slot_a, slot_b, start, end, n, last_len, final_sig)


def iter_sealed_chunks(f: BinaryIO, lay: V2Layout):
    full = lay.hdr.chunk_size + GCM_TAG
    f.seek(lay.chunks_start)
    for i in range(lay.n_chunks):
        last = i == lay.n_chunks - 1
        want = lay.last_len if last else full
        b = f.read(want)
        if len(b) != want:
            raise FormatError(f"truncated sealed chunk {i}")
        yield i, last, b


def verify_final_sig(hdr: V2Header, D: bytes, sig: bytes, signer: rsa.RSAPublicKey) -> None:
    try:
        signer.verify(sig, FINAL_SIG_LABEL + hdr.H + D, pss(32), hashes.SHA256())
    except InvalidSignature as e:
        raise AuthError("final signature is invalid") from e


def v2_verify(path: str, signers: list) -> dict:
    """§9 verifier: steps 1-2, slots by checksum, D, final signature."""
    with open(path, "rb") as f:
        lay = read_v2_layout(f)
        signer = find_signer(lay.hdr, signers)
        verify_header_sig(lay.hdr, lay.header_sig, signer)
        name, active = pick_active(lay.slot_a, lay.slot_b)
        check_downgrade(lay.hdr, name, active)
        d = blake3.blake3()
        for _i, _last, sealed in iter_sealed_chunks(f, lay):
            d.update(sealed)
        verify_final_sig(lay.hdr, d.digest(), lay.final_sig, signer)
    return {
        "ok": True,
        "signer": fingerprint_str(fingerprint(signer)),
        "active_slot": name,
        "generation": active.generation,
        "hybrid_recipients": lay.hdr.hybrid,
        "chunks": lay.n_chunks,
    }


class ZstdStream:
    """Decompress any number of concatenated zstd frames, fed incrementally."""

    def __init__(self, out: BinaryIO):
        import zstandard  # decompression only

        self._z = zstandard
        self.out = out
        self.dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
        self.obj = None
        self.pending = b""

    def feed(self, data: bytes) -> None:
        data = self.pending + data
        self.pending = b""
        while data:
            if self.obj is None:
                self.obj = self.dctx.decompressobj()
            try:
                self.out.write(self.obj.decompress(data))
            except self._z.ZstdError as e:
                raise FormatError(f"zstd decompression failed: {e}") from e
            if self.obj.eof:
                data = self.obj.unused_data
                self.obj = None
            else:
                data = b""

    def finish(self) -> None:
        if self.obj is not None:
            raise FormatError("zstd payload ends inside a frame")


def unwrap_file_key(active: Slot, slot_name: str, identities: list) -> bytes:
    """§6/§6a: the first stanza that names a held key (a hybrid stanza: both fingerprints of one
    hybrid identity) is unwrapped; a failed unwrap refuses the file, no other stanza is tried.

    identities: RSA private keys and HybridPrivateKeys. The RSA half of a hybrid identity is an RSA
    private key the decoder holds, so it also opens an RSA-OAEP stanza naming it."""
    held_rsa = {}
    held_hybrid = {}
    for k in identities:
        if isinstance(k, HybridPrivateKey):
            held_hybrid[(fingerprint(k.rsa.public_key()), mlkem_fingerprint(k.pq.public_key()))] = k
            held_rsa.setdefault(fingerprint(k.rsa.public_key()), k.rsa)
        else:
            held_rsa[fingerprint(k.public_key())] = k
    file_key = None
    for st in active.stanzas:
        if st.kind == STANZA_RSA_OAEP:
            key = held_rsa.get(st.fingerprint)
            if key is None:
                continue
            try:
                file_key = key.decrypt(st.body[32:], OAEP)
            except ValueError as e:
                raise AuthError("RSA-OAEP unwrap of the file key failed") from e
            break
        if st.kind == STANZA_HYBRID:
            ident = held_hybrid.get((st.fingerprint, st.pq_fingerprint))
            if ident is None:
                continue
            file_key = hybrid_unwrap(st.body, ident)
            break
    if file_key is None:
        named = [st.describe() for st in active.stanzas if st.kind in (STANZA_RSA_OAEP, STANZA_HYBRID)]
        raise KeyProblem(f"no held private key matches the recipients of slot {slot_name}: {named}")
    if len(file_key) != 32:
        raise AuthError(f"unwrapped file key is {len(file_key)} bytes, expected 32")
    return file_key


def v2_decrypt(path: str, out: BinaryIO, identities: list, signers: list, no_verify: bool = False) -> dict:
    """§9 decoder. Writes plaintext to `out`; the caller discards it on any exception.

    identities: RSA private keys and/or HybridPrivateKeys."""
    with open(path, "rb") as f:
        # 1. preamble, header
        lay = read_v2_layout(f)
        hdr = lay.hdr
        # 2. header signature
        signer = None
        if not no_verify:
            signer = find_signer(hdr, signers)
            verify_header_sig(hdr, lay.header_sig, signer)
        # 3. active slot (downgrade rule), stanza naming a held key, unwrap
        slot_name, active = pick_active(lay.slot_a, lay.slot_b)
        check_downgrade(hdr, slot_name, active)
        file_key = unwrap_file_key(active, slot_name, identities)
        # 4. derivations, commitment, slot MAC
        dk = derive_keys(hdr.fields["salt"], file_key)
        if not hmac.compare_digest(dk.commitment, hdr.fields["key_commitment"]):
            raise AuthError("key commitment mismatch: the wrapped key does not belong to this header")
        S = hdr.slot_size
        if not hmac.compare_digest(slot_mac(dk.mac, hdr.H, active.raw), active.raw[S - 64 : S - 32]):
            raise AuthError(f"recipient slot {slot_name} MAC mismatch")
        # 5. chunks
        aead = AESGCM(dk.payload)
        d = blake3.blake3()
        sink = ZstdStream(out) if hdr.fields["compression"] == 1 else None
        total = 0
        for i, last, sealed in iter_sealed_chunks(f, lay):
            d.update(sealed)
            try:
                pt = aead.decrypt(chunk_nonce(dk.nonce_prefix, i, last), sealed, hdr.H)
            except InvalidTag as e:
                raise AuthError(f"chunk {i}: authentication tag mismatch") from e
            total += len(pt)
            if sink is not None:
                sink.feed(pt)
            else:
                out.write(pt)
        if sink is not None:
            sink.finish()
        # 6. final signature
        if not no_verify:
            verify_final_sig(hdr, d.digest(), lay.final_sig, signer)
    return {"chunks": lay.n_chunks, "payload_bytes": total, "active_slot": slot_name}


def v2_inspect(path: str) -> dict:
    with open(path, "rb") as f:
        lay = read_v2_layout(f)
    hdr = lay.hdr
    out: dict = {"format": "pgseal-v2", "version": hdr.version, "header_length": hdr.header_len}
    for k, v in hdr.fields.items():
        if k == "signer_fingerprint":
            out[k] = fingerprint_str(v)
        elif isinstance(v, bytes):
            out[k] = v.hex()
        else:
            out[k] = v
    out["hybrid_recipients"] = hdr.fields.get("hybrid_recipients", 0)
    out["unknown_fields"] = [{"tag": f"0x{t:04x}", "value": v.hex()} for t, v in hdr.unknown]
    out["header_sha256"] = hdr.H.hex()

    def slot_info(s: Slot):
        d = {"state": s.state}
        if s.reason:
            d["reason"] = s.reason
        if s.state == "valid":
            d["generation"] = s.generation
            d["stanzas"] = [st.describe() for st in s.stanzas]
        return d

    out["slots"] = {"A": slot_info(lay.slot_a), "B": slot_info(lay.slot_b)}
    out["chunks"] = lay.n_chunks
    out["sealed_bytes"] = lay.chunks_end - lay.chunks_start
    return out


# --------------------------------------------------------------------------------------------
# v2 writer (test helper; never compresses)


def zstd_store_frames(data: bytes, frame_size: int = 1 << 20) -> bytes:
    """zstd frames holding `data` in raw (stored) blocks: RFC 8878 §3.1.1, no compression.

    Frame header: magic 0xFD2FB528 (LE), descriptor 0xE0 = FCS flag 3 (8-byte content size) +
    single segment, then the 8-byte LE content size. Blocks: 3-byte LE header
    (Last_Block | Block_Type 0 = Raw << 1 | size << 3), at most 128 KiB each.
    """
    frames = []
    pieces = [data[i : i + frame_size] for i in range(0, len(data), frame_size)] or [b""]
    for piece in pieces:
        fr = bytearray(struct.pack("<I", 0xFD2FB528) + b"\xe0" + struct.pack("<Q", len(piece)))
        blocks = [piece[i : i + 131072] for i in range(0, len(piece), 131072)] or [b""]
        for j, blk in enumerate(blocks):
            last = 1 if j == len(blocks) - 1 else 0
            hdr = last | (0 << 1) | (len(blk) << 3)
            fr += hdr.to_bytes(3, "little") + blk
        frames.append(bytes(fr))
    return b"".join(frames)


def encode_field(tag: int, value: bytes) -> bytes:
    return struct.pack(">HI", tag, len(value)) + value


def build_slot(S: int, generation: int, stanzas: list, k_mac: bytes, H: bytes) -> bytes:
    body = struct.pack(">QH", generation, len(stanzas))
    for kind, sb in stanzas:
        body += struct.pack(">HH", kind, len(sb)) + sb
    if len(body) > S - 64:
        raise ValueError("stanzas do not fit in the slot")
    slot = body + bytes(S - 64 - len(body))
    slot += hmac.new(k_mac, SLOT_MAC_LABEL + H + slot, hashlib.sha256).digest()
    slot += hashlib.sha256(slot).digest()
    assert len(slot) == S
    return slot


def rsa_stanza(pub: rsa.RSAPublicKey, file_key: bytes) -> tuple:
    return (STANZA_RSA_OAEP, fingerprint(pub) + pub.encrypt(file_key, OAEP))


def hybrid_stanza(pub: HybridPublicKey, file_key: bytes) -> tuple:
    """FORMAT.md §6a: (kind 2, F_rsa || F_pq || C_rsa || C_pq || W)."""
    f_rsa, f_pq = pub.fingerprints
    s_rsa = os.urandom(32)
    c_rsa = pub.rsa.encrypt(s_rsa, OAEP)
    s_pq, c_pq = pub.pq.encapsulate()
    parts = HybridParts(f_rsa, f_pq, c_rsa, c_pq, b"")
    w = AESGCM(hybrid_kek(s_rsa, s_pq, parts)).encrypt(bytes(12), file_key, None)
    return (STANZA_HYBRID, f_rsa + f_pq + c_rsa + c_pq + w)


def recipient_stanza(pub, file_key: bytes) -> tuple:
    if isinstance(pub, HybridPublicKey):
        return hybrid_stanza(pub, file_key)
    if isinstance(pub, rsa.RSAPublicKey):
        return rsa_stanza(pub, file_key)
    raise TypeError(f"not a recipient key: {type(pub).__name__}")


def stanza_size(pub) -> int:
    """Bytes the recipient's stanza takes in a slot (kind, length and body)."""
    if isinstance(pub, HybridPublicKey):
        return 4 + HYBRID_FIXED + key_bytes(pub.rsa)
    return 4 + 32 + key_bytes(pub)


def v2_encrypt(
    data: bytes,
    recipients: list,
    sign_key: rsa.RSAPrivateKey,
    *,
    compression: int = 0,
    chunk_size: int = 65536,
    slot_size: int | None = None,
    created_at_ms: int | None = None,
    text_fields: dict | None = None,
    extra_fields: list | None = None,
    zstd_frame_size: int = 1 << 20,
    slots: tuple | None = None,
    file_key: bytes | None = None,
    hybrid_flag: bool | None = None,
    unchecked: bool = False,
) -> bytes:
    """Write a v2 file in memory.

    recipients: public keys (RSA or HybridPublicKey) for slot A (generation 1); slot B empty.
    slots: optional override ((genA, [pubs]|None|bytes), (genB, [pubs]|None|bytes)) where None means
    an empty slot and bytes means raw slot contents.
    extra_fields: [(tag, value bytes)] added to the header (sorted with the rest).
    file_key: K (default: 32 random bytes); tests that rebuild slots pass their own.

    Hybrid recipients (FORMAT.md §6a): hybrid_recipients = 1 is written exactly when every recipient
    (of every slot list) is hybrid; a slot mixing hybrid and RSA-only recipients is refused
    (UsageError), as is a hybrid_flag that contradicts the recipients. unchecked=True lifts both
    refusals (with hybrid_flag, it writes whatever flag it is told): only for tests that need a
    deliberately bad file.
    """
    L = key_bytes(sign_key)
    file_key = os.urandom(32) if file_key is None else file_key
    salt = os.urandom(32)
    dk = derive_keys(salt, file_key)
    payload = zstd_store_frames(data, zstd_frame_size) if compression == 1 else data
    lists = [list(recipients)]
    if slots:
        lists += [v for _g, v in slots if isinstance(v, list)]
    all_pubs = [p for lst in lists for p in lst]
    all_hybrid = bool(all_pubs) and all(isinstance(p, HybridPublicKey) for p in all_pubs)
    if not unchecked:
        for lst in lists:
            kinds = {isinstance(p, HybridPublicKey) for p in lst}
            if len(kinds) > 1:
                raise UsageError(
                    "refusing a mix of hybrid and RSA-only recipients: the file would be only as strong "
                    "as RSA (FORMAT.md §6a)"
                )
        if hybrid_flag is not None and hybrid_flag != all_hybrid:
            raise UsageError(
                f"hybrid_recipients={int(hybrid_flag)} contradicts the recipients "
                f"({'all' if all_hybrid else 'not all'} hybrid); pass unchecked=True for a bad test file"
            )
    if hybrid_flag is None:
        hybrid_flag = all_hybrid
    if slot_size is None:
        need = 10 + 64 + sum(stanza_size(p) for p in all_pubs)
        slot_size = max(512, (need + 63) // 64 * 64)
    fields = {
        T_CREATED_AT: struct.pack(">Q", created_at_ms if created_at_ms is not None else int(time.time() * 1000)),
        T_TOOL: b"pgseal_ref 1",
        T_SUITE: b"\x01",
        T_CHUNK_SIZE: struct.pack(">I", chunk_size),
        T_SALT: salt,
        T_KEY_COMMITMENT: dk.commitment,
        T_COMPRESSION: bytes([compression]),
        T_SLOT_SIZE: struct.pack(">I", slot_size),
        T_SIGNER_FP: fingerprint(sign_key.public_key()),
        T_SIG_LEN: struct.pack(">H", L),
    }
    if hybrid_flag:
        fields[T_HYBRID] = b"\x01"
    name_to_tag = {v[0]: k for k, v in FIELDS.items()}
    for k, v in (text_fields or {}).items():
        fields[name_to_tag[k]] = struct.pack(">Q", v) if isinstance(v, int) else v.encode()
    for tag, v in extra_fields or []:
        fields[tag] = v
    body = b"".join(encode_field(t, fields[t]) for t in sorted(fields))
    signed = V2_MAGIC + bytes([V2_VERSION]) + struct.pack(">I", len(body)) + body
    H = hashlib.sha256(signed).digest()
    hsig = sign_key.sign(HEADER_SIG_LABEL + H, pss(32), hashes.SHA256())
    if slots is None:
        slots = ((1, list(recipients)), (0, None))
    raw_slots = []
    for gen, v in slots:
        if v is None:
            raw_slots.append(bytes(slot_size))
        elif isinstance(v, bytes):
            raw_slots.append(v)
        else:
            raw_slots.append(build_slot(slot_size, gen, [recipient_stanza(p, file_key) for p in v], dk.mac, H))
    aead = AESGCM(dk.payload)
    chunks = [payload[i : i + chunk_size] for i in range(0, len(payload), chunk_size)] or [b""]
    sealed = [
        aead.encrypt(chunk_nonce(dk.nonce_prefix, i, i == len(chunks) - 1), c, H) for i, c in enumerate(chunks)
    ]
    D = blake3.blake3(b"".join(sealed)).digest()
    fsig = sign_key.sign(FINAL_SIG_LABEL + H + D, pss(32), hashes.SHA256())
    return signed + struct.pack(">H", L) + hsig + b"".join(raw_slots) + b"".join(sealed) + fsig


# --------------------------------------------------------------------------------------------
# Legacy formats (legacy-formats.md §1, §2)

SYM_MAGIC = b"PGBACKUP_AES256_V1"
HYB_MAGIC = b"PGBACKUP_HYBRID_V1\x00\x00"
PBKDF2_ITER = 100_000


def legacy_sym_key(password: str, salt: bytes) -> bytes:
    return PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=PBKDF2_ITER).derive(
        password.encode("utf-8")
    )


def make_legacy_symmetric(data: bytes, password: str) -> bytes:
    salt = os.urandom(32)
    nonce = os.urandom(12)
    ct = AESGCM(legacy_sym_key(password, salt)).encrypt(nonce, data, None)
    return SYM_MAGIC + salt + nonce + ct


def legacy_symmetric_decrypt(blob: bytes, password: str) -> bytes:
    if not blob.startswith(SYM_MAGIC):
        raise FormatError("not a PGBACKUP_AES256_V1 file")
    if len(blob) < 18 + 32 + 12 + 16:
        raise FormatError("truncated PGBACKUP_AES256_V1 file")
    salt, nonce, ct = blob[18:50], blob[50:62], blob[62:]
    try:
        return AESGCM(legacy_sym_key(password, salt)).decrypt(nonce, ct, None)
    except InvalidTag as e:
        raise AuthError("GCM tag mismatch (wrong password or tampered file)") from e


def legacy_hybrid_sign(signer: rsa.RSAPrivateKey, ct: bytes) -> bytes:
    D = hashlib.sha256(ct).digest()
    # the quirk: D is the *message*; the PSS hash is SHA-256(D)
    return signer.sign(D, pss(padding.PSS.MAX_LENGTH), hashes.SHA256())


def make_legacy_hybrid(
    data: bytes, server_pub: rsa.RSAPublicKey, signer: rsa.RSAPrivateKey, user_id: int, unix_time: int
) -> bytes:
    session = os.urandom(32)
    wrapped = server_pub.encrypt(session, OAEP)
    nonce = os.urandom(12)
    ct = AESGCM(session).encrypt(nonce, data, None)
    sig = legacy_hybrid_sign(signer, ct)
    return (
        HYB_MAGIC
        + struct.pack("<IQQI", 1, user_id, unix_time, len(wrapped))
        + wrapped
        + struct.pack("<I", len(sig))
        + sig
        + nonce
        + ct
    )


@dataclass
class LegacyHybrid:
    version: int
    user_id: int
    time: int
    wrapped: bytes
    signature: bytes
    nonce: bytes
    ct: bytes


def parse_legacy_hybrid(blob: bytes) -> LegacyHybrid:
    if not blob.startswith(HYB_MAGIC):
        raise FormatError("not a PGBACKUP_HYBRID_V1 file")
    try:
        version, uid, t, n = struct.unpack_from("<IQQI", blob, 20)
        pos = 44
        wrapped = blob[pos : pos + n]
        if len(wrapped) != n:
            raise struct.error
        pos += n
        (m,) = struct.unpack_from("<I", blob, pos)
        pos += 4
        sig = blob[pos : pos + m]
        if len(sig) != m:
            raise struct.error
        pos += m
        nonce = blob[pos : pos + 12]
        pos += 12
        ct = blob[pos:]
    except struct.error as e:
        raise FormatError("truncated PGBACKUP_HYBRID_V1 file") from e
    if len(nonce) != 12 or len(ct) < 16:
        raise FormatError("truncated PGBACKUP_HYBRID_V1 file")
    if version != 1:
        raise FormatError(f"unsupported PGBACKUP_HYBRID_V1 version {version}")
    return LegacyHybrid(version, uid, t, wrapped, sig, nonce, ct)


def legacy_hybrid_verify(h: LegacyHybrid, signer: rsa.RSAPublicKey) -> None:
    D = hashlib.sha256(h.ct).digest()
    try:
        signer.verify(h.signature, D, pss(padding.PSS.MAX_LENGTH), hashes.SHA256())
    except InvalidSignature as e:
        raise AuthError("legacy hybrid signature is invalid") from e


def legacy_hybrid_decrypt(blob: bytes, server: rsa.RSAPrivateKey, signer: rsa.RSAPublicKey | None) -> tuple:
    h = parse_legacy_hybrid(blob)
    if signer is not None:
        legacy_hybrid_verify(h, signer)
    try:
        session = server.decrypt(h.wrapped, OAEP)
    except ValueError as e:
        raise KeyProblem("cannot unwrap the session key (wrong server key?)") from e
    if len(session) != 32:
        raise FormatError("unwrapped session key is not 32 bytes")
    try:
        pt = AESGCM(session).decrypt(h.nonce, h.ct, None)
    except InvalidTag as e:
        raise AuthError("GCM tag mismatch") from e
    return pt, h


# --------------------------------------------------------------------------------------------
# CLI


def atomic_output(out_path: str, writer) -> None:
    """Run writer(fileobj) into a temp file next to out_path; rename on success, delete on failure."""
    if out_path == "-":
        with tempfile.TemporaryFile() as tf:
            writer(tf)
            tf.seek(0)
            while b := tf.read(1 << 20):
                sys.stdout.buffer.write(b)
        sys.stdout.buffer.flush()
        return
    d = os.path.dirname(os.path.abspath(out_path))
    fd, tmp = tempfile.mkstemp(prefix=".pgseal_ref-", dir=d)
    try:
        with os.fdopen(fd, "wb") as tf:
            writer(tf)
        os.replace(tmp, out_path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_input(path: str) -> bytes:
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise RefError(f"cannot read {path}: {e}") from e


def env_password(var: str) -> str:
    v = os.environ.get(var)
    if not v:
        raise KeyProblem(f"password environment variable {var} is not set")
    return v


def cmd_v2_decrypt(a) -> dict:
    ids = [load_identity_key(p, "SERVER_KEY_PASSWORD") for p in a.identity]
    signers = [load_public_key(p) for p in a.signer]
    if not signers and not a.no_verify:
        raise KeyProblem("no --signer given (use --no-verify to waive verification)")
    if os.path.exists(a.output) and not a.force and a.output != "-":
        raise RefError(f"{a.output} exists (use --force)")
    res = {}

    def w(out):
        res.update(v2_decrypt(a.file, out, ids, signers, a.no_verify))

    atomic_output(a.output, w)
    return res


def cmd_v2_verify(a) -> dict:
    return v2_verify(a.file, [load_public_key(p) for p in a.signer])


def cmd_v2_inspect(a) -> dict:
    return v2_inspect(a.file)


def cmd_v2_encrypt(a) -> dict:
    data = read_input(a.input)
    recips = [load_recipient_key(p) for p in a.recipient]
    sk = load_private_key(a.sign_key, "PGSEAL_USER_KEY_PASSWORD")
    blob = v2_encrypt(
        data, recips, sk, compression=1 if a.compress == "zstd" else 0, chunk_size=a.chunk_size
    )
    atomic_output(a.output, lambda f: f.write(blob))
    return {"bytes": len(blob)}


def cmd_make_legacy_symmetric(a) -> dict:
    pw = env_password("BACKUP_ENCRYPTION_PASSWORD")
    blob = make_legacy_symmetric(read_input(a.input), pw)
    atomic_output(a.output, lambda f: f.write(blob))
    return {"bytes": len(blob)}


def cmd_make_legacy_hybrid(a) -> dict:
    srv = load_public_key(a.server_pub)
    sk = load_private_key(a.signer_key, "PGSEAL_USER_KEY_PASSWORD")
    t = a.time if a.time is not None else int(time.time())
    blob = make_legacy_hybrid(read_input(a.input), srv, sk, a.user_id, t)
    atomic_output(a.output, lambda f: f.write(blob))
    return {"bytes": len(blob)}


def cmd_legacy_hybrid_decrypt(a) -> dict:
    srv = load_private_key(a.identity, "SERVER_KEY_PASSWORD")
    signer = load_public_key(a.signer) if a.signer else None
    pt, h = legacy_hybrid_decrypt(read_input(a.file), srv, signer)
    if signer is None:
        print("warning: signature NOT checked (no --signer)", file=sys.stderr)
    atomic_output(a.output, lambda f: f.write(pt))
    return {"user_id": h.user_id, "time": h.time, "signature_checked": signer is not None}


def cmd_legacy_symmetric_decrypt(a) -> dict:
    pw = env_password("BACKUP_ENCRYPTION_PASSWORD")
    pt = legacy_symmetric_decrypt(read_input(a.file), pw)
    atomic_output(a.output, lambda f: f.write(pt))
    return {"bytes": len(pt)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pgseal_ref", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser(
        "v2-decrypt", help="decrypt a v2 file (identity password: $SERVER_KEY_PASSWORD; RSA or hybrid key files)"
    )
    s.add_argument("file")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--identity", action="append", required=True)
    s.add_argument("--signer", action="append", default=[])
    s.add_argument("--no-verify", action="store_true", help="waive both signature checks")
    s.add_argument("--force", action="store_true")
    s.set_defaults(fn=cmd_v2_decrypt)

    s = sub.add_parser("v2-verify", help="check header and final signatures without a private key")
    s.add_argument("file")
    s.add_argument("--signer", action="append", required=True)
    s.set_defaults(fn=cmd_v2_verify)

    s = sub.add_parser("v2-inspect", help="print the header as JSON")
    s.add_argument("file")
    s.set_defaults(fn=cmd_v2_inspect)

    s = sub.add_parser(
        "v2-encrypt",
        help="write a v2 file (test helper; sign key password: $PGSEAL_USER_KEY_PASSWORD; "
        "RSA or hybrid recipients, not a mix)",
    )
    s.add_argument("input")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--recipient", action="append", required=True)
    s.add_argument("--sign-key", required=True)
    s.add_argument("--compress", choices=["none", "zstd"], default="none")
    s.add_argument("--chunk-size", type=int, default=65536)
    s.set_defaults(fn=cmd_v2_encrypt)

    s = sub.add_parser("make-legacy-symmetric", help="write PGBACKUP_AES256_V1 ($BACKUP_ENCRYPTION_PASSWORD)")
    s.add_argument("input")
    s.add_argument("output")
    s.set_defaults(fn=cmd_make_legacy_symmetric)

    s = sub.add_parser("make-legacy-hybrid", help="write PGBACKUP_HYBRID_V1 ($PGSEAL_USER_KEY_PASSWORD)")
    s.add_argument("input")
    s.add_argument("output")
    s.add_argument("--server-pub", required=True)
    s.add_argument("--signer-key", required=True)
    s.add_argument("--user-id", type=int, required=True)
    s.add_argument("--time", type=int)
    s.set_defaults(fn=cmd_make_legacy_hybrid)

    s = sub.add_parser("legacy-hybrid-decrypt", help="read PGBACKUP_HYBRID_V1 ($SERVER_KEY_PASSWORD)")
    s.add_argument("file")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--identity", required=True)
    s.add_argument("--signer")
    s.set_defaults(fn=cmd_legacy_hybrid_decrypt)

    s = sub.add_parser("legacy-symmetric-decrypt", help="read PGBACKUP_AES256_V1 ($BACKUP_ENCRYPTION_PASSWORD)")
    s.add_argument("file")
    s.add_argument("-o", "--output", required=True)
    s.set_defaults(fn=cmd_legacy_symmetric_decrypt)
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    try:
        res = a.fn(a)
    except RefError as e:
        print(f"pgseal_ref: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        print(f"pgseal_ref: error: {e}", file=sys.stderr)
        return 1
    if a.cmd in ("v2-inspect", "v2-verify"):
        print(json.dumps(res, indent=2))
    else:
        print(json.dumps(res), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
