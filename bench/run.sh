#!/usr/bin/env bash
# pgseal throughput / memory benchmark against `cat`, age and gpg.
#
#   bash bench/run.sh            # everything, 1 GiB inputs (see docs/BENCHMARKS.md)
#
# Environment knobs (all optional):
#   BENCH_SIZE_MIB=1024     size of the main inputs
#   BENCH_RUNS=3            runs per measurement (median wall time, max peak RSS)
#   BENCH_COMPRESSIBLE=1    also run everything on a compressible (text) input of the same size
#   BENCH_SMALL_MIB=1       size of the small pgseal-only input (0 to skip)
#   BENCH_BIG=auto          4 GiB pgseal-only input: auto = when disk allows, 1 = always, 0 = never
#   BENCH_BIG_MIB=4096      size of that input
#   BENCH_TMPDIR=bench/out  parent of the scratch directory (refused on tmpfs unless ...)
#   BENCH_ALLOW_TMPFS=0     ... this is 1: for comparing two binaries' CPU cost (user + sys in
#                           bench/out/run.log), where this VM's disk, which varies up to 3x between
#                           runs, would only add noise. Not for the targets: tmpfs makes fsync free.
#   BENCH_LOAD_MAX=1.5      a run starting at a higher 1-min load average is repeated ...
#   BENCH_RETRIES=2         ... up to this many times, keeping the attempt with the lowest load,
#   BENCH_SETTLE=10         ... each after waiting up to this many seconds for the load to drop
#   PGSEAL_BIN=...          pgseal binary to use (default: target/release/pgseal, built first)
#   BENCH_SOURCE=...        what PGSEAL_BIN was built from, for the report (e.g. a commit)
#   BENCH_NO_BUILD=1        do not run `cargo build --release -p pgseal`
#
# Nothing is dropped from the page cache: inputs are freshly written and hot, so every tool is
# measured reading from memory and writing into the page cache. `sync` runs (untimed) before every
# measured command so that writeback of an earlier run does not land in a later one.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT_DIR="$REPO/bench/out"
SIZE_MIB=${BENCH_SIZE_MIB:-1024}
RUNS=${BENCH_RUNS:-3}
COMPRESSIBLE=${BENCH_COMPRESSIBLE:-1}
SMALL_MIB=${BENCH_SMALL_MIB:-1}
BIG=${BENCH_BIG:-auto}
BIG_MIB=${BENCH_BIG_MIB:-4096}
TMP_PARENT=${BENCH_TMPDIR:-$OUT_DIR}
LOAD_MAX=${BENCH_LOAD_MAX:-1.5}
RETRIES=${BENCH_RETRIES:-2}
SETTLE=${BENCH_SETTLE:-10}
TFMT='%e %U %S %P %M'   # wall s, user s, sys s, CPU%, peak RSS KiB

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

for t in age age-keygen gpg gpgconf openssl cmp; do
    command -v "$t" >/dev/null || die "missing $t (apt-get install -y age gnupg openssl)"
done
[[ -x /usr/bin/time ]] || die "missing /usr/bin/time (apt-get install -y time)"

# --- pgseal binary ------------------------------------------------------------------------------
if [[ -z ${PGSEAL_BIN:-} ]]; then
    if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
        log "cargo build --release -p pgseal"
        (cd "$REPO" && cargo build --release -p pgseal >&2)
    fi
    PGSEAL_BIN="$REPO/target/release/pgseal"
fi
[[ -x $PGSEAL_BIN ]] || die "no pgseal binary at $PGSEAL_BIN"

# --- scratch directory --------------------------------------------------------------------------
mkdir -p "$OUT_DIR" "$TMP_PARENT"
exec 2> >(tee "$OUT_DIR/run.log" >&2)   # per-run timings, with the load average, for later reading
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
W=$(mktemp -d "$TMP_PARENT/tmp.XXXXXX")
export GNUPGHOME="$W/gnupg"
cleanup() {
    if [[ -d $GNUPGHOME ]]; then gpgconf --kill gpg-agent >/dev/null 2>&1 || true; fi
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Run a private copy, so a concurrent `cargo build` cannot swap the binary mid-benchmark.
cp "$PGSEAL_BIN" "$W/pgseal"
PGSEAL="$W/pgseal"
PGSEAL_ID="sha256 $(sha256sum "$PGSEAL" | cut -c1-12), built $(date -u -r "$PGSEAL_BIN" '+%Y-%m-%d %H:%M UTC')"

GITREV=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$REPO" status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null) ]]; then
    GITREV="$GITREV + uncommitted changes in crates/"
fi
# With PGSEAL_BIN the binary need not come from this tree: say so (BENCH_SOURCE names its source).
[[ $PGSEAL_BIN == "$REPO/target/release/pgseal" ]] ||
    GITREV="${BENCH_SOURCE:-a PGSEAL_BIN binary, not built from this tree by the script; this tree is at $GITREV}"

FSTYPE=$(df --output=fstype "$W" | tail -1 | tr -d ' ')
[[ $FSTYPE != tmpfs && $FSTYPE != ramfs ]] || [[ ${BENCH_ALLOW_TMPFS:-0} == 1 ]] ||
    die "$W is on $FSTYPE; set BENCH_TMPDIR to a disk (or BENCH_ALLOW_TMPFS=1 to compare CPU cost)"
avail_mib() { df --output=avail -BM "$W" | tail -1 | tr -dc 0-9; }

RESULTS="$W/results.tsv"   # tool op dataset mib wall user sys cpu rss_kib out_bytes load_range
: > "$RESULTS"

# --- measurement --------------------------------------------------------------------------------
# A failed or wrong run does not stop the benchmark: the row is reported as FAILED, the reason is
# listed under the table, and the script exits 1 at the end.
FAILURES=0
LAST_OK=1
record_failure() { # TOOL OP DATASET MIB REASON
    log "FAILED: $1 $2 ($3, $4 MiB): $5"
    printf '%s\t%s\t%s\t%s\tFAILED\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$RESULTS"
    FAILURES=$((FAILURES + 1))
    LAST_OK=0
}

# measure TOOL OP DATASET MIB OUT [VERIFY_AGAINST] -- CMD...
# Runs CMD $RUNS times (OUT removed and `sync` before each run). CMD's stdout goes to OUT when TOOL
# is "cat" or STDOUT_TO_OUT=1, else to a log. When VERIFY_AGAINST is given, OUT must equal it after
# every run. A run that starts while the 1-minute load average is above LOAD_MAX is repeated up to
# RETRIES times (each after waiting up to SETTLE s for the load to drop); the attempt that started
# at the lowest load is kept. Every attempt is logged with its load at start.
STDOUT_TO_OUT=0
measure() {
    local tool=$1 op=$2 ds=$3 mib=$4 out=$5 verify=""
    shift 5
    if [[ $1 != -- ]]; then verify=$1; shift; fi
    shift # --
    local i a w walls=() users=() syss=() cpus=() loads=() rss=0 e u s p m load best
    LAST_OK=1
    for ((i = 1; i <= RUNS; i++)); do
        best=""
        for ((a = 0; a <= RETRIES; a++)); do
            if ((a > 0)); then
                for ((w = 0; w < SETTLE; w++)); do above "$(load1)" "$LOAD_MAX" || break; sleep 1; done
            fi
            rm -f "$out"
            sync
            load=$(load1)
            local rc=0
            if [[ $tool == cat || $STDOUT_TO_OUT == 1 ]]; then
                /usr/bin/time -f "$TFMT" -o "$W/time" "$@" >"$out" 2>"$W/err" || rc=$?
            else
                /usr/bin/time -f "$TFMT" -o "$W/time" "$@" >"$W/log" 2>"$W/err" || rc=$?
            fi
            if ((rc != 0)); then
                cat "$W/err" >&2
                record_failure "$tool" "$op" "$ds" "$mib" "exit status $rc: $(grep -v '^Command exited' "$W/err" | tail -1)"
                return 0
            fi
            read -r e u s p m < <(tail -1 "$W/time")
            if [[ -n $verify ]] && ! cmp -s "$verify" "$out"; then
                record_failure "$tool" "$op" "$ds" "$mib" "exit status 0 but the output differs from the input (run $i)"
                return 0
            fi
            log "$(printf '%-7s %-22s %4s MiB %-7s run %d.%d: %6ss wall %6ss user %6ss sys %4s%% CPU %7s KiB  (load at start %s, at end %s)' \
                "$tool" "$op" "$mib" "$ds" "$i" "$((a + 1))" "$e" "$u" "$s" "${p%\%}" "$m" "$load" "$(load1)")"
            if [[ -z $best ]] || above "${best%% *}" "$load"; then best="$load $e $u $s ${p%\%} $m"; fi
            above "$load" "$LOAD_MAX" || break
        done
        read -r load e u s p m <<<"$best"
        walls+=("$e"); users+=("$u"); syss+=("$s"); cpus+=("$p"); loads+=("$load")
        if ((m > rss)); then rss=$m; fi
    done
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$op" "$ds" "$mib" \
        "$(median "${walls[@]}")" "$(median "${users[@]}")" "$(median "${syss[@]}")" \
        "$(median "${cpus[@]}")" "$rss" "$(stat -c %s "$out")" \
        "$(printf '%s\n' "${loads[@]}" | sort -g | sed -n '1p;$p' | paste -sd' ' | awk '{print ($1 == $2) ? $1 : $1 "–" $2}')" >>"$RESULTS"
}
load1() { cut -d' ' -f1 /proc/loadavg; }
above() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# --- inputs -------------------------------------------------------------------------------------
make_random() { # FILE MIB: incompressible, deterministic (AES-256-CTR keystream of a fixed key)
    head -c "$(($2 * 1048576))" /dev/zero |
        openssl enc -aes-256-ctr -nosalt -K "$(printf '%064d' 0)" -iv "$(printf '%032d' 0)" -out "$1"
}
make_text() { # FILE MIB: compressible, deterministic; tab-separated rows like a plain pg_dump COPY
    # awk stops by itself at exactly MIB MiB (a `| head -c` would kill it with SIGPIPE).
    awk -v n="$(($2 * 1048576))" 'BEGIN { srand(42); while (t < n) {
        l = sprintf("%d\t%d\tcustomer_%d@example.com\t%s\t%.2f\t2024-%02d-%02d %02d:%02d:%02d\n",
            ++i, int(rand() * 1000000), int(rand() * 500000), (rand() < 0.5 ? "shipped" : "pending"),
            rand() * 1000, 1 + int(rand() * 12), 1 + int(rand() * 28), int(rand() * 24),
            int(rand() * 60), int(rand() * 60))
        if (t + length(l) > n) l = substr(l, 1, n - t)
        printf "%s", l; t += length(l) } }' >"$1"
}

# --- keys ---------------------------------------------------------------------------------------
log "generating keys in $W"
export PGSEAL_KEY_PASSWORD=bench-password-not-secret
export PGSEAL_USER_KEY_PASSWORD=$PGSEAL_KEY_PASSWORD SERVER_KEY_PASSWORD=$PGSEAL_KEY_PASSWORD
"$PGSEAL" keygen --out "$W/server" --key-size 4096 >/dev/null
"$PGSEAL" keygen --out "$W/user" --key-size 4096 >/dev/null
age-keygen -o "$W/age.key" 2>/dev/null
AGE_RECIPIENT=$(age-keygen -y "$W/age.key")
mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --passphrase '' --quick-gen-key 'bench <bench@example.invalid>' rsa4096 \
    sign,encr never 2>/dev/null

# --- suites -------------------------------------------------------------------------------------
# pgseal_pair DATASET MIB IN COMPRESS [stdout]
# Default: `-o FILE`, which pgseal writes to a temporary file, fsyncs and links into place.
# stdout: `-o - > FILE`, no fsync, the same treatment `cat`, age and gpg get.
pgseal_pair() {
    local ds=$1 mib=$2 in=$3 c=$4 mode=${5:-file} label=$4 eo="$W/enc" bo="$W/back"
    if [[ $mode == stdout ]]; then label="$c, -o - >file"; eo=-; bo=-; STDOUT_TO_OUT=1; fi
    measure pgseal "encrypt+sign ($label)" "$ds" "$mib" "$W/enc" -- \
        "$PGSEAL" encrypt "$in" -o "$eo" --recipient "$W/server.pub.pem" \
        --sign-key "$W/user.key.pem" --compress "$c"
    if ((LAST_OK == 0)); then
        record_failure pgseal "decrypt+verify ($label)" "$ds" "$mib" "not run: encrypt failed"
    else
        measure pgseal "decrypt+verify ($label)" "$ds" "$mib" "$W/back" "$in" -- \
            "$PGSEAL" decrypt "$W/enc" -o "$bo" --identity "$W/server.key.pem" \
            --signer "$W/user.pub.pem"
    fi
    STDOUT_TO_OUT=0
}
# full_suite DATASET MIB IN: cat, pgseal (none, zstd), age, gpg
full_suite() {
    local ds=$1 mib=$2 in=$3
    measure cat "copy to file" "$ds" "$mib" "$W/copy" "$in" -- cat "$in"
    measure cat "copy + fsync" "$ds" "$mib" "$W/copy" "$in" -- sh -c 'cat "$1" && sync "$2"' sh "$in" "$W/copy"
    rm -f "$W/copy"
    pgseal_pair "$ds" "$mib" "$in" none
    pgseal_pair "$ds" "$mib" "$in" zstd
    pgseal_pair "$ds" "$mib" "$in" none stdout
    pgseal_pair "$ds" "$mib" "$in" zstd stdout
    measure age "encrypt" "$ds" "$mib" "$W/enc" -- age -r "$AGE_RECIPIENT" -o "$W/enc" "$in"
    if ((LAST_OK)); then
        measure age "decrypt" "$ds" "$mib" "$W/back" "$in" -- age -d -i "$W/age.key" -o "$W/back" "$W/enc"
    else
        record_failure age decrypt "$ds" "$mib" "not run: encrypt failed"
    fi
    measure gpg "encrypt+sign" "$ds" "$mib" "$W/enc" -- \
        gpg --batch --yes --compress-algo none --sign --encrypt -r bench@example.invalid -o "$W/enc" "$in"
    if ((LAST_OK)); then
        measure gpg "decrypt+verify" "$ds" "$mib" "$W/back" "$in" -- gpg --batch --yes -o "$W/back" --decrypt "$W/enc"
    else
        record_failure gpg "decrypt+verify" "$ds" "$mib" "not run: encrypt failed"
    fi
    rm -f "$W/enc" "$W/back"
}
# scale_suite DATASET MIB IN: cat and pgseal only (peak RSS against input size)
scale_suite() {
    local ds=$1 mib=$2 in=$3
    measure cat "copy to file" "$ds" "$mib" "$W/copy" "$in" -- cat "$in"
    rm -f "$W/copy"
    pgseal_pair "$ds" "$mib" "$in" none
    pgseal_pair "$ds" "$mib" "$in" zstd
    rm -f "$W/enc" "$W/back"
}

if ((SMALL_MIB > 0)); then
    log "small input: $SMALL_MIB MiB random"
    make_random "$W/small.bin" "$SMALL_MIB"
    scale_suite "random" "$SMALL_MIB" "$W/small.bin"
    rm -f "$W/small.bin"
fi

log "main input: $SIZE_MIB MiB random"
make_random "$W/in.bin" "$SIZE_MIB"
full_suite "random" "$SIZE_MIB" "$W/in.bin"
rm -f "$W/in.bin"

if [[ $COMPRESSIBLE == 1 ]]; then
    log "main input: $SIZE_MIB MiB compressible text"
    make_text "$W/in.txt" "$SIZE_MIB"
    full_suite "text" "$SIZE_MIB" "$W/in.txt"
    rm -f "$W/in.txt"
fi

case $BIG in
0) ;;
1 | auto)
    need=$((BIG_MIB * 3 + 1024))
    have=$(avail_mib)
    if ((have >= need)); then
        log "big input: $BIG_MIB MiB random"
        make_random "$W/big.bin" "$BIG_MIB"
        scale_suite "random" "$BIG_MIB" "$W/big.bin"
        rm -f "$W/big.bin"
    elif [[ $BIG == 1 ]]; then
        die "big input needs $need MiB free, $have MiB available"
    else
        log "skipping big input: needs $need MiB free, $have MiB available"
    fi
    ;;
*) die "BENCH_BIG must be 0, 1 or auto" ;;
esac

# --- report -------------------------------------------------------------------------------------
mib() { awk -v b="$1" 'BEGIN{printf "%d", b / 1048576}'; }
{
    echo "## pgseal benchmark results"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- pgseal: $("$PGSEAL" --version) ($PGSEAL_BIN, $PGSEAL_ID, source: $GITREV)"
    echo "- peers: $(age --version | head -1) (age), $(gpg --version | head -1), $(cat --version | head -1)"
    echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(free -g | awk '/^Mem:/{print $2}') GiB RAM, kernel $(uname -r)"
    echo "- load average (1, 5, 15 min) at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg) (per-run values in bench/out/run.log)"
    echo "- scratch: $FSTYPE on $(df --output=source "$W" | tail -1 | tr -d ' '); page cache hot, sync before each run"
    echo "- each row: median wall time of $RUNS runs (user, sys and CPU% medians too), max peak RSS over the runs"
    echo "- ratio: wall time / wall time of \`cat in > out\` on the same input; throughput: input MiB / wall s"
    echo "- load: a run that started at a 1-min load average above $LOAD_MAX was repeated up to $RETRIES times (after waiting up to $SETTLE s for the load to drop), keeping the attempt that started at the lowest load; the last column is the range of start loads of the kept runs"
    echo
    echo "| tool | operation | input | median wall s | user s | sys s | CPU % | peak RSS MiB | ratio to cat | throughput MiB/s | output MiB | load at start |"
    echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' '
        { row[NR] = $0; if ($1 == "cat" && $2 == "copy to file" && $5 != "FAILED") cat[$3 "/" $4] = $5 }
        END { for (i = 1; i <= NR; i++) { split(row[i], f, "\t"); c = cat[f[3] "/" f[4]]
            size = (f[4] >= 1024) ? sprintf("%g GiB %s", f[4] / 1024, f[3]) : sprintf("%g MiB %s", f[4], f[3])
            if (f[5] == "FAILED") {
                printf "| %s | %s | %s | **FAILED** [%d] | | | | | | | | |\n", f[1], f[2], size, ++nf; continue }
            printf "| %s | %s | %s | %.2f | %.2f | %.2f | %d | %.1f | %s | %s | %.1f | %s |\n",
                f[1], f[2], size, f[5], f[6], f[7], f[8], f[9] / 1024,
                (c > 0) ? sprintf("%.2f×", f[5] / c) : "n/a",
                (f[5] > 0) ? sprintf("%.0f", f[4] / f[5]) : "n/a", f[10] / 1048576, f[11] }
            if (nf) { print ""; nf = 0
                for (i = 1; i <= NR; i++) { split(row[i], f, "\t")
                    if (f[5] == "FAILED") printf "[%d] %s %s, %s MiB %s: %s\n", ++nf, f[1], f[2], f[4], f[3], f[6] } } }' "$RESULTS"
    echo
    echo "### Targets (random input of $SIZE_MIB MiB unless noted)"
    echo
    awk -F'\t' -v size="$SIZE_MIB" '
        function w(t, o, d) { return wall[t "|" o "|" d "|" size] + 0 }
        function verdict(ok) { return ok ? "**met**" : "**missed**" }
        function ratio(a, b) { return (a > 0 && b > 0) ? sprintf("%.2f×", a / b) : "n/a" }
        function check(a, b, op, lim) { if (!(a > 0 && b > 0)) return "**not measured**"
            return verdict(op == "le" ? a / b <= lim : a / b >= lim) }
        $5 != "FAILED" { wall[$1 "|" $2 "|" $3 "|" $4] = $5
            if ($1 == "pgseal" && $9 > rss) { rss = $9; rssat = $2 ", " $4 " MiB " $3 } }
        $5 == "FAILED" && $1 == "pgseal" { failed = failed "; " $2 " on " $4 " MiB " $3 }
        END {
            c = w("cat", "copy to file", "random"); cf = w("cat", "copy + fsync", "random")
            ae = w("age", "encrypt", "random"); ad = w("age", "decrypt", "random")
            ge = w("gpg", "encrypt+sign", "random"); gd = w("gpg", "decrypt+verify", "random")
            for (k = 0; k < 2; k++) { comp = k ? "zstd" : "none"
                e = w("pgseal", "encrypt+sign (" comp ")", "random"); d = w("pgseal", "decrypt+verify (" comp ")", "random")
                se = w("pgseal", "encrypt+sign (" comp ", -o - >file)", "random"); sd = w("pgseal", "decrypt+verify (" comp ", -o - >file)", "random")
                printf "- `--compress %s`, `-o FILE`: encrypt+sign %s cat, decrypt+verify %s cat (target ≤ 1.3×): %s / %s\n",
                    comp, ratio(e, c), ratio(d, c), check(e, c, "le", 1.3), check(d, c, "le", 1.3)
                printf "  - vs age: encrypt %s faster, decrypt %s faster (target ≥ 1.5×): %s / %s\n",
                    ratio(ae, e), ratio(ad, d), check(ae, e, "ge", 1.5), check(ad, d, "ge", 1.5)
                printf "  - vs gpg: encrypt %s faster, decrypt %s faster (target ≥ 5×): %s / %s\n",
                    ratio(ge, e), ratio(gd, d), check(ge, e, "ge", 5), check(gd, d, "ge", 5)
                printf "  - like for like: `-o FILE` (fsyncs) vs cat + fsync: encrypt %s, decrypt %s; `-o - >file` (no fsync) vs cat: encrypt %s, decrypt %s; `-o - >file` vs age %s / %s faster, vs gpg %s / %s faster\n",
                    ratio(e, cf), ratio(d, cf), ratio(se, c), ratio(sd, c), ratio(ae, se), ratio(ad, sd), ratio(ge, se), ratio(gd, sd) }
            printf "- pgseal peak RSS over all successful runs: %.1f MiB (%s) (target ≤ 64 MiB): %s\n",
                rss / 1024, rssat, verdict(rss <= 65536)
            if (failed != "") printf "- pgseal runs that FAILED (not counted anywhere above): %s\n", substr(failed, 3)
        }' "$RESULTS"
} >"$W/results.md"
cp "$W/results.md" "$OUT_DIR/results.md"
cp "$RESULTS" "$OUT_DIR/results.tsv"
cat "$OUT_DIR/results.md"
if ((FAILURES > 0)); then
    log "$FAILURES measurement(s) FAILED; see the notes under the table"
    exit 1
fi
