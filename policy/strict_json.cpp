#include "strict_json.h"

#include <optional>
#include <set>
#include <vector>

namespace certcustody::policy {
namespace {

using Json = nlohmann::json;

// Where the parser is: one frame per open object or array.
struct Frame {
  bool array = false;
  std::size_t index = 0;      // array: the element being read
  std::set<std::string> keys;  // object: the keys seen so far
  std::string key;            // object: the key being read
};

Json::json_pointer path_of(const std::vector<Frame>& stack, const std::string& key) {
  Json::json_pointer p;
  for (std::size_t i = 0; i + 1 < stack.size(); ++i)
    p = stack[i].array ? p / stack[i].index : p / stack[i].key;
  return p / key;
}

}  // namespace

Result<Json> parse_json_strict(const std::string& text, const std::string& what, Error malformed) {
  std::vector<Frame> stack;
  std::optional<std::pair<std::string, Json::json_pointer>> duplicate;  // the first repeated key, where
  auto element_read = [&] {
    if (!stack.empty() && stack.back().array) ++stack.back().index;
  };
  Json::parser_callback_t watch = [&](int, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start: stack.push_back(Frame{}); break;
      case Json::parse_event_t::array_start: stack.push_back(Frame{.array = true, .index = 0, .keys = {}, .key = {}}); break;
      case Json::parse_event_t::key: {
        Frame& f = stack.back();
        f.key = parsed.get<std::string>();
        if (!f.keys.insert(f.key).second && !duplicate) duplicate = {f.key, path_of(stack, f.key)};
        break;
      }
      case Json::parse_event_t::object_end:
      case Json::parse_event_t::array_end:
        stack.pop_back();
        element_read();
        break;
      case Json::parse_event_t::value: element_read(); break;
    }
    return true;
  };
  Json j = Json::parse(text, watch, false);
  if (duplicate) {
    // Escaped (ASCII, no controls): keys are untrusted text bound for logs.
    auto shown = [](const std::string& t) { return Json(t).dump(-1, ' ', true, Json::error_handler_t::replace); };
    return Error{"policy.json_duplicate_key",
                 what + " has the key " + shown(duplicate->first) + " twice (at " +
                     shown(duplicate->second.to_string()) + ")",
                 "write each key once: certcustody does not pick one of two values"};
  }
  if (j.is_discarded()) return malformed;
  return j;
}

}  // namespace certcustody::policy
