"""Shared fixtures for the pgseal reference tests.

Keys are made once per session (RSA key generation is slow): with `openssl genpkey` for the tests
that drive the real binary, and with `cryptography` for the reference's own self-tests.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mlkem, rsa

import pgseal_ref as ref

HERE = Path(__file__).resolve().parent
REF = HERE / "pgseal_ref.py"

# distinct passwords per role, so that a mix-up of environment variables shows
USER_PW = "user-signing-key-password-0001"
SERVER_PW = "server-key-password-000000002"
SERVER2_PW = "second-server-key-password-03"
KEYGEN_PW = "keygen-password-0000000000004"
LEGACY_PW = "legacy backup password Ünïcode 5"

PASSWORD_VARS = (
    "PGSEAL_KEY_PASSWORD",
    "PGSEAL_USER_KEY_PASSWORD",
    "SERVER_KEY_PASSWORD",
    "BACKUP_ENCRYPTION_PASSWORD",
)


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PASSWORD_VARS}
    env.update(extra)
    return env


def run_ref(*args, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(
        [sys.executable, str(REF), *map(str, args)],
        env=clean_env(**(env or {})),
        capture_output=True,
        timeout=120,
    )
    if check and p.returncode != 0:
        raise AssertionError(f"pgseal_ref {args} exited {p.returncode}: {p.stderr.decode(errors='replace')}")
    return p


def openssl(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(["openssl", *map(str, args)], env=clean_env(**(env or {})), capture_output=True, timeout=120)
    return p


@dataclass
class KeyPair:
    key: Path  # private key PEM
    pub: Path  # public key PEM (SPKI)
    password: str | None  # None = unencrypted

    def env(self, var: str) -> dict:
        return {var: self.password} if self.password else {}


def openssl_keypair(d: Path, name: str, bits: int, password: str | None) -> KeyPair:
    key = d / f"{name}.key.pem"
    pub = d / f"{name}.pub.pem"
    args = ["genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{bits}", "-out", key]
    env = {}
    if password:
        args += ["-aes-256-cbc", "-pass", "env:OSSL_PW"]
        env["OSSL_PW"] = password
    p = openssl(*args, env=env)
    assert p.returncode == 0, p.stderr.decode()
    args = ["pkey", "-in", key, "-pubout", "-out", pub]
    if password:
        args += ["-passin", "env:OSSL_PW"]
    p = openssl(*args, env=env)
    assert p.returncode == 0, p.stderr.decode()
    return KeyPair(key, pub, password)


@pytest.fixture(scope="session")
def keydir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="session")
def user_key(keydir) -> KeyPair:
    """The creator / signer: encrypted PKCS#8, 3072 bits."""
    return openssl_keypair(keydir, "user", 3072, USER_PW)


@pytest.fixture(scope="session")
def server_key(keydir) -> KeyPair:
    """First server (recipient): encrypted PKCS#8, 3072 bits."""
    return openssl_keypair(keydir, "server", 3072, SERVER_PW)


@pytest.fixture(scope="session")
def server2_key(keydir) -> KeyPair:
    """Second server (recipient): encrypted PKCS#8, 2048 bits."""
    return openssl_keypair(keydir, "server2", 2048, SERVER2_PW)


@pytest.fixture(scope="session")
def plain_key(keydir) -> KeyPair:
    """Unencrypted PKCS#8 key, 2048 bits."""
    return openssl_keypair(keydir, "plain", 2048, None)


@pytest.fixture(scope="session")
def pkcs1_keys(keydir, plain_key) -> KeyPair:
    """PKCS#1 private (`openssl rsa -traditional`) and PKCS#1 public (`-RSAPublicKey_out`)."""
    key = keydir / "pkcs1.key.pem"
    pub = keydir / "pkcs1.pub.pem"
    p = openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", keydir / "pkcs1.p8.pem")
    assert p.returncode == 0, p.stderr.decode()
    p = openssl("rsa", "-in", keydir / "pkcs1.p8.pem", "-traditional", "-out", key)
    assert p.returncode == 0, p.stderr.decode()
    p = openssl("rsa", "-in", keydir / "pkcs1.p8.pem", "-RSAPublicKey_out", "-out", pub)
    assert p.returncode == 0, p.stderr.decode()
    assert key.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert pub.read_text().startswith("-----BEGIN RSA PUBLIC KEY-----")
    return KeyPair(key, pub, None)


# ---- in-process keys for the self-tests


@pytest.fixture(scope="session")
def rsa2048():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def rsa2048b():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def rsa3072():
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


@pytest.fixture(scope="session")
def hyb2048(rsa2048) -> "ref.HybridPrivateKey":
    """A hybrid identity (FORMAT.md §6a): rsa2048 plus a fresh ML-KEM-768 key."""
    return ref.HybridPrivateKey(rsa2048, mlkem.MLKEM768PrivateKey.generate())


@pytest.fixture(scope="session")
def hyb2048b(rsa2048b) -> "ref.HybridPrivateKey":
    return ref.HybridPrivateKey(rsa2048b, mlkem.MLKEM768PrivateKey.generate())


def write_hybrid_keypair(d: Path, name: str, key: "ref.HybridPrivateKey", password: str | None) -> KeyPair:
    """NAME.key.pem (two PKCS#8 blocks, RSA first) and NAME.pub.pem (two SPKI blocks)."""
    k = d / f"{name}.key.pem"
    p = d / f"{name}.pub.pem"
    k.write_bytes(ref.hybrid_private_pem(key, password))
    os.chmod(k, 0o600)
    p.write_bytes(ref.hybrid_public_pem(key))
    return KeyPair(k, p, password)


# ---- hand-made slots (the reference's writer knows K when a test passes file_key)


def blob_layout(blob: bytes) -> "ref.V2Layout":
    with tempfile.TemporaryFile() as f:
        f.write(blob)
        f.flush()
        f.seek(0)
        return ref.read_v2_layout(f)


def slot_a_replaced(blob: bytes, K: bytes, stanzas: list, gen: int = 1) -> bytes:
    """`blob` with slot A rebuilt from (kind, body) stanzas, with a valid MAC (from the known file key
    K) and checksum: only the rules about the stanzas themselves can refuse it."""
    lay = blob_layout(blob)
    S = lay.hdr.slot_size
    a = lay.chunks_start - 2 * S
    dk = ref.derive_keys(lay.hdr.fields["salt"], K)
    return blob[:a] + ref.build_slot(S, gen, stanzas, dk.mac, lay.hdr.H) + blob[a + S :]


def reseal(slot: bytearray, k_mac: bytes, H: bytes) -> bytes:
    """Recompute a slot's MAC and checksum after an edit: only the stanza's own checks remain."""
    S = len(slot)
    slot[S - 64 : S - 32] = ref.slot_mac(k_mac, H, bytes(slot))
    slot[S - 32 :] = hashlib.sha256(slot[: S - 32]).digest()
    return bytes(slot)


def write_key(path: Path, key, password: str | None) -> Path:
    enc = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    return path


def write_pub(path: Path, key) -> Path:
    pub = key.public_key() if hasattr(key, "public_key") else key
    path.write_bytes(
        pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


# ---- the binary under test

DEFAULT_BIN = HERE.parents[1] / "target" / "debug" / "pgseal"


@pytest.fixture(scope="session")
def pgseal_bin() -> str:
    b = os.environ.get("PGSEAL_BIN", str(DEFAULT_BIN))
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        pytest.fail(f"pgseal binary not found or not executable: {b} (set PGSEAL_BIN)", pytrace=False)
    return b


@pytest.fixture
def pgseal(pgseal_bin):
    def run(*args, env: dict | None = None, check: bool = True, input: bytes | None = None):
        p = subprocess.run(
            [pgseal_bin, *map(str, args)],
            env=clean_env(**(env or {})),
            capture_output=True,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            timeout=120,
        )
        if check and p.returncode != 0:
            raise AssertionError(
                f"pgseal {' '.join(map(str, args))} exited {p.returncode}\n"
                f"stderr: {p.stderr.decode(errors='replace')}"
            )
        return p

    return run
