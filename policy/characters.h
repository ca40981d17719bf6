// Which characters may stand in a text value of a certificate's Subject or
// SAN. Refused by class, not by sample: every code point of Unicode 15.0
// General_Category Cc (C0, DEL, C1), Cf (bidi embeddings, overrides,
// isolates and marks, zero-width space and joiners, BOM, soft hyphen, tags,
// ...), Zl, Zp, Co (private use) and Cs (surrogates), the 66 noncharacters,
// the other Default_Ignorable_Code_Point characters (invisible: variation
// selectors, Hangul fillers, ...), and bytes that are not UTF-8 (overlong,
// truncated, surrogates, past U+10FFFF). Source: UnicodeData.txt and
// DerivedCoreProperties.txt of Unicode 15.0; tests/policy/characters_test.cpp
// checks the table against ICU for every code point.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace certcustody::policy {

// What kind of refused character cp is ("a bidirectional isolate (Cf)"), or
// nullptr when it may stand in a certificate value.
const char* refused_class(char32_t cp);

// The refused characters a profile may let through (allowed_code_points):
// ALM, ZWNJ, ZWJ, LRM and RLM (U+061C, U+200C..U+200F), which Arabic, Persian
// and Indic names need, and the variation selectors (U+180B..U+180D,
// U+180F, U+FE00..U+FE0F, U+E0100..U+E01EF) of Mongolian and of ideographic
// variants in CJK names. Controls, overrides, isolates and the rest never.
bool allowable(char32_t cp);

// "U+200C".
std::string code_point_text(char32_t cp);
// The allowable set as text: "U+061C, U+180B..U+180D, ...".
std::string allowable_text();

// OK when value is UTF-8 holding no refused code point outside `allowed`;
// else policy.value_not_utf8 or policy.character_not_allowed, naming `what`
// (e.g. "the subject CN (attribute common_name)") and the code point.
Status check_text(const std::string& what, std::string_view value, const std::set<char32_t>& allowed = {});

// allowed_code_points entries ("U+200C", "U+FE00..U+FE0F") -> the set; an
// entry that is malformed or not allowable is policy.profile_invalid.
Result<std::set<char32_t>> parse_allowed_code_points(const std::vector<std::string>& entries);

}  // namespace certcustody::policy
