#!/usr/bin/env bash
# Rewrap cost against file size: a 1 MiB and a 1 GiB backup, each rewrapped after a rotation.
#
#   bash bench/rewrap.sh        # BENCH_RUNS=3, BENCH_TMPDIR=bench/out
#
# Each run rewraps a fresh copy (the copy is not timed). The time should not depend on the size:
# a rewrap unlocks the old server key (PBKDF2), unwraps and wraps one file key (RSA), and
# writes one recipient slot.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${BENCH_RUNS:-3}
PARENT=${BENCH_TMPDIR:-$REPO/bench/out}
mkdir -p "$PARENT"
cargo build --quiet --release -p pgseal --manifest-path "$REPO/Cargo.toml"
PGSEAL="$REPO/target/release/pgseal"
WORK=$(mktemp -d "$PARENT/rewrap-bench-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export SERVER_KEY_PASSWORD=bench-server-password-0001 PGSEAL_USER_KEY_PASSWORD=bench-user-password-00001
export PGSEAL_NEW_SERVER_KEY_PASSWORD=bench-server-password-0002
"$PGSEAL" init --dir "$WORK/site" >/dev/null
cd "$WORK/site"
"$PGSEAL" user add bot >/dev/null
"$PGSEAL" user-key generate bot >/dev/null
head -c $((1024 * 1024)) /dev/urandom > small.in
head -c $((1024 * 1024 * 1024)) /dev/urandom > big.in
"$PGSEAL" encrypt small.in -o small.pgseal --user bot --compress none
"$PGSEAL" encrypt big.in -o big.pgseal --user bot --compress none
rm -f small.in big.in
"$PGSEAL" server-key rotate >/dev/null
export SERVER_KEY_PASSWORD=$PGSEAL_NEW_SERVER_KEY_PASSWORD

echo "| file | size | median rewrap wall s | runs |"
echo "|---|---:|---:|---:|"
for f in small big; do
    times=()
    for ((i = 1; i <= RUNS; i++)); do
        cp "$f.pgseal" "run.pgseal"
        sync
        t=$( { /usr/bin/time -f '%e' "$PGSEAL" rewrap run.pgseal >/dev/null; } 2>&1 | tail -n 1 )
        times+=("$t")
        "$PGSEAL" verify run.pgseal >/dev/null
    done
    median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")
    echo "| $f.pgseal | $(du -h --apparent-size "$f.pgseal" | cut -f1) | $median | ${times[*]} |"
done
