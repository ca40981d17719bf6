// The custody backend chosen by [custody] backend: the one place that knows
// both; everything else holds a KeyCustody.
#pragma once

#include <memory>

#include "config/config.h"
#include "custody/key_custody.h"

namespace certcustody {

Result<std::unique_ptr<KeyCustody>> open_key_custody(const CustodyConfig& config, SoftwareContext software = {});

}  // namespace certcustody
