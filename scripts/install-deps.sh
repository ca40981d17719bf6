#!/usr/bin/env bash
# Installs every Debian 12 package the build, the tests, the benchmarks and the
# demo need. Idempotent and quiet: packages already present are not touched.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake pkg-config clang
  # libraries linked by certcustody
  libssl-dev openssl libp11-kit-dev libtss2-dev libcurl4-openssl-dev libxml2-dev
  libtomlplusplus-dev nlohmann-json3-dev libsqlite3-dev libcli11-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev strace linux-perf
  libicu-dev  # ICU: the oracle the policy's Unicode character table is tested against
  systemd     # systemd-analyze checks the unit documented in the admin guide
  # real peers used by tests and the demo
  softhsm2 opensc p11-kit libengine-pkcs11-openssl swtpm swtpm-tools tpm2-tools tpm2-openssl
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq >/dev/null
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
