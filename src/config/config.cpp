#include "config/config.h"

#include <cstdlib>
#include <filesystem>
#include <set>
#include <toml++/toml.h>

#include "config/toml_fields.h"

namespace certcustody {
using namespace config_detail;
namespace {
Result<const toml::table*> section(const toml::table& root, const std::string& file, const char* name) {
  const toml::node* n = root.get(name);
  if (n == nullptr)
    return Error{"config.missing_section", file + ": section [" + std::string(name) + "] is missing",
                 "add a [" + std::string(name) + "] table (see hsm-config/certcustody.toml.example)"};
  if (!n->is_table())
    return config_error("config.wrong_type", where(file, n->source()), name, "must be a table");
  return n->as_table();
}

// Relative paths are taken relative to the configuration file's directory.
std::string resolve_relative(const std::string& source_name, const std::string& value) {
  std::filesystem::path p(value);
  if (p.is_absolute()) return value;
  return (std::filesystem::path(source_name).parent_path() / p).lexically_normal().string();
}

Status parse_custody(const toml::table& c, const std::string& file, CustodyConfig& out) {
  CC_TRY(reject_unknown(c, file, "custody", {"backend", "module", "token", "pin_file", "sessions", "reconnect_interval_ms"}));
  CC_TRY(read_string(c, file, "custody", "backend", true, out.backend));
  if (out.backend != "pkcs11")
    return config_error("config.invalid_value", where(file, c.get("backend")->source()), "custody.backend",
                        "\"" + out.backend + "\" is not a backend this build offers",
                        "set backend = \"pkcs11\"");
  CC_TRY(read_string(c, file, "custody", "module", true, out.module));
  CC_TRY(read_string(c, file, "custody", "token", true, out.token));
  CC_TRY(read_string(c, file, "custody", "pin_file", true, out.pin_file));
  if (out.token.rfind("pkcs11:", 0) != 0)
    return config_error("config.invalid_value", where(file, c.get("token")->source()), "custody.token",
                        "must be an RFC 7512 URI starting with \"pkcs11:\"",
                        "set token = \"pkcs11:token=<label>\"");
  if (out.module.find('/') != std::string::npos) out.module = resolve_relative(file, out.module);
  if (out.pin_file.find('/') != std::string::npos) out.pin_file = resolve_relative(file, out.pin_file);
  if (const toml::node* n = c.get("sessions")) {
    auto v = n->value<int64_t>();
    if (!v || *v < 1 || *v > 256)
      return config_error("config.invalid_value", where(file, n->source()), "custody.sessions",
                          "must be an integer from 1 to 256");
    out.sessions = static_cast<unsigned>(*v);
  }
  if (const toml::node* n = c.get("reconnect_interval_ms")) {
    auto v = n->value<int64_t>();
    if (!v || *v < 0 || *v > 600000)
      return config_error("config.invalid_value", where(file, n->source()), "custody.reconnect_interval_ms",
                          "must be an integer from 0 to 600000 (milliseconds)");
    out.reconnect_interval_ms = static_cast<unsigned>(*v);
  }
  return {};
}

Status read_timeout(const toml::table& t, const std::string& file, const std::string& section, const char* key,
                    unsigned& out) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return {};
  auto v = n->value<int64_t>();
  if (!v || *v < 1 || *v > 3600000)
    return config_error("config.invalid_value", where(file, n->source()), section + "." + key,
                        "must be an integer from 1 to 3600000 (milliseconds)");
  out = static_cast<unsigned>(*v);
  return {};
}

Status parse_cas(const toml::table& root, const std::string& file, std::vector<CaEndpointConfig>& out) {
  const toml::node* n = root.get("ca");
  if (n == nullptr) return {};
  if (!n->is_table()) return config_error("config.wrong_type", where(file, n->source()), "ca", "must be a table of CAs");
  for (const auto& [name, node] : *n->as_table()) {
    const std::string section = "ca." + std::string(name.str());
    const toml::table* t = node.as_table();
    if (t == nullptr)
      return config_error("config.wrong_type", where(file, node.source()), section, "must be a table");
    CC_TRY(reject_unknown(*t, file, section, {"url", "trust_anchor", "connect_timeout_ms", "timeout_ms"}));
    CaEndpointConfig ca;
    ca.name = std::string(name.str());
    CC_TRY(read_string(*t, file, section, "url", true, ca.url));
    if (ca.url.rfind("https://", 0) != 0)
      return config_error("config.invalid_value", where(file, t->get("url")->source()), section + ".url",
                          "must start with https://");
    CC_TRY(read_string(*t, file, section, "trust_anchor", true, ca.trust_anchor));
    ca.trust_anchor = resolve_relative(file, ca.trust_anchor);
    CC_TRY(read_timeout(*t, file, section, "connect_timeout_ms", ca.connect_timeout_ms));
    CC_TRY(read_timeout(*t, file, section, "timeout_ms", ca.timeout_ms));
    out.push_back(std::move(ca));
  }
  return {};
}

}  // namespace

Result<const CaEndpointConfig*> Config::ca(const std::string& name) const {
  for (const auto& c : cas)
    if (c.name == name) return &c;
  return Error{"config.ca_unknown", path + " has no [ca." + name + "] section",
               "add it (see hsm-config/certcustody.toml.example) or use one of the configured CAs"};
}

Result<std::string> resolve_config_path(const std::optional<std::string>& flag) {
  if (flag && !flag->empty()) return *flag;
  if (const char* env = std::getenv("CERTCUSTODY_CONFIG"); env != nullptr && *env != '\0') return std::string(env);
  return Error{"config.not_given", "no configuration file was named",
               "pass --config FILE or set CERTCUSTODY_CONFIG=FILE"};
}

Result<Config> parse_config(const std::string& text, const std::string& source_name) {
  CC_TRY_ASSIGN(toml::table root, parse_toml(text, source_name));
  Config cfg;
  cfg.path = source_name;
  CC_TRY_ASSIGN(const toml::table* custody, section(root, source_name, "custody"));
  CC_TRY(parse_custody(*custody, source_name, cfg.custody));
  CC_TRY_ASSIGN(const toml::table* state, section(root, source_name, "state"));
  CC_TRY(reject_unknown(*state, source_name, "state", {"dir"}));
  CC_TRY(read_string(*state, source_name, "state", "dir", true, cfg.state.dir));
  cfg.state.dir = resolve_relative(source_name, cfg.state.dir);
  if (const toml::node* ra = root.get("ra")) {
    if (!ra->is_table()) return config_error("config.wrong_type", where(source_name, ra->source()), "ra", "must be a table");
    CC_TRY(reject_unknown(*ra->as_table(), source_name, "ra", {"key"}));
    CC_TRY(read_string(*ra->as_table(), source_name, "ra", "key", false, cfg.ra.key));
  }
  CC_TRY(parse_cas(root, source_name, cfg.cas));
  return cfg;
}

Result<Config> load_config(const std::string& path) {
  CC_TRY_ASSIGN(std::string text, read_config_file(path));
  return parse_config(text, path);
}

}  // namespace certcustody
