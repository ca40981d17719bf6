// Subject names given on the command line, in the RFC 4514 string form
// ("CN=certcustody RA,O=Example"), turned into an OpenSSL X509_NAME.
#pragma once

#include <string>

#include "common/error.h"
#include "common/ossl.h"

namespace certcustody {

// Splits at unescaped ',' and '=' (RFC 4514 §3 escapes: \, \+ \" \\ \< \> \; \=
// \# and \XX hex pairs), looks the attribute types up in OpenSSL's object
// table, and adds the values as UTF-8. Multi-valued RDNs ('+') are refused.
Result<X509NamePtr> parse_rfc4514_name(const std::string& text);

// One line, RFC 2253/4514 order, as `openssl x509 -subject -nameopt RFC2253` prints.
std::string name_to_string(const X509_NAME* name);

}  // namespace certcustody
