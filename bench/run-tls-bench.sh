#!/usr/bin/env bash
# Builds tls_bench in Release (build-bench/), runs it once with JSON output and
# prints two tables:
#   1. full mutual-TLS 1.3 handshakes per second with the client key in the
#      token through our provider, through libp11's engine, and in software,
#      each as a ratio against software of the same key type, plus
#      provider / engine;
#   2. HttpsClient GETs per second with one kept-alive connection, with a new
#      connection per request (TLS session resumed) and with a new client per
#      request (full handshake each), as ratios reuse / this.
#
# Usage: bench/run-tls-bench.sh [Google Benchmark flags...]
#   bench/run-tls-bench.sh                              # 1 s per benchmark
#   bench/run-tls-bench.sh --benchmark_min_time=0.2     # quick check
#   bench/run-tls-bench.sh --benchmark_repetitions=3    # medians of 3
# Needs what scripts/install-deps.sh installs (cmake, libbenchmark-dev,
# softhsm2, libcurl, python3) and libengine-pkcs11-openssl for the engine
# figures. BENCH_BUILD_DIR overrides the build directory.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/build-and-run.sh"
bench_build_and_run tls_bench "$@"

PYTHONPATH="$(dirname "${BASH_SOURCE[0]}")" python3 - "$json" <<'PY' || status=1
import sys

from gbench_json import Rows, load, ratio

path = sys.argv[1]
data = load(path)

COUNTERS = ("server_full_hs", "server_resumed", "p11_calls", "connections")
run = Rows(data, COUNTERS, min_parts=3)
rows, order = run.rows, run.order
ips, counter, failed = run.ips, run.counter, run.failed

def kinds(group):
    seen = []
    for g, k, _ in order:
        if g == group and k not in seen:
            seen.append(k)
    return seen


ctx = data.get("context", {})
load = ctx.get("load_avg")
print()
print("tls_bench  {}  {} CPUs @ {} MHz{}".format(
    ctx.get("date", ""), ctx.get("num_cpus", "?"), ctx.get("mhz_per_cpu", "?"),
    "  load avg " + " ".join("%.2f" % x for x in load) if load else ""))
print("{}; server TCP_NODELAY {}; one in-process TlsTestServer (EC P-256 certificate, client certificate required)".format(
    ctx.get("openssl", "OpenSSL ?"), ctx.get("server_tcp_nodelay", "?")))

# 1. Handshakes.
print()
print("1. full mutual-TLS 1.3 handshakes per second, wall clock: new TCP connection + SSL_connect +")
print("   SSL_shutdown both ways, fresh SSL_CTX without session cache (no resumption). 'x software' = this /")
print("   the software key of the same type; client CPU time, server full/resumed handshakes and the custody's C_*")
print("   calls per handshake")
print()
labels = {"provider": "token, our provider", "engine": "token, libp11 engine", "software": "software key"}
fmt = "{:<9} {:<21} {:>8} {:>10} {:>14} {:>12} {:>7}"
header = ("key", "client key", "hs/s", "x software", "client CPU us", "full/resumed", "C_*/hs")
print(fmt.format(*header))
print(fmt.format(*("-" * len(h) for h in header)))
for kind in kinds("tls13_handshake"):
    base = ips(("tls13_handshake", kind, "software"))
    for variant in ("provider", "engine", "software"):
        key = ("tls13_handshake", kind, variant)
        if key not in rows:
            continue
        if failed(key):
            print(fmt.format(kind, labels[variant], "error", "", "", "", "") + "  " + rows[key]["error"])
            continue
        v = ips(key)
        fr = "{}/{}".format(counter(key, "server_full_hs"), counter(key, "server_resumed"))
        cpu = counter(key, "cpu_us", "%.0f")
        calls = counter(key, "p11_calls", "%.1f") if variant == "provider" else ""  # libp11 calls are not counted
        print(fmt.format(kind, labels[variant], "%.1f" % v if v else "-", ratio(v, base), cpu, fr, calls))
    p, e = ips(("tls13_handshake", kind, "provider")), ips(("tls13_handshake", kind, "engine"))
    print("{:<9} provider / engine = {}".format(kind, ratio(p, e)))

# 2. HttpsClient.
print()
print("2. HttpsClient GET https://localhost:PORT/ per second, token key through our provider.")
print("   'reuse / this' = the kept-alive rate / this rate; connections, server full/resumed handshakes per request")
print()
labels = {"reuse": "reuse (keep-alive)", "new_connection": "new connection/request",
          "new_client": "new client/request"}
notes = {"new_connection": "curl's shared session cache resumes: no token signature",
         "new_client": "full handshake per request, signed in the token"}
fmt = "{:<9} {:<23} {:>10} {:>12} {:>6} {:>12}  {}"
header = ("key", "mode", "req/s", "reuse / this", "conn", "full/resumed", "")
print(fmt.format(*header))
print(fmt.format(*("-" * len(h) for h in header)))
verdicts = []
for kind in kinds("https_get"):
    reuse = ips(("https_get", kind, "reuse"))
    for variant in ("reuse", "new_connection", "new_client"):
        key = ("https_get", kind, variant)
        if key not in rows:
            continue
        if failed(key):
            print(fmt.format(kind, labels[variant], "error", "", "", "", rows[key]["error"]))
            continue
        v = ips(key)
        fr = "{}/{}".format(counter(key, "server_full_hs", "%.3f"), counter(key, "server_resumed", "%.3f"))
        print(fmt.format(kind, labels[variant], "%.1f" % v if v else "-", ratio(reuse, v),
                         counter(key, "connections", "%.3f"), fr, notes.get(variant, "")))
    full = ips(("https_get", kind, "new_client"))
    if reuse and full:
        verdicts.append("{}: reuse / full-handshake-per-request = {:.1f} ({})".format(
            kind, reuse / full, "met" if reuse >= 10 * full else "NOT met"))
if verdicts:
    print()
    print("target, reuse >= 10x the handshake-per-request rate: " + "; ".join(verdicts))
print()
print("JSON: " + path)
PY

exit "$status"
