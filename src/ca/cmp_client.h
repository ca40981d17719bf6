// A CA reached over CMP (RFC 4210, RFC 9480 / the Lightweight CMP Profile),
// with OpenSSL's OSSL_CMP client: p10cr for enrolment (the pipeline's
// PKCS#10 as it is), certConf with OpenSSL's check that the returned
// certificate is for the CSR's key, rr for revocation. Every request is
// protected by a signature with the RA key in the token (through the
// certcustody provider) and the RA certificate; every response must carry a
// signature that verifies against the configured trust anchor.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "ca/ca_client.h"
#include "net/token_identity.h"

namespace certcustody::ca {

struct CmpOptions {
  // http://host[:port]/path (RFC 6712: the messages carry their own
  // protection) or https://host[:port]/path (also the RA's mutual TLS).
  std::string url;
  // PEM file with the certificates that verify the CMP server's response
  // protection: the server's signing certificate itself or a CA of it. Over
  // https:// it is also the TLS trust anchor, so it must then also hold the
  // TLS server's root.
  std::string trust_anchor;
  // TCP connect, bounded by `timeout`.
  std::chrono::milliseconds connect_timeout{10000};
  // One message exchange, and the whole transaction (request, polling while
  // the CA answers "waiting", certConf). OpenSSL counts it in whole seconds,
  // and 3.0 stops polling once less than about 5 s of it remain: for a CA
  // that makes requests wait, allow checkAfter + 5 s at least.
  std::chrono::milliseconds timeout{60000};
};

// `ra`: the RA key handle (its private key stays in the token) and the RA
// certificate. The client is thread-safe: each operation has its own
// OSSL_CMP_CTX.
Result<std::unique_ptr<CaClient>> make_cmp_client(CmpOptions options, TlsIdentity ra);

}  // namespace certcustody::ca
