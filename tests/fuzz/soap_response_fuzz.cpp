// The CA answers as the SOAP clients read them: first byte picks the reader
// (MS-WSTEP RSTR, MS-XCEP policy, DigiCert enrolment / policy / revocation),
// the rest is the HTTP body. Never a crash or a leak; every refusal is a named
// CA error; whatever is accepted as issued carries exactly one parseable
// end-entity certificate, for the key of the request's CSR (the seeds 0_issued
// and 2_issued certify the key of kCsrBase64); every enrolment URI a policy yields is
// https with certificate authentication.
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

// PKCS#10 for CN=fuzz user, EC P-256 (made with openssl req for the seeds).
constexpr const char* kCsrBase64 =
    "MIHNMHYCAQAwFDESMBAGA1UEAwwJZnV6eiB1c2VyMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"
    "98pCmOklbj6I4OWTZ632UakRBamgJqc/aBwUHzTwgtDbN5UGzu1rXLI+nUy0mnwgflt+fGnjjLd7"
    "CosoTARmPKAAMAoGCCqGSM49BAMCA0cAMEQCIGyFrMPG4NH8/mh6ZggzsPMSt+i0LgooRpcZGS0L"
    "emXAAiAV+EZj3tMwTgdiwm+LRyJ915K4zJ2v210l1W/fl2cLUw==";

const PendingTicket& request() {
  static const PendingTicket t = [] {
    PendingTicket p;
    p.transaction_id = "tx-1";
    p.template_id = "User";
    p.csr_der = xml::base64_decode(kCsrBase64, "the fuzz CSR").value();
    return p;
  }();
  return t;
}

void check_issued(const Result<Enrollment>& e) {
  if (!e) {
    if (e.error().code.rfind("ca.", 0) != 0) std::abort();  // a refusal that is not a named CA error
    return;
  }
  if (e->status != Enrollment::Status::issued) return;
  const unsigned char* p = e->certificate.data();
  X509Ptr x(d2i_X509(nullptr, &p, static_cast<long>(e->certificate.size())));
  if (!x || X509_check_ca(x.get()) != 0) std::abort();  // accepted a non-certificate or a CA as the issued one
  const Bytes& der = request().csr_der;
  const unsigned char* q = der.data();
  X509ReqPtr csr(d2i_X509_REQ(nullptr, &q, static_cast<long>(der.size())));
  if (!csr || EVP_PKEY_eq(X509_get0_pubkey(x.get()), X509_REQ_get0_pubkey(csr.get())) != 1)
    std::abort();  // "issued" for another key
}

void check_policy(const soap::Response& r) {
  auto p = mscep::policy_response(r, "fuzz");
  if (!p) return;
  for (const mscep::PolicyTemplate& t : p->templates) {
    auto uris = mscep::enrolment_uris(*p, t.name, "fuzz");
    if (!uris) continue;
    if (uris->empty()) std::abort();
    for (const std::string& u : *uris)
      if (u.rfind("https://", 0) != 0) std::abort();
  }
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
    case 0: check_issued(mscep::enrollment_result(*r, request(), "fuzz")); break;
    case 1:
      (void)mscep::template_policy(*r, "User", "fuzz");
      check_policy(*r);
      break;
    case 2: check_issued(digicert::enrollment_result(*r, request(), "fuzz")); break;
    case 3: (void)digicert::template_policy(*r, "2.16.840.1.113733.1.16.1", "fuzz"); break;
    default: (void)digicert::revoke_result(*r, "fuzz"); break;
  }
  return 0;
}
