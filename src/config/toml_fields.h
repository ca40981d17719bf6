// Reading checked fields out of the TOML configuration, with errors that
// name the file, line, column and key. Shared by the config parsers.
#pragma once

#include <set>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>
#include <toml++/toml.h>

#include "common/error.h"

namespace certcustody::config_detail {

extern const char* const kConfigRemedy;

std::string where(const std::string& file, const toml::source_region& r);
Error config_error(const std::string& code, const std::string& at, const std::string& key,
                   const std::string& problem, const std::string& remedy = kConfigRemedy);
// A string key; `out` stays untouched when absent and not required.
Status read_string(const toml::table& tbl, const std::string& file, const std::string& section, const char* key,
                   bool required, std::string& out);
// The file's text, or config.unreadable naming it.
Result<std::string> read_config_file(const std::string& path);

// The node's value if it is a TOML integer; nullopt for any other type.
// (toml++'s value<int64_t>() also converts floats, with undefined behaviour
// for out-of-range ones such as 1e300: never use it on user input.)
std::optional<std::int64_t> integer_of(const toml::node& n);
// Parsed TOML, or config.syntax with file:line:column.
Result<toml::table> parse_toml(const std::string& text, const std::string& source_name);

// An array of strings (empty when absent).
Result<std::vector<std::string>> read_strings(const toml::table& t, const std::string& file, const std::string& key,
                                              const std::string& section);

Status reject_unknown(const toml::table& tbl, const std::string& file, const std::string& section,
                      const std::set<std::string>& known);

}  // namespace certcustody::config_detail
