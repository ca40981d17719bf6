// The check every CA client makes before it reports "issued": the
// certificate is for the public key of the CSR the request was made with.
#include <gtest/gtest.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ca/ca_client.h"
#include "ca/resilience.h"

namespace certcustody::ca {
namespace {

EvpPkeyPtr ec_key() { return EvpPkeyPtr(EVP_EC_gen("P-256")); }
EvpPkeyPtr rsa_key() { return EvpPkeyPtr(EVP_RSA_gen(2048)); }

Bytes csr_for(EVP_PKEY* key) {
  X509ReqPtr req(X509_REQ_new());
  X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req.get()), "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>("user"), -1, -1, 0);
  X509_REQ_set_pubkey(req.get(), key);
  X509_REQ_sign(req.get(), key, EVP_sha256());
  unsigned char* der = nullptr;
  const int n = i2d_X509_REQ(req.get(), &der);
  Bytes out(der, der + std::max(n, 0));
  OPENSSL_free(der);
  return out;
}

// A certificate for `subject_key`, signed by `issuer_key` (self-issued name).
X509Ptr certificate_for(EVP_PKEY* subject_key, EVP_PKEY* issuer_key, bool ca = false) {
  X509Ptr c(X509_new());
  X509_set_version(c.get(), X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(c.get()), 0x4A);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(c.get()), "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(ca ? "CA" : "user"), -1, -1, 0);
  X509_set_issuer_name(c.get(), X509_get_subject_name(c.get()));
  X509_gmtime_adj(X509_getm_notBefore(c.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(c.get()), 3600);
  X509_set_pubkey(c.get(), subject_key);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, c.get(), c.get(), nullptr, nullptr, 0);
  X509_EXTENSION* bc = X509V3_EXT_conf_nid(nullptr, &ctx, NID_basic_constraints, ca ? "CA:TRUE" : "CA:FALSE");
  X509_add_ext(c.get(), bc, -1);
  X509_EXTENSION_free(bc);
  X509_sign(c.get(), issuer_key, EVP_sha256());
  return c;
}

TEST(IssuedKey, TheCsrsOwnKeyPasses) {
  EvpPkeyPtr keys[] = {ec_key(), rsa_key()};
  for (const EvpPkeyPtr& key : keys) {
    EvpPkeyPtr ca = ec_key();
    X509Ptr cert = certificate_for(key.get(), ca.get());
    EXPECT_TRUE(check_issued_key(cert.get(), csr_for(key.get()), "answer"));
  }
}

TEST(IssuedKey, AnotherKeyIsNamedAndDefinitive) {
  EvpPkeyPtr mine = ec_key(), theirs = ec_key(), ca = ec_key();
  X509Ptr cert = certificate_for(theirs.get(), ca.get());
  Status s = check_issued_key(cert.get(), csr_for(mine.get()), "answer of CA x");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, "ca.issued_key_mismatch");
  EXPECT_NE(s.error().what.find("answer of CA x"), std::string::npos);
  EXPECT_NE(s.error().what.find("4A"), std::string::npos) << s.error().what;  // the certificate's serial
  EXPECT_NE(s.error().remedy.find("revoke"), std::string::npos);
  EXPECT_FALSE(is_transient(s.error()));
  EXPECT_FALSE(leaves_outcome_unknown(s.error()));
  // Same algorithm and size, another key of another type: still refused.
  EvpPkeyPtr rsa = rsa_key();
  EXPECT_EQ(check_issued_key(cert.get(), csr_for(rsa.get()), "x").error().code, "ca.issued_key_mismatch");
}

TEST(IssuedKey, NoCsrOrADamagedOneIsNotTakenAsAMatch) {
  EvpPkeyPtr key = ec_key(), ca = ec_key();
  X509Ptr cert = certificate_for(key.get(), ca.get());
  EXPECT_EQ(check_issued_key(cert.get(), {}, "x").error().code, "ca.ticket_invalid");
  Bytes damaged = csr_for(key.get());
  damaged.resize(damaged.size() / 2);
  EXPECT_EQ(check_issued_key(cert.get(), damaged, "x").error().code, "ca.issued_key_mismatch");
}

TEST(IssuedKey, TheOneEndEntityCertificateIsCheckedAndKeepsTheRequest) {
  EvpPkeyPtr key = ec_key(), other = ec_key(), ca_key = ec_key();
  X509Ptr ca = certificate_for(ca_key.get(), ca_key.get(), true);
  std::vector<X509Ptr> certs;
  certs.push_back(certificate_for(key.get(), ca_key.get()));
  X509_up_ref(ca.get());
  certs.emplace_back(ca.get());
  PendingTicket request;
  request.csr_der = csr_for(key.get());
  request.template_id = "2.16.840.1.1";
  request.transaction_id = "tx";
  auto e = issued_from_certificates(certs, request, "answer");
  ASSERT_TRUE(e) << e.error().to_string();
  EXPECT_EQ(e->chain.size(), 1u);
  EXPECT_EQ(e->ticket.template_id, "2.16.840.1.1");
  EXPECT_EQ(e->ticket.transaction_id, "tx");
  request.csr_der = csr_for(other.get());
  EXPECT_EQ(issued_from_certificates(certs, request, "answer").error().code, "ca.issued_key_mismatch");
}

}  // namespace
}  // namespace certcustody::ca
