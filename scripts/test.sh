#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, builds with
# -Werror and runs every suite, runs the fuzz targets briefly (clang,
# libFuzzer), then builds again with AddressSanitizer +
# UndefinedBehaviorSanitizer and runs every suite once more.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
jobs=2

echo "== release build (-Werror) with benchmarks compiled =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCERTCUSTODY_WERROR=ON -DCERTCUSTODY_BENCHMARKS=ON -DCERTCUSTODY_FAULT_POINTS=ON >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")

echo "== fuzz targets, ${FUZZ_SECONDS:-20}s each =="
bash scripts/fuzz.sh

echo "== ASan + UBSan build =="
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCERTCUSTODY_SANITIZE=ON -DCERTCUSTODY_FAULT_POINTS=ON >/dev/null
cmake --build build-asan -j"$jobs"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# The release run's timings, so that ctest starts the longest tests first
# (the two cores stay busy to the end); the 60 s token-away, the
# 1,000-request soak and the SIGKILL crash points run in the release build
# only: under the sanitizers their short siblings (away_5s, the pipeline
# tests that kill a command or a daemon once) cover the same code.
mkdir -p build-asan/Testing/Temporary
cp -f build/Testing/Temporary/CTestCostData.txt build-asan/Testing/Temporary/ 2>/dev/null || true
(cd build-asan && ctest --output-on-failure -j"$jobs" -E 'away_60s|SoakThousandRequestsNoneLost|PipelineCrash')
