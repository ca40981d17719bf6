#!/usr/bin/env bash
# Builds custody_bench in Release (build-bench/), runs it once with JSON output
# and prints signatures per second for every variant, each as a ratio against
# the raw single-session PKCS#11 loop of the same run and algorithm.
#
# Usage: bench/run-custody-bench.sh [Google Benchmark flags...]
#   bench/run-custody-bench.sh                              # 1 s per benchmark
#   bench/run-custody-bench.sh --benchmark_min_time=0.2     # quick check
#   bench/run-custody-bench.sh --benchmark_repetitions=3    # medians of 3
# Needs what scripts/install-deps.sh installs (cmake, libbenchmark-dev,
# softhsm2, python3). BENCH_BUILD_DIR overrides the build directory.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/build-and-run.sh"
bench_build_and_run custody_bench "$@"

PYTHONPATH="$(dirname "${BASH_SOURCE[0]}")" python3 - "$json" <<'PY' || status=1
import statistics
import sys

from gbench_json import load, variant_of

path = sys.argv[1]
data = load(path)

rows = {}      # (algorithm, variant) -> {"ips": [...], "calls": [...], "error": str}
order = []
medians = {}   # from --benchmark_repetitions aggregates, preferred when present
for b in data.get("benchmarks", []):
    parts = b.get("run_name", b["name"]).split("/")
    key = (parts[0], variant_of(parts[1:]))
    if key not in rows:
        rows[key] = {"ips": [], "calls": [], "error": None}
        order.append(key)
    r = rows[key]
    if b.get("error_occurred"):
        r["error"] = b.get("error_message", "error")
        continue
    if b.get("run_type") == "aggregate":
        if b.get("aggregate_name") == "median" and "items_per_second" in b:
            medians[key] = b["items_per_second"]
        continue
    if "items_per_second" in b:
        r["ips"].append(b["items_per_second"])
    if "p11_calls_per_sign" in b:
        r["calls"].append(b["p11_calls_per_sign"])

def ips(key):
    if key in medians:
        return medians[key]
    v = rows.get(key, {}).get("ips")
    return statistics.median(v) if v else None

ctx = data.get("context", {})
load = ctx.get("load_avg")
print()
print("custody_bench  {}  {} CPUs @ {} MHz{}".format(
    ctx.get("date", ""), ctx.get("num_cpus", "?"), ctx.get("mhz_per_cpu", "?"),
    "  load avg " + " ".join("%.2f" % x for x in load) if load else ""))
print("signatures per second (wall clock); 'x raw' = this figure / single-thread raw of the same algorithm and run;")
print("'x raw@N' = this figure / raw with the same number of threads (one session per thread, no pool)")
print()
header = ("algorithm", "variant", "sig/s", "x raw", "x raw@N", "C_* calls/sig")
fmt = "{:<22} {:<16} {:>10} {:>7} {:>8} {:>14}"
print(fmt.format(*header))
print(fmt.format(*("-" * len(h) for h in header)))
for key in order:
    alg, variant = key
    r = rows[key]
    if r["error"] and not r["ips"] and key not in medians:
        print(fmt.format(alg, variant, "error", "", "", "") + "  " + r["error"])
        continue
    v = ips(key)
    base = ips((alg, "raw/threads:1")) or ips((alg, "raw"))
    ratio = "%.2f" % (v / base) if v and base else "-"
    threads = variant.rsplit("threads:", 1)[1] if "threads:" in variant else None
    same = ips((alg, "raw/threads:" + threads)) if threads else None
    same_ratio = "%.2f" % (v / same) if v and same else ""
    calls = "%.1f" % statistics.median(r["calls"]) if r["calls"] else ""
    print(fmt.format(alg, variant, "%.1f" % v if v else "-", ratio, same_ratio, calls))
print()
print("JSON: " + path)
PY

exit "$status"
