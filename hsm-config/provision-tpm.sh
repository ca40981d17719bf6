#!/usr/bin/env bash
# Officer provisioning of certcustody on a TPM 2.0 (docs/tpm.md).
#
#   hsm-config/provision-tpm.sh --dir DIR [--tcti device:/dev/tpmrm0] [--srk-type TYPE] [--certcustody PATH]
#   hsm-config/provision-tpm.sh --dir DIR --swtpm [--srk-type TYPE] [--certcustody PATH]
#
# Creates in DIR (mode 0700):
#   tpm.auth          a random auth value for the keys certcustody creates, mode 0600
#   certcustody.toml  a connector configuration using that TPM (keys in DIR/state/tpm)
#   env               what to source before certcustody (CERTCUSTODY_CONFIG; with
#                     --swtpm also TPM2TOOLS_TCTI for tpm2-tools)
# then runs `certcustody token info`, which creates the storage key (TCG SRK
# template of --srk-type: rsa2048, the default, ec-p256 or ec-p384) at
# 0x81000001 if the TPM has none and shows the TPM's state, and pins that
# key's name in the configuration (srk_name, docs/tpm.md): run it where the
# path to the TPM can be trusted.
# --swtpm starts a private software TPM under DIR/swtpm on a free loopback
# port (test and demo hosts only: its state is a file, not a chip); stop it
# with `kill $(cat DIR/swtpm/pid)`.
# Re-running it on the same DIR keeps the auth value and the configuration.
set -euo pipefail

dir="" tcti="device:/dev/tpmrm0" bin="" swtpm=0 srk_type=""
while (($#)); do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --tcti) tcti="$2"; shift 2 ;;
    --swtpm) swtpm=1; shift ;;
    --srk-type) srk_type="$2"; shift 2 ;;
    --certcustody) bin="$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "provision-tpm: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$dir" ] || { echo "provision-tpm: --dir DIR is required" >&2; exit 2; }
if [ -z "$bin" ]; then bin=$(command -v certcustody || true); fi
[ -x "$bin" ] || { echo "provision-tpm: certcustody executable not found; pass --certcustody PATH" >&2; exit 2; }

umask 077
mkdir -p "$dir/state"
dir=$(cd "$dir" && pwd)

if ((swtpm)); then
  command -v swtpm >/dev/null || { echo "provision-tpm: swtpm missing; install the swtpm package" >&2; exit 2; }
  mkdir -p "$dir/swtpm/state"
  if [ -f "$dir/swtpm/pid" ] && kill -0 "$(cat "$dir/swtpm/pid")" 2>/dev/null; then
    port=$(cat "$dir/swtpm/port")
  else
    # A free pair of loopback ports: the TPM and its control channel.
    port=$(python3 - <<'PY'
import random, socket
for _ in range(200):
    p = random.randint(20000, 32000)  # below the ephemeral range
    try:
        socks = [socket.socket() for _ in range(2)]
        for i, s in enumerate(socks):
            s.bind(("127.0.0.1", p + i))
        for s in socks:
            s.close()
        print(p)
        break
    except OSError:
        pass
PY
)
    swtpm socket --tpm2 --server "type=tcp,port=$port,bindaddr=127.0.0.1" \
      --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" --tpmstate "dir=$dir/swtpm/state" \
      --flags not-need-init,startup-clear --daemon --pid "file=$dir/swtpm/pid"
    echo "$port" > "$dir/swtpm/port"
  fi
  tcti="swtpm:host=127.0.0.1,port=$port"
elif [ "${tcti#device:}" != "$tcti" ] && [ ! -e "${tcti#device:}" ]; then
  echo "provision-tpm: ${tcti#device:} does not exist: this host shows no TPM (or pass --tcti)" >&2
  exit 2
fi

# 32 characters from the kernel CSPRNG, written straight to the file.
[ -s "$dir/tpm.auth" ] || od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > "$dir/tpm.auth"
chmod 600 "$dir/tpm.auth"

if [ -f "$dir/certcustody.toml" ] && ((swtpm)); then
  # The simulator may have come back on another port: only the tcti changes.
  sed -i "s|^tcti .*|tcti      = \"$tcti\"|" "$dir/certcustody.toml"
elif [ ! -f "$dir/certcustody.toml" ]; then
  cat > "$dir/certcustody.toml" <<TOML
[custody]
backend   = "tpm2"
tcti      = "$tcti"
auth_file = "$dir/tpm.auth"
key_dir   = "$dir/state/tpm"

[state]
dir = "$dir/state"
TOML
  [ -z "$srk_type" ] || sed -i "/^key_dir /a srk_type  = \"$srk_type\"" "$dir/certcustody.toml"
fi
{
  printf 'export CERTCUSTODY_CONFIG=%q\n' "$dir/certcustody.toml"
  ((swtpm)) && printf 'export TPM2TOOLS_TCTI=%q\n' "$tcti"
  true
} > "$dir/env"

info=$("$bin" --config "$dir/certcustody.toml" token info)
printf '%s\n' "$info"
if ! grep -q '^srk_name' "$dir/certcustody.toml"; then
  # token info prints the line to add while the SRK is not pinned.
  name=$(printf '%s\n' "$info" | sed -n 's/^  srk_name = "\([0-9a-f]*\)"$/\1/p')
  [ -n "$name" ] || { echo "provision-tpm: token info showed no storage key name to pin" >&2; exit 1; }
  sed -i "/^\[custody\]/a srk_name  = \"$name\"" "$dir/certcustody.toml"
  echo "pinned the storage key: srk_name = \"$name\" (check it against \`tpm2_readpublic -c 0x81000001\` on a trusted path)"
fi
echo "configuration: $dir/certcustody.toml   (source $dir/env first)"
