#!/usr/bin/env bash
# Builds and runs every test of lockstep, the way CI does:
#   1. default preset: all tests (unit, concurrency, multiproc, breakit; gpu
#      tests skip themselves without a CUDA device)
#   2. asan preset (ASan+UBSan): the unit tests
#   3. tsan preset: the concurrency tests
#   4. fuzz preset (clang-14 libFuzzer): the frame decoder and the pickle reader,
#      each for a bounded time
#   5. the operator manual's links to code and tests
# Each step is bounded (ctest timeouts; the fuzzer's -max_total_time).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${LOCKSTEP_JOBS:-$(nproc)}"
fuzz_seconds="${LOCKSTEP_FUZZ_SECONDS:-60}"

step() { printf '\n=== %s ===\n' "$*"; }

# Builds only the test binaries that carry `label` (test name == target name).
build_labelled() {
  local preset="$1" label="$2"
  cmake --preset "$preset" >/dev/null
  mapfile -t targets < <(ctest --test-dir "build/$preset" -N -L "$label" | awk '/Test +#/ {print $3}')
  if ((${#targets[@]} == 0)); then
    echo "no tests labelled $label"; return 1
  fi
  cmake --build "build/$preset" -j "$jobs" --target lockstep "${targets[@]}"
}

step "default: build and run all tests"
cmake --preset default >/dev/null
cmake --build --preset default -j "$jobs"
ctest --preset default -j "$jobs"

step "asan+ubsan: unit tests"
build_labelled asan unit
ctest --preset asan -j "$jobs"

step "tsan: concurrency tests"
build_labelled tsan concurrency
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ctest --preset tsan -j "$jobs"

step "fuzz: frame decoder for ${fuzz_seconds}s, flight-recorder pickle reader for $((fuzz_seconds / 2))s"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$jobs" --target lockstep_fuzz_decoder lockstep_fuzz_pickle
corpus_work="$(mktemp -d)"
cp -r tests/fuzz/corpus/decoder/. "$corpus_work/"
"build/fuzz/tests/fuzz/lockstep_fuzz_decoder" -max_total_time="$fuzz_seconds" \
  -rss_limit_mb=2048 "$corpus_work" tests/fuzz/corpus/decoder
rm -rf "$corpus_work"
corpus_work="$(mktemp -d)"
cp tests/doctor/fixtures/pickle/*.pkl "$corpus_work/"
for dump in tests/doctor/fixtures/torch_fr/real/*/nccl_trace_rank_*; do  # torch 2.11's own dumps
  cp "$dump" "$corpus_work/real-$(basename "$(dirname "$dump")")-$(basename "$dump")"
done
"build/fuzz/tests/fuzz/lockstep_fuzz_pickle" -max_total_time="$((fuzz_seconds / 2))" -rss_limit_mb=2048 "$corpus_work"
rm -rf "$corpus_work"

step "manual: rule → code → test links, commands against the CLI, and the checker's own mutation test"
python3 scripts/check_manual_links.py --cli build/default/lockstep
python3 scripts/check_manual_links.py --cli build/default/lockstep --self-test

echo
echo "test_all: every step passed"
