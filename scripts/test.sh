#!/usr/bin/env bash
# The whole pgseal test suite: the Rust unit and integration tests (the store's on SQLite and on
# a PostgreSQL cluster the tests start themselves, the S3 ones on a Garage S3 engine they start),
# then the independent Python reference decoder and the OpenSSL interop tests (tests/reference).
# Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v openssl >/dev/null || need_apt+=(openssl)
command -v setsid >/dev/null || need_apt+=(util-linux)
command -v runuser >/dev/null || need_apt+=(util-linux)
# pgseal runs PostgreSQL's tools under setpriv --pdeathsig, so they die with it.
command -v setpriv >/dev/null || need_apt+=(util-linux)
# scripts/garage.sh takes a lock so that concurrent runs build Garage once.
command -v flock >/dev/null || need_apt+=(util-linux)
# The custody tests make the store's write-ahead log immutable (chattr) to show an audit log
# that cannot be written refuses requests.
command -v chattr >/dev/null || need_apt+=(e2fsprogs)
# The schedule tests check the generated units with systemd-analyze verify.
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
# The progress test gives pgseal a pseudo-terminal with script(1).
command -v script >/dev/null || need_apt+=(bsdutils)
# The store and backup tests start their own throwaway PostgreSQL clusters.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
if ((${#need_apt[@]})); then
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# cryptography ≥ 47 for ML-KEM-768 (the hybrid recipients, docs/FORMAT.md §6a).
if ! python3 -c 'import cryptography, zstandard, pytest, blake3
from cryptography.hazmat.primitives.asymmetric import mlkem' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check -r tests/reference/requirements.txt
fi
# `pgseal status --prometheus` is checked with a real parser of the text format
# (crates/pgseal/tests/status.rs fails without it).
if ! python3 -c 'import prometheus_client' 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check 'prometheus_client>=0.20'
fi

# The S3 tests start a real Garage: built once per machine (see scripts/garage.sh for how long
# the first build takes), unless PGSEAL_GARAGE_BIN already names a Garage 2.5.x.
if [[ -z "${PGSEAL_GARAGE_BIN:-}" ]]; then
    PGSEAL_GARAGE_BIN="$(bash scripts/garage.sh)"
    export PGSEAL_GARAGE_BIN
fi

cargo build --workspace --quiet
cargo test --workspace
PGSEAL_BIN="$PWD/target/debug/pgseal" python3 -m pytest tests/reference -q
