#!/usr/bin/env bash
# Fuzz the SIP message parser, the proxy core and device mode's registration client (with its
# digest authentication) with cargo-fuzz (libFuzzer) for a bounded
# time, on stable Rust.
#
#   scripts/fuzz.sh [SECONDS]        SECONDS per target (default 60)
#
# Environment:
#   FUZZ_TARGETS    targets to run (default: every file in fuzz/fuzz_targets/)
#   FUZZ_SANITIZER  cargo-fuzz sanitizer (default: none). Stable rustc cannot build the
#                   sanitizers (-Zsanitizer); with FUZZ_SANITIZER=address on a stable toolchain
#                   this script sets RUSTC_BOOTSTRAP=1 to allow the nightly flag.
#   FUZZ_ARGS       extra libFuzzer arguments, e.g. "-fork=1 -ignore_crashes=1" to collect
#                   several crashes in one run, or "-jobs=2" on a free machine.
#
# Coverage instrumentation (-Cpasses=sancov-module, -Cllvm-args=-sanitizer-coverage-*) works on
# stable, so with the default FUZZ_SANITIZER=none no nightly feature is used. The code under
# test is safe Rust: what the fuzzer finds are panics (index/slice out of range, overflow with
# debug assertions, failed harness assertions), infinite loops (timeouts) and memory blow-ups.
#
# The corpus lives in fuzz/corpus/<target> (git-ignored); on the first run it is seeded with
# every file under tests/data/sip/ (plus fuzz/seeds/<target>/ if present) and minimized with
# `cargo fuzz cmin` after each clean run. Crashes go to
# fuzz/artifacts/<target>/; reproduce one with
#   cargo fuzz run --sanitizer none <target> fuzz/artifacts/<target>/crash-...
# Exit status: non-zero if any target produced a crash, timeout, OOM or leak artifact.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
DURATION=${1:-60}
if ! [[ $DURATION =~ ^[0-9]+$ ]] || [ "$DURATION" -eq 0 ]; then
    echo "usage: $0 [SECONDS]   (SECONDS per target, a positive integer)" >&2
    exit 2
fi
SANITIZER=${FUZZ_SANITIZER:-none}
CARGO=${CARGO:-cargo}

if ! "$CARGO" fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    "$CARGO" install cargo-fuzz --locked
fi
if [ "$SANITIZER" != none ] && ! rustc -V | grep -q nightly; then
    # Only for the sanitizers: -Zsanitizer is a nightly flag.
    export RUSTC_BOOTSTRAP=1
fi

if [ -n "${FUZZ_TARGETS:-}" ]; then
    read -r -a TARGETS <<<"$FUZZ_TARGETS"
else
    TARGETS=()
    for f in fuzz/fuzz_targets/*.rs; do TARGETS+=("$(basename "$f" .rs)"); done
fi

echo "== building fuzz targets (${TARGETS[*]}), sanitizer: $SANITIZER"
for t in "${TARGETS[@]}"; do
    "$CARGO" fuzz build --sanitizer "$SANITIZER" "$t"
done

# Copy seed files into a corpus directory with flat, unique names.
seed_from() {
    local src=$1 dst=$2
    [ -d "$src" ] || return 0
    while IFS= read -r -d '' f; do
        local rel=${f#"$src"/}
        cp -- "$f" "$dst/seed-${rel//\//_}"
    done < <(find "$src" -type f -print0)
}

LOGDIR=fuzz/target/fuzz-logs
mkdir -p "$LOGDIR"
failed=()
summary=()
for t in "${TARGETS[@]}"; do
    corpus=fuzz/corpus/$t
    artifacts=fuzz/artifacts/$t
    mkdir -p "$artifacts"
    if [ ! -d "$corpus" ] || [ -z "$(ls -A "$corpus")" ]; then
        mkdir -p "$corpus"
        seed_from tests/data/sip "$corpus"
        seed_from "fuzz/seeds/$t" "$corpus"
        echo "== seeded $corpus with $(ls "$corpus" | wc -l) files"
    fi
    before=$(find "$artifacts" -type f | sort)
    log=$LOGDIR/$t.log
    echo "== fuzzing $t for ${DURATION}s (log: $log)"
    rc=0
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of arguments
    "$CARGO" fuzz run --sanitizer "$SANITIZER" "$t" "$corpus" -- \
        -max_total_time="$DURATION" -rss_limit_mb=2048 -max_len=65535 -timeout=10 \
        -dict="$ROOT/fuzz/sip.dict" -artifact_prefix="$ROOT/$artifacts/" \
        -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1 || rc=$?
    new=$(comm -13 <(printf '%s\n' "$before") <(find "$artifacts" -type f | sort) | grep -v '^$' || true)

    # libFuzzer writes every improved input but never deletes the ones it replaced: after a
    # clean run, shrink the corpus directory to a minimal set with the same coverage.
    if [ -z "$new" ] && [ "$rc" -eq 0 ]; then
        "$CARGO" fuzz cmin --sanitizer "$SANITIZER" "$t" "$corpus" >"$LOGDIR/$t.cmin.log" 2>&1 ||
            echo "warning: cargo fuzz cmin $t failed, see $LOGDIR/$t.cmin.log" >&2
    fi

    # libFuzzer's last status line: "#123 DONE cov: 1 ft: 2 corp: 3/4b ... exec/s: 5 rss: 6Mb"
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    field() { sed -nE "s|.*[ ]$1: ([^ ]+).*|\1|p" <<<"$last"; }
    runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -n 1)
    [ -n "$runs" ] || runs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")
    execs=$(field 'exec/s')
    [ -n "$execs" ] || execs=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$log" | tail -n 1)
    line=$(printf '%-10s runs: %s  exec/s: %s  corpus: %s (%s files)  cov: %s  ft: %s  rss: %s' \
        "$t" "${runs:-?}" "${execs:-?}" "$(field corp)" "$(ls "$corpus" | wc -l)" \
        "$(field cov)" "$(field ft)" "$(field rss)" | sed -E 's/: ( |$)/: ?\1/g')
    if [ -n "$new" ] || [ "$rc" -ne 0 ]; then
        failed+=("$t")
        line="$line  FAILED (exit $rc)"
        {
            echo "!! $t failed (full log: $log):"
            # The panic message (first one), libFuzzer's verdict, the artifacts.
            sed -n '/panicked at/,/^stack backtrace:\|^note: /p' "$log" | grep -v '^stack backtrace:\|^note: ' | head -n 20
            grep -E '^==[0-9]+== ERROR: libFuzzer|^SUMMARY: libFuzzer|^Error: ' "$log" | head -n 5
            for a in $new; do
                echo "!! artifact: $a ($(wc -c <"$a") bytes); reproduce with:"
                echo "     cargo fuzz run --sanitizer $SANITIZER $t $a"
            done
        } >&2
    fi
    echo "$line"
    summary+=("$line")
done

echo "== summary (${DURATION}s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "== FAILED: ${failed[*]}: see the artifacts above and fuzz/target/fuzz-logs/" >&2
    exit 1
fi
