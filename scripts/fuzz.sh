#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (build-fuzz/) and runs each for
# FUZZ_SECONDS (default 20) from its seed corpus. New inputs go to a scratch
# copy, never into the repository. Exits non-zero on the first finding.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
seconds=${FUZZ_SECONDS:-20}

CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCERTCUSTODY_FUZZ=ON \
  -DCERTCUSTODY_TESTS=OFF >/dev/null
cmake --build build-fuzz -j2 --target subject_name_fuzz config_fuzz policy_fuzz soap_response_fuzz audit_log_fuzz \
  tss2_key_file_fuzz

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# The policy engine and the CA answer parser get the longest runs: one judges
# every request's attributes, the other reads what comes over the network.
declare -A budget=([subject_name]=$seconds [config]=$seconds [policy]=$((seconds * 3)) [soap_response]=$((seconds * 3))
  [audit_log]=$seconds [tss2_key_file]=$seconds)
declare -A max_len=([subject_name]=4096 [config]=4096 [policy]=4096 [soap_response]=16384 [audit_log]=16384 [tss2_key_file]=8192)
# Two at a time (the machine has two cores); a pair is waited for before the
# next starts, and the first failure stops the run.
fuzz_one() {
  local target=$1 status=0
  mkdir -p "$scratch/$target"
  cp tests/fuzz/corpus/$target/* "$scratch/$target/"
  (cd "$scratch" && "$root/build-fuzz/tests/fuzz/${target}_fuzz" -max_total_time="${budget[$target]}" -max_len="${max_len[$target]}" \
     -print_final_stats=1 "$scratch/$target" >"$scratch/$target.log" 2>&1) || status=$?
  return "$status"
}
report() {
  local target=$1 status=$2
  echo "== fuzzed $target for ${budget[$target]}s"
  tail -n 4 "$scratch/$target.log"
  if [ "$status" -ne 0 ]; then
    grep -E "ERROR|SUMMARY|Test unit written" "$scratch/$target.log" >&2 || tail -n 40 "$scratch/$target.log" >&2
    cp "$scratch"/crash-* "$scratch"/leak-* "$scratch"/timeout-* . 2>/dev/null || true
    echo "fuzz: $target failed (exit $status); the failing input was copied here" >&2
    exit 1
  fi
}
for pair in "subject_name config" "policy soap_response" "audit_log tss2_key_file"; do
  read -r first second <<<"$pair"
  fuzz_one "$first" & a=$!
  fuzz_one "$second" & b=$!
  sa=0; sb=0
  wait "$a" || sa=$?
  wait "$b" || sb=$?
  report "$first" "$sa"
  report "$second" "$sb"
done
