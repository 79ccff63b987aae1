#!/usr/bin/env bash
# Rewrap cost against file size: a 1 MiB and a 1 GiB backup, each rewrapped after a rotation.
#
#   bash bench/rewrap.sh        # BENCH_RUNS=3, BENCH_TMPDIR=bench/out
#
# PGSEAL_BIN=/path/to/pgseal measures that binary instead of building target/release/pgseal
# (BENCH_SOURCE names what it was built from, for the report).
#
# Each run rewraps a fresh copy (the copy is not timed). The time should not depend on the size:
# a rewrap unlocks the old server key (PBKDF2), unwraps and wraps one file key (RSA), and
# writes two 4 KiB recipient slots, each fsynced: the new slot, then the wipe of the one it
# superseded (docs/FORMAT.md §6).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${BENCH_RUNS:-3}
PARENT=${BENCH_TMPDIR:-$REPO/bench/out}
mkdir -p "$PARENT"
if [[ -z ${PGSEAL_BIN:-} ]]; then
    cargo build --quiet --release -p pgseal --manifest-path "$REPO/Cargo.toml"
    PGSEAL_BIN="$REPO/target/release/pgseal"
fi
[[ -x /usr/bin/time ]] || { echo "bench: missing /usr/bin/time (apt-get install -y time)" >&2; exit 1; }
WORK=$(mktemp -d "$PARENT/rewrap-bench-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# A private copy, so a concurrent `cargo build` cannot swap the binary mid-benchmark.
cp "$PGSEAL_BIN" "$WORK/pgseal"
PGSEAL="$WORK/pgseal"
echo "- pgseal: $PGSEAL_BIN (sha256 $(sha256sum "$PGSEAL" | cut -c1-12), source: ${BENCH_SOURCE:-not given}); scratch: $(df --output=fstype "$WORK" | tail -1 | tr -d ' '); $RUNS runs each"
echo
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

echo "| file | size | median rewrap wall s | wall s (in run order) | median user + sys s |"
echo "|---|---:|---:|---:|---:|"
for f in small big; do
    times=() cpus=()
    for ((i = 1; i <= RUNS; i++)); do
        cp "$f.pgseal" "run.pgseal"
        sync
        read -r t u s < <( { /usr/bin/time -f '%e %U %S' "$PGSEAL" rewrap run.pgseal >/dev/null; } 2>&1 | tail -n 1 )
        times+=("$t")
        cpus+=("$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')")
        "$PGSEAL" verify run.pgseal >/dev/null
    done
    median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")
    cpu=$(printf '%s\n' "${cpus[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")
    echo "| $f.pgseal | $(du -h --apparent-size "$f.pgseal" | cut -f1) | $median | ${times[*]} | $cpu |"
done
