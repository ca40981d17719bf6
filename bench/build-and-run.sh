# Sourced by the bench/run-*.sh scripts: builds one benchmark target in
# Release (build-bench/, or $BENCH_BUILD_DIR) and runs it once with JSON
# output. Sets $json to the output file and $status to its exit status.
#   bench_build_and_run TARGET [Google Benchmark flags...]
bench_build_and_run() {
  local target=$1
  shift
  local root build log
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  build="${BENCH_BUILD_DIR:-$root/build-bench}"
  json="$build/$target.json"
  log="$build/$target-build.log"
  mkdir -p "$build"
  echo "$target: configuring and building in $build (log: $log)" >&2
  if ! { cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release \
           -DCERTCUSTODY_BENCHMARKS=ON -DCERTCUSTODY_TESTS=OFF &&
         cmake --build "$build" --target "$target" -j2; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "$target: build failed" >&2
    exit 1
  fi
  echo "$target: running" >&2
  status=0
  # A trace would time the tracing, not the token.
  env -u CERTCUSTODY_P11_TRACE "$build/bench/$target" --benchmark_format=json "$@" >"$json" || status=$?
  if [ "$status" -ne 0 ]; then echo "$target: exited with status $status" >&2; fi
}
