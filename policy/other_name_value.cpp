#include "other_name_value.h"

#include <openssl/err.h>
#include <openssl/evp.h>

#include <algorithm>

#include "characters.h"

namespace certcustody::policy {
namespace {

constexpr int kMaxDepth = 32;

Error perr(const std::string& code, const std::string& what, const std::string& remedy) {
  return Error{"policy." + code, what, remedy};
}

// --- the text encodings

Error encoding_error(ValueEncoding enc, const std::string& attribute, const std::string& why) {
  return perr("othername_encoding_invalid",
              "attribute " + attribute + " is declared " + (enc == ValueEncoding::hex ? "hex" : "base64") + " but " +
                  why,
              "send the value in the declared encoding, canonical (hex: byte pairs, unseparated or separated by "
              "single spaces; base64: padded, zero pad bits, no whitespace), or fix the profile's encoding; "
              "certcustody never re-encodes it");
}

Result<Bytes> decode_hex(const std::string& v, const std::string& attribute) {
  auto bad = [&](const std::string& why) { return encoding_error(ValueEncoding::hex, attribute, why); };
  const bool spaced = v.size() > 2 && v[2] == ' ';
  const std::size_t stride = spaced ? 3 : 2;
  if (v.empty() || (v.size() + (spaced ? 1 : 0)) % stride != 0)
    return bad(spaced ? "its byte pairs are not all separated by single spaces" : "it has an odd number of hex digits");
  Bytes out;
  for (std::size_t i = 0; i < v.size(); i += stride) {
    if (spaced && i + 2 < v.size() && v[i + 2] != ' ')
      return bad("its byte pairs are not all separated by single spaces");
    const int hi = OPENSSL_hexchar2int(static_cast<unsigned char>(v[i]));
    const int lo = OPENSSL_hexchar2int(static_cast<unsigned char>(v[i + 1]));
    if (hi < 0 || lo < 0) return bad("it has a character other than a hex digit in byte " + std::to_string(i / stride + 1));
    out.push_back(static_cast<std::uint8_t>(hi * 16 + lo));
  }
  return out;
}

// Canonical: what EVP_EncodeBlock makes of the decoded bytes, character for
// character (so no whitespace, no missing or extra '=', zero pad bits).
Result<Bytes> decode_base64(const std::string& v, const std::string& attribute) {
  auto bad = [&](const std::string& why) { return encoding_error(ValueEncoding::base64, attribute, why); };
  static const std::string kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
  if (const auto at = v.find_first_not_of(kAlphabet); at != std::string::npos)
    return bad("it has a character outside the base64 alphabet at position " + std::to_string(at + 1));
  const auto pad = v.find('=');
  if (v.empty() || v.size() % 4 != 0 || (pad != std::string::npos && pad + 2 < v.size()) ||
      (pad != std::string::npos && v.find_first_not_of('=', pad) != std::string::npos))
    return bad("it is not padded to a multiple of 4 characters with at most two trailing '='");
  Bytes out(v.size() / 4 * 3);
  const int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(v.data()), static_cast<int>(v.size()));
  if (n < 0) return bad("it does not decode");
  out.resize(static_cast<std::size_t>(n) - (pad == std::string::npos ? 0 : v.size() - pad));
  std::string again(v.size() + 1, '\0');
  again.resize(static_cast<std::size_t>(EVP_EncodeBlock(reinterpret_cast<unsigned char*>(again.data()), out.data(),
                                                        static_cast<int>(out.size()))));
  if (again != v) return bad("its last character has pad bits that are not zero (the canonical form is " + again + ")");
  return out;
}

// --- DER

struct Walk {
  const unsigned char* start;
  const std::string& attribute;
  const std::set<char32_t>& allowed;

  std::string at(const unsigned char* p) const { return " at byte " + std::to_string(p - start + 1); }
  Error invalid(const std::string& why) const {
    return perr("othername_value_invalid", "attribute " + attribute + " is not exactly one DER element: " + why,
                "send the DER encoding of the otherName value (for a GUID: 04 10 followed by its 16 bytes)");
  }
  Error not_der(const std::string& why) const {
    return perr("othername_not_der", "attribute " + attribute + " is BER, not DER: " + why,
                "send the DER encoding (X.690 §10: definite lengths in the fewest octets, primitive strings); "
                "certcustody puts the value in byte for byte and does not re-encode it");
  }
};

std::string tag_name(int cls, int tag) {
  if (cls == V_ASN1_UNIVERSAL) return ASN1_tag2str(tag);
  return std::string(cls == V_ASN1_CONTEXT_SPECIFIC ? "[" : cls == V_ASN1_APPLICATION ? "[APPLICATION " : "[PRIVATE ") +
         std::to_string(tag) + "]";
}

std::size_t tag_octets(const unsigned char* header, const unsigned char* end) {
  if ((header[0] & 0x1f) != 0x1f) return 1;
  std::size_t n = 1;
  while (header + n < end && (header[n] & 0x80) != 0) ++n;
  return n + 1;
}

std::size_t minimal_tag_octets(int tag) {
  std::size_t n = 1;
  if (tag >= 31)
    for (; tag > 0; tag >>= 7) ++n;
  return n;
}

std::size_t minimal_length_octets(long len) {
  std::size_t n = 1;
  if (len >= 0x80)
    for (; len > 0; len >>= 8) ++n;
  return n;
}

// Universal types DER encodes constructed; every other universal type is primitive.
bool constructed_type(int tag) {
  return tag == V_ASN1_SEQUENCE || tag == V_ASN1_SET || tag == V_ASN1_EXTERNAL || tag == 11 /* EMBEDDED PDV */ ||
         tag == 29 /* CHARACTER STRING */;
}

bool text_type(int tag) {
  switch (tag) {
    case V_ASN1_UTF8STRING: case V_ASN1_NUMERICSTRING: case V_ASN1_PRINTABLESTRING: case V_ASN1_T61STRING:
    case V_ASN1_VIDEOTEXSTRING: case V_ASN1_IA5STRING: case V_ASN1_GRAPHICSTRING: case V_ASN1_VISIBLESTRING:
    case V_ASN1_GENERALSTRING: case V_ASN1_UNIVERSALSTRING: case V_ASN1_BMPSTRING:
      return true;
    default:
      return false;
  }
}

Status check_text_element(const Walk& w, const ASN1_STRING* s, const unsigned char* header) {
  unsigned char* utf8 = nullptr;
  const int n = ASN1_STRING_to_UTF8(&utf8, s);
  const std::string what = "the " + tag_name(V_ASN1_UNIVERSAL, ASN1_STRING_type(s)) + w.at(header) +
                           " of the otherName value (attribute " + w.attribute + ")";
  if (n < 0) {
    ERR_clear_error();
    return Error{"policy.value_not_utf8", what + " is not text of its type", "send valid text in the otherName value"};
  }
  const std::string text(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(n));
  OPENSSL_free(utf8);
  return check_text(what, text, w.allowed);
}

// A primitive universal element: OpenSSL must decode it and re-encode the
// same bytes; BOOLEAN, whose byte OpenSSL keeps as it came, must be 00 or FF.
Status check_primitive(const Walk& w, const unsigned char* header, const unsigned char* end, int tag) {
  const unsigned char* q = header;
  Asn1TypePtr t(d2i_ASN1_TYPE(nullptr, &q, end - header));
  if (t == nullptr || q != end) {
    ERR_clear_error();
    return w.not_der("the contents of the " + tag_name(V_ASN1_UNIVERSAL, tag) + w.at(header) + " are not valid DER");
  }
  if (tag == V_ASN1_BOOLEAN && end[-1] != 0x00 && end[-1] != 0xFF)
    return w.not_der("the BOOLEAN" + w.at(header) + " is neither 00 nor FF");
  unsigned char* der = nullptr;
  const int n = i2d_ASN1_TYPE(t.get(), &der);
  const bool same = n == end - header && std::equal(header, end, der);
  OPENSSL_free(der);
  if (!same) return w.not_der("the " + tag_name(V_ASN1_UNIVERSAL, tag) + w.at(header) + " is not in canonical form");
  if (text_type(tag)) return check_text_element(w, t->value.asn1_string, header);
  return {};
}

Status check_elements(const Walk& w, const unsigned char* p, const unsigned char* end, int depth);

// One TLV at p; p moves past it.
Status check_element(const Walk& w, const unsigned char*& p, const unsigned char* end, int depth) {
  const unsigned char* header = p;
  long len = 0;
  int tag = 0, cls = 0;
  const int ret = ASN1_get_object(&p, &len, &tag, &cls, end - header);
  if ((ret & 0x80) != 0) {
    ERR_clear_error();
    const std::size_t t = tag_octets(header, end);
    if (header + t < end && header[t] == 0x80) return w.not_der("an indefinite length" + w.at(header));
    return w.invalid("the element" + w.at(header) + " is truncated or malformed");
  }
  if (ret == 0x21) return w.not_der("an indefinite length" + w.at(header));
  const std::size_t t = tag_octets(header, p);
  if (t != minimal_tag_octets(tag)) return w.not_der("a tag in more octets than needed" + w.at(header));
  if (static_cast<std::size_t>(p - header) - t != minimal_length_octets(len))
    return w.not_der("a length in more octets than needed" + w.at(header));
  const bool constructed = (ret & V_ASN1_CONSTRUCTED) != 0;
  const unsigned char* contents_end = p + len;
  if (cls == V_ASN1_UNIVERSAL) {
    if (tag == V_ASN1_EOC) return w.not_der("an end-of-contents marker" + w.at(header));
    if (constructed != constructed_type(tag))
      return w.not_der(std::string(constructed ? "a constructed " : "a primitive ") + tag_name(cls, tag) +
                       w.at(header) + ", which DER encodes " + (constructed ? "primitive" : "constructed"));
  }
  if (constructed) {
    if (depth >= kMaxDepth) return w.invalid("it is nested more than " + std::to_string(kMaxDepth) + " deep");
    CC_TRY(check_elements(w, p, contents_end, depth + 1));
  } else if (cls == V_ASN1_UNIVERSAL) {
    CC_TRY(check_primitive(w, header, contents_end, tag));
  }
  p = contents_end;
  return {};
}

Status check_elements(const Walk& w, const unsigned char* p, const unsigned char* end, int depth) {
  while (p < end) CC_TRY(check_element(w, p, end, depth));
  return {};
}

Result<Asn1TypePtr> der_value(const Bytes& der, const Walk& w) {
  const unsigned char* p = der.data();
  const unsigned char* end = der.data() + der.size();
  CC_TRY(check_element(w, p, end, 0));
  if (p != end) return w.invalid(std::to_string(end - p) + " more bytes follow the element");
  // The whole, once more: decodes, and re-encodes to the bytes received.
  const unsigned char* q = der.data();
  Asn1TypePtr t(d2i_ASN1_TYPE(nullptr, &q, static_cast<long>(der.size())));
  unsigned char* again = nullptr;
  const int n = t == nullptr ? -1 : i2d_ASN1_TYPE(t.get(), &again);
  const bool same = q == end && n == static_cast<int>(der.size()) && std::equal(der.begin(), der.end(), again);
  OPENSSL_free(again);
  ERR_clear_error();
  if (!same) return w.not_der("OpenSSL does not re-encode it to the same bytes");
  return t;
}

}  // namespace

Result<Asn1TypePtr> other_name_value(const std::string& text, ValueEncoding encoding, const std::string& attribute,
                                     const std::set<char32_t>& allowed) {
  CC_TRY_ASSIGN(Bytes der, encoding == ValueEncoding::hex ? decode_hex(text, attribute) : decode_base64(text, attribute));
  return der_value(der, Walk{der.data(), attribute, allowed});
}

}  // namespace certcustody::policy
