#!/usr/bin/env bash
# Installs Garage 2.5.0 (https://garagehq.deuxfleurs.fr/), the S3 engine the tests start
# (pgseal_testkit::TestGarage), unless it is already installed; prints the binary's path on
# stdout (progress goes to stderr):
#
#     export PGSEAL_GARAGE_BIN="$(bash scripts/garage.sh)"
#
# Pinned: exactly 2.5.0, built with `cargo install --locked` (Garage's own Cargo.lock), with
# only what a single-node test engine needs (SQLite metadata, bundled C libraries).
#
# Where: $XDG_CACHE_HOME/pgseal/garage-2.5.0 (default ~/.cache/pgseal/garage-2.5.0), binary in
# bin/garage. A directory of its own, named after the version, rather than ~/.cargo/bin: the
# install never replaces a garage the user has there (of another version, for their own use),
# a version bump installs next to the old one instead of fighting over one path, and the
# testkit finds it at a fixed path without relying on PATH (it looks there after
# PGSEAL_GARAGE_BIN). CI can cache that one directory.
#
# Cost: a compile from source, once per machine: 880 s of CPU (823 s user, 56 s system; peak RSS
# 1.3 GB). Measured on this project's 2-core machine on 2026-11-30: 15 min 1 s wall time while
# other builds shared the two cores (load 4); about 7 to 8 minutes with the cores to itself.
# Afterwards this script only runs `garage --version` (well under a second).
# Concurrent runs wait for each other (flock), so two test runs never build it twice.
set -euo pipefail

GARAGE_VERSION=2.5.0
root="${XDG_CACHE_HOME:-$HOME/.cache}/pgseal/garage-$GARAGE_VERSION"
bin="$root/bin/garage"

# `garage --version` prints `garage cargo:2.5.0 [features: ...]` for a cargo-installed build.
installed() {
    [[ -x "$bin" ]] && "$bin" --version 2>/dev/null | grep -Eq "^garage (cargo:|v)?$GARAGE_VERSION "
}

if ! installed; then
    mkdir -p "$root"
    exec 9>"$root/.install.lock"
    flock 9
    if ! installed; then
        echo "garage.sh: building Garage $GARAGE_VERSION into $root (minutes, once per machine)" >&2
        start=$SECONDS
        # Its own temporary target directory: not the workspace's (CARGO_TARGET_DIR).
        env -u CARGO_TARGET_DIR -u CARGO_BUILD_TARGET_DIR \
            cargo install --locked --root "$root" garage --version "=$GARAGE_VERSION" \
            --no-default-features --features bundled-libs,sqlite >&2
        echo "garage.sh: built in $((SECONDS - start)) s" >&2
        installed || { echo "garage.sh: $bin does not report version $GARAGE_VERSION" >&2; exit 1; }
    fi
    exec 9>&-
fi
echo "$bin"
