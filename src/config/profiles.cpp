#include "config/profiles.h"

#include "characters.h"
#include "config/toml_fields.h"

namespace certcustody {
using namespace config_detail;
namespace {

Status parse_subject(const toml::table& t, const std::string& file, const std::string& section, policy::Profile& p) {
  std::string subject = "cn";
  CC_TRY(read_string(t, file, section, "subject", false, subject));
  if (subject == "cn") p.subject = policy::SubjectForm::cn;
  else if (subject == "cn-with-email") p.subject = policy::SubjectForm::cn_with_email;
  else if (subject == "cn-as-email") p.subject = policy::SubjectForm::cn_as_email;
  else
    return config_error("config.invalid_value", where(file, t.get("subject")->source()), section + ".subject",
                        "\"" + subject + "\" is not one of the three Subject forms",
                        "use \"cn\", \"cn-with-email\" or \"cn-as-email\"");
  if (t.get("cn_from") == nullptr) return {};  // the form's default source
  std::string cn_from;
  CC_TRY(read_string(t, file, section, "cn_from", true, cn_from));
  p.cn_from = cn_from;
  return {};
}

Status parse_san(const toml::table& t, const std::string& file, const std::string& section, policy::Profile& p) {
  CC_TRY_ASSIGN(auto san, read_strings(t, file, "san", section));
  for (const std::string& s : san) {
    if (s == "email") p.san.push_back({policy::SanKind::email, {}, {}, {}});
    else if (s == "upn") p.san.push_back({policy::SanKind::upn, {}, {}, {}});
    else
      return config_error("config.invalid_value", where(file, t.get("san")->source()), section + ".san",
                          "\"" + s + "\" is not a SAN type", "use \"email\" and/or \"upn\"; otherNames go in [[" +
                                                                     section + ".othername]]");
  }
  const toml::node* on = t.get("othername");
  if (on == nullptr) return {};
  const toml::array* arr = on->as_array();
  if (arr == nullptr || !arr->is_array_of_tables())
    return config_error("config.wrong_type", where(file, on->source()), section + ".othername",
                        "must be an array of tables ([[" + section + ".othername]])");
  for (const toml::node& e : *arr) {
    const toml::table& o = *e.as_table();
    const std::string os = section + ".othername";
    CC_TRY(reject_unknown(o, file, os, {"oid", "attribute", "encoding"}));
    policy::SanEntry entry{policy::SanKind::other_name, {}, {}, policy::ValueEncoding::hex};
    CC_TRY(read_string(o, file, os, "oid", true, entry.oid));
    CC_TRY(read_string(o, file, os, "attribute", true, entry.attribute));
    std::string enc;
    CC_TRY(read_string(o, file, os, "encoding", true, enc));
    if (enc != "hex" && enc != "base64")
      return config_error("config.invalid_value", where(file, o.get("encoding")->source()), os + ".encoding",
                          "must be \"hex\" or \"base64\" (the encoding the value arrives in)");
    entry.encoding = enc == "hex" ? policy::ValueEncoding::hex : policy::ValueEncoding::base64;
    p.san.push_back(std::move(entry));
  }
  return {};
}

Result<policy::Profile> parse_profile(const std::string& name, const toml::table& t, const std::string& file) {
  const std::string section = "profile." + name;
  CC_TRY(reject_unknown(t, file, section,
                        {"ca", "template", "subject", "cn_from", "san", "othername", "key_type", "validity_days",
                         "ekus", "allowed_email_domains", "allowed_upn_domains", "allowed_code_points", "pfx_format"}));
  policy::Profile p;
  p.name = name;
  CC_TRY(read_string(t, file, section, "ca", true, p.ca));
  CC_TRY(read_string(t, file, section, "template", true, p.template_id));
  CC_TRY(parse_subject(t, file, section, p));
  CC_TRY(parse_san(t, file, section, p));
  std::string key_type = "rsa2048";
  CC_TRY(read_string(t, file, section, "key_type", false, key_type));
  CC_TRY_ASSIGN(p.key_type, parse_key_type(key_type));
  if (const toml::node* n = t.get("validity_days")) {
    auto v = integer_of(*n);
    if (!v || *v < 1 || *v > 3650)
      return config_error("config.invalid_value", where(file, n->source()), section + ".validity_days",
                          "must be an integer from 1 to 3650");
    p.validity_days = static_cast<unsigned>(*v);
  }
  CC_TRY_ASSIGN(p.ekus, read_strings(t, file, "ekus", section));
  CC_TRY_ASSIGN(p.allowed_email_domains, read_strings(t, file, "allowed_email_domains", section));
  CC_TRY_ASSIGN(p.allowed_upn_domains, read_strings(t, file, "allowed_upn_domains", section));
  CC_TRY_ASSIGN(std::vector<std::string> code_points, read_strings(t, file, "allowed_code_points", section));
  auto allowed = policy::parse_allowed_code_points(code_points);
  if (!allowed)
    return Error{allowed.error().code,
                 where(file, t.get("allowed_code_points")->source()) + ": " + section + "." + allowed.error().what,
                 allowed.error().remedy};
  p.allowed_code_points = std::move(*allowed);
  CC_TRY(read_string(t, file, section, "pfx_format", false, p.pfx_format));
  if (p.pfx_format != "aes256-sha256" && p.pfx_format != "3des-sha1")
    return config_error("config.invalid_value", where(file, t.get("pfx_format")->source()), section + ".pfx_format",
                        "must be \"aes256-sha256\" (the default) or \"3des-sha1\" (older devices); RC2-40 is never offered");
  if (Status s = policy::validate_profile(p); !s)
    return Error{s.error().code, where(file, t.source()) + ": " + s.error().what, s.error().remedy};
  return p;
}

}  // namespace

Result<std::vector<policy::Profile>> parse_profiles(const std::string& text, const std::string& source_name) {
  CC_TRY_ASSIGN(toml::table root, parse_toml(text, source_name));
  std::vector<policy::Profile> out;
  const toml::node* n = root.get("profile");
  if (n == nullptr) return out;
  if (!n->is_table()) return config_error("config.wrong_type", where(source_name, n->source()), "profile", "must be a table");
  for (const auto& [name, node] : *n->as_table()) {
    if (!node.is_table())
      return config_error("config.wrong_type", where(source_name, node.source()), "profile." + std::string(name.str()),
                          "must be a table");
    CC_TRY_ASSIGN(policy::Profile p, parse_profile(std::string(name.str()), *node.as_table(), source_name));
    out.push_back(std::move(p));
  }
  return out;
}

Result<std::vector<policy::Profile>> load_profiles(const std::string& path) {
  CC_TRY_ASSIGN(std::string text, read_config_file(path));
  return parse_profiles(text, path);
}

}  // namespace certcustody
