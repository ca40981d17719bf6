#include "characters.h"

#include <openssl/asn1.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <iterator>

namespace certcustody::policy {
namespace {

constexpr const char* kCc = "a control character (General_Category Cc)";
constexpr const char* kCf = "an invisible format character (General_Category Cf)";
constexpr const char* kBidiMark = "a bidirectional mark (General_Category Cf)";
constexpr const char* kBidiOverride = "a bidirectional embedding or override (General_Category Cf)";
constexpr const char* kBidiIsolate = "a bidirectional isolate (General_Category Cf)";
constexpr const char* kZeroWidth = "a zero-width character (General_Category Cf)";
constexpr const char* kTag = "a tag character (General_Category Cf)";
constexpr const char* kIgnorable = "an invisible default-ignorable character";
constexpr const char* kVariation = "a variation selector (invisible, default-ignorable)";
constexpr const char* kPrivate = "a private-use character (General_Category Co)";
constexpr const char* kSurrogate = "a surrogate (General_Category Cs), not a character";
constexpr const char* kNoncharacter = "a noncharacter";

struct Range {
  char32_t first, last;
  const char* what;
};

// Sorted, disjoint. Unicode 15.0: Cc, Cf, Zl, Zp, Co, Cs and the
// Default_Ignorable_Code_Point characters outside Cf; noncharacters other
// than U+FDD0..U+FDEF are the last two of each plane (see refused_class).
constexpr Range kRefused[] = {
    {0x0000, 0x001F, kCc},           {0x007F, 0x009F, kCc},
    {0x00AD, 0x00AD, kCf},           {0x034F, 0x034F, kIgnorable},
    {0x0600, 0x0605, kCf},           {0x061C, 0x061C, kBidiMark},
    {0x06DD, 0x06DD, kCf},           {0x070F, 0x070F, kCf},
    {0x0890, 0x0891, kCf},           {0x08E2, 0x08E2, kCf},
    {0x115F, 0x1160, kIgnorable},    {0x17B4, 0x17B5, kIgnorable},
    {0x180B, 0x180D, kVariation},    {0x180E, 0x180E, kCf},
    {0x180F, 0x180F, kVariation},    {0x200B, 0x200D, kZeroWidth},
    {0x200E, 0x200F, kBidiMark},     {0x2028, 0x2028, "a line separator (General_Category Zl)"},
    {0x2029, 0x2029, "a paragraph separator (General_Category Zp)"},
    {0x202A, 0x202E, kBidiOverride}, {0x2060, 0x2060, kZeroWidth},
    {0x2061, 0x2064, kCf},           {0x2065, 0x2065, kIgnorable},
    {0x2066, 0x2069, kBidiIsolate},  {0x206A, 0x206F, kCf},
    {0x3164, 0x3164, kIgnorable},    {0xD800, 0xDFFF, kSurrogate},
    {0xE000, 0xF8FF, kPrivate},      {0xFDD0, 0xFDEF, kNoncharacter},
    {0xFE00, 0xFE0F, kVariation},    {0xFEFF, 0xFEFF, kZeroWidth},
    {0xFFA0, 0xFFA0, kIgnorable},    {0xFFF0, 0xFFF8, kIgnorable},
    {0xFFF9, 0xFFFB, kCf},           {0x110BD, 0x110BD, kCf},
    {0x110CD, 0x110CD, kCf},         {0x13430, 0x1343F, kCf},
    {0x1BCA0, 0x1BCA3, kCf},         {0x1D173, 0x1D17A, kCf},
    {0xE0000, 0xE0000, kIgnorable},  {0xE0001, 0xE0001, kTag},
    {0xE0002, 0xE001F, kIgnorable},  {0xE0020, 0xE007F, kTag},
    {0xE0080, 0xE00FF, kIgnorable},  {0xE0100, 0xE01EF, kVariation},
    {0xE01F0, 0xE0FFF, kIgnorable},  {0xF0000, 0xFFFFD, kPrivate},
    {0x100000, 0x10FFFD, kPrivate},
};

constexpr Range kAllowable[] = {
    {0x061C, 0x061C, nullptr}, {0x180B, 0x180D, nullptr}, {0x180F, 0x180F, nullptr}, {0x200C, 0x200F, nullptr},
    {0xFE00, 0xFE0F, nullptr}, {0xE0100, 0xE01EF, nullptr},
};

template <std::size_t N>
const Range* find(const Range (&table)[N], char32_t cp) {
  auto it = std::upper_bound(std::begin(table), std::end(table), cp,
                             [](char32_t c, const Range& r) { return c < r.first; });
  if (it == std::begin(table)) return nullptr;
  --it;
  return cp <= it->last ? &*it : nullptr;
}

Error profile_error(const std::string& entry, const std::string& why) {
  return Error{"policy.profile_invalid", "allowed_code_points entry \"" + entry + "\" " + why,
               "list code points as \"U+200C\" or ranges as \"U+FE00..U+FE0F\", taken from " + allowable_text() +
                   " (docs/admin-guide.md)"};
}

// "U+200C" -> 0x200C: 4 to 6 hex digits, no more than U+10FFFF.
bool parse_one(std::string_view s, char32_t& out) {
  if (s.size() < 6 || s.size() > 8 || s.substr(0, 2) != "U+") return false;
  unsigned long v = 0;
  auto [end, ec] = std::from_chars(s.data() + 2, s.data() + s.size(), v, 16);
  if (ec != std::errc() || end != s.data() + s.size() || v > 0x10FFFF) return false;
  out = static_cast<char32_t>(v);
  return true;
}

}  // namespace

const char* refused_class(char32_t cp) {
  if ((cp & 0xFFFE) == 0xFFFE) return kNoncharacter;  // U+xxFFFE, U+xxFFFF on every plane
  const Range* r = find(kRefused, cp);
  return r != nullptr ? r->what : nullptr;
}

bool allowable(char32_t cp) { return find(kAllowable, cp) != nullptr; }

std::string allowable_text() {
  std::string out;
  for (const Range& r : kAllowable) {
    if (!out.empty()) out += ", ";
    out += code_point_text(r.first) + (r.first == r.last ? "" : ".." + code_point_text(r.last));
  }
  return out;
}

std::string code_point_text(char32_t cp) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "U+%04lX", static_cast<unsigned long>(cp));
  return buf;
}

Status check_text(const std::string& what, std::string_view value, const std::set<char32_t>& allowed) {
  const auto* p = reinterpret_cast<const unsigned char*>(value.data());
  std::size_t at = 0;
  for (std::size_t n = 1; at < value.size(); ++n) {
    unsigned long cp = 0;
    int len = UTF8_getc(p + at, static_cast<int>(std::min<std::size_t>(value.size() - at, 4)), &cp);
    if (len <= 0 || cp > 0x10FFFF)
      return Error{"policy.value_not_utf8",
                   what + " is not valid UTF-8 at byte " + std::to_string(at + 1) +
                       " (a truncated or overlong sequence, a surrogate, or past U+10FFFF)",
                   "fix the attribute in the directory, or the system that writes the request, to send UTF-8"};
    const auto c = static_cast<char32_t>(cp);
    if (const char* cls = refused_class(c); cls != nullptr && !allowed.contains(c))
      return Error{"policy.character_not_allowed",
                   what + " contains " + code_point_text(c) + ", " + cls + ", at character " + std::to_string(n),
                   allowable(c) ? "remove it from the attribute in the directory, or let the profile allow it "
                                  "(allowed_code_points = [\"" + code_point_text(c) + "\"]) if the name's script needs it"
                                : "remove it from the attribute in the directory: it hides or reorders what a person "
                                  "reading the certificate sees, so no profile can allow it"};
    at += static_cast<std::size_t>(len);
  }
  return {};
}

Result<std::set<char32_t>> parse_allowed_code_points(const std::vector<std::string>& entries) {
  std::set<char32_t> out;
  for (const std::string& e : entries) {
    const auto dots = e.find("..");
    char32_t first = 0, last = 0;
    if (!parse_one(std::string_view(e).substr(0, dots), first) ||
        (dots != std::string::npos && !parse_one(std::string_view(e).substr(dots + 2), last)))
      return profile_error(e, "is not a code point (U+XXXX) or a range (U+XXXX..U+YYYY)");
    if (dots == std::string::npos) last = first;
    if (last < first) return profile_error(e, "ends before it starts");
    for (char32_t c = first; c <= last; ++c) {
      if (!allowable(c))
        return profile_error(e, "includes " + code_point_text(c) + (refused_class(c) != nullptr
                                                                        ? ", which no profile may allow"
                                                                        : ", which is never refused anyway"));
      out.insert(c);
    }
  }
  return out;
}

}  // namespace certcustody::policy
