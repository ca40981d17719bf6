// The audit log's checkpoint signer on key custody: the audit key (a signing
// key pair in the token, EC or RSA) and a token-held monotonic counter.
#pragma once

#include <string>

#include "audit/audit_log.h"
#include "custody/key_custody.h"

namespace certcustody::audit {

// custody must outlive the signer. audit.key_unusable when `key_label` is no
// signing key pair of the token.
Result<CheckpointSigner> token_signer(KeyCustody& custody, const std::string& key_label,
                                      const std::string& counter_label);

}  // namespace certcustody::audit
