#include "config/config.h"

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <toml++/toml.h>

#include "common/ossl.h"
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

Status read_reconnect_interval(const toml::table& c, const std::string& file, CustodyConfig& out) {
  if (const toml::node* n = c.get("reconnect_interval_ms")) {
    auto v = integer_of(*n);
    if (!v || *v < 0 || *v > 600000)
      return config_error("config.invalid_value", where(file, n->source()), "custody.reconnect_interval_ms",
                          "must be an integer from 0 to 600000 (milliseconds)");
    out.reconnect_interval_ms = static_cast<unsigned>(*v);
  }
  return {};
}

// srk_type: the storage key certcustody makes, and the only kind it accepts.
Status read_srk_type(const toml::table& c, const std::string& file, CustodyConfig& out) {
  CC_TRY(read_string(c, file, "custody", "srk_type", false, out.srk_type));
  if (out.srk_type.empty() || out.srk_type == "rsa2048" || out.srk_type == "ec-p256" || out.srk_type == "ec-p384")
    return {};
  return config_error("config.invalid_value", where(file, c.get("srk_type")->source()), "custody.srk_type",
                      "\"" + out.srk_type + "\" is not a storage key type",
                      "set srk_type = \"rsa2048\", \"ec-p256\" or \"ec-p384\" (or leave it out)");
}

// srk_name: a TPM name as `tpm2_readpublic -n` prints it: a SHA-1/2
// algorithm id (0004, 000b, 000c, 000d) and a digest of its size, in hex.
Status read_srk_name(const toml::table& c, const std::string& file, CustodyConfig& out) {
  std::string text;
  CC_TRY(read_string(c, file, "custody", "srk_name", false, text));
  if (text.empty()) return {};
  for (char& ch : text) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  const bool hex = text.find_first_not_of("0123456789abcdef") == std::string::npos;
  const std::string alg = text.substr(0, 4);
  const std::size_t digest_hex = alg == "0004" ? 40 : alg == "000b" ? 64 : alg == "000c" ? 96 : alg == "000d" ? 128 : 0;
  if (!hex || digest_hex == 0 || text.size() != 4 + digest_hex)
    return config_error("config.invalid_value", where(file, c.get("srk_name")->source()), "custody.srk_name",
                        "is not a TPM name in hex (\"000b\" and a SHA-256 digest, 68 hex digits)",
                        "copy the name that `tpm2_readpublic -c <srk_handle>` or `certcustody token info` prints");
  out.srk_name = text;
  return {};
}

Status parse_tpm2_custody(const toml::table& c, const std::string& file, CustodyConfig& out) {
  CC_TRY(reject_unknown(c, file, "custody",
                        {"backend", "tcti", "auth_file", "key_dir", "srk_handle", "srk_type", "srk_name",
                         "reconnect_interval_ms"}));
  CC_TRY(read_string(c, file, "custody", "tcti", true, out.tcti));
  CC_TRY(read_string(c, file, "custody", "auth_file", true, out.auth_file));
  CC_TRY(read_string(c, file, "custody", "key_dir", false, out.key_dir));
  if (out.auth_file.find('/') != std::string::npos) out.auth_file = resolve_relative(file, out.auth_file);
  if (!out.key_dir.empty()) out.key_dir = resolve_relative(file, out.key_dir);
  if (const toml::node* n = c.get("srk_handle")) {
    std::string text;
    CC_TRY(read_string(c, file, "custody", "srk_handle", true, text));
    char* end = nullptr;
    const unsigned long v = std::strtoul(text.c_str(), &end, 16);
    if (text.rfind("0x", 0) != 0 || *end != '\0' || v < 0x81000000UL || v > 0x817FFFFFUL)
      return config_error("config.invalid_value", where(file, n->source()), "custody.srk_handle",
                          "must be a persistent owner handle written in hex, 0x81000000 to 0x817FFFFF",
                          "set srk_handle = \"0x81000001\" (the TCG SRK handle)");
    out.srk_handle = static_cast<std::uint32_t>(v);
  }
  CC_TRY(read_srk_type(c, file, out));
  CC_TRY(read_srk_name(c, file, out));
  return read_reconnect_interval(c, file, out);
}

Status parse_custody(const toml::table& c, const std::string& file, CustodyConfig& out) {
  CC_TRY(read_string(c, file, "custody", "backend", true, out.backend));
  if (out.backend == "tpm2") return parse_tpm2_custody(c, file, out);
  if (out.backend != "pkcs11")
    return config_error("config.invalid_value", where(file, c.get("backend")->source()), "custody.backend",
                        "\"" + out.backend + "\" is not a backend this build offers",
                        "set backend = \"pkcs11\" (an HSM) or \"tpm2\" (the host's TPM 2.0)");
  CC_TRY(reject_unknown(c, file, "custody", {"backend", "module", "token", "pin_file", "sessions", "reconnect_interval_ms"}));
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
    auto v = integer_of(*n);
    if (!v || *v < 1 || *v > 256)
      return config_error("config.invalid_value", where(file, n->source()), "custody.sessions",
                          "must be an integer from 1 to 256");
    out.sessions = static_cast<unsigned>(*v);
  }
  return read_reconnect_interval(c, file, out);
}

Status read_timeout(const toml::table& t, const std::string& file, const std::string& section, const char* key,
                    unsigned& out) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return {};
  auto v = integer_of(*n);
  if (!v || *v < 1 || *v > 3600000)
    return config_error("config.invalid_value", where(file, n->source()), section + "." + key,
                        "must be an integer from 1 to 3600000 (milliseconds)");
  out = static_cast<unsigned>(*v);
  return {};
}

Status read_count(const toml::table& t, const std::string& file, const std::string& section, const char* key,
                  unsigned max, unsigned& out) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return {};
  auto v = integer_of(*n);
  if (!v || *v < 0 || *v > max)
    return config_error("config.invalid_value", where(file, n->source()), section + "." + key,
                        "must be an integer from 0 to " + std::to_string(max));
  out = static_cast<unsigned>(*v);
  return {};
}

Status invalid(const toml::table& t, const std::string& file, const std::string& section, const char* key,
               const std::string& what, const std::string& remedy) {
  const toml::node* n = t.get(key);
  return config_error("config.invalid_value", n != nullptr ? where(file, n->source()) : file, section + "." + key,
                      what, remedy);
}

// The dialect-specific keys: which are required and what they must look like.
Status parse_ca_dialect(const toml::table& t, const std::string& file, const std::string& section,
                        CaEndpointConfig& ca) {
  if (ca.type == "digicert") {
    if (t.get("url") != nullptr)
      return invalid(t, file, section, "url", "is derived from fqdn for type \"digicert\"",
                     "remove url; set fqdn = \"pki-ws.symauth.com\"");
    CC_TRY(read_string(t, file, section, "fqdn", true, ca.fqdn));
    if (auto problem = ca_fqdn_problem(ca.fqdn))
      return invalid(t, file, section, "fqdn", *problem,
                     "give the bare FQDN of the certification authority, e.g. fqdn = \"pki-ws.symauth.com\"");
    CC_TRY(read_string(t, file, section, "ca_name", true, ca.ca_name));
    if (ca.ca_name != "Symantec")
      return invalid(t, file, section, "ca_name", "is \"" + ca.ca_name + "\"; the DigiCert PKI Platform takes only "
                     "\"Symantec\"", "set ca_name = \"Symantec\" (exactly)");
    ca.url = "https://" + ca.fqdn + "/pki-ws/";
    return {};
  }
  for (const char* key : {"fqdn", "ca_name"})
    if (t.get(key) != nullptr)
      return invalid(t, file, section, key, "applies only to type = \"digicert\"", "remove it");
  CC_TRY(read_string(t, file, section, "url", true, ca.url));
  const bool http_ok = ca.type == "cmp";  // CMP messages carry their own protection (RFC 6712)
  if (ca.url.rfind("https://", 0) != 0 && !(http_ok && ca.url.rfind("http://", 0) == 0))
    return invalid(t, file, section, "url", http_ok ? "must start with https:// or http://" : "must start with https://",
                   "give the CA endpoint's full URL");
  if (ca.type == "mscep") {
    CC_TRY(read_string(t, file, section, "policy_url", false, ca.policy_url));
    if (!ca.policy_url.empty() && ca.policy_url.rfind("https://", 0) != 0)
      return invalid(t, file, section, "policy_url", "must start with https://", "give the CEP endpoint's URL");
  } else if (t.get("policy_url") != nullptr) {
    return invalid(t, file, section, "policy_url", "applies only to type = \"mscep\"", "remove it");
  }
  return {};
}

Status parse_ca(const toml::table& t, const std::string& file, const std::string& section, CaEndpointConfig& ca) {
  CC_TRY(reject_unknown(t, file, section,
                        {"type", "url", "fqdn", "ca_name", "policy_url", "trust_anchor", "connect_timeout_ms",
                         "timeout_ms", "retries", "retry_base_ms", "retry_max_ms", "breaker_failures",
                         "breaker_open_ms"}));
  CC_TRY(read_string(t, file, section, "type", false, ca.type));
  if (!ca.type.empty() && ca.type != "digicert" && ca.type != "mscep" && ca.type != "cmp")
    return invalid(t, file, section, "type", "\"" + ca.type + "\" is not a CA type",
                   "use \"digicert\" (DigiCert PKI Platform), \"mscep\" (Microsoft CA web services) or \"cmp\"");
  CC_TRY(parse_ca_dialect(t, file, section, ca));
  CC_TRY(read_string(t, file, section, "trust_anchor", true, ca.trust_anchor));
  ca.trust_anchor = resolve_relative(file, ca.trust_anchor);
  CC_TRY(read_timeout(t, file, section, "connect_timeout_ms", ca.connect_timeout_ms));
  CC_TRY(read_timeout(t, file, section, "timeout_ms", ca.timeout_ms));
  CC_TRY(read_count(t, file, section, "retries", 10, ca.retries));
  CC_TRY(read_timeout(t, file, section, "retry_base_ms", ca.retry_base_ms));
  CC_TRY(read_timeout(t, file, section, "retry_max_ms", ca.retry_max_ms));
  CC_TRY(read_count(t, file, section, "breaker_failures", 1000, ca.breaker_failures));
  CC_TRY(read_timeout(t, file, section, "breaker_open_ms", ca.breaker_open_ms));
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
    CaEndpointConfig ca;
    ca.name = std::string(name.str());
    CC_TRY(parse_ca(*t, file, section, ca));
    out.push_back(std::move(ca));
  }
  return {};
}

Status parse_pipeline(const toml::table& t, const std::string& file, PipelineConfig& p) {
  const std::string section = "pipeline";
  CC_TRY(reject_unknown(t, file, section,
                        {"kek", "recipients", "workers", "scan_interval_ms", "poll_interval_ms",
                         "retry_interval_ms", "max_attempts", "max_request_bytes"}));
  CC_TRY(read_string(t, file, section, "kek", true, p.kek));
  CC_TRY_ASSIGN(p.recipients, read_strings(t, file, "recipients", section));
  for (auto& r : p.recipients) r = resolve_relative(file, r);
  CC_TRY(read_count(t, file, section, "workers", 256, p.workers));
  CC_TRY(read_timeout(t, file, section, "scan_interval_ms", p.scan_interval_ms));
  CC_TRY(read_timeout(t, file, section, "poll_interval_ms", p.poll_interval_ms));
  CC_TRY(read_timeout(t, file, section, "retry_interval_ms", p.retry_interval_ms));
  CC_TRY(read_count(t, file, section, "max_attempts", 1000, p.max_attempts));
  if (p.max_attempts == 0) return invalid(t, file, section, "max_attempts", "is 0", "use 1 or more");
  CC_TRY(read_count(t, file, section, "max_request_bytes", 64u << 10, p.max_request_bytes));  // the JSON parser's ceiling
  if (p.max_request_bytes < 1024)
    return invalid(t, file, section, "max_request_bytes", "is below 1024", "use at least 1024 (the default is 65536)");
  return {};
}

Status parse_audit(const toml::table& t, const std::string& file, AuditConfig& a) {
  const std::string section = "audit";
  CC_TRY(reject_unknown(t, file, section,
                        {"log", "key", "counter", "checkpoint_every", "checkpoint_interval_ms", "rotate_bytes"}));
  CC_TRY(read_string(t, file, section, "log", false, a.log));
  a.log = resolve_relative(file, a.log);
  CC_TRY(read_string(t, file, section, "key", false, a.key));
  CC_TRY(read_string(t, file, section, "counter", false, a.counter));
  CC_TRY(read_count(t, file, section, "checkpoint_every", 1000000, a.checkpoint_every));
  if (a.checkpoint_every == 0) return invalid(t, file, section, "checkpoint_every", "is 0", "use 1 or more");
  CC_TRY(read_timeout(t, file, section, "checkpoint_interval_ms", a.checkpoint_interval_ms));
  CC_TRY(read_count(t, file, section, "rotate_bytes", 0xffffffffu, a.rotate_bytes));
  a.configured = true;
  return {};
}

}  // namespace

std::optional<std::string> ca_fqdn_problem(const std::string& fqdn) {
  if (fqdn.empty()) return "is empty";
  if (fqdn.find("://") != std::string::npos) return "has a scheme; give the host name only";
  if (fqdn.back() == '/') return "ends with a slash";
  if (fqdn.find('/') != std::string::npos) return "has a path; the service paths (/pki-ws/...) are added by the connector";
  const auto colon = fqdn.find(':');
  const std::string host = fqdn.substr(0, colon);
  if (host.empty() || host.size() > 253 || host.front() == '.' || host.front() == '-' || host.back() == '.' ||
      host.find("..") != std::string::npos)
    return "is not a host name";
  for (char c : host)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-')
      return std::string("has the character '") + c + "', which a host name cannot have";
  if (colon != std::string::npos) {
    const std::string port = fqdn.substr(colon + 1);
    int value = 0;
    for (char c : port) value = std::isdigit(static_cast<unsigned char>(c)) && value < 100000 ? value * 10 + (c - '0') : -1;
    if (port.empty() || value < 1 || value > 65535) return "has an invalid port";
  }
  return std::nullopt;
}

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
  if (cfg.custody.backend == "tpm2" && cfg.custody.key_dir.empty()) cfg.custody.key_dir = cfg.state.dir + "/tpm";
  if (const toml::node* ra = root.get("ra")) {
    if (!ra->is_table()) return config_error("config.wrong_type", where(source_name, ra->source()), "ra", "must be a table");
    CC_TRY(reject_unknown(*ra->as_table(), source_name, "ra", {"key"}));
    CC_TRY(read_string(*ra->as_table(), source_name, "ra", "key", false, cfg.ra.key));
  }
  CC_TRY(parse_cas(root, source_name, cfg.cas));
  if (const toml::node* pl = root.get("pipeline")) {
    if (!pl->is_table())
      return config_error("config.wrong_type", where(source_name, pl->source()), "pipeline", "must be a table");
    cfg.pipeline.emplace();
    CC_TRY(parse_pipeline(*pl->as_table(), source_name, *cfg.pipeline));
  }
  cfg.audit.log = cfg.state.dir + "/audit.log";
  if (const toml::node* au = root.get("audit")) {
    if (!au->is_table())
      return config_error("config.wrong_type", where(source_name, au->source()), "audit", "must be a table");
    CC_TRY(parse_audit(*au->as_table(), source_name, cfg.audit));
  }
  if (auto h = digest("SHA256", {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()}))
    cfg.sha256 = to_hex_lower(*h);
  return cfg;
}

Result<Config> load_config(const std::string& path) {
  CC_TRY_ASSIGN(std::string text, read_config_file(path));
  return parse_config(text, path);
}

}  // namespace certcustody
