#!/usr/bin/env bash
# pgseal backup and restore against pg_dump / pg_restore on a pgbench database, in one run.
#
#   bash bench/backup.sh          # scale 70 (about 1 GiB of tables), 5 runs each (~5 min)
#
# Environment knobs: BENCH_SCALE (pgbench scale, default 70), BENCH_RUNS (default 5),
# BENCH_S3 (1: also back up to and restore from an S3 bucket on a throwaway Garage engine on
# loopback, started with scripts/garage-run.sh, its data in the scratch directory — the engine's
# own CPU shares the machine, so every run also records the Garage server's user + sys CPU
# seconds, from /proc/PID/stat, apart from the client's),
# BENCH_TMPDIR (parent of the scratch directory; default bench/out, on disk: tmpfs makes pgseal's
# fsync and the server's free, so use it only to compare CPU costs: two binaries, or S3 against
# local disk),
# PGSEAL_BIN (binary to use; default: build target/release/pgseal first), BENCH_SOURCE (what
# PGSEAL_BIN was built from, for the report), BENCH_LOAD_MAX (1.5),
# BENCH_RETRIES (2), BENCH_SETTLE (10): a run that starts while the 1-minute load average is above
# BENCH_LOAD_MAX is repeated up to BENCH_RETRIES times, each after waiting up to BENCH_SETTLE s
# for the load to drop, and the attempt that started at the lowest load is kept.
#
# Compared, each as the minimum and median of BENCH_RUNS wall times and of user + sys CPU seconds
# (the command and the children it waits for, e.g. pgseal's pg_dump; not the PostgreSQL server),
# with the peak RSS (the rows of each group run round-robin: run 1 of every row, then run 2, ...;
# every attempt is in bench/out/backup-run.log):
#   backup:  pg_dump -Fc (its default compression) to a file
#            pg_dump -Fc -Z0 | zstd -3 > file              (what pgseal does, minus the crypto)
#            the same, then fsync the file                 (pgseal backup fsyncs too)
#            pgseal backup                                  (pg_dump -Fc -Z0 | zstd-3 | encrypt+sign)
#            pgseal backup --repo s3://...                  (BENCH_S3=1; the object of the previous
#                                                            run is pruned first, untimed)
#   restore: pg_restore -d DB file
#            zstd -dc file | pg_restore -d DB
#            pgseal restore file --target-db DB             (verify + decrypt | pg_restore -1)
#            pgseal restore s3://... --target-db DB         (BENCH_S3=1)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCALE=${BENCH_SCALE:-70}
RUNS=${BENCH_RUNS:-5}
PARENT=${BENCH_TMPDIR:-$REPO/bench/out}
mkdir -p "$PARENT" "$REPO/bench/out"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

command -v zstd >/dev/null || { apt-get update -qq && apt-get install -y -qq zstd >/dev/null; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
PGBIN=${POSTGRESQL_BIN_PATH:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[ -x "$PGBIN/initdb" ] || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null;
                            PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1); }
if [ -z "${PGSEAL_BIN:-}" ]; then
    cargo build --quiet --release -p pgseal --manifest-path "$REPO/Cargo.toml"
    PGSEAL_BIN="$REPO/target/release/pgseal"
fi

WORK=$(mktemp -d "$PARENT/backup-bench-XXXXXX")
chmod 0755 "$WORK"
# A private copy, so a concurrent `cargo build` cannot swap the binary mid-benchmark.
cp "$PGSEAL_BIN" "$WORK/pgseal"
PGSEAL="$WORK/pgseal"
AS_PG=()
[ "$(id -u)" = 0 ] && AS_PG=(runuser -u postgres --)
S3=${BENCH_S3:-0}
cleanup() {
    if declare -F garage_stop >/dev/null; then garage_stop; fi
    "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$WORK/cluster/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/cluster/socket"
[ "$(id -u)" = 0 ] && chown -R postgres:postgres "$WORK/cluster"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${AS_PG[@]}" "$PGBIN/initdb" -D "$WORK/cluster/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
"${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$WORK/cluster/data" -l "$WORK/cluster/log" -w \
    -o "-c listen_addresses='' -k $WORK/cluster/socket -p $PORT -c max_wal_size=4GB" start >/dev/null
export PGHOST="$WORK/cluster/socket" PGPORT="$PORT" PGUSER=postgres POSTGRESQL_BIN_PATH="$PGBIN"
psql() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

echo "bench: pgbench -i -s $SCALE (this takes a while)" >&2
psql -d postgres -c "CREATE DATABASE bench"
"$PGBIN/pgbench" -i -q -s "$SCALE" bench >/dev/null 2>&1
DBSIZE=$(psql -d bench -Atc "SELECT pg_size_pretty(pg_database_size('bench'))")
# Untimed: the size of the uncompressed custom-format archive, i.e. what zstd and pgseal get to read.
RAWSIZE=$("$PGBIN/pg_dump" -Fc -Z0 bench | wc -c | awk '{printf "%.0f MiB", $1 / 1048576}')

if [ "$S3" = 1 ]; then
    # shellcheck source=scripts/garage-run.sh
    . "$REPO/scripts/garage-run.sh"
    echo "bench: starting Garage on loopback (data in $WORK/garage)" >&2
    garage_start "$WORK/garage" pgseal-bench
    S3_REPO=s3://pgseal-bench/bench
    GARAGE_VERSION=$("$garage_bin" --version | head -n 1)
fi
TICK=$(getconf CLK_TCK)
# The Garage server's user + sys CPU time so far, in clock ticks (0 without BENCH_S3).
garage_ticks() {
    if [ -n "${garage_pid:-}" ]; then awk '{ print $14 + $15 }' "/proc/$garage_pid/stat"; else echo 0; fi
}

SITE="$WORK/site"
export SERVER_KEY_PASSWORD=bench-server-password-0001 PGSEAL_USER_KEY_PASSWORD=bench-user-password-00001
"$PGSEAL" init --dir "$SITE" >/dev/null
( cd "$SITE" && "$PGSEAL" user add bench_bot >/dev/null && "$PGSEAL" user-key generate bench_bot >/dev/null )

ROWS=()
declare -A MEDIAN
LOAD_MAX=${BENCH_LOAD_MAX:-1.5}   # 1-min load average above which a run is repeated
RETRIES=${BENCH_RETRIES:-2}        # extra attempts for such a run; the quietest attempt is kept
SETTLE=${BENCH_SETTLE:-10}         # seconds to wait (at most) for the load to drop before a retry
load1() { cut -d' ' -f1 /proc/loadavg; }
above() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }
log() { echo "bench: $*" | tee -a "$REPO/bench/out/backup-run.log" >&2; }
: > "$REPO/bench/out/backup-run.log"
# The rows of one group run round-robin (run 1 of every row, then run 2 of every row, ...), so a
# burst of load from elsewhere, or a checkpoint, spreads over the rows instead of landing on one.
# run_once LABEL RUN: runs CMD[LABEL] once (after PREP[LABEL], if any) and records the wall time,
# user + sys CPU, peak RSS, the Garage server's CPU meanwhile (BENCH_S3=1) and the 1-min load
# average at its start. A run that starts at a load above LOAD_MAX is repeated up to RETRIES
# times (after waiting up to SETTLE s for the load to drop) and the attempt that started at the
# lowest load is kept.
declare -A CMD PREP OUT SIZECMD WALLS CPUS GCPUS LOADS RSS
run_once() {
    local label=$1 i=$2 a w e m u s c g0 g load bw="" bc="" bg="" bl="" bm=0
    for ((a = 0; a <= RETRIES; a++)); do
        if ((a > 0)); then
            for ((w = 0; w < SETTLE; w++)); do above "$(load1)" "$LOAD_MAX" || break; sleep 1; done
        fi
        if [ -n "${PREP[$label]:-}" ]; then eval "${PREP[$label]}"; fi
        sync
        load=$(load1)
        g0=$(garage_ticks)
        if ! /usr/bin/time -f '%e %M %U %S' -o "$WORK/time" bash -c "${CMD[$label]}" >/dev/null 2>"$WORK/err"; then
            echo "bench: $label failed: $(cat "$WORK/err")" >&2; exit 1
        fi
        g=$(awk -v a="$g0" -v b="$(garage_ticks)" -v t="$TICK" 'BEGIN { printf "%.2f", (b - a) / t }')
        read -r e m u s < <(tail -n 1 "$WORK/time")
        c=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
        log "$label run $i attempt $((a + 1)): ${e}s wall, ${u}s user, ${s}s sys, $((m / 1024)) MiB RSS, Garage ${g}s CPU (load at start $load)"
        if [ -z "$bl" ] || above "$bl" "$load"; then bw=$e bc=$c bg=$g bl=$load bm=$m; fi
        above "$load" "$LOAD_MAX" || break
    done
    WALLS[$label]+="$bw " CPUS[$label]+="$bc " GCPUS[$label]+="$bg " LOADS[$label]+="$bl/"
    if ((bm > ${RSS[$label]:-0})); then RSS[$label]=$bm; fi
}
# min LIST, med LIST: the minimum and the (lower) median of a list of numbers.
# shellcheck disable=SC2086 # word splitting wanted
min() { printf '%s\n' $1 | sort -g | head -n 1; }
med() { printf '%s\n' $1 | sort -g | sed -n "$(( ($(wc -w <<< "$1") + 1) / 2 ))p"; }
# group LABEL...: BENCH_RUNS rounds over the rows, then one table row each (minimum and median
# wall time, the kept runs, minimum and median user + sys CPU, max RSS, the size of OUT[LABEL]
# (a glob) or the output of SIZECMD[LABEL] in bytes, if any, the Garage server's minimum and
# median CPU (BENCH_S3=1), the start loads of the kept runs).
group() {
    local i label median size garage=""
    for ((i = 1; i <= RUNS; i++)); do
        for label in "$@"; do run_once "$label" "$i"; done
    done
    for label in "$@"; do
        median=$(med "${WALLS[$label]}")
        size="-"
        # shellcheck disable=SC2086 # OUT may be a glob
        [ -n "${OUT[$label]:-}" ] && size=$(stat -c %s ${OUT[$label]} | awk '{s += $1} END {printf "%.1f", s / 1048576}')
        [ -n "${SIZECMD[$label]:-}" ] && size=$(eval "${SIZECMD[$label]}" | awk '{printf "%.1f", $1 / 1048576}')
        MEDIAN[$label]=$median
        [ "$S3" = 1 ] && garage=" $(min "${GCPUS[$label]}") / $(med "${GCPUS[$label]}") |"
        # shellcheck disable=SC2086
        ROWS+=("| ${label//|/\\|} | $(min "${WALLS[$label]}") / $median | $(printf "%s\n" ${WALLS[$label]} | paste -sd, | sed "s/,/, /g") | $(min "${CPUS[$label]}") / $(med "${CPUS[$label]}") | $((RSS[$label] / 1024)) | $size |$garage ${LOADS[$label]%/} |")
    done
}

cd "$SITE"
D1="pg_dump -Fc (default compression)" D2="pg_dump -Fc -Z0 | zstd -3"
D3="pg_dump -Fc -Z0 | zstd -3, then fsync" D4="pgseal backup (zstd-3, encrypt, sign)"
CMD[$D1]="'$PGBIN/pg_dump' -Fc -f '$WORK/plain.dump' bench"
OUT[$D1]="$WORK/plain.dump"
CMD[$D2]="set -o pipefail; '$PGBIN/pg_dump' -Fc -Z0 bench | zstd -3 -q -f -o '$WORK/plain.dump.zst'"
OUT[$D2]="$WORK/plain.dump.zst"
# pgseal backup fsyncs its file before linking it into place; this is the same pipeline paying that.
CMD[$D3]="${CMD[$D2]} && sync '$WORK/plain.dump.zst'"
OUT[$D3]="$WORK/plain.dump.zst"
CMD[$D4]="'$PGSEAL' backup bench --user bench_bot"
PREP[$D4]="rm -f $SITE/backups/*.pgseal"
OUT[$D4]="$SITE/backups/*.pgseal"
if [ "$S3" = 1 ]; then
    D5="pgseal backup to S3 (Garage on loopback)"
    CMD[$D5]="'$PGSEAL' backup bench --user bench_bot --repo $S3_REPO"
    # Untimed, before each run: the previous run's object goes (pruned: deleted from the bucket).
    PREP[$D5]="'$PGSEAL' prune --repo $S3_REPO --keep-last 0 --yes >/dev/null && s3_empty"
    s3_empty() {
        "$PGSEAL" list --remote --repo "$S3_REPO" --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
assert not r["present"] and not r["uncatalogued"], "the bucket still holds a backup"'
    }
    # The newest S3 backup in the catalog, and its size in bytes.
    s3_newest() {
        "$PGSEAL" list --repo "$S3_REPO" --json | python3 -c '
import json, sys
b = [b for b in json.load(sys.stdin) if b["location"].startswith("s3://")]
b = max(b, key=lambda r: r["id"])
print(b[sys.argv[1]])' "$1"
    }
    SIZECMD[$D5]="s3_newest size_bytes"
    group "$D1" "$D2" "$D3" "$D4" "$D5"
    S3_SEALED=$(s3_newest location)
else
    group "$D1" "$D2" "$D3" "$D4"
fi
SEALED=$(ls "$SITE"/backups/*.pgseal)

fresh_db() {
    psql -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS r" -c "CREATE DATABASE r" >/dev/null
}
R1="pg_restore -d DB (from pg_dump -Fc)" R2="zstd -dc | pg_restore -d DB"
R3="pgseal restore (verify, decrypt, pg_restore -1)"
CMD[$R1]="'$PGBIN/pg_restore' -d r '$WORK/plain.dump'"
CMD[$R2]="set -o pipefail; zstd -dc -q '$WORK/plain.dump.zst' | '$PGBIN/pg_restore' -d r"
CMD[$R3]="'$PGSEAL' restore '$SEALED' --target-db r"
PREP[$R1]=fresh_db PREP[$R2]=fresh_db PREP[$R3]=fresh_db
if [ "$S3" = 1 ]; then
    R4="pgseal restore from S3 (Garage on loopback)"
    CMD[$R4]="'$PGSEAL' restore '$S3_SEALED' --target-db r"
    PREP[$R4]=fresh_db
    group "$R1" "$R2" "$R3" "$R4"
else
    group "$R1" "$R2" "$R3"
fi
# The last restore run (pgseal's, from S3 with BENCH_S3=1) must have restored every row.
[ "$(psql -d r -Atc 'SELECT count(*) FROM pgbench_accounts')" = "$((SCALE * 100000))" ] \
    || { echo "bench: pgseal restore lost rows" >&2; exit 1; }

{
    echo "- pgbench scale $SCALE ($DBSIZE on disk, $RAWSIZE as an uncompressed \`pg_dump -Fc -Z0\` archive), $RUNS runs each (minimum and median); the scratch directory's file system is given below; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $("$PGBIN/pg_dump" --version), zstd $(zstd -V | grep -o 'v[0-9.]*' | head -1)"
    echo "- pgseal: $("$PGSEAL" --version), binary $PGSEAL_BIN (sha256 $(sha256sum "$PGSEAL" | cut -c1-12), built $(date -u -r "$PGSEAL_BIN" '+%Y-%m-%d %H:%M UTC'), source: ${BENCH_SOURCE:-not given}); scratch: $(df --output=fstype "$WORK" | tail -1 | tr -d ' ')"
    echo "- load average at start: $LOAD_START, at end: $(cut -d' ' -f1-3 /proc/loadavg); rows run round-robin; a run starting above load $LOAD_MAX was repeated up to $RETRIES times, keeping the quietest attempt (all attempts in bench/out/backup-run.log)"
    echo
    if [ "$S3" = 1 ]; then
        echo "- S3: $GARAGE_VERSION, single node on loopback, data and metadata (SQLite) in the scratch directory; Garage CPU = the server's user + sys seconds during the run"
        echo
        echo "| operation | wall s, min / median | kept runs s (in run order) | user + sys s, min / median | peak RSS MiB | output MiB | Garage CPU s, min / median | 1-min load at start of kept runs |"
        echo "|---|---:|---:|---:|---:|---:|---:|---|"
    else
        echo "| operation | wall s, min / median | kept runs s (in run order) | user + sys s, min / median | peak RSS MiB | output MiB | 1-min load at start of kept runs |"
        echo "|---|---:|---:|---:|---:|---:|---|"
    fi
    printf '%s\n' "${ROWS[@]}"
    echo
    ratio() { awk -v a="${MEDIAN[$1]}" -v b="${MEDIAN[$2]}" 'BEGIN { printf "%.3f×", a / b }'; }
    minratio() { awk -v a="$(min "${WALLS[$1]}")" -v b="$(min "${WALLS[$2]}")" 'BEGIN { printf "%.3f×", a / b }'; }
    echo "- pgseal backup / \`$D2\`: $(ratio "$D4" "$D2") (target ≤ 1.05×); / the same + fsync: $(ratio "$D4" "$D3")"
    echo "- pgseal backup / \`pg_dump -Fc\`: $(ratio "$D4" "$D1") (target < 1×)"
    echo "- pgseal restore / \`zstd -dc | pg_restore\`: $(ratio "$R3" "$R2"); / \`pg_restore\`: $(ratio "$R3" "$R1")"
    if [ "$S3" = 1 ]; then
        echo "- pgseal backup to S3 / to local disk: $(ratio "$D5" "$D4") of the medians, $(minratio "$D5" "$D4") of the minima (target ≤ 1.15×); restore from S3 / from local disk: $(ratio "$R4" "$R3") (medians), $(minratio "$R4" "$R3") (minima)"
    fi
} | tee "$REPO/bench/out/backup-results.md"
