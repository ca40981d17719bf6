// Certificate profiles ([profile.<name>] tables of the configuration file),
// parsed into the policy engine's Profile type.
#pragma once

#include <string>
#include <vector>

#include "common/error.h"
#include "policy.h"

namespace certcustody {

Result<std::vector<policy::Profile>> load_profiles(const std::string& path);
Result<std::vector<policy::Profile>> parse_profiles(const std::string& text, const std::string& source_name);

}  // namespace certcustody
