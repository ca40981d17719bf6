#!/usr/bin/env bash
# The issuance pipeline's benchmark (issue 7): the real daemon (`certcustody
# serve --workers 2`) on a private SoftHSM token against the CA simulator
# (DigiCert pki-ws over mutual TLS, RA key in the token), next to the
# crypto-only limit measured in the same run (bench/pipeline_crypto_bench:
# user key, CA signature, PKCS#12, token wraps and seals, no I/O). Prints:
#   1. end-to-end throughput for EC P-256 and RSA-2048 user keys and its ratio
#      to the crypto-only limit with as many threads as workers (target >= 0.80);
#   2. p50/p99 latency: service latency under paced arrivals at a fraction of
#      that throughput, split into enrolment and delivery; the batch's queueing
#      latency;
#   3. peak RSS (VmHWM) of the daemon with 10,000 queued requests vs 100;
#   4. fsync/fdatasync per request and their time (strace, seccomp-filtered);
#   5. the crypto per step; with --perf, 6. the daemon's CPU profile.
# docs/performance.md explains the figures.
#
# Usage: bench/run-pipeline-bench.sh [options of bench/pipeline_bench.py]
#   bench/run-pipeline-bench.sh --perf                # as docs/performance.md (about 5 minutes)
#   bench/run-pipeline-bench.sh                       # the same without the perf profile
#   bench/run-pipeline-bench.sh --ec 100 --rsa 10 --batch-runs 1 --queue 1000 --paced-seconds 5   # quick check
#   bench/run-pipeline-bench.sh --only throughput,paced --scan-ms 500   # one part, another scan interval
# Options: --ec N, --rsa N (batch sizes, default 600 and 150), --batch-runs R (2,
# interleaved), --also-workers W (one more EC batch with W workers, 4; 0: not),
# --paced-seconds S (20), --paced-load F (arrival rate / batch throughput, 0.6),
# --fast-scan-ms MS (paced again with this scan interval, 10; 0: not),
# --scan-ms MS (scan_interval_ms of every run, 100), --queue Q (10000),
# --queue-base Q (100), --intake-timeout S (240), --perf, --only PARTS
# (throughput, paced, rss, fsync, perf, detail).
# Needs what scripts/install-deps.sh installs (cmake, libbenchmark-dev,
# softhsm2, openssl, strace, linux-perf; it is run first) and python3. Builds certcustody,
# the CA simulator and pipeline_crypto_bench in Release in build-bench/
# (BENCH_BUILD_DIR overrides it). Works in a temporary directory under $TMPDIR
# (it must be on a real disk: the store and the spool fsync), removed at the
# end unless KEEP=1. Run it on an otherwise idle machine: the figures say how
# busy other processes kept the CPUs ("others").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
build="${BENCH_BUILD_DIR:-$root/build-bench}"
log="$build/pipeline-bench-build.log"
mkdir -p "$build"

echo "pipeline-bench: configuring and building in $build (log: $log)" >&2
bash "$root/scripts/install-deps.sh"  # strace and perf among them
if ! { cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCERTCUSTODY_BENCHMARKS=ON -DCERTCUSTODY_TESTS=OFF &&
       cmake --build "$build" -j2 --target certcustody certcustody-ca-simulator pipeline_crypto_bench; } \
     >"$log" 2>&1; then
  cat "$log" >&2
  echo "pipeline-bench: build failed" >&2
  exit 1
fi
bin="$build/certcustody"
sim_bin="$build/tests/support/certcustody-ca-simulator"
crypto="$build/bench/pipeline_crypto_bench"
command -v strace >/dev/null || { echo "pipeline-bench: strace is needed (apt-get install strace)" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/certcustody-pipeline-bench.XXXXXX")"
sim_pid="" driver_pid=""

# Stops what this run started (the driver stops its own children; the daemon
# only if the pid still is one of ours: its command line names our work
# directory), then removes the work directory.
cleanup() {
  local rc=$? pid
  if [ -n "$driver_pid" ] && kill -0 "$driver_pid" 2>/dev/null; then
    kill -TERM "$driver_pid" 2>/dev/null || true
    wait "$driver_pid" 2>/dev/null || true
  fi
  if [ -s "$work/daemon.pid" ]; then
    pid="$(cat "$work/daemon.pid")"
    if { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF "$work/"; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  if [ -n "$sim_pid" ]; then
    kill -TERM "$sim_pid" 2>/dev/null || true
    wait "$sim_pid" 2>/dev/null || true
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    echo "pipeline-bench: kept $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "pipeline-bench: load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs; work directory $work" >&2

# --- the HSM officer's set-up, as scripts/demo.sh does it ---------------------
setup_log="$work/setup.log"
step() { "$@" >>"$setup_log" 2>&1 || { cat "$setup_log" >&2; echo "pipeline-bench: set-up failed: $*" >&2; exit 1; }; }
label=pipeline-bench
step "$root/hsm-config/provision-softhsm.sh" --dir "$work/hsm" --label "$label" --certcustody "$bin"
# shellcheck disable=SC1091
source "$work/hsm/env"
officer=("$bin" --config "$work/hsm/certcustody.toml")
step "${officer[@]}" ra keygen --label ra --key-type ec-p256
step "${officer[@]}" ra csr --label ra --subject "CN=certcustody bench RA" --out "$work/ra.csr"
step openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/ra-ca.key" \
  -out "$work/ra-ca.pem" -subj "/CN=Bench RA Issuing CA" -days 2
step openssl x509 -req -in "$work/ra.csr" -CA "$work/ra-ca.pem" -CAkey "$work/ra-ca.key" -CAcreateserial \
  -copy_extensions copy -days 2 -out "$work/ra.pem"
step "${officer[@]}" ra import --label ra --cert "$work/ra.pem"
step "${officer[@]}" kek create --label pfx-kek
# The recipient: the device-management service's encryption certificate.
step openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/mdm.key" -out "$work/mdm.pem" -days 2 \
  -subj "/CN=Bench device-management service" -addext keyUsage=keyEncipherment
thumb="$(openssl x509 -in "$work/mdm.pem" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d :)"

# --- the CA: the simulator as a process, on a free loopback port ---------------
profile=2.16.840.1.113733.1.16.1.2.3.1.1.61904612
cat >"$work/sim-script.json" <<JSON
{"templates": {"$profile": {"supported": ["common_name", "mail"], "min_key_bits": 256}}}
JSON
"$sim_bin" --dir "$work/sim" --client-ca "$work/ra-ca.pem" --script "$work/sim-script.json" \
  >"$work/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 100); do grep -q '^listening on' "$work/sim.log" && break; sleep 0.1; done
grep -q '^listening on' "$work/sim.log" || { cat "$work/sim.log" >&2; echo "pipeline-bench: the simulator did not start" >&2; exit 1; }
fqdn="$(sed -n 's/^digicert_fqdn //p' "$work/sim.log")"

# --- the configuration; each scenario adds its own [state] dir -----------------
{
  sed '/^\[state\]/,$d' "$work/hsm/certcustody.toml"
  cat <<TOML
[ra]
key = "pkcs11:token=$label;object=ra"

[ca.digicert]
type = "digicert"
fqdn = "$fqdn"
ca_name = "Symantec"
trust_anchor = "$work/sim/tls-ca.pem"

[pipeline]
kek = "pfx-kek"
recipients = ["$work/mdm.pem"]
workers = 2
scan_interval_ms = 100

[profile.ec]
ca = "digicert"
template = "$profile"
subject = "cn"
san = ["email"]
key_type = "ec-p256"
ekus = ["clientAuth"]

[profile.rsa]
ca = "digicert"
template = "$profile"
subject = "cn"
san = ["email"]
key_type = "rsa2048"
ekus = ["clientAuth"]
TOML
} >"$work/base.toml"

results="$build/pipeline-bench.json"
# In the background, so that a signal to this script stops it at once (trap).
python3 "$here/pipeline_bench.py" --bin "$bin" --crypto-bench "$crypto" --work "$work" \
  --base-config "$work/base.toml" --recipient "sha256:$thumb" --sim-pid "$sim_pid" --results "$results" \
  --workers 2 --scan-ms 100 "$@" &
driver_pid=$!
status=0
wait "$driver_pid" || status=$?
driver_pid=""
[ "$status" -eq 0 ] || exit "$status"
echo
echo "JSON: $results"
