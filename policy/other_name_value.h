// otherName values from request attributes (connector-behaviour.md §4): the
// declared encoding, canonical, of exactly one DER element, which goes into
// the certificate byte for byte; certcustody never guesses and never
// re-encodes. Hex: byte pairs, either unseparated ("0410b8ba…") or
// separated by single spaces ("04 10 b8 ba…", as the reference prints
// them). Base64: RFC 4648 §4 with its padding, zero pad bits, nothing else.
// DER (X.690 §10): definite lengths in the fewest octets, tags in the
// fewest octets, strings primitive, BOOLEAN 00/FF, and primitive contents as
// OpenSSL re-encodes them; at every depth, with text inside (UTF8String,
// BMPString, IA5String, …) held to the character rules of characters.h.
#pragma once

#include <openssl/asn1.h>

#include <memory>
#include <set>
#include <string>

#include "common/ossl.h"
#include "policy.h"

namespace certcustody::policy {

using Asn1TypePtr = std::unique_ptr<ASN1_TYPE, OsslDeleter<ASN1_TYPE_free>>;

// The value of `attribute` as one ASN.1 element, or a named error:
// policy.othername_encoding_invalid (not canonical hex/base64),
// policy.othername_value_invalid (not exactly one element),
// policy.othername_not_der (BER: indefinite or non-minimal lengths, a
// constructed string, …), policy.character_not_allowed / value_not_utf8.
Result<Asn1TypePtr> other_name_value(const std::string& text, ValueEncoding encoding, const std::string& attribute,
                                     const std::set<char32_t>& allowed);

}  // namespace certcustody::policy
