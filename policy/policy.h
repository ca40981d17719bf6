// The Subject/SAN policy engine: (profile, request attributes, the CA
// template's policy) -> a certificate request specification, or a named
// error saying exactly what is wrong. Pure: no I/O, no token.
// Spec: connector-behaviour.md §3–§5 (profiles, Subject and SAN rules).
#pragma once

#include <openssl/x509v3.h>

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "common/ossl.h"
#include "custody/key_custody.h"

namespace certcustody::policy {

// The only three Subject forms (§4): CN=x | CN=x, E=mail | CN=mail.
enum class SubjectForm { cn, cn_with_email, cn_as_email };
enum class SanKind { email, upn, other_name };
enum class ValueEncoding { hex, base64 };

struct SanEntry {
  SanKind kind = SanKind::email;
  std::string oid;        // other_name: the type-id OID
  std::string attribute;  // other_name: the request attribute holding the value
  ValueEncoding encoding = ValueEncoding::hex;  // other_name: how that value is encoded
};

struct Profile {
  std::string name;
  std::string ca;        // [ca.<name>] it is issued by
  std::string template_id;  // DigiCert profile OID or Microsoft template name
  SubjectForm subject = SubjectForm::cn;
  // The attribute the CN is taken from: "common_name", "upn" or "email", and
  // nothing else (no fallback). Unset: common_name, or for cn-as-email the
  // e-mail, else the UPN. A cn-as-email CN is checked as an address.
  std::optional<std::string> cn_from;
  std::vector<SanEntry> san;
  KeyType key_type = KeyType::rsa2048;
  unsigned validity_days = 365;
  std::vector<std::string> ekus;  // names or OIDs, e.g. clientAuth
  std::vector<std::string> allowed_email_domains;  // empty: any
  std::vector<std::string> allowed_upn_domains;
  std::string pfx_format = "aes256-sha256";  // PKCS#12 protection; "3des-sha1" for older devices
  // Refused characters this profile lets through (characters.h: allowable()).
  std::set<char32_t> allowed_code_points;
};

// The user/device attributes a PFX request carries.
struct RequestAttributes {
  std::optional<std::string> upn, email, common_name, object_guid, device_id;
  // The attribute of that name (nullptr: no such attribute).
  const std::optional<std::string>* find(const std::string& name) const;
  std::optional<std::string>* find(const std::string& name) {
    return const_cast<std::optional<std::string>*>(std::as_const(*this).find(name));
  }
};

// What the CA accepts for the template (from the CA clients). Attribute
// names: subject.cn, subject.email, san.email, san.upn, san.othername:<oid>,
// and subject.mail_firstname / subject.mail_lastname for DigiCert profiles
// that build the Subject from the mail address. "san.othername:*" supports
// every otherName (a Microsoft template that takes the SAN from the request).
// An extension the CA needs in the PKCS#10 to recognise the template, made by
// the CA client (e.g. the Microsoft certificate template extension); the
// policy engine passes it on untouched.
struct RequestExtension {
  std::string oid;  // dotted
  Bytes value;      // DER of the extension's value (the content of extnValue)
  bool critical = false;
};

struct TemplatePolicy {
  std::set<std::string> supported;  // empty: not known, no check
  std::set<std::string> fixed;      // set by the CA itself
  unsigned min_key_bits = 0;
  std::string key_algorithm;  // "RSA" or "EC" when the template fixes it; empty: any
  std::vector<RequestExtension> request_extensions;
  // Digest of the PKCS#10's signature when the template asks for one
  // stronger than SHA-256 ("SHA384", "SHA512"); empty: SHA-256.
  std::string request_digest;
};

// The resolved request, as OpenSSL types (never strings of DER or DNs).
struct RequestSpec {
  X509NamePtr subject;
  std::unique_ptr<GENERAL_NAMES, OsslDeleter<GENERAL_NAMES_free>> san;
  KeyType key_type = KeyType::rsa2048;
  std::vector<std::string> ekus;  // OIDs, dotted
  unsigned validity_days = 0;
  std::vector<RequestExtension> extensions;  // the template's, from TemplatePolicy
  std::string digest;                        // from TemplatePolicy::request_digest; empty: SHA-256
};

Result<RequestSpec> evaluate(const Profile& profile, const RequestAttributes& request,
                             const TemplatePolicy& tpl = {});

// Checks a profile on its own (at configuration load): OIDs, EKU names.
Status validate_profile(const Profile& profile);

// "CN = IWUser0, emailAddress = …" and "email:…, othername: UPN::…", as the
// openssl command line prints them.
std::string subject_text(const X509_NAME* name);
std::string san_text(const GENERAL_NAMES* names);

// Request JSON (docs/request-schema.md): version 1 (attributes), version 2
// adds the recipient the issued PFX is enveloped for.
struct RequestDocument {
  int version = 1;
  std::optional<std::string> id, profile, recipient;
  RequestAttributes attributes;
};
Result<RequestDocument> parse_request_document(const std::string& text);
Result<RequestAttributes> parse_request_json(const std::string& text);  // the attributes alone
Result<TemplatePolicy> parse_template_policy_json(const std::string& text);

}  // namespace certcustody::policy
