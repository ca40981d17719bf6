#!/usr/bin/env bash
# Builds ca_bench in Release (build-bench/), runs it once with JSON output and
# prints two tables:
#   1. enrolments per second through ca::make_ca_client against the in-process
#      CA simulator, per dialect (DigiCert pki-ws, Microsoft MS-WSTEP) and RA
#      key (token through our provider, software), with the ratio
#      token / software per dialect (≈ 1 when the connection is reused: the
#      token signs only the first handshake) and two threads / one;
#   2. the cost of parsing one issued answer (soap::parse_response + the
#      dialect's enrollment_result) as a fraction of one enrolment.
#
# Usage: bench/run-ca-bench.sh [Google Benchmark flags...]
#   bench/run-ca-bench.sh                              # 1 s per benchmark
#   bench/run-ca-bench.sh --benchmark_min_time=0.2     # quick check
#   bench/run-ca-bench.sh --benchmark_repetitions=3    # medians of 3
#   bench/run-ca-bench.sh --benchmark_repetitions=9 --benchmark_min_time=1 \
#       --benchmark_enable_random_interleaving=true    # as docs/performance.md: repetitions
#                                                      # shuffled, so drift hits every row alike
# Needs what scripts/install-deps.sh installs (cmake, libbenchmark-dev,
# softhsm2, libcurl, libxml2, python3). BENCH_BUILD_DIR overrides the build
# directory.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/build-and-run.sh"
bench_build_and_run ca_bench "$@"

PYTHONPATH="$(dirname "${BASH_SOURCE[0]}")" python3 - "$json" <<'PY' || status=1
import sys

from gbench_json import Rows, load, ratio

path = sys.argv[1]
data = load(path)

COUNTERS = ("issued", "requests", "connections", "p11_calls", "answer_bytes")
run = Rows(data, COUNTERS, min_parts=2)
rows, order = run.rows, run.order
ips, counter, failed = run.ips, run.counter, run.failed

def dialects(bench):
    """The dialects measured by `bench`, DigiCert first (the run order may be shuffled)."""
    seen = []
    for g, d, _ in order:
        if g == bench and d not in seen:
            seen.append(d)
    known = ["digicert", "mscep"]
    return sorted(seen, key=lambda d: (known.index(d) if d in known else len(known), d))

ctx = data.get("context", {})
load = ctx.get("load_avg")
print()
print("ca_bench  {}  {} CPUs @ {} MHz{}".format(
    ctx.get("date", ""), ctx.get("num_cpus", "?"), ctx.get("mhz_per_cpu", "?"),
    "  load avg " + " ".join("%.2f" % x for x in load) if load else ""))
print("{}; RA key {}; user CSRs: {}; one in-process CaSimulator (HTTPS, client certificate required)".format(
    ctx.get("openssl", "OpenSSL ?"), ctx.get("ra_key", "?"), ctx.get("user_csrs", "?")))

# 1. Enrolments.
print()
print("1. enrolments per second through ca::make_ca_client (retries + breaker), wall clock, a new client per")
print("   run (its first handshake timed). 'x software' = this / the software RA key of the same dialect;")
print("   us/enrol = 1 / rate; client CPU = the benchmark thread's CPU per enrolment (the simulator's is not in it);")
print("   per enrolment: certificates issued, HTTP requests, TLS connections accepted, the custody's C_* calls")
print()
labels = {"token": "token, our provider", "software": "software key", "token/threads:2": "token, 2 threads"}
fmt = "{:<9} {:<20} {:>9} {:>10} {:>9} {:>11} {:>7} {:>5} {:>7} {:>7}"
header = ("dialect", "RA key", "enrol/s", "x software", "us/enrol", "client CPU", "issued", "req", "conn", "C_*")
print(fmt.format(*header))
print(fmt.format(*("-" * len(h) for h in header)))
summary = []
enrol_rate = {}
for d in dialects("BM_Enroll"):
    base = ips(("BM_Enroll", d, "software"))
    for variant in ("token", "software", "token/threads:2"):
        key = ("BM_Enroll", d, variant)
        if key not in rows:
            continue
        if failed(key):
            print(fmt.format(d, labels[variant], "error", "", "", "", "", "", "", "") + "  " + rows[key]["error"])
            continue
        v = ips(key)
        enrol_rate[(d, variant)] = v
        print(fmt.format(d, labels[variant], "%.1f" % v if v else "-",
                         ratio(v, base) if variant != "token/threads:2" else "",
                         "%.0f" % (1e6 / v) if v else "-",
                         counter(key, "cpu_us", "%.0f") if "threads:" not in variant else "",  # not per thread
                         counter(key, "issued"), counter(key, "requests"), counter(key, "connections", "%.4f"),
                         counter(key, "p11_calls", "%.4f")))
    t, s = enrol_rate.get((d, "token")), enrol_rate.get((d, "software"))
    summary.append("{}: token / software = {}".format(d, ratio(t, s)))
    t2 = enrol_rate.get((d, "token/threads:2"))
    if t2:
        summary.append("{}: 2 threads / 1 thread (token) = {}".format(d, ratio(t2, t)))
print()
for line in summary:
    print(line)

# 2. Parsing.
print()
print("2. parsing one issued answer, captured from the simulator: soap::parse_response + the dialect's")
print("   enrollment_result (certificate and PKCS#7 chain decoded). 'of an enrolment' = parse time / the time")
print("   of one enrolment of the same dialect with the token RA key")
print()
fmt = "{:<9} {:>9} {:>9} {:>13} {:>16}"
header = ("dialect", "parse/s", "us/parse", "answer bytes", "of an enrolment")
print(fmt.format(*header))
print(fmt.format(*("-" * len(h) for h in header)))
for d in dialects("BM_ParseIssuedResponse"):
    key = ("BM_ParseIssuedResponse", d, "")
    if failed(key):
        print(fmt.format(d, "error", "", "", "") + "  " + rows[key]["error"])
        continue
    v = ips(key)
    e = enrol_rate.get((d, "token"))
    share = "%.1f %%" % (100.0 * e / v) if v and e else "-"
    print(fmt.format(d, "%.0f" % v if v else "-", "%.1f" % (1e6 / v) if v else "-",
                     counter(key, "answer_bytes", "%.0f"), share))
print()
print("JSON: " + path)
PY

exit "$status"
