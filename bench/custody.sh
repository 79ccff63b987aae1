#!/usr/bin/env bash
# The key-custody service under load: unwraps per second, latency and the service's CPU.
#
#   bash bench/custody.sh      # BENCH_RUNS=3 BENCH_SECONDS=15 BENCH_PROCS=2 BENCH_CONCURRENCY=32
#                              # BENCH_STORES="tmpfs disk" BENCH_TMPDIR=bench/out
#
# A release build of `pgseal serve` (TLS on loopback, a P-256 certificate made here with
# openssl) holds a site's RSA-4096 server key; the user the clients sign as has an RSA-4096
# key too (the site default, rsa_key_size = 4096). BENCH_PROCS client processes, each with
# BENCH_CONCURRENCY requests in flight, unwrap one file's key over and over for BENCH_SECONDS;
# every answer is checked against the file's key commitment. The clients are the load test's
# client mode (crates/pgseal/tests/custody_load.rs) from a release build, and run on the same
# two cores as the service: their CPU is reported next to the service's.
#
# The site (store, head file) lives on tmpfs (/dev/shm) for `tmpfs` and under BENCH_TMPDIR
# (ext4 on the virtio disk here) for `disk`: audit durability is fsync-bound.
#
# PGSEAL_BIN=/path/to/pgseal and LOAD_BIN=/path/to/custody_load-test-binary measure those
# instead of building them.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${BENCH_RUNS:-3}
SECONDS_PER_RUN=${BENCH_SECONDS:-15}
PROCS=${BENCH_PROCS:-2}
CONCURRENCY=${BENCH_CONCURRENCY:-32}
STORES=${BENCH_STORES:-tmpfs disk}
PARENT=${BENCH_TMPDIR:-$REPO/bench/out}
mkdir -p "$PARENT"
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
if [[ -z ${PGSEAL_BIN:-} ]]; then
    cargo build --quiet --release -p pgseal --manifest-path "$REPO/Cargo.toml"
    PGSEAL_BIN="$TARGET/release/pgseal"
fi
if [[ -z ${LOAD_BIN:-} ]]; then
    LOAD_BIN=$(cargo test --quiet --release -p pgseal --test custody_load --no-run \
        --manifest-path "$REPO/Cargo.toml" --message-format=json |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "custody_load":
        print(m["executable"])')
fi
command -v openssl >/dev/null || { echo "bench: missing openssl" >&2; exit 1; }

WORKS=()
cleanup() {
    [[ -n ${SERVE_PID:-} ]] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
    for w in "${WORKS[@]}"; do rm -rf "$w"; done
}
trap cleanup EXIT
BIN_DIR=$(mktemp -d "$PARENT/custody-bench-bin-XXXXXX")
WORKS+=("$BIN_DIR")
# Private copies, so a concurrent `cargo build` cannot swap a binary mid-benchmark.
cp "$PGSEAL_BIN" "$BIN_DIR/pgseal"
cp "$LOAD_BIN" "$BIN_DIR/load"
PGSEAL="$BIN_DIR/pgseal"
export SERVER_KEY_PASSWORD=bench-server-password-0001 PGSEAL_USER_KEY_PASSWORD=bench-user-password-00001
export XDG_CONFIG_HOME=/nonexistent-pgseal-bench
echo "- pgseal: $PGSEAL_BIN (sha256 $(sha256sum "$PGSEAL" | cut -c1-12), source: ${BENCH_SOURCE:-$(git -C "$REPO" rev-parse --short HEAD)}); $RUNS runs of ${SECONDS_PER_RUN} s per store; $PROCS client processes × $CONCURRENCY in flight"

# The TLS certificate: a CA and a P-256 server certificate for 127.0.0.1.
PKI="$BIN_DIR/pki"
mkdir -p "$PKI"
(
    cd "$PKI"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=bench CA" -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > ext.cnf
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile ext.cnf -out server.pem 2>/dev/null
)

for store in $STORES; do
    case $store in
        tmpfs) WORK=$(mktemp -d /dev/shm/custody-bench-XXXXXX) ;;
        disk) WORK=$(mktemp -d "$PARENT/custody-bench-XXXXXX") ;;
        *) echo "bench: unknown store $store (tmpfs or disk)" >&2; exit 2 ;;
    esac
    WORKS+=("$WORK")
    "$PGSEAL" init --dir "$WORK/site" >/dev/null
    (
        cd "$WORK/site"
        "$PGSEAL" user add bot >/dev/null
        "$PGSEAL" user-key generate bot >/dev/null
        "$PGSEAL" user role bot --add restore >/dev/null
        head -c 65536 /dev/urandom > a.in
        "$PGSEAL" encrypt a.in -o a.pgseal --user bot >/dev/null
    )
    for ((run = 1; run <= RUNS; run++)); do
        cd "$WORK/site"
        "$PGSEAL" serve --listen 127.0.0.1:0 --cert "$PKI/server.pem" --key "$PKI/server.key" \
            2> "$WORK/serve.log" &
        SERVE_PID=$!
        for _ in $(seq 100); do
            grep -q "listening on" "$WORK/serve.log" && break
            sleep 0.1
        done
        URL=$(sed -n 's/.*listening on \([^,]*\).*/\1/p' "$WORK/serve.log")
        [[ -n $URL ]] || { cat "$WORK/serve.log" >&2; exit 1; }
        python3 - "$BIN_DIR/load" "$SERVE_PID" "$store" "$run" <<EOF
import json, os, resource, subprocess, sys, time
load, pid, store, run = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
plan = json.dumps({
    "url": "$URL", "ca": "$PKI/ca.pem", "user": "bot",
    "key": "$WORK/site/keys/users/bot.key.pem", "file": "$WORK/site/a.pgseal",
    "concurrent": $CONCURRENCY, "requests": 10**9, "seconds": $SECONDS_PER_RUN,
})
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
env = dict(os.environ, PGSEAL_LOAD_CLIENT=plan)
test = "four_client_processes_of_a_hundred_concurrent_unwraps_all_answered_and_audited"
procs = [subprocess.Popen([load, test, "--exact", "--nocapture", "--test-threads=1"], env=env,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
         for _ in range($PROCS)]
for p in procs:
    for line in p.stdout:
        if line.strip().endswith("LOAD-READY"):
            break
before = resource.getrusage(resource.RUSAGE_CHILDREN)
service_before, started = cpu(pid), time.monotonic()
for p in procs:
    p.stdin.write("go\n"); p.stdin.flush()
outcomes = []
for p in procs:
    for line in p.stdout:
        if "LOAD-RESULT " in line:
            outcomes.append(json.loads(line.split("LOAD-RESULT ", 1)[1]))
    p.wait()
wall = time.monotonic() - started
service = cpu(pid) - service_before
after = resource.getrusage(resource.RUSAGE_CHILDREN)
clients = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
lat = sorted(l for o in outcomes for l in o["latencies_us"])
answered = sum(o["answered"] for o in outcomes)
failed = sum(len(o["failures"]) for o in outcomes)
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] / 1000 if lat else float("nan")
row = {"store": store, "run": int(run), "answered": answered, "failed": failed, "wall_s": wall,
       "per_s": answered / wall, "p50_ms": q(0.50), "p99_ms": q(0.99), "max_ms": lat[-1] / 1000 if lat else None,
       "service_cpu_s": service, "service_cores": service / wall,
       "service_ms_per_unwrap": 1000 * service / max(answered, 1),
       "clients_cpu_s": clients, "clients_ms_per_unwrap": 1000 * clients / max(answered, 1),
       "load1": os.getloadavg()[0]}
if failed:
    row["failures"] = [f for o in outcomes for f in o["failures"]][:3]
print(json.dumps(row))
EOF
        kill "$SERVE_PID"
        wait "$SERVE_PID" || true
        SERVE_PID=
        entries=$("$PGSEAL" audit verify --json | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["entries"] if r["valid"] else "BROKEN")')
        echo "{\"store\": \"$store\", \"run\": $run, \"audit_entries_after\": \"$entries\"}"
    done
done
