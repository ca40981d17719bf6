#include "custody/custody_factory.h"

#include "custody/pkcs11_custody.h"
#include "custody/tpm2_custody.h"

namespace certcustody {

Result<std::unique_ptr<KeyCustody>> open_key_custody(const CustodyConfig& config, SoftwareContext software) {
  if (config.backend == "tpm2") {
    CC_TRY_ASSIGN(auto c, Tpm2Custody::open(config, software));
    return std::unique_ptr<KeyCustody>(std::move(c));
  }
  CC_TRY_ASSIGN(auto c, Pkcs11Custody::open(config, software));
  return std::unique_ptr<KeyCustody>(std::move(c));
}

}  // namespace certcustody
