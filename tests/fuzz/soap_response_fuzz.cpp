// The CA answers as the SOAP clients read them: first byte picks the reader
// (MS-WSTEP RSTR, MS-XCEP policy, DigiCert enrolment / policy / revocation),
// the rest is the HTTP body. Never a crash or a leak; whatever is accepted as
// issued carries exactly one parseable end-entity certificate.
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "ca/digicert_wire.h"
#include "ca/mscep_wire.h"

using namespace certcustody;
using namespace certcustody::ca;

namespace {

void check_issued(const Result<Enrollment>& e) {
  if (!e || e->status != Enrollment::Status::issued) return;
  const unsigned char* p = e->certificate.data();
  X509Ptr x(d2i_X509(nullptr, &p, static_cast<long>(e->certificate.size())));
  if (!x || X509_check_ca(x.get()) != 0) std::abort();  // accepted a non-certificate or a CA as the issued one
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  auto r = soap::parse_response(body, "fuzz");
  if (!r) {
    if (r.error().code.rfind("ca.", 0) != 0) std::abort();  // every refusal is a named CA error
    return 0;
  }
  switch (data[0] % 5) {
    case 0: check_issued(mscep::enrollment_result(*r, "fuzz")); break;
    case 1: (void)mscep::template_policy(*r, "User", "fuzz"); break;
    case 2: check_issued(digicert::enrollment_result(*r, "tx-1", "fuzz")); break;
    case 3: (void)digicert::template_policy(*r, "2.16.840.1.113733.1.16.1", "fuzz"); break;
    default: (void)digicert::revoke_result(*r, "fuzz"); break;
  }
  return 0;
}
