#include "custody/tpm2_error.h"

#include <tss2/tss2_rc.h>
#include <tss2/tss2_tpm2_types.h>

#include <cstdio>

namespace certcustody {
namespace {

constexpr TSS2_RC kLayerMask = 0xFF0000;

bool is_tpm_layer(TSS2_RC rc) {
  const TSS2_RC layer = rc & kLayerMask;
  return layer == TSS2_TPM_RC_LAYER || layer == TSS2_RESMGR_TPM_RC_LAYER;
}

std::string hex(TSS2_RC rc) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%X", rc);
  return buf;
}

std::string about(const TpmContext& ctx) {
  std::string s = ctx.operation.empty() ? std::string("a TPM command") : ctx.operation;
  if (!ctx.object.empty()) s += " (" + ctx.object + ")";
  return s;
}

}  // namespace

TSS2_RC tpm_base_rc(TSS2_RC rc) {
  if (!is_tpm_layer(rc)) return rc;
  rc &= 0xFFFF;
  if (rc & TPM2_RC_FMT1) return rc & (TPM2_RC_FMT1 | 0x3F);  // drop the parameter/handle/session number
  return rc;
}

bool tpm_is_tcti_failure(TSS2_RC rc) {
  const TSS2_RC layer = rc & kLayerMask;
  if (layer == TSS2_TCTI_RC_LAYER || layer == TSS2_RESMGR_RC_LAYER) return true;
  const TSS2_RC base = rc & ~kLayerMask;
  return layer == TSS2_ESAPI_RC_LAYER && (base == TSS2_BASE_RC_IO_ERROR || base == TSS2_BASE_RC_NO_CONNECTION ||
                                          base == TSS2_BASE_RC_TRY_AGAIN);
}

bool tpm_is_auth_failure(TSS2_RC rc) {
  const TSS2_RC base = tpm_base_rc(rc);
  return is_tpm_layer(rc) && (base == TPM2_RC_AUTH_FAIL || base == TPM2_RC_BAD_AUTH);
}

Error tpm_error(TSS2_RC rc, const TpmContext& ctx) {
  const std::string decoded = std::string(Tss2_RC_Decode(rc)) + ", " + hex(rc);
  const std::string what = about(ctx) + " failed: " + decoded;
  Error e{"custody.tpm_error", what, "see `certcustody token info`; look the code up with `tpm2_rc_decode " + hex(rc) + "`", rc};
  if (tpm_is_tcti_failure(rc)) {
    e.code = "custody.tpm_unreachable";
    e.what = "the TPM at \"" + ctx.tcti + "\" cannot be reached (" + about(ctx) + ": " + decoded + ")";
    e.remedy = "check [custody] tcti: the device (/dev/tpmrm0) exists and this user may open it (group tss), "
               "or the resource manager / simulator is running";
    return e;
  }
  if (rc == TSS2_ESYS_RC_RSP_AUTH_FAILED) {
    e.code = "custody.tpm_response_forged";
    e.what = "the TPM's answer to " + about(ctx) + " does not authenticate: it was altered between the TPM and "
             "certcustody, or did not come from the TPM; the result was discarded";
    e.remedy = "check the path to the TPM (resource manager, bus interposers, a simulator in between); the "
               "session is started afresh for the next operation";
    return e;
  }
  if (!is_tpm_layer(rc)) return e;
  switch (tpm_base_rc(rc)) {
    case TPM2_RC_AUTH_FAIL:
    case TPM2_RC_BAD_AUTH:
      e.code = "custody.tpm_auth_failed";
      e.what = "the TPM refused the auth value for " + about(ctx) + " (" + decoded + ")";
      e.remedy = "check [custody] auth_file: it must hold the auth value the key was created with. Not retried: "
                 "each failure counts towards the TPM's dictionary-attack lockout";
      break;
    case TPM2_RC_LOCKOUT:
      e.code = "custody.tpm_lockout";
      e.what = "the TPM is in dictionary-attack lockout and refuses " + about(ctx);
      e.remedy = "wait for the lockout to decay (see `certcustody token info`), or have the TPM owner clear it with "
                 "`tpm2_dictionarylockout --clear-lockout -p <lockout auth>`; then fix [custody] auth_file";
      break;
    case TPM2_RC_INTEGRITY:
      e.code = "custody.tpm_key_foreign";
      e.what = "the key blob for " + about(ctx) + " was not made by this TPM under this storage key (" + decoded + ")";
      e.remedy = "a TPM key blob works only on the TPM (and SRK) that created it: use the TPM it came from, or "
                 "generate a new key here";
      break;
    case TPM2_RC_OBJECT_MEMORY:
    case TPM2_RC_OBJECT_HANDLES:
    case TPM2_RC_SESSION_MEMORY:
      e.code = "custody.tpm_slots_full";
      e.what = "the TPM has no free object or session slot for " + about(ctx) + " (" + decoded + ")";
      e.remedy = "another program left objects loaded: use tcti = \"device:/dev/tpmrm0\" (kernel resource "
                 "manager) or \"tabrmd\"; on a bare TPM or simulator run `tpm2_flushcontext -t -s`";
      break;
    case TPM2_RC_HANDLE:
      e.code = "custody.key_not_found";
      e.what = "the TPM has no object at the handle of " + about(ctx) + " (" + decoded + ")";
      e.remedy = "list persistent handles with `tpm2_getcap handles-persistent`; fix the tpm2:handle= URI or "
                 "[custody] srk_handle";
      break;
    case TPM2_RC_COMMAND_CODE:
    case TPM2_RC_SCHEME:
    case TPM2_RC_CURVE:
    case TPM2_RC_KEY_SIZE:
    case TPM2_RC_MODE:
    case TPM2_RC_SYMMETRIC:
      e.code = "custody.tpm_unsupported";
      e.what = "this TPM does not offer what " + about(ctx) + " needs (" + decoded + ")";
      e.remedy = "use another key type (e.g. rsa2048 or ec-p256); `tpm2_getcap algorithms` lists what it offers";
      break;
    case TPM2_RC_ATTRIBUTES:
    case TPM2_RC_KEY:
    case TPM2_RC_TYPE:
      e.code = "custody.key_unusable";
      e.what = about(ctx) + ": the key's attributes do not allow this operation (" + decoded + ")";
      e.remedy = "use a key made for it (RA keys sign, KEKs seal); `tpm2_readpublic` shows its attributes";
      break;
    case TPM2_RC_NV_SPACE:
    case TPM2_RC_NV_DEFINED:
    case TPM2_RC_NV_RANGE:
      e.code = "custody.tpm_nv_unavailable";
      e.what = "the TPM cannot provide the NV index for " + about(ctx) + " (" + decoded + ")";
      e.remedy = "free NV space or choose another index (`tpm2_getcap handles-nv-index`)";
      break;
    case TPM2_RC_NV_RATE:
    case TPM2_RC_RETRY:
    case TPM2_RC_TESTING:
    case TPM2_RC_YIELDED:
      e.code = "custody.tpm_busy";
      e.what = "the TPM is busy and asked to retry " + about(ctx) + " later (" + decoded + ")";
      e.remedy = "retry in a moment; NV writes are rate-limited by the TPM";
      break;
    case TPM2_RC_INITIALIZE:
    case TPM2_RC_FAILURE:
      e.code = "custody.tpm_unreachable";
      e.what = "the TPM is not started or is in failure mode (" + about(ctx) + ": " + decoded + ")";
      e.remedy = "a TPM is started by the firmware at boot (a simulator: run it with --flags startup-clear); "
                 "a TPM in failure mode needs a reboot";
      break;
    default:
      break;
  }
  return e;
}

}  // namespace certcustody
