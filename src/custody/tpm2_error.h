// Every TSS2_RC (TPM response codes, and the TCTI/ESYS layers of tpm2-tss)
// becomes a named error that tells the operator what to do.
#pragma once

#include <tss2/tss2_common.h>

#include <string>

#include "common/error.h"

namespace certcustody {

// What the failing call was about, so the message can name it.
struct TpmContext {
  std::string operation;  // e.g. "TPM2_Sign with key 'ra'"
  std::string tcti;       // the configured TCTI
  std::string object;     // key label, file or handle concerned
};

// The TPM response code without the parameter/handle/session number, so that
// it compares equal to the TPM2_RC_* constants (TPM2_RC_AUTH_FAIL, ...).
// Codes passed through a resource manager keep their TPM meaning.
TSS2_RC tpm_base_rc(TSS2_RC rc);
bool tpm_is_tcti_failure(TSS2_RC rc);  // the TPM could not be reached at all
bool tpm_is_auth_failure(TSS2_RC rc);  // a wrong auth value (counts towards lockout)

// The named error for rc (rc != TSS2_RC_SUCCESS). Error::native holds rc.
Error tpm_error(TSS2_RC rc, const TpmContext& ctx);

}  // namespace certcustody
