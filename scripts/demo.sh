#!/usr/bin/env bash
# The whole pgseal story, on the embedded defaults, in a fresh temporary directory, with nothing
# set up beforehand: a throwaway PostgreSQL cluster with a sample database, a pgseal site (SQLite
# store, server key, a user and their signing key; generated passwords kept in a 0600 file),
# a backup, its verification, a restore into a new database, a row-count comparison, what a
# one-byte change does, the audit log of it all with its hash chain verified, and a restore check
# through the key-custody service with no server password on the client, the site's status
# and what retention would keep. Then the same
# backup into an S3 bucket on a throwaway Garage engine (PGSEAL_DEMO_S3=0 skips that part; the
# first run on a machine builds Garage with scripts/garage.sh, which takes minutes once).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# PostgreSQL server binaries: install Debian's package if they are missing.
pgbin="${POSTGRESQL_BIN_PATH:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
    step "installing PostgreSQL (Debian package postgresql)"
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
    pgbin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
fi

step "building pgseal"
cargo build --quiet --release -p pgseal --manifest-path "$root/Cargo.toml"
pgseal="$root/target/release/pgseal"

work="$(mktemp -d /tmp/pgseal-demo-XXXXXX)"
chmod 0755 "$work"
cluster="$work/cluster"
as_pg=()
if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); fi
cleanup() {
    "${as_pg[@]}" "$pgbin/pg_ctl" -D "$cluster/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

step "a throwaway PostgreSQL cluster (socket only, in $cluster)"
mkdir -p "$cluster/socket"
[ "$(id -u)" = 0 ] && chown -R postgres:postgres "$cluster"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"${as_pg[@]}" "$pgbin/initdb" -D "$cluster/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$cluster/data" -l "$cluster/server.log" -w \
    -o "-c listen_addresses='' -k $cluster/socket -p $port" start >/dev/null
export PGHOST="$cluster/socket" PGPORT="$port" PGUSER=postgres POSTGRESQL_BIN_PATH="$pgbin"
psql() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

psql -d postgres -c "CREATE DATABASE shop"
psql -d shop <<'SQL'
CREATE SCHEMA sales;
CREATE TABLE public.customers (id serial PRIMARY KEY, name text NOT NULL, avatar bytea, prefs jsonb);
INSERT INTO public.customers (name, avatar, prefs)
  SELECT 'Client ' || g || ' — Ærøskøbing ✓ 東京', decode(md5(g::text), 'hex'),
         jsonb_build_object('newsletter', g % 2 = 0, 'tags', jsonb_build_array('vip', 'ü'))
  FROM generate_series(1, 20000) g;
CREATE TABLE sales.orders (id bigint PRIMARY KEY, customer int REFERENCES public.customers (id),
                           total numeric(12, 2), placed timestamptz);
INSERT INTO sales.orders
  SELECT g, 1 + g % 20000, (g % 997) * 1.5, '2025-01-01'::timestamptz + g * interval '7 minutes'
  FROM generate_series(1, 100000) g;
SQL
echo "database shop: $(psql -d shop -Atc 'SELECT count(*) FROM customers') customers, $(psql -d shop -Atc 'SELECT count(*) FROM sales.orders') orders"

step "a pgseal site: config, SQLite store, a hybrid RSA + ML-KEM-768 server key (passwords in a 0600 file)"
site="$work/site"
mkdir -p "$site"
umask 077
{
    echo "SERVER_KEY_PASSWORD=$(head -c 24 /dev/urandom | base64)"
    echo "PGSEAL_USER_KEY_PASSWORD=$(head -c 24 /dev/urandom | base64)"
} > "$site/.env"
set -a; . "$site/.env"; set +a
"$pgseal" init --pq --dir "$site"
cd "$site"
"$pgseal" user add backup_bot
"$pgseal" user-key generate backup_bot

step "backup: pg_dump → zstd → encrypt to the server key → signed by backup_bot"
"$pgseal" backup shop --user backup_bot
"$pgseal" list
file="$("$pgseal" list --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[-1]["path"])')"

step "what the backup's header says"
"$pgseal" inspect "$file"

step "verify with the public key alone, then prove it decrypts (no plaintext written)"
"$pgseal" verify "$file"
"$pgseal" verify "$file" --decrypt-check | tail -n 1

step "restore into a new database"
"$pgseal" restore "$file" --target-db shop_restored --create

step "row counts: original vs restored"
counts() {
    psql -d "$1" -At -F ' ' <<'SQL'
SELECT 'public.customers', count(*) FROM public.customers
UNION ALL SELECT 'sales.orders', count(*) FROM sales.orders;
SQL
}
diff <(counts shop) <(counts shop_restored) && counts shop_restored | sed 's/^/  identical: /'
[ "$(psql -d shop -Atc 'SELECT md5(string_agg(c::text, '"'|'"' ORDER BY id)) FROM customers c')" = \
  "$(psql -d shop_restored -Atc 'SELECT md5(string_agg(c::text, '"'|'"' ORDER BY id)) FROM customers c')" ] \
    && echo "  customers: row-for-row checksum identical (bytea, jsonb and non-ASCII text included)"

step "one flipped byte: verify and restore refuse, and the database is untouched"
cp "$file" tampered.pgseal
size=$(stat -c %s tampered.pgseal)
printf '\xff' | dd of=tampered.pgseal bs=1 seek=$((size / 2)) conv=notrunc status=none
if "$pgseal" verify tampered.pgseal; then echo "NOT DETECTED"; exit 1; fi
psql -d postgres -c "CREATE DATABASE shop_tampered"
if "$pgseal" restore tampered.pgseal --target-db shop_tampered; then echo "NOT DETECTED"; exit 1; fi
echo "  tables in shop_tampered: $(psql -d shop_tampered -Atc "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")"

step "the audit log, and its hash chain checked against the anchor in the signed backup"
"$pgseal" audit list
"$pgseal" audit verify

step "restores without the server password: the key-custody service (pgseal serve) on a socket"
# The password leaves the shell and the site's .env: only the service gets it, from a 0600 file.
printf '%s' "$SERVER_KEY_PASSWORD" > "$work/server-key-password"
sed -i '/^SERVER_KEY_PASSWORD=/d' "$site/.env"
unset SERVER_KEY_PASSWORD
"$pgseal" user role backup_bot --add restore
"$pgseal" serve --unix "$work/custody.sock" --server-password-file "$work/server-key-password" \
    2> "$work/serve.log" &
serve_pid=$!
for _ in $(seq 100); do [ -S "$work/custody.sock" ] && break; sleep 0.1; done
head -n 1 "$work/serve.log"
PGSEAL_USER=backup_bot "$pgseal" restore "$file" --check --custody "unix://$work/custody.sock"
if setsid -w "$pgseal" restore "$file" --check 2>/dev/null </dev/null; then
    echo "OPENED WITHOUT A PASSWORD"; exit 1
fi
echo "  (without the service, the same restore has no password to open the keys with)"
"$pgseal" audit list --action CUSTODY_UNWRAP
kill "$serve_pid"; wait "$serve_pid" || true
SERVER_KEY_PASSWORD="$(cat "$work/server-key-password")"; export SERVER_KEY_PASSWORD

step "the site's state for people and monitors, and what retention would keep"
# Nagios/Icinga conventions: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
if "$pgseal" status --max-age 26h; then :; else
    echo "  (status exit $?: the tampered file's refused restore is a failure of the last 24 hours)"
fi
"$pgseal" prune --keep-daily 7 --keep-monthly 12

if [ "${PGSEAL_DEMO_S3:-1}" = 0 ]; then
    step "done (everything above lived in $work and is removed now; PGSEAL_DEMO_S3=0 skipped the S3 part)"
    exit 0
fi

step "backups off the host: a throwaway Garage S3 engine (built once by scripts/garage.sh)"
# shellcheck source=scripts/garage-run.sh
. "$root/scripts/garage-run.sh"
garage_start "$work/garage" pgseal-demo
trap 'garage_stop; cleanup' EXIT
repo=s3://pgseal-demo/db1
echo "Garage on $AWS_ENDPOINT_URL, bucket pgseal-demo; repository $repo"

step "backup straight into the bucket (a multipart upload: no spool file, no plaintext)"
"$pgseal" backup shop --user backup_bot --repo "$repo"
object="$("$pgseal" list --json | python3 -c 'import json, sys; print(json.load(sys.stdin)[-1]["location"])')"
"$pgseal" list --remote --repo "$repo"

step "verify and test-restore the object, and anchor the audit log in the bucket's headers"
"$pgseal" verify "$object"
"$pgseal" restore "$object" --check
"$pgseal" audit verify --repo "$repo"

step "copy the local backups into the bucket too: each read back and verified before it is catalogued"
"$pgseal" copy --to "$repo"
"$pgseal" list

step "the local file lost: restore finds its verified copy in the bucket"
rm "$file"
"$pgseal" restore "$file" --check

step "done (everything above lived in $work and is removed now)"
