#!/usr/bin/env bash
# pgseal backup and restore against pg_dump / pg_restore on a pgbench database, in one run.
#
#   bash bench/backup.sh          # scale 70 (about 1 GiB of tables), 3 runs each
#
# Environment knobs: BENCH_SCALE (pgbench scale, default 70), BENCH_RUNS (default 3),
# BENCH_TMPDIR (parent of the scratch directory; default bench/out, must not be tmpfs).
#
# Compared, each as a median of BENCH_RUNS wall times with the peak RSS:
#   backup:  pg_dump -Fc (its default compression) to a file
#            pg_dump -Fc -Z0 | zstd -3 > file              (what pgseal does, minus the crypto)
#            pgseal backup                                  (pg_dump -Fc -Z0 | zstd-3 | encrypt+sign)
#   restore: pg_restore -d DB file
#            zstd -dc file | pg_restore -d DB
#            pgseal restore file --target-db DB             (verify + decrypt | pg_restore -1)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCALE=${BENCH_SCALE:-70}
RUNS=${BENCH_RUNS:-3}
PARENT=${BENCH_TMPDIR:-$REPO/bench/out}
mkdir -p "$PARENT"

command -v zstd >/dev/null || { apt-get update -qq && apt-get install -y -qq zstd >/dev/null; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
PGBIN=${POSTGRESQL_BIN_PATH:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[ -x "$PGBIN/initdb" ] || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null;
                            PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1); }
cargo build --quiet --release -p pgseal --manifest-path "$REPO/Cargo.toml"
PGSEAL="$REPO/target/release/pgseal"

WORK=$(mktemp -d "$PARENT/backup-bench-XXXXXX")
chmod 0755 "$WORK"
AS_PG=()
[ "$(id -u)" = 0 ] && AS_PG=(runuser -u postgres --)
cleanup() {
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

SITE="$WORK/site"
export SERVER_KEY_PASSWORD=bench-server-password-0001 PGSEAL_USER_KEY_PASSWORD=bench-user-password-00001
"$PGSEAL" init --dir "$SITE" >/dev/null
( cd "$SITE" && "$PGSEAL" user add bench_bot >/dev/null && "$PGSEAL" user-key generate bench_bot >/dev/null )

ROWS=()
# measure LABEL OUTFILE CMD...: runs CMD BENCH_RUNS times, records the median wall time, max RSS
# and the size of OUTFILE (if any).
measure() {
    local label=$1 out=$2; shift 2
    local walls=() rss=0
    for ((i = 1; i <= RUNS; i++)); do
        [ -n "${PREPARE:-}" ] && eval "$PREPARE"
        sync
        local t
        t=$( { /usr/bin/time -f '%e %M' bash -c "$*" >/dev/null 2>"$WORK/err"; } 2>&1 | tail -n 1 ) \
            || { echo "bench: $label failed: $(cat "$WORK/err")" >&2; exit 1; }
        walls+=("${t% *}")
        local r=${t#* }
        (( r > rss )) && rss=$r
        echo "bench: $label run $i: ${t% *}s" >&2
    done
    local median
    median=$(printf '%s\n' "${walls[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p")
    local size="-"
    [ -n "$out" ] && size=$(du -m --apparent-size $out 2>/dev/null | awk '{s += $1} END {print s}')
    ROWS+=("| $label | $median | $((rss / 1024)) | $size |")
}

cd "$SITE"
measure "pg_dump -Fc (default compression)" "$WORK/plain.dump" \
    "'$PGBIN/pg_dump' -Fc -f '$WORK/plain.dump' bench"
measure "pg_dump -Fc -Z0 | zstd -3" "$WORK/plain.dump.zst" \
    "set -o pipefail; '$PGBIN/pg_dump' -Fc -Z0 bench | zstd -3 -q -f -o '$WORK/plain.dump.zst'"
PREPARE="rm -f $SITE/backups/*.pgseal" \
measure "pgseal backup (zstd-3, encrypt, sign)" "$SITE/backups/*.pgseal" \
    "'$PGSEAL' backup bench --user bench_bot"
SEALED=$(ls "$SITE"/backups/*.pgseal)

n=0
fresh_db() { n=$((n + 1)); psql -d postgres -c "DROP DATABASE IF EXISTS r; CREATE DATABASE r" >/dev/null; }
PREPARE=fresh_db measure "pg_restore -d DB (from pg_dump -Fc)" "" \
    "'$PGBIN/pg_restore' -d r '$WORK/plain.dump'"
PREPARE=fresh_db measure "zstd -dc | pg_restore -d DB" "" \
    "set -o pipefail; zstd -dc -q '$WORK/plain.dump.zst' | '$PGBIN/pg_restore' -d r"
PREPARE=fresh_db measure "pgseal restore (verify, decrypt, pg_restore -1)" "" \
    "'$PGSEAL' restore '$SEALED' --target-db r"
[ "$(psql -d r -Atc 'SELECT count(*) FROM pgbench_accounts')" = "$((SCALE * 100000))" ] \
    || { echo "bench: pgseal restore lost rows" >&2; exit 1; }

{
    echo "pgbench scale $SCALE ($DBSIZE on disk), $RUNS runs each, median wall time; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    echo
    echo "| operation | wall s | peak RSS MiB | output MiB |"
    echo "|---|---:|---:|---:|"
    printf '%s\n' "${ROWS[@]}"
} | tee "$REPO/bench/out/backup-results.md"
