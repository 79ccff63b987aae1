#!/usr/bin/env bash
# The pgseal story on a file, in a fresh temporary directory, with nothing set up beforehand:
# make a server key and a user key, seal a file to the server signed by the user, inspect it,
# verify it with the public key alone, decrypt it, and watch a one-byte change get caught.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cargo build --quiet --release -p pgseal --manifest-path "$root/Cargo.toml"
pgseal="$root/target/release/pgseal"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
umask 077
# Generated passwords, kept in a 0600 file here; pgseal reads them from the environment.
head -c 24 /dev/urandom | base64 > passwords
export PGSEAL_KEY_PASSWORD="$(cat passwords)"
export SERVER_KEY_PASSWORD="$PGSEAL_KEY_PASSWORD" PGSEAL_USER_KEY_PASSWORD="$PGSEAL_KEY_PASSWORD"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "keys: a server key pair and a user (signing) key pair, RSA-4096"
"$pgseal" keygen --out server
"$pgseal" keygen --out alice

step "a 64 MiB sample 'dump' sealed to the server key, signed by alice"
head -c $((64 * 1024 * 1024)) /dev/urandom > sample.dump
"$pgseal" encrypt sample.dump -o sample.pgseal --recipient server.pub.pem --sign-key alice.key.pem \
    --user-id 7 --username alice --json

step "what the header says"
"$pgseal" inspect sample.pgseal

step "verify with alice's public key alone (no private key, no decryption)"
"$pgseal" verify sample.pgseal --signer alice.pub.pem

step "decrypt with the server key, checking alice's signatures"
"$pgseal" decrypt sample.pgseal -o restored.dump --identity server.key.pem --signer alice.pub.pem
cmp sample.dump restored.dump && echo "restored.dump is identical to sample.dump"

step "flip one byte in the middle: verify and decrypt refuse, and write nothing"
cp sample.pgseal tampered.pgseal
printf '\xff' | dd of=tampered.pgseal bs=1 seek=$((32 * 1024 * 1024)) conv=notrunc status=none
if "$pgseal" verify tampered.pgseal --signer alice.pub.pem; then echo "NOT DETECTED"; exit 1; fi
if "$pgseal" decrypt tampered.pgseal -o tampered.out --identity server.key.pem --signer alice.pub.pem; then
    echo "NOT DETECTED"; exit 1
fi
test ! -e tampered.out && echo "no tampered.out was written"

step "done"
