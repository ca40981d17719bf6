#include "config/toml_fields.h"

#include <fstream>
#include <sstream>

namespace certcustody::config_detail {

const char* const kConfigRemedy = "fix the configuration file (see hsm-config/certcustody.toml.example)";

std::string where(const std::string& file, const toml::source_region& r) {
  return file + ":" + std::to_string(r.begin.line) + ":" + std::to_string(r.begin.column);
}

Error config_error(const std::string& code, const std::string& at, const std::string& key,
                   const std::string& problem, const std::string& remedy) {
  return Error{code, at + ": key " + key + ": " + problem, remedy};
}

// Reads one required/optional string; `out` stays untouched when absent.
Status read_string(const toml::table& tbl, const std::string& file, const std::string& section,
                   const char* key, bool required, std::string& out) {
  const toml::node* n = tbl.get(key);
  std::string full = section + "." + key;
  if (n == nullptr) {
    if (!required) return {};
    return config_error("config.missing_key", where(file, tbl.source()), full, "is required but missing",
                        "add `" + std::string(key) + " = \"...\"` under [" + section + "]");
  }
  const auto* s = n->as_string();
  if (s == nullptr)
    return config_error("config.wrong_type", where(file, n->source()), full, "must be a string");
  if (s->get().empty())
    return config_error("config.empty_value", where(file, n->source()), full, "must not be empty");
  if (s->get().find('\0') != std::string::npos)
    return config_error("config.invalid_value", where(file, n->source()), full, "contains a NUL character");
  out = s->get();
  return {};
}

Status reject_unknown(const toml::table& tbl, const std::string& file, const std::string& section,
                      const std::set<std::string>& known) {
  for (const auto& [k, v] : tbl) {
    (void)v;
    if (!known.contains(std::string(k.str())))
      return config_error("config.unknown_key", where(file, k.source()), section + "." + std::string(k.str()),
                          "is not a known key (a typo?)");
  }
  return {};
}


Result<std::string> read_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Error{"config.unreadable", "cannot read configuration file " + path,
                 "check that the file exists and is readable by this user"};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<toml::table> parse_toml(const std::string& text, const std::string& source_name) {
  try {
    return toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    return Error{"config.syntax", where(source_name, e.source()) + ": " + std::string(e.description()),
                 "correct the TOML syntax at that line"};
  }
}

std::optional<std::int64_t> integer_of(const toml::node& n) {
  if (const auto* i = n.as_integer()) return i->get();
  return std::nullopt;
}

Result<std::vector<std::string>> read_strings(const toml::table& t, const std::string& file, const std::string& key,
                                              const std::string& section) {
  std::vector<std::string> out;
  const toml::node* n = t.get(key);
  if (n == nullptr) return out;
  const toml::array* a = n->as_array();
  if (a == nullptr)
    return config_error("config.wrong_type", where(file, n->source()), section + "." + key, "must be an array of strings");
  for (const toml::node& e : *a) {
    auto s = e.value<std::string>();
    if (!s)
      return config_error("config.wrong_type", where(file, e.source()), section + "." + key, "must hold strings only");
    out.push_back(*s);
  }
  return out;
}

}  // namespace certcustody::config_detail
