#!/usr/bin/env bash
# Rewrap on S3 against object size: a ~1 MiB and a ~1 GiB backup object in a bucket on a
# throwaway Garage engine on loopback (scripts/garage-run.sh), each rewrapped after a rotation.
#
#   bash bench/s3-rewrap.sh     # BENCH_RUNS=3; ~1 GiB of random data goes through PostgreSQL,
#                               #   pg_dump and Garage once (untimed, a few minutes)
#
# Knobs: BENCH_RUNS (3), BENCH_BACKUP_RUNS (3), BENCH_SMALL_KIB (1024) and BENCH_BIG_MIB (1024): random bytes put in
# each database (pg_dump writes bytea as hex, which zstd -3 brings back to about the random
# size, so the object is about that size), BENCH_TMPDIR (parent of the scratch directory, which
# holds the PostgreSQL cluster while the backups are made, then only Garage's data; default
# bench/out), PGSEAL_BIN (default: build target/release/pgseal first), BENCH_SOURCE (what
# PGSEAL_BIN was built from, for the report), BENCH_LOAD_MAX (1.5) and BENCH_SETTLE (30): before
# each timed rewrap, wait up to BENCH_SETTLE s for the 1-minute load average to drop to
# BENCH_LOAD_MAX (a rewrap cannot be repeated without another rotation, so nothing is retried;
# the load at each start is reported), BENCH_STRACE (1 if strace is installed: one more, untimed
# rewrap of each object under strace, counting the bytes pgseal writes to and reads from
# Garage's S3 port).
#
# Setup: two databases, `small` and `big`, each one table of random bytea (pgcrypto's
# gen_random_bytes, 1 KiB a row), backed up with `pgseal backup --repo s3://...`; `big` is backed
# up BENCH_BACKUP_RUNS (3) times to local disk and to S3, alternately, and those backups are
# measured like the rewraps (a multipart upload of many parts, which bench/backup.sh's scale-70
# backup, smaller than one part, does not make). Then the PostgreSQL cluster is stopped and
# deleted. Each round: `pgseal server-key rotate`
# (untimed), then `pgseal rewrap s3://...` of each object, timed with /usr/bin/time (wall, the
# pgseal process's user + sys CPU — the client's cost — and peak RSS), with the Garage server's
# user + sys CPU over the same interval read from /proc/PID/stat (the engine's cost: it runs on
# the same cores). The two objects alternate order from round to round. At the end both objects
# are verified (`pgseal verify`, which reads them whole).
#
# What to expect (crates/pgseal-ops/src/repo/s3.rs): an object of 5 MiB or more is rewrapped by
# a multipart upload onto its own key, the new prelude uploaded as a 5 MiB first part and the
# rest copied server-side by ranged UploadPartCopy (256 MiB parts, four at a time), so the
# client's work does not depend on the size; Garage reads every byte it copies. An object under
# 5 MiB (the small one) is read and put back whole.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${BENCH_RUNS:-3}
SMALL_KIB=${BENCH_SMALL_KIB:-1024}
BIG_MIB=${BENCH_BIG_MIB:-1024}
PARENT=${BENCH_TMPDIR:-$REPO/bench/out}
LOAD_MAX=${BENCH_LOAD_MAX:-1.5}
SETTLE=${BENCH_SETTLE:-30}
STRACE=${BENCH_STRACE:-$(command -v strace >/dev/null && echo 1 || echo 0)}
mkdir -p "$PARENT" "$REPO/bench/out"
OUTMD="$REPO/bench/out/s3-rewrap-results.md"
RUNLOG="$REPO/bench/out/s3-rewrap-run.log"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
PGBIN=${POSTGRESQL_BIN_PATH:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[ -x "$PGBIN/initdb" ] || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null;
                            PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1); }
if [ -z "${PGSEAL_BIN:-}" ]; then
    cargo build --quiet --release -p pgseal --manifest-path "$REPO/Cargo.toml"
    PGSEAL_BIN="$REPO/target/release/pgseal"
fi

WORK=$(mktemp -d "$PARENT/s3-rewrap-bench-XXXXXX")
chmod 0755 "$WORK"
# A private copy, so a concurrent `cargo build` cannot swap the binary mid-benchmark.
cp "$PGSEAL_BIN" "$WORK/pgseal"
PGSEAL="$WORK/pgseal"
AS_PG=()
[ "$(id -u)" = 0 ] && AS_PG=(runuser -u postgres --)
pg_stop() {
    if [ -d "$WORK/cluster/data" ]; then
        "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$WORK/cluster/data" -m immediate stop >/dev/null 2>&1 || true
    fi
}
cleanup() {
    if declare -F garage_stop >/dev/null; then garage_stop; fi
    pg_stop
    rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "bench: $*" | tee -a "$RUNLOG" >&2; }
: > "$RUNLOG"

# --- setup (untimed) -------------------------------------------------------------------------
mkdir -p "$WORK/cluster/socket"
[ "$(id -u)" = 0 ] && chown -R postgres:postgres "$WORK/cluster"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${AS_PG[@]}" "$PGBIN/initdb" -D "$WORK/cluster/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
"${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$WORK/cluster/data" -l "$WORK/cluster/log" -w \
    -o "-c listen_addresses='' -k $WORK/cluster/socket -p $PORT -c max_wal_size=4GB" start >/dev/null
export PGHOST="$WORK/cluster/socket" PGPORT="$PORT" PGUSER=postgres POSTGRESQL_BIN_PATH="$PGBIN"
psql() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
# fill DB KIB: a database holding KIB KiB of random bytes, 1 KiB a row (incompressible).
fill() {
    psql -d postgres -c "CREATE DATABASE $1"
    psql -d "$1" -c "CREATE EXTENSION pgcrypto" -c "CREATE TABLE noise (b bytea)" \
        -c "INSERT INTO noise SELECT gen_random_bytes(1024) FROM generate_series(1, $2)"
}
log "filling the databases: small $SMALL_KIB KiB, big $BIG_MIB MiB of random bytes"
fill small "$SMALL_KIB"
fill big $((BIG_MIB * 1024))

# shellcheck source=scripts/garage-run.sh
. "$REPO/scripts/garage-run.sh"
log "starting Garage on loopback (data in $WORK/garage)"
garage_start "$WORK/garage" pgseal-bench
S3_REPO=s3://pgseal-bench/rewrap
S3_PORT=${AWS_ENDPOINT_URL##*:}
GARAGE_VERSION=$("$garage_bin" --version | head -n 1)
TICK=$(getconf CLK_TCK)
garage_ticks() { awk '{ print $14 + $15 }' "/proc/$garage_pid/stat"; }
secs() { awk -v a="$1" -v b="$2" -v t="$TICK" 'BEGIN { printf "%.2f", (b - a) / t }'; }

SITE="$WORK/site"
N=1
password() { printf 'bench-server-password-%04d' "$1"; }
SERVER_KEY_PASSWORD=$(password $N)
export SERVER_KEY_PASSWORD PGSEAL_USER_KEY_PASSWORD=bench-user-password-00001
"$PGSEAL" init --dir "$SITE" >/dev/null
cd "$SITE"
"$PGSEAL" user add bot >/dev/null
"$PGSEAL" user-key generate bot >/dev/null
# The backups the rewraps work on. The big database is backed up BACKUP_RUNS times to the local
# backup directory and to S3, alternately (each output deleted first, untimed), measured like the
# rewraps: a 1 GiB backup is a multipart upload of many parts (the scale-70 pgbench backup of
# bench/backup.sh is smaller than one part). The last S3 backup of each database is kept.
BACKUP_RUNS=${BENCH_BACKUP_RUNS:-3}
declare -A LOC SIZE BWALLS BCPUS BGCPUS BLOADS BRSS
"$PGSEAL" backup small --user bot --repo "$S3_REPO" >/dev/null
for ((i = 1; i <= BACKUP_RUNS; i++)); do
    order=(local s3)
    ((i % 2 == 0)) && order=(s3 local)
    for where in "${order[@]}"; do
        rm -f "$SITE"/backups/*.pgseal
        repo=()
        if [ "$where" = s3 ]; then
            "$PGSEAL" prune --repo "$S3_REPO" --db big --keep-last 0 --yes >/dev/null
            repo=(--repo "$S3_REPO")
        fi
        sync
        load=$(cut -d' ' -f1 /proc/loadavg)
        g0=$(garage_ticks)
        if ! /usr/bin/time -f '%e %M %U %S' -o "$WORK/time" "$PGSEAL" backup big --user bot "${repo[@]}" \
            > /dev/null 2> "$WORK/err"; then
            echo "bench: backup of big to $where failed: $(cat "$WORK/err")" >&2; exit 1
        fi
        g=$(secs "$g0" "$(garage_ticks)")
        read -r e m u s < <(tail -n 1 "$WORK/time")
        c=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
        log "backup of big to $where, round $i: ${e}s wall, ${u}s user, ${s}s sys, $((m / 1024)) MiB RSS, Garage ${g}s CPU (load at start $load)"
        BWALLS[$where]+="$e " BCPUS[$where]+="$c " BGCPUS[$where]+="$g " BLOADS[$where]+="$load/"
        if ((m > ${BRSS[$where]:-0})); then BRSS[$where]=$m; fi
    done
done
rm -f "$SITE"/backups/*.pgseal
for db in small big; do
    read -r LOC[$db] SIZE[$db] < <("$PGSEAL" list --json | python3 -c '
import json, sys
b = max((b for b in json.load(sys.stdin)
         if b["database"] == sys.argv[1] and b["location"].startswith("s3://")), key=lambda r: r["id"])
print(b["location"], b["size_bytes"])' "$db")
    log "object of $db: ${LOC[$db]}, ${SIZE[$db]} bytes"
done
# What the bucket holds must match the catalog (and no upload is left unfinished).
"$PGSEAL" list --remote --repo "$S3_REPO" --json > "$WORK/remote.json"
python3 - "$WORK/remote.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert len(r["present"]) == 2 and not r["missing"] and not r["uncatalogued"], r
PY
pg_stop
rm -rf "$WORK/cluster"
# The engine's background CPU while nothing is asked of it, for scale.
g0=$(garage_ticks); sleep 10
GARAGE_IDLE=$(secs "$g0" "$(garage_ticks)")
log "Garage idle: ${GARAGE_IDLE}s CPU in 10 s"

# rotate: a new server key, under a new password (untimed).
rotate() {
    N=$((N + 1))
    PGSEAL_NEW_SERVER_KEY_PASSWORD=$(password $N) "$PGSEAL" server-key rotate >/dev/null
    SERVER_KEY_PASSWORD=$(password $N)
}
# check_rewrapped JSON: the rewrap's --json output says the object was rewrapped.
check_rewrapped() {
    python3 -c '
import json, sys
r = json.loads(sys.stdin.read().strip().splitlines()[-1])
assert len(r) == 1 and r[0]["outcome"] == "rewrapped", r' < "$1"
}

# --- timed rounds ----------------------------------------------------------------------------
declare -A WALLS CPUS GCPUS LOADS RSS
for ((i = 1; i <= RUNS; i++)); do
    rotate
    order=(small big)
    ((i % 2 == 0)) && order=(big small)
    for db in "${order[@]}"; do
        for ((w = 0; w < SETTLE; w++)); do
            awk -v a="$(cut -d' ' -f1 /proc/loadavg)" -v b="$LOAD_MAX" 'BEGIN { exit !(a > b) }' || break
            sleep 1
        done
        sync
        load=$(cut -d' ' -f1 /proc/loadavg)
        g0=$(garage_ticks)
        if ! /usr/bin/time -f '%e %M %U %S' -o "$WORK/time" "$PGSEAL" rewrap "${LOC[$db]}" --json \
            > "$WORK/out" 2> "$WORK/err"; then
            echo "bench: rewrap of $db failed: $(cat "$WORK/err")" >&2; exit 1
        fi
        g=$(secs "$g0" "$(garage_ticks)")
        check_rewrapped "$WORK/out"
        read -r e m u s < <(tail -n 1 "$WORK/time")
        c=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
        log "$db round $i: ${e}s wall, ${u}s user, ${s}s sys, $((m / 1024)) MiB RSS, Garage ${g}s CPU (load at start $load; $(df -h --output=used "$WORK" | tail -1 | xargs) used where Garage keeps its data)"
        WALLS[$db]+="$e " CPUS[$db]+="$c " GCPUS[$db]+="$g " LOADS[$db]+="$load/"
        if ((m > ${RSS[$db]:-0})); then RSS[$db]=$m; fi
    done
done

# --- bytes on the wire (one more rotation and rewrap each, under strace, untimed) -------------
declare -A SENT RECV
if [ "$STRACE" = 1 ]; then
    rotate
    for db in small big; do
        rm -rf "$WORK/strace"; mkdir "$WORK/strace"
        strace -ff -yy -o "$WORK/strace/t" -e trace=write,writev,sendto,sendmsg,read,readv,recvfrom,recvmsg \
            "$PGSEAL" rewrap "${LOC[$db]}" --json > "$WORK/out" 2> "$WORK/err" \
            || { echo "bench: rewrap of $db under strace failed: $(cat "$WORK/err")" >&2; exit 1; }
        check_rewrapped "$WORK/out"
        # Sum what the calls on sockets connected to Garage's S3 port returned.
        read -r SENT[$db] RECV[$db] < <(cat "$WORK/strace"/t.* | awk -v port="$S3_PORT" '
            index($0, "->127.0.0.1:" port "]") && / = [0-9]+$/ {
                n = $NF
                if ($0 ~ /^(write|writev|sendto|sendmsg)\(/) sent += n; else recv += n
            }
            END { printf "%d %d\n", sent, recv }')
        log "$db under strace: pgseal sent ${SENT[$db]} bytes to Garage, received ${RECV[$db]}"
    done
    rm -rf "$WORK/strace"
fi

# Both objects must still verify; the verification reads each whole (its time and peak RSS are
# logged, for scale: not part of the rewrap).
for db in small big; do
    /usr/bin/time -f '%e %M %U %S' -o "$WORK/time" "$PGSEAL" verify "${LOC[$db]}" >/dev/null 2>"$WORK/err" \
        || { echo "bench: $db does not verify after the rewraps: $(cat "$WORK/err")" >&2; exit 1; }
    read -r e m u s < <(tail -n 1 "$WORK/time")
    log "verify of $db (reads it whole): ${e}s wall, ${u}s user, ${s}s sys, $((m / 1024)) MiB RSS"
done
log "both objects verify after $((N - 1)) rotations and rewraps"

# --- report ----------------------------------------------------------------------------------
min() { printf '%s\n' $1 | sort -g | head -n 1; }
med() { printf '%s\n' $1 | sort -g | sed -n "$(( ($(wc -w <<< "$1") + 1) / 2 ))p"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }
{
    echo "- pgseal: $("$PGSEAL" --version), binary $PGSEAL_BIN (sha256 $(sha256sum "$PGSEAL" | cut -c1-12), built $(date -u -r "$PGSEAL_BIN" '+%Y-%m-%d %H:%M UTC'), source: ${BENCH_SOURCE:-not given}); $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    echo "- S3: $GARAGE_VERSION, single node on loopback, data and metadata (SQLite) on $(df --output=fstype "$WORK" | tail -1 | tr -d ' '); Garage idle: ${GARAGE_IDLE} s of CPU in 10 s"
    echo "- $RUNS rounds, each a \`pgseal server-key rotate\` (untimed) and then \`pgseal rewrap s3://...\` of each object, order alternating; load average at start: $LOAD_START, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "| object | size MiB | wall s, min / median | wall s (in run order) | pgseal user + sys s, min / median | pgseal peak RSS MiB | Garage CPU s, min / median | sent / received by pgseal MiB | 1-min load at start |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
    for db in small big; do
        wire="-"
        [ "$STRACE" = 1 ] && wire="$(mib "${SENT[$db]}") / $(mib "${RECV[$db]}")"
        echo "| $db | $(mib "${SIZE[$db]}") | $(min "${WALLS[$db]}") / $(med "${WALLS[$db]}") | ${WALLS[$db]% } | $(min "${CPUS[$db]}") / $(med "${CPUS[$db]}") | $((RSS[$db] / 1024)) | $(min "${GCPUS[$db]}") / $(med "${GCPUS[$db]}") | $wire | ${LOADS[$db]%/} |"
    done
    echo
    echo "Backups of \`big\` ($BACKUP_RUNS runs each, alternating; the rewrapped object is the last S3 one):"
    echo
    echo "| backup of big to | wall s, min / median | wall s (in run order) | user + sys s, min / median | peak RSS MiB | Garage CPU s, min / median | 1-min load at start |"
    echo "|---|---:|---:|---:|---:|---:|---|"
    for where in local s3; do
        echo "| $where | $(min "${BWALLS[$where]}") / $(med "${BWALLS[$where]}") | ${BWALLS[$where]% } | $(min "${BCPUS[$where]}") / $(med "${BCPUS[$where]}") | $((BRSS[$where] / 1024)) | $(min "${BGCPUS[$where]}") / $(med "${BGCPUS[$where]}") | ${BLOADS[$where]%/} |"
    done
} | tee "$OUTMD"
