#!/usr/bin/env bash
# HSM-officer provisioning of a SoftHSM token for certcustody.
#
#   hsm-config/provision-softhsm.sh --dir DIR [--label certcustody] [--certcustody PATH]
#
# Creates in DIR (mode 0700):
#   softhsm2.conf     SoftHSM configuration (token directory DIR/tokens)
#   so.pin, user.pin  random Security Officer and user PINs, mode 0600
#   certcustody.toml  a connector configuration using that token
#   env               `export SOFTHSM2_CONF=...`, to source before certcustody
# and initialises the token through `certcustody token init`, which reads the
# PINs from those files: no PIN ever appears on a command line.
# Re-running it on the same DIR changes nothing and exits 0.
set -euo pipefail

dir="" label="certcustody" bin=""
while (($#)); do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --label) label="$2"; shift 2 ;;
    --certcustody) bin="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "provision-softhsm: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$dir" ] || { echo "provision-softhsm: --dir DIR is required" >&2; exit 2; }
if [ -z "$bin" ]; then bin=$(command -v certcustody || true); fi
[ -x "$bin" ] || { echo "provision-softhsm: certcustody executable not found; pass --certcustody PATH" >&2; exit 2; }
module=/usr/lib/softhsm/libsofthsm2.so
[ -e "$module" ] || { echo "provision-softhsm: $module missing; install the softhsm2 package" >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
umask 077
mkdir -p "$dir/tokens" "$dir/state"
dir=$(cd "$dir" && pwd)

new_pin() {  # 24 hex characters from the kernel CSPRNG, written straight to the file
  [ -s "$1" ] || od -An -N12 -tx1 /dev/urandom | tr -d ' \n' > "$1"
  chmod 600 "$1"
}
new_pin "$dir/so.pin"
new_pin "$dir/user.pin"

[ -f "$dir/softhsm2.conf" ] || sed "s|@TOKEN_DIR@|$dir/tokens|" "$here/softhsm2.conf.template" > "$dir/softhsm2.conf"
printf 'export SOFTHSM2_CONF=%q\n' "$dir/softhsm2.conf" > "$dir/env"
if [ ! -f "$dir/certcustody.toml" ]; then
  cat > "$dir/certcustody.toml" <<TOML
[custody]
backend  = "pkcs11"
module   = "$module"
token    = "pkcs11:token=$label"
pin_file = "$dir/user.pin"

[state]
dir = "$dir/state"
TOML
fi

export SOFTHSM2_CONF="$dir/softhsm2.conf"
if out=$("$bin" --config "$dir/certcustody.toml" token init --label "$label" --so-pin-file "$dir/so.pin" 2>&1); then
  echo "$out"
elif grep -q 'custody.token_exists' <<<"$out"; then
  echo "token '$label' already initialised in $dir/tokens; nothing to do"
else
  echo "$out" >&2
  exit 1
fi
echo "configuration: $dir/certcustody.toml   (source $dir/env first)"
