// JSON as the policy layer reads it: nlohmann/json, but a key repeated in
// any object at any depth is an error (policy.json_duplicate_key naming the
// key's JSON Pointer), never "the last one wins": a second "email" or
// "attributes" would silently replace what a reviewer of the file saw first.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "common/error.h"

namespace certcustody::policy {

// The parsed document, or policy.json_duplicate_key, or `malformed`'s
// error when the text is not JSON.
Result<nlohmann::json> parse_json_strict(const std::string& text, const std::string& what, Error malformed);

}  // namespace certcustody::policy
