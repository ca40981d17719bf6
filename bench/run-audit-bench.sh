#!/usr/bin/env bash
# Builds audit_bench in Release (build-bench/), runs it once with JSON output
# and prints the table of docs/performance.md ("Audit log (issue 8)"):
# events appended per second unsigned (the baseline), with signed checkpoints
# (EC P-256 audit key and counter in SoftHSM, a checkpoint every 1000 records)
# and with an fdatasync per event, each as a ratio to the unsigned append with
# the same threads; the cost of one checkpoint and of its token parts; and
# verification in records per second against verify_chain.
#
# Usage: bench/run-audit-bench.sh [Google Benchmark flags...]
#   bench/run-audit-bench.sh --benchmark_repetitions=3   # as docs/performance.md
# BENCH_BUILD_DIR overrides the build directory; the logs go to $TMPDIR.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/build-and-run.sh"
bench_build_and_run audit_bench "$@"

PYTHONPATH="$(dirname "${BASH_SOURCE[0]}")" python3 - "$json" <<'PY' || status=1
import sys

from gbench_json import Rows, load, ratio

path = sys.argv[1]
data = load(path)
run = Rows(data, ("max_append_us", "checkpoints_per_s", "checkpoints"), min_parts=2)
ctx = data.get("context", {})
print()
print("audit_bench  {}  {} CPUs @ {} MHz; checkpoint every {} records".format(
    ctx.get("date", ""), ctx.get("num_cpus", "?"), ctx.get("mhz_per_cpu", "?"), ctx.get("checkpoint_every", "?")))
print()
fmt = "{:<34} {:>12} {:>10} {:>10} {:>13} {:>12}"
head = ("benchmark", "items/s", "x baseline", "us/item", "checkpoints/s", "max call us")
print(fmt.format(*head))
print(fmt.format(*("-" * len(h) for h in head)))
base = {t: run.ips(("BM_Append", "unsigned", t)) for t in ("threads:1", "threads:2")}
ckpt = run.ips(("BM_Checkpoint", "full", "threads:1"))
chain = run.ips(("BM_Verify", "chain", "threads:1"))
for key in run.order:
    if run.failed(key):
        print(fmt.format("/".join(key), "error", "", "", "", "") + "  " + run.rows[key]["error"])
        continue
    v = run.ips(key)
    if key[0] == "BM_Append":
        b = base.get(key[2])
    elif key[0] == "BM_Checkpoint":
        b = ckpt
    else:
        b = chain
    print(fmt.format("/".join(key), "%.1f" % v if v else "-", ratio(v, b), "%.1f" % (1e6 / v) if v else "-",
                     run.counter(key, "checkpoints_per_s", "%.1f"), run.counter(key, "max_append_us", "%.0f")))
signed = run.ips(("BM_Append", "signed", "threads:1"))
print()
print("target >= 20,000 events/s with signed checkpoints (1 thread): {} ({:.0f} events/s)".format(
    "met" if signed and signed >= 20000 else "NOT met", signed or 0))
print()
print("JSON: " + path)
PY

exit "$status"
