#!/usr/bin/env bash
# Writes seed corpora for the fuzz targets into fuzz/corpus/<target>/ (gitignored).
#
# Builds nothing itself: it uses an already-built pgseal binary (default target/debug/pgseal;
# override with PGSEAL=/path/to/pgseal), openssl for key-format variants, and python3 with the
# `cryptography` package for legacy files made under the fuzz targets' fixed password and key
# (skipped, with a note, when it is missing). Safe to re-run: it overwrites its own seeds.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
pgseal="${PGSEAL:-$root/target/debug/pgseal}"
wild="${LEGACY_WILD:-$root/tests/fixtures/legacy-wild}"
corpus="$here/corpus"
# The password the targets use (fuzz_targets/keys.rs, legacy_symmetric.rs).
password="fuzz-password-0123456789"

if [[ ! -x "$pgseal" ]]; then
    echo "seed.sh: $pgseal not found; run \`cargo build -p pgseal\` first (or set PGSEAL)" >&2
    exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$corpus"/{v2_prelude,v2_open,legacy_hybrid,legacy_symmetric,keys}

# --- keys: pgseal keygen (2048-bit, so runs stay fast), then other encodings via openssl -------
export PGSEAL_KEY_PASSWORD="$password"
"$pgseal" keygen --out "$tmp/signer" --key-size 2048 --force >/dev/null
"$pgseal" keygen --out "$tmp/server" --key-size 2048 --force >/dev/null
k="$corpus/keys"
cp "$tmp/signer.pub.pem" "$k/spki.pem"
openssl pkey -in "$tmp/signer.key.pem" -passin "pass:$password" -out "$k/pkcs8.pem"
openssl rsa -in "$k/pkcs8.pem" -traditional -out "$k/pkcs1.pem" 2>/dev/null
openssl rsa -pubin -in "$k/spki.pem" -RSAPublicKey_out -out "$k/pkcs1-public.pem" 2>/dev/null
openssl pkey -pubin -in "$k/spki.pem" -outform DER -out "$k/spki.der"
openssl rsa -pubin -in "$k/spki.pem" -RSAPublicKey_out -outform DER -out "$k/pkcs1-public.der" 2>/dev/null
# Encrypted PKCS#8 with 2,048 rounds (what the legacy system wrote). pgseal's own 600,000-round
# keys are valid seeds too, but each run of one costs seconds under the fuzzer, so leave them out.
openssl pkcs8 -topk8 -in "$k/pkcs8.pem" -v2 aes-256-cbc -v2prf hmacWithSHA256 -iter 2048 \
    -passout "pass:$password" -out "$k/pkcs8-encrypted-2048.pem"
# CRLF line endings and text around the block, as OpenSSL's "Bag Attributes" output has.
{ echo "Bag Attributes"; echo "    friendlyName: fuzz"; sed 's/$/\r/' "$k/spki.pem"; } >"$k/spki-crlf-attrs.pem"
# A hybrid key (RSA + ML-KEM-768, FORMAT.md §6a): its two-block public file, both private blocks
# unencrypted (600,000-round blocks cost seconds per run), and the ML-KEM SPKI and PKCS#8 DER
# alone (the targets also feed raw bytes to the ML-KEM parsers). Debian's OpenSSL 3.0 has no
# ML-KEM, so Python's `cryptography` re-encodes them.
"$pgseal" keygen --pq --out "$tmp/hybrid" --key-size 2048 --force >/dev/null
cp "$tmp/hybrid.pub.pem" "$k/hybrid-spki.pem"
if python3 -c 'from cryptography.hazmat.primitives.asymmetric import mlkem' 2>/dev/null; then
    python3 - "$tmp/hybrid.key.pem" "$password" "$k" <<'PY'
import re, sys
from cryptography.hazmat.primitives import serialization as s
path, password, out = sys.argv[1], sys.argv[2].encode(), sys.argv[3]
blocks = re.findall(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----\n", open(path).read(), re.S)
keys = [s.load_pem_private_key(b.encode(), password) for b in blocks]
pem = b"".join(k.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()) for k in keys)
open(f"{out}/hybrid-pkcs8.pem", "wb").write(pem)
pq = keys[1]
open(f"{out}/mlkem-pkcs8.der", "wb").write(
    pq.private_bytes(s.Encoding.DER, s.PrivateFormat.PKCS8, s.NoEncryption()))
open(f"{out}/mlkem-spki.der", "wb").write(
    pq.public_key().public_bytes(s.Encoding.DER, s.PublicFormat.SubjectPublicKeyInfo))
PY
else
    echo "seed.sh: python3 'cryptography' with ML-KEM missing; hybrid private-key seeds skipped" >&2
fi

# --- v2 files: pgseal encrypt --------------------------------------------------------------------
export PGSEAL_USER_KEY_PASSWORD="$password"
head -c 3000 /dev/urandom >"$tmp/random.bin"
for _ in $(seq 230); do echo "pgseal fuzz seed line"; done >"$tmp/text.txt"
: >"$tmp/empty"
enc() { # enc INPUT OUT [extra args]
    local in="$1" out="$2"
    shift 2
    "$pgseal" encrypt --recipient "$tmp/server.pub.pem" --sign-key "$tmp/signer.key.pem" \
        --force --output "$out" "$@" "$in" >/dev/null
}
p="$corpus/v2_prelude"
enc "$tmp/text.txt" "$p/text-zstd.pgseal" --username fuzz --user-id 7
enc "$tmp/random.bin" "$p/random-none.pgseal" --compress none
enc "$tmp/empty" "$p/empty.pgseal"
enc "$tmp/text.txt" "$p/two-recipients.pgseal" --recipient "$tmp/signer.pub.pem"
# To a hybrid recipient (FORMAT.md §6a): the hybrid stanza and the signed flag.
"$pgseal" encrypt --recipient "$tmp/hybrid.pub.pem" --sign-key "$tmp/signer.key.pem" \
    --force --output "$p/hybrid.pgseal" "$tmp/text.txt" >/dev/null
# A v1 (legacy hybrid) file, for the hybrid target.
enc "$tmp/text.txt" "$corpus/legacy_hybrid/pgseal-v1.backup" --format v1 --user-id 7

# --- v2_open: edit scripts (see fuzz_targets/v2_open.rs) -----------------------------------------
# byte 0: bits 0-3 pick the sealed file, bit 4 = SignerCheck::Skip, bit 5 = also run verify.
# Then ops: 0-2 xor(u16 offset, u8 value), 3 truncate(u16), 4 append(u8 n, n bytes),
# 5 copy(u16 src, u16 dst, u16 n), 6 insert(u16 at, u8), 7 delete(u16 at, u8 n).
o="$corpus/v2_open"
# Selectors 05 and 06 are the files sealed to the hybrid recipient.
for sel in 00 01 02 03 04 05 06 20 21 22 25 26 30 31 32 33 34 35 36; do printf "\\x$sel" >"$o/unmodified-$sel"; done
printf '\x20\x00\x00\x00\x01' >"$o/xor-magic"
printf '\x20\x00\x40\x00\x80' >"$o/xor-header"
printf '\x20\x00\xe8\x03\x01' >"$o/xor-slot-a"
printf '\x20\x00\x70\x17\x01' >"$o/xor-slot-b"
printf '\x22\x00\x28\x23\xff' >"$o/xor-chunks"
printf '\x20\x03\x0f\x00' >"$o/truncate-16"
printf '\x20\x04\x03abc' >"$o/append-3"
printf '\x20\x05\xd8\x01\xd8\x11\x00\x10' >"$o/copy-slot-a-to-b"
# Slot A copied over slot B, then slot A damaged: slot B takes over and the file still opens
# (found by the fuzzer; legitimate, since slots are unsigned — see fuzz_targets/v2_open.rs).
printf '\x20\x05\xd8\x01\xd8\x11\x00\x10\x00\x11\x05\x11' >"$o/slot-b-takes-over"
printf '\x20\x06\x00\x30\x00' >"$o/insert"
printf '\x20\x07\x00\x30\x10' >"$o/delete"
printf '\x25\x00\xe8\x03\x01' >"$o/xor-hybrid-slot-a"
printf '\x25\x05\xd8\x01\xd8\x11\x00\x10\x00\x11\x05\x11' >"$o/hybrid-slot-b-takes-over"

# --- v2_rewrap: a pair of keys (0 RSA, 1 hybrid, 2 RSA to hybrid), a crash point (u16 BE), then
# four-byte edits of the slots (see fuzz_targets/v2_rewrap.rs).
r="$corpus/v2_rewrap"
mkdir -p "$r"
for pair in 00 01 02; do
    printf "\\x$pair\\x00\\x00" >"$r/untouched-$pair"
    printf "\\x$pair\\x01\\x00" >"$r/crash-256-$pair"
    printf "\\x$pair\\x10\\x00\\x03\\x00\\x00\\x00" >"$r/rewrapped-then-crash-$pair"
    printf "\\x$pair\\x00\\x40\\x00\\x00\\x20\\x01" >"$r/slot-a-damaged-$pair"
done

# --- legacy files: the real ones, and ones made under the targets' fixed secrets -----------------
if [[ -d "$wild" ]]; then
    install -m 0644 "$wild"/*.backup "$corpus/legacy_hybrid/"
else
    echo "seed.sh: $wild not found; skipping the real legacy files" >&2
fi

if python3 -c 'import cryptography' 2>/dev/null; then
    python3 - "$corpus" "$password" <<'PY'
import hashlib, os, struct, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

corpus, password = sys.argv[1], sys.argv[2].encode()
# fuzz_targets/legacy_hybrid.rs: FIXED_KEY
fixed_key = b"pgseal-fuzz-fixed-session-key-32"

def hybrid(plain, name):
    nonce = os.urandom(12)
    body = AESGCM(fixed_key).encrypt(nonce, plain, None)
    wrapped, sig = os.urandom(256), os.urandom(256)
    data = (b"PGBACKUP_HYBRID_V1\0\0" + struct.pack("<IQQI", 1, 7, 1765965760, len(wrapped))
            + wrapped + struct.pack("<I", len(sig)) + sig + nonce + body)
    open(f"{corpus}/legacy_hybrid/{name}", "wb").write(data)

def symmetric(plain, name):
    salt, nonce = os.urandom(32), os.urandom(12)
    key = hashlib.pbkdf2_hmac("sha256", password, salt, 100_000, 32)
    data = b"PGBACKUP_AES256_V1" + salt + nonce + AESGCM(key).encrypt(nonce, plain, None)
    open(f"{corpus}/legacy_symmetric/{name}", "wb").write(data)

text = b"PGDMP fuzz seed " * 40
hybrid(text, "fixed-key-valid.backup")
hybrid(b"", "fixed-key-empty.backup")
symmetric(text, "valid.backup")
symmetric(b"", "valid-empty.backup")
PY
else
    echo "seed.sh: python3 'cryptography' missing; legacy seeds under the fixed secrets skipped" >&2
    # Still give the symmetric target the right shape: magic, salt, nonce, 32 bytes, tag.
    { printf 'PGBACKUP_AES256_V1'; head -c $((32 + 12 + 32 + 16)) /dev/urandom; } \
        >"$corpus/legacy_symmetric/shape.backup"
fi

# Locations: whole URLs, and (bucket or host) NUL (key or path) pairs.
mkdir -p "$corpus/location"
printf 's3://pgseal-backups/db1/shop_20260101T000000.000Z.pgseal' >"$corpus/location/s3"
printf 'file://db1.example/srv/pgseal/backups/shop_1.pgseal' >"$corpus/location/file"
printf 'file:///srv/a%%2Fb/%%E2%%9C%%93.pgseal' >"$corpus/location/encoded"
printf 'pgseal-backups\0site/backups/shop_1.pgseal' >"$corpus/location/s3-parts"
printf 'db1\0/srv/pgseal/backups/x y.pgseal' >"$corpus/location/file-parts"

# Custody requests: credential headers, a URL line, then NUL and a JSON body (an unwrap of a real
# prelude from the v2_prelude seeds, and a rewrap).
mkdir -p "$corpus/custody_request"
python3 - "$corpus" <<'PY'
import base64, glob, json, os, sys
corpus = sys.argv[1]
head = ("https://custody.internal:8443\nx-pgseal-user: system_backup\n"
        "x-pgseal-timestamp: 1764547200000\nx-pgseal-nonce: 00112233445566778899aabbccddeeff\n"
        "x-pgseal-totp: 123456\nx-pgseal-signature: " + base64.b64encode(bytes(256)).decode() + "\n")
for i, path in enumerate(sorted(glob.glob(f"{corpus}/v2_prelude/*"))[:3]):
    prelude = open(path, "rb").read()[:8192]
    body = json.dumps({"prelude": base64.b64encode(prelude).decode(),
                       "client_key": base64.b64encode(bytes(32)).decode(), "file": "x.pgseal"})
    open(f"{corpus}/custody_request/unwrap{i}", "wb").write(head.encode() + b"\0" + body.encode())
body = json.dumps({"prelude": "AAAA", "keep": ["SHA256:abc"], "file": None})
open(f"{corpus}/custody_request/rewrap", "wb").write(b"unix:///run/pgseal/custody.sock\n\0" + body.encode())
PY

# Globals scripts, in the shape pg_dumpall --globals-only and pg_restore --create write them.
mkdir -p "$corpus/globals_script"
cat >"$corpus/globals_script/cluster" <<'SQL'
\restrict 0a1b2c3d
SET default_transaction_read_only = off;
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;
CREATE ROLE "app owner";
ALTER ROLE "app owner" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN;
COMMENT ON ROLE "app owner" IS $c$CREATE ROLE postgres;
$c$;
GRANT "app owner" TO postgres GRANTED BY postgres;
\unrestrict 0a1b2c3d
CREATE DATABASE "shop's" WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = libc;
ALTER DATABASE "shop's" OWNER TO "app owner";
\connect -reuse-previous=on "dbname='shop''s'"
/* a comment; with a semicolon */ REVOKE CONNECT ON DATABASE "shop's" FROM PUBLIC;
SQL

# Retention: spans, and a policy (8 rule bytes) followed by now and signed times (i64 LE).
mkdir -p "$corpus/retention"
printf 'span:90d' >"$corpus/retention/span-days"
printf 'span:2w' >"$corpus/retention/span-weeks"
python3 - "$corpus/retention/calendar" <<'PY'
import struct, sys
day = 86_400_000
now = 1_796_000_000_000
rules = bytes([2, 24, 7, 4, 12, 3, 0x80, 90])
times = [now - i * day for i in range(60)] + [now + 400 * day]
open(sys.argv[1], "wb").write(rules + struct.pack("<q", now) + b"".join(struct.pack("<q", t) for t in times))
PY

for t in v2_prelude v2_open v2_rewrap legacy_hybrid legacy_symmetric keys location custody_request \
    globals_script retention; do
    printf '%-17s %4d files in corpus\n' "$t" "$(ls "$corpus/$t" | wc -l)"
done
