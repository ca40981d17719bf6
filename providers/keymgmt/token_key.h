// A token key as OpenSSL's keydata: the label of the private key in the
// token, and the public half as a software key (in the provider's private
// library context). Keys imported from elsewhere are public-only.
#pragma once

#include <openssl/core_dispatch.h>

#include <memory>
#include <string>

#include "common/ossl.h"
#include "provider_context.h"

namespace certcustody::provider {

struct TokenKey {
  ProviderContext* prov = nullptr;
  std::string label;  // the private key in the token; empty for a public-only key
  EvpPkeyPtr pub;     // public half; for an ephemeral key (below) the whole key
  bool is_ec = false;
  // An ephemeral software EC key (TLS ECDHE), generated here only because
  // OpenSSL may fetch this provider's "EC" key management for it. Never a
  // token key: it serves our own ECDH key exchange and nothing else; its
  // private half is never exported, encoded, printed or used to sign.
  bool ephemeral = false;

  bool token_private() const { return !label.empty() && pub != nullptr; }
  bool has_private() const { return token_private() || (ephemeral && pub != nullptr); }
};

// OpenSSL's keydata pointer: a heap-allocated shared reference, so that dup,
// load and the store can share one TokenKey.
using KeyRef = std::shared_ptr<TokenKey>;

// provider.key_generation_refused: `what` was refused ("RSA key generation
// …"), because keys are made in the token by certcustody, never as software
// keys by OpenSSL through us; EC generation exists for TLS key exchange only.
Error generated_key_refused(const std::string& what);

extern const OSSL_DISPATCH kRsaKeymgmt[];
extern const OSSL_DISPATCH kEcKeymgmt[];

}  // namespace certcustody::provider
