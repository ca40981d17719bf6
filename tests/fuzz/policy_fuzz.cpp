// Property fuzzer for the policy engine over (profile, request JSON): the
// first input byte picks the profile's shape (Subject form, SANs, otherName
// encoding, a template that builds names from mail), the rest is the request
// JSON. Never a crash; and whatever is accepted is a Subject of exactly the
// allowed form whose values, like the e-mail and UPN SANs, are UTF-8 with
// no refused code point (checked here with OpenSSL's own UTF-8 reader), with
// the SANs the profile asked for; an otherName holds exactly the bytes the
// request sent, which re-encode to the request's text (canonical encodings).
#include <openssl/evp.h>

#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "characters.h"
#include "policy.h"

using namespace certcustody::policy;

namespace {

// Decoded to UTF-8 whatever its ASN.1 string type; every code point passes.
bool clean(const ASN1_STRING* s) {
  unsigned char* utf8 = nullptr;
  const int n = ASN1_STRING_to_UTF8(&utf8, s);
  bool ok = n >= 0;
  for (int i = 0; ok && i < n;) {
    unsigned long cp = 0;
    const int len = UTF8_getc(utf8 + i, n - i, &cp);
    ok = len > 0 && refused_class(static_cast<char32_t>(cp)) == nullptr;
    i += len > 0 ? len : 1;
  }
  OPENSSL_free(utf8);
  return ok;
}

// The e-mail and UPN SANs are text too.
bool clean(const GENERAL_NAME* g) {
  if (g->type == GEN_EMAIL) return clean(g->d.rfc822Name);
  ASN1_OBJECT* oid = nullptr;
  ASN1_TYPE* value = nullptr;
  if (GENERAL_NAME_get0_otherName(g, &oid, &value) == 1 && OBJ_obj2nid(oid) == NID_ms_upn)
    return value->type == V_ASN1_UTF8STRING && clean(value->value.utf8string);
  return true;
}

// The otherName's DER, in the request's encoding, is the request's text.
bool sent_as_is(const GENERAL_NAME* g, const RequestAttributes& r, ValueEncoding enc) {
  ASN1_OBJECT* oid = nullptr;
  ASN1_TYPE* value = nullptr;
  if (GENERAL_NAME_get0_otherName(g, &oid, &value) != 1 || OBJ_obj2nid(oid) == NID_ms_upn) return true;
  unsigned char* der = nullptr;
  const int n = i2d_ASN1_TYPE(value, &der);
  std::string text;
  if (enc == ValueEncoding::base64) {
    text.resize(4 * ((static_cast<std::size_t>(n) + 2) / 3) + 1);
    text.resize(static_cast<std::size_t>(EVP_EncodeBlock(reinterpret_cast<unsigned char*>(text.data()), der, n)));
  } else {
    for (int i = 0; i < n; ++i) text += "0123456789abcdef"[der[i] >> 4], text += "0123456789abcdef"[der[i] & 15];
  }
  OPENSSL_free(der);
  std::string sent;
  for (char c : *r.object_guid)
    if (enc == ValueEncoding::base64 || c != ' ') sent += enc == ValueEncoding::hex ? static_cast<char>(std::tolower(static_cast<unsigned char>(c))) : c;
  return n > 0 && text == sent;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t shape = data[0];
  auto request = parse_request_json(std::string(reinterpret_cast<const char*>(data + 1), size - 1));
  if (!request) return 0;

  Profile p;
  p.name = "fuzz";
  p.subject = static_cast<SubjectForm>(shape % 3);
  p.cn_from = (shape & 0x04) ? "upn" : "common_name";
  if (shape & 0x08) p.san.push_back({SanKind::email, {}, {}, {}});
  if (shape & 0x10) p.san.push_back({SanKind::upn, {}, {}, {}});
  if (shape & 0x20)
    p.san.push_back({SanKind::other_name, "1.3.6.1.4.1.311.25.1", "object_guid",
                     (shape & 0x40) ? ValueEncoding::base64 : ValueEncoding::hex});
  TemplatePolicy t;
  if (shape & 0x80) t.fixed = {"subject.mail_firstname"};

  auto spec = evaluate(p, *request, t);
  if (!spec) {
    if (spec.error().code.rfind("policy.", 0) != 0 || spec.error().remedy.empty()) std::abort();
    return 0;
  }
  const int expected_rdns = p.subject == SubjectForm::cn_with_email ? 2 : 1;
  if (X509_NAME_entry_count(spec->subject.get()) != expected_rdns) std::abort();
  for (int i = 0; i < expected_rdns; ++i)
    if (!clean(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(spec->subject.get(), i)))) std::abort();
  if (sk_GENERAL_NAME_num(spec->san.get()) != static_cast<int>(p.san.size())) std::abort();
  for (int i = 0; i < sk_GENERAL_NAME_num(spec->san.get()); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(spec->san.get(), i);
    if (!clean(g)) std::abort();
    if ((shape & 0x20) && !sent_as_is(g, *request, p.san.back().encoding)) std::abort();
  }
  (void)subject_text(spec->subject.get());
  (void)san_text(spec->san.get());
  return 0;
}
