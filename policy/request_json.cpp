// Request and template-policy JSON (nlohmann/json), schema version 1.
#include <nlohmann/json.hpp>

#include "characters.h"
#include "policy.h"
#include "strict_json.h"

namespace certcustody::policy {
namespace {

constexpr std::size_t kMaxJson = 64 * 1024;
constexpr std::size_t kMaxValue = 4096;

Error jerr(const std::string& what, const std::string& remedy = "see docs/request-schema.md") {
  return Error{"policy.request_invalid", what, remedy};
}

Result<std::optional<std::string>> optional_string(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::optional<std::string>{};
  if (!it->is_string()) return jerr(std::string("\"") + key + "\" must be a string");
  const auto& s = it->get_ref<const std::string&>();
  if (s.size() > kMaxValue) return jerr(std::string("\"") + key + "\" is longer than 4096 bytes");
  return std::optional<std::string>{s};
}

Result<RequestAttributes> parse_attributes(const nlohmann::json& attrs) {
  RequestAttributes r;
  for (const auto& [k, v] : attrs.items()) {
    auto* slot = r.find(k);
    if (slot == nullptr)
      return jerr("unknown attribute \"" + k + "\"", "use upn, email, common_name, object_guid, device_id");
    if (v.is_null()) continue;  // explicitly absent
    if (!v.is_string()) return jerr("attribute \"" + k + "\" must be a string");
    const std::string& s = v.get_ref<const std::string&>();
    if (s.size() > kMaxValue) return jerr("attribute \"" + k + "\" is longer than 4096 bytes");
    if (s.empty()) continue;  // an empty directory value counts as absent
    *slot = s;
  }
  return r;
}

}  // namespace

Result<RequestDocument> parse_request_document(const std::string& text) {
  if (text.size() > kMaxJson) return jerr("the request is larger than 64 KiB");
  CC_TRY_ASSIGN(nlohmann::json j, parse_json_strict(text, "the request", jerr("the request is not a JSON object")));
  if (!j.is_object()) return jerr("the request is not a JSON object");
  auto version = j.find("version");
  if (version == j.end() || !version->is_number_integer() || version->get<std::int64_t>() < 1 ||
      version->get<std::int64_t>() > 2)
    return jerr("the request has no \"version\": 1 or 2", "write version 2 requests");
  RequestDocument d;
  d.version = version->get<int>();
  auto attrs = j.find("attributes");
  if (attrs == j.end() || !attrs->is_object()) return jerr("the request has no \"attributes\" object");
  for (const auto& [k, v] : j.items()) {
    const bool known = k == "version" || k == "attributes" || k == "id" || k == "profile" ||
                       (k == "recipient" && d.version >= 2);
    if (!known) return jerr("unknown top-level key \"" + k + "\" in a version " + std::to_string(d.version) + " request");
  }
  CC_TRY_ASSIGN(d.id, optional_string(j, "id"));
  CC_TRY_ASSIGN(d.profile, optional_string(j, "profile"));
  CC_TRY_ASSIGN(d.recipient, optional_string(j, "recipient"));
  CC_TRY_ASSIGN(d.attributes, parse_attributes(*attrs));
  return d;
}

Result<RequestAttributes> parse_request_json(const std::string& text) {
  CC_TRY_ASSIGN(RequestDocument d, parse_request_document(text));
  return std::move(d.attributes);
}

Result<TemplatePolicy> parse_template_policy_json(const std::string& text) {
  CC_TRY_ASSIGN(nlohmann::json j, parse_json_strict(text, "the template policy",
                                                    jerr("the template policy is not a JSON object")));
  if (!j.is_object()) return jerr("the template policy is not a JSON object");
  TemplatePolicy t;
  for (const char* key : {"supported", "fixed"}) {
    auto it = j.find(key);
    if (it == j.end()) continue;
    if (!it->is_array()) return jerr(std::string("\"") + key + "\" must be an array of attribute names");
    for (const auto& a : *it) {
      if (!a.is_string()) return jerr(std::string("\"") + key + "\" must hold strings");
      CC_TRY(check_text(std::string("an attribute name in the template's \"") + key + "\"", a.get_ref<const std::string&>()));
      (std::string(key) == "supported" ? t.supported : t.fixed).insert(a.get<std::string>());
    }
  }
  if (auto it = j.find("key_algorithm"); it != j.end()) {
    if (!it->is_string() || (it->get<std::string>() != "RSA" && it->get<std::string>() != "EC"))
      return jerr("\"key_algorithm\" must be \"RSA\" or \"EC\"");
    t.key_algorithm = it->get<std::string>();
  }
  if (auto it = j.find("min_key_bits"); it != j.end()) {
    if (!it->is_number_unsigned()) return jerr("\"min_key_bits\" must be a non-negative integer");
    t.min_key_bits = it->get<unsigned>();
  }
  return t;
}

}  // namespace certcustody::policy
