#!/usr/bin/env bash
# The README's first command: installs everything, builds certcustody, and
# walks the HSM officer's path end to end on a private SoftHSM token:
#   token -> RA key (in the token) -> CSR signed by the token -> a local
#   stand-in CA issues the RA certificate -> import (thumbprints) -> PFX
#   encryption key -> token inventory -> mutual TLS signed in the token ->
#   a CA (the test CA simulator, DigiCert dialect) enrols a user CSR ->
#   the issuance pipeline: a PFX request submitted, `serve` issues it and
#   writes the PKCS#12 enveloped for its recipient, which opens it with
#   `openssl cms -decrypt` and `openssl pkcs12` -> redelivery -> the signed
#   audit log verified with the audit public key alone.
# With --tpm the same path runs on a TPM 2.0 instead (a private swtpm started
# for the demo): keys are TPM key blobs under the TPM's storage key.
# Everything lives under build/demo (re-created on each run).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tpm=0
case "${1:-}" in
  --tpm) tpm=1 ;;
  "") ;;
  *) echo "usage: scripts/demo.sh [--tpm]" >&2; exit 2 ;;
esac

bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j2 --target certcustody certcustody-provider certcustody-ca-simulator >/dev/null
bin=$root/build/certcustody

demo=$root/build/demo
rm -rf "$demo"
mkdir -p "$demo"
step() { printf '\n== %s\n' "$*"; }
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -f "$demo/hsm/swtpm/pid" ]; then kill "$(cat "$demo/hsm/swtpm/pid")" 2>/dev/null || true; fi
}
trap cleanup EXIT

if ((tpm)); then
  step "Officer provisions the TPM: a private swtpm, a random key auth value in a 0600 file, the SRK"
  hsm-config/provision-tpm.sh --dir "$demo/hsm" --swtpm --certcustody "$bin"
  ra_uri="tpm2:object=ra"
  ra_cli_uri="tpm2:object=ra"
else
  step "HSM officer provisions a SoftHSM token (random PINs in 0600 files, never on a command line)"
  hsm-config/provision-softhsm.sh --dir "$demo/hsm" --label certcustody --certcustody "$bin"
  ra_uri="pkcs11:token=certcustody;object=ra"
  ra_cli_uri="pkcs11:token=certcustody;object=ra;type=private"
fi
# shellcheck disable=SC1091
source "$demo/hsm/env"
export CERTCUSTODY_CONFIG=$demo/hsm/certcustody.toml

step "RA key pair generated inside the token"
"$bin" ra keygen --label ra --key-type rsa2048

step "CSR signed inside the token (keyUsage digitalSignature+keyEncipherment, EKU clientAuth)"
"$bin" ra csr --label ra --subject "CN=certcustody RA,O=Demo" --out "$demo/ra.csr"
openssl req -in "$demo/ra.csr" -verify -noout -subject

step "A local stand-in for the CA portal issues the RA certificate"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$demo/ca.key" \
  -out "$demo/ca.pem" -subj "/CN=Demo RA Issuing CA" -days 30 2>/dev/null
openssl x509 -req -in "$demo/ra.csr" -CA "$demo/ca.pem" -CAkey "$demo/ca.key" -CAcreateserial \
  -copy_extensions copy -days 30 -out "$demo/ra.pem" 2>/dev/null

step "Import: the certificate must match the token key; thumbprints for the configuration"
"$bin" ra import --label ra --cert "$demo/ra.pem"
printf 'openssl says:      %s\n' "$(openssl x509 -in "$demo/ra.pem" -noout -fingerprint -sha1)"

step "A certificate for some other key is refused"
openssl req -new -newkey rsa:2048 -nodes -keyout "$demo/other.key" -out "$demo/other.csr" -subj "/CN=other" 2>/dev/null
openssl x509 -req -in "$demo/other.csr" -CA "$demo/ca.pem" -CAkey "$demo/ca.key" -days 1 -out "$demo/other.pem" 2>/dev/null
if "$bin" ra import --label ra --cert "$demo/other.pem"; then echo "UNEXPECTED: accepted" >&2; exit 1; fi

step "PFX encryption key (AES-256) generated inside the token"
"$bin" kek create --label pfx-kek

step "Audit key generated inside the token; its public key goes to the auditors"
"$bin" audit keygen --label audit --pubkey-out "$demo/audit.pub.pem"

step "Token inventory (no secrets)"
"$bin" token info

step "Mutual TLS signed inside the token: a local HTTPS server that demands the RA certificate"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$demo/srv.key" -out "$demo/srv.pem" \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost" -days 2 2>/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
openssl s_server -accept "127.0.0.1:$port" -cert "$demo/srv.pem" -key "$demo/srv.key" -CAfile "$demo/ca.pem" \
  -Verify 1 -verify_return_error -naccept 2 -www >"$demo/s_server.log" 2>&1 &
server=$!
pids+=("$server")
for _ in $(seq 50); do grep -q ACCEPT "$demo/s_server.log" && break; sleep 0.1; done
cat >>"$CERTCUSTODY_CONFIG" <<TOML

[ra]
key = "$ra_uri"

[ca.demo]
url = "https://localhost:$port/"
trust_anchor = "$demo/srv.pem"
connect_timeout_ms = 5000
TOML
"$bin" ca ping --ca demo
echo "The same key from the openssl command line, through certcustody-provider.so:"
echo Q | OPENSSL_MODULES="$root/build/providers" openssl s_client -provider certcustody -provider default \
  -connect "127.0.0.1:$port" -key "$ra_cli_uri" -cert "$demo/ra.pem" \
  -CAfile "$demo/srv.pem" -verify_return_error 2>/dev/null | grep -E '^(New|Verification)'
wait "$server" || true
grep -E 'depth=0' "$demo/s_server.log" | sed 's/^/server saw client certificate: /'

step "A CA over its web services (the CA simulator speaking DigiCert pki-ws), RA authenticated by the token"
profile=2.16.840.1.113733.1.16.1.2.3.1.1.61904612
cat >"$demo/sim-script.json" <<JSON
{"templates": {"$profile": {"supported": ["common_name", "mail"], "key_algorithm": "EC", "min_key_bits": 256}}}
JSON
"$root/build/tests/support/certcustody-ca-simulator" --dir "$demo/sim" --client-ca "$demo/ca.pem" \
  --script "$demo/sim-script.json" >"$demo/sim.log" 2>&1 &
sim=$!
pids+=("$sim")
for _ in $(seq 100); do grep -q '^listening on' "$demo/sim.log" && break; sleep 0.1; done
fqdn=$(sed -n 's/^listening on //p' "$demo/sim.log")
cat >>"$CERTCUSTODY_CONFIG" <<TOML

[ca.digicert]
type = "digicert"
fqdn = "$fqdn"
ca_name = "Symantec"
trust_anchor = "$demo/sim/tls-ca.pem"
TOML
"$bin" ca policy --ca digicert --template "$profile"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$demo/user.key" -out "$demo/user.csr" \
  -subj "/CN=IWUser0" -addext "subjectAltName=email:IWUser0@contoso.example" 2>/dev/null
"$bin" ca enroll --ca digicert --template "$profile" --csr "$demo/user.csr" --id demo-0001 \
  --attribute common_name=IWUser0 --attribute mail=IWUser0@contoso.example --out "$demo/user.pem"
echo "The same transaction id again: the CA answers with the same certificate (no second issuance)"
"$bin" ca enroll --ca digicert --template "$profile" --csr "$demo/user.csr" --id demo-0001 --out "$demo/user-again.pem"
cmp -s "$demo/user.pem" "$demo/user-again.pem" && echo "same certificate: yes"
openssl x509 -in "$demo/user.pem" -noout -subject -ext subjectAltName

step "The issuance pipeline: a PFX request in, a PKCS#12 enveloped for its recipient out"
# The recipient: the device-management service's encryption certificate (its
# key stays with the service). Requests name it by SHA-256 thumbprint.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$demo/mdm.key" -out "$demo/mdm.pem" -days 30 \
  -subj "/CN=Demo device-management service" -addext keyUsage=keyEncipherment 2>/dev/null
cat >>"$CERTCUSTODY_CONFIG" <<TOML

[pipeline]
kek = "pfx-kek"                 # the token's PFX encryption key (kek create above)
recipients = ["$demo/mdm.pem"]
scan_interval_ms = 100

[profile.users]
ca = "digicert"
template = "$profile"
subject = "cn"
san = ["email"]
key_type = "ec-p256"
ekus = ["clientAuth"]
TOML
thumb=$(openssl x509 -in "$demo/mdm.pem" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d :)
cat >"$demo/request.json" <<JSON
{"version": 2, "id": "demo-pfx-0001", "profile": "users", "recipient": "sha256:$thumb",
 "attributes": {"common_name": "IWUser0", "email": "IWUser0@contoso.example"}}
JSON
"$bin" submit "$demo/request.json"
"$bin" serve --until-idle
"$bin" status demo-pfx-0001
out=$demo/hsm/state/requests/outgoing
ls -l "$out"
echo "The recipient opens the envelopes with its own key (openssl only):"
(umask 077 && openssl cms -decrypt -inform DER -in "$out/demo-pfx-0001.password.p7m" -recip "$demo/mdm.pem" \
  -inkey "$demo/mdm.key" -out "$demo/pfx-password")
openssl cms -decrypt -inform DER -in "$out/demo-pfx-0001.pfx.p7m" -recip "$demo/mdm.pem" -inkey "$demo/mdm.key" \
  -out "$demo/user.p12"
openssl pkcs12 -in "$demo/user.p12" -passin "file:$demo/pfx-password" -info -noout 2>&1 | grep -E 'MAC|PBES2|Shrouded|Certificate bag'
openssl pkcs12 -in "$demo/user.p12" -passin "file:$demo/pfx-password" -nokeys -clcerts |
  openssl x509 -noout -subject -ext subjectAltName
openssl pkcs12 -in "$demo/user.p12" -passin "file:$demo/pfx-password" -nocerts -nodes |
  openssl pkey -noout -text | head -n 1

step "Redelivery: the same certificate again, no CA request"
"$bin" redeliver demo-pfx-0001
openssl cms -decrypt -inform DER -in "$out/demo-pfx-0001.pfx.p7m" -recip "$demo/mdm.pem" -inkey "$demo/mdm.key" \
  -out "$demo/user-again.p12"
cmp -s "$demo/user.p12" "$demo/user-again.p12" && echo "same PKCS#12: yes"

step "The audit log: every step above, checkpoints signed in the token; verified with the public key alone"
# redeliver's records follow the last checkpoint; the daemon signs them first thing at its next start.
"$bin" serve --until-idle
grep -o '"event":"[a-z_.]*"' "$demo/hsm/state/audit.log" | sort | uniq -c
"$bin" audit verify --log "$demo/hsm/state/audit.log" --pubkey "$demo/audit.pub.pem" --counter "$("$bin" audit counter)" \
  --require-signed-tail
kill "$sim" && wait "$sim" 2>/dev/null || true
tail -n 1 "$demo/sim.log"

if ((tpm)); then
  step "No transient object left in the TPM (a bare TPM would keep them)"
  tpm2_getcap handles-transient | sed 's/^/left loaded: /'
  echo "transient objects: $(tpm2_getcap handles-transient | wc -l)"
  cat <<TXT

Demo complete. The RA key, the PFX encryption key and the audit key were
created inside the TPM (fixedTPM, fixedParent, sensitiveDataOrigin); their
blobs in $demo/hsm/state/tpm are encrypted by the TPM's storage key and useless
elsewhere. The CSR, the TLS handshakes and the audit checkpoints were signed in
the TPM; the audit counter is a TPM NV counter. The issued PKCS#12 was kept at
rest sealed with a content key the TPM derived from the PFX encryption key.
Outgoing: $out
Files: $demo  (configuration: $CERTCUSTODY_CONFIG)
TXT
else
  cat <<TXT

Demo complete. The RA key and the PFX encryption key were generated inside the
token and are marked sensitive and never extractable; the CSR, both TLS
handshakes and the CA enrolment's TLS handshakes were signed there. The issued
PKCS#12 was kept at rest sealed under the PFX encryption key, and each envelope's
content key was generated, used and wrapped for the recipient inside the token.
Outgoing: $out
Files: $demo  (configuration: $CERTCUSTODY_CONFIG)
TXT
fi
