#!/usr/bin/env bash
# Peak RSS and time of `pgseal backup` to local disk and to S3, for one or more pgseal binaries
# side by side (before/after a change), on a throwaway PostgreSQL cluster and a throwaway Garage
# engine on loopback (scripts/garage-run.sh).
#
#   PGSEAL_BINS="before=/path/to/old/pgseal after=target/release/pgseal" bash bench/s3-memory.sh
#
# Knobs: PGSEAL_BINS (default: after=target/release/pgseal, built first), BENCH_RUNS (4 rounds),
# BENCH_SCALE (70: the pgbench database `bench`, whose backup, 7.5 MiB, is one PutObject),
# BENCH_BIG_MIB (1024: the database `big`, that many MiB of random bytea — pg_dump writes it as
# hex, zstd -3 brings it back to about that size, so its S3 backup is a multipart upload of
# ~134 parts of 8 MiB), BENCH_ROWS (which backups: default "bench:local bench:s3 big:local
# big:s3"), BENCH_TMPDIR (parent of the scratch directory; default bench/out: use /dev/shm for
# tmpfs).
#
# Each round runs every binary (the order alternating from round to round) on every database,
# to local disk and to S3, each output deleted first (untimed: `rm`, or `pgseal prune --repo
# ... --keep-last 0`). Timed with /usr/bin/time: wall, user + sys CPU of pgseal and the pg_dump
# it waits for, and peak RSS (the largest single process: pgseal). Garage's own CPU over each
# S3 run is read from /proc/PID/stat (it shares the cores). Per-run lines go to
# bench/out/s3-memory-run.log, the table to bench/out/s3-memory-results.md.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${BENCH_RUNS:-4}
SCALE=${BENCH_SCALE:-70}
BIG_MIB=${BENCH_BIG_MIB:-1024}
ROWS=${BENCH_ROWS:-bench:local bench:s3 big:local big:s3}
PARENT=${BENCH_TMPDIR:-$REPO/bench/out}
mkdir -p "$PARENT" "$REPO/bench/out"
OUTMD="$REPO/bench/out/s3-memory-results.md"
RUNLOG="$REPO/bench/out/s3-memory-run.log"

[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
PGBIN=${POSTGRESQL_BIN_PATH:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
if [ -z "${PGSEAL_BINS:-}" ]; then
    cargo build --quiet --release -p pgseal --manifest-path "$REPO/Cargo.toml"
    PGSEAL_BINS="after=$REPO/target/release/pgseal"
fi

WORK=$(mktemp -d "$PARENT/s3-memory-bench-XXXXXX")
chmod 0755 "$WORK"
# Private copies, so that a concurrent `cargo build` cannot swap a binary mid-benchmark.
NAMES=()
declare -A BIN SHA
for spec in $PGSEAL_BINS; do
    name=${spec%%=*}
    cp "${spec#*=}" "$WORK/pgseal-$name"
    BIN[$name]="$WORK/pgseal-$name"
    SHA[$name]=$(sha256sum "$WORK/pgseal-$name" | cut -c1-12)
    NAMES+=("$name")
done
AS_PG=()
[ "$(id -u)" = 0 ] && AS_PG=(runuser -u postgres --)
cleanup() {
    if declare -F garage_stop >/dev/null; then garage_stop; fi
    if [ -d "$WORK/cluster/data" ]; then
        "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$WORK/cluster/data" -m immediate stop >/dev/null 2>&1 || true
    fi
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
log "pgbench -i -s $SCALE and $BIG_MIB MiB of random bytes (untimed)"
psql -d postgres -c "CREATE DATABASE bench" -c "CREATE DATABASE big"
"$PGBIN/pgbench" -i -q -s "$SCALE" bench >/dev/null 2>&1
psql -d big -c "CREATE EXTENSION pgcrypto" -c "CREATE TABLE noise (b bytea)" \
    -c "INSERT INTO noise SELECT gen_random_bytes(1024) FROM generate_series(1, $((BIG_MIB * 1024)))"

# shellcheck source=scripts/garage-run.sh
. "$REPO/scripts/garage-run.sh"
garage_start "$WORK/garage" pgseal-bench
S3_REPO=s3://pgseal-bench/memory
TICK=$(getconf CLK_TCK)
garage_ticks() { awk '{ print $14 + $15 }' "/proc/$garage_pid/stat"; }

SITE="$WORK/site"
export SERVER_KEY_PASSWORD=bench-server-password PGSEAL_USER_KEY_PASSWORD=bench-user-password
"${BIN[${NAMES[0]}]}" init --dir "$SITE" >/dev/null
cd "$SITE"
"${BIN[${NAMES[0]}]}" user add bot >/dev/null
"${BIN[${NAMES[0]}]}" user-key generate bot >/dev/null

# --- timed rounds ----------------------------------------------------------------------------
declare -A WALLS CPUS GCPUS RSS LOADS
for ((i = 1; i <= RUNS; i++)); do
    order=("${NAMES[@]}")
    if ((i % 2 == 0)); then
        order=()
        for ((k = ${#NAMES[@]} - 1; k >= 0; k--)); do order+=("${NAMES[$k]}"); done
    fi
    for name in "${order[@]}"; do
        for row in $ROWS; do
            db=${row%%:*} where=${row#*:}
            {
                rm -f "$SITE"/backups/*.pgseal
                repo=()
                if [ "$where" = s3 ]; then
                    "${BIN[$name]}" prune --repo "$S3_REPO" --db "$db" --keep-last 0 --yes >/dev/null
                    repo=(--repo "$S3_REPO")
                fi
                sync
                load=$(cut -d' ' -f1 /proc/loadavg)
                g0=$(garage_ticks)
                /usr/bin/time -f '%e %M %U %S' -o "$WORK/time" "${BIN[$name]}" backup "$db" --user bot \
                    "${repo[@]}" >/dev/null 2>"$WORK/err" \
                    || { echo "bench: $name backup of $db to $where failed: $(cat "$WORK/err")" >&2; exit 1; }
                g=$(awk -v a="$g0" -v b="$(garage_ticks)" -v t="$TICK" 'BEGIN { printf "%.2f", (b - a) / t }')
                read -r e m u s < <(tail -n 1 "$WORK/time")
                c=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
                key="$db $where $name"
                log "round $i: $key: ${e}s wall, ${c}s CPU (${u} user, ${s} sys), $((m / 1024)) MiB RSS, Garage ${g}s (load $load)"
                WALLS[$key]+="$e " CPUS[$key]+="$c " GCPUS[$key]+="$g " RSS[$key]+="$((m / 1024)) " LOADS[$key]+="$load "
            }
        done
    done
done

# --- report ----------------------------------------------------------------------------------
min() { printf '%s\n' $1 | sort -g | head -n 1; }
max() { printf '%s\n' $1 | sort -g | tail -n 1; }
med() { printf '%s\n' $1 | sort -g | sed -n "$(( ($(wc -w <<< "$1") + 1) / 2 ))p"; }
{
    for name in "${NAMES[@]}"; do echo "- $name: $("${BIN[$name]}" --version) (sha256 ${SHA[$name]})"; done
    echo "- $RUNS rounds, binaries alternating; pgbench scale $SCALE (\`bench\`), $BIG_MIB MiB of random bytes (\`big\`); scratch on $(df --output=fstype "$WORK" | tail -1 | tr -d ' '); $(nproc) cores"
    echo
    echo "| database | to | binary | wall s, min / median | user + sys s, min / median | peak RSS MiB, min / median / max | Garage CPU s, median | 1-min load at start |"
    echo "|---|---|---|---:|---:|---:|---:|---|"
    for row in $ROWS; do
        db=${row%%:*} where=${row#*:}
        for name in "${NAMES[@]}"; do
            key="$db $where $name"
            echo "| $db | $where | $name | $(min "${WALLS[$key]}") / $(med "${WALLS[$key]}") | $(min "${CPUS[$key]}") / $(med "${CPUS[$key]}") | $(min "${RSS[$key]}") / $(med "${RSS[$key]}") / $(max "${RSS[$key]}") | $(med "${GCPUS[$key]}") | $(min "${LOADS[$key]}")–$(max "${LOADS[$key]}") |"
        done
    done
} > "$OUTMD"
cat "$OUTMD"
