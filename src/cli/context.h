// Shared set-up of the CLI commands: configuration and custody.
#pragma once

#include <memory>

#include "cli/commands.h"
#include "config/config.h"
#include "custody/pkcs11_custody.h"

namespace certcustody::cli {

Result<Config> load(const Globals& g);
Result<std::unique_ptr<Pkcs11Custody>> open_custody(const Config& cfg);

// Writes `data` to `path` atomically (temp file + rename) with `mode`.
Status write_file_atomic(const std::string& path, const std::string& data, unsigned mode);

}  // namespace certcustody::cli
