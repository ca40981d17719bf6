#include "ra/distinguished_name.h"

#include <openssl/objects.h>

#include <cctype>
#include <vector>

namespace certcustody {
namespace {

Error name_error(const std::string& text, const std::string& why) {
  return Error{"ra.subject_invalid", "subject \"" + text + "\": " + why,
               "write it as RFC 4514, e.g. --subject \"CN=certcustody RA,O=Example\" (escape ',' as '\\,')"};
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

struct Rdn {
  std::string type;
  std::string value;
};

Result<std::vector<Rdn>> split(const std::string& text) {
  std::vector<Rdn> out;
  Rdn cur;
  bool in_value = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\\') {
      if (i + 1 >= text.size()) return name_error(text, "ends with a lone backslash");
      int hi = hex_value(text[i + 1]);
      int lo = i + 2 < text.size() ? hex_value(text[i + 2]) : -1;
      char lit;
      if (hi >= 0 && lo >= 0) {
        lit = static_cast<char>(hi * 16 + lo);
        i += 2;
      } else {
        lit = text[++i];
      }
      (in_value ? cur.value : cur.type).push_back(lit);
    } else if (c == '+') {
      return name_error(text, "multi-valued RDNs ('+') are not accepted");
    } else if (c == '=' && !in_value) {
      in_value = true;
    } else if (c == ',') {
      if (!in_value) return name_error(text, "an RDN has no '='");
      out.push_back(std::move(cur));
      cur = {};
      in_value = false;
    } else {
      (in_value ? cur.value : cur.type).push_back(c);
    }
  }
  if (!in_value) return name_error(text, text.empty() ? "is empty" : "an RDN has no '='");
  out.push_back(std::move(cur));
  for (Rdn& r : out) {
    while (!r.type.empty() && r.type.front() == ' ') r.type.erase(r.type.begin());
    while (!r.type.empty() && r.type.back() == ' ') r.type.pop_back();
    if (r.value.empty()) return name_error(text, "attribute " + r.type + " has an empty value");
    for (unsigned char ch : r.value)
      if (ch < 0x20 || ch == 0x7f) return name_error(text, "attribute " + r.type + " contains a control character");
  }
  return out;
}

}  // namespace

Result<X509NamePtr> parse_rfc4514_name(const std::string& text) {
  CC_TRY_ASSIGN(std::vector<Rdn> rdns, split(text));
  X509NamePtr name(X509_NAME_new());
  // RFC 4514 writes the most significant RDN last.
  for (auto it = rdns.rbegin(); it != rdns.rend(); ++it) {
    int nid = OBJ_txt2nid(it->type.c_str());
    if (nid == NID_undef) return name_error(text, "unknown attribute type \"" + it->type + "\"");
    if (X509_NAME_add_entry_by_NID(name.get(), nid, MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(it->value.data()),
                                   static_cast<int>(it->value.size()), -1, 0) != 1)
      return openssl_error("ra.subject_invalid", "subject \"" + text + "\": value of " + it->type + " is not allowed",
                           "check the value's length and characters for that attribute (CN: at most 64)");
  }
  return name;
}

std::string name_to_string(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

}  // namespace certcustody
