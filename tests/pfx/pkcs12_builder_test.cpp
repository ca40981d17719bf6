// PKCS#12 files from build_pkcs12: they open with the password, carry the key,
// certificate and chain, and use exactly the algorithms their format names.
#include "pfx/pkcs12_builder.h"

#include <openssl/pkcs12.h>

#include <gtest/gtest.h>

#include <set>

#include "pfx/test_certs.h"

namespace certcustody::pfx {
void PrintTo(PfxFormat f, std::ostream* os) { *os << pfx_format_name(f); }
}  // namespace certcustody::pfx

namespace certcustody::testing {
namespace {

using pfx::PfxFormat;
using Pkcs12Ptr = std::unique_ptr<PKCS12, OsslDeleter<PKCS12_free>>;

// A root, an intermediate and a leaf for one leaf key.
struct Hierarchy {
  EvpPkeyPtr root_key = rsa_key(2048);
  EvpPkeyPtr sub_key = ec_key();
  X509Ptr root = make_cert({.cn = "PFX Test Root", .key = root_key.get(), .ca = true, .serial = 1});
  X509Ptr sub = make_cert({.cn = "PFX Test Issuing CA", .key = sub_key.get(), .issuer = root.get(),
                           .issuer_key = root_key.get(), .ca = true, .serial = 2});
  std::vector<X509Ptr> chain() const {
    std::vector<X509Ptr> out;
    out.emplace_back(X509_dup(sub.get()));
    out.emplace_back(X509_dup(root.get()));
    return out;
  }
  X509Ptr leaf(EVP_PKEY* key, const std::string& cn) const {
    return make_cert({.cn = cn, .key = key, .issuer = sub.get(), .issuer_key = sub_key.get(),
                      .key_usage = "critical,digitalSignature,keyEncipherment", .serial = 3});
  }
};

const Hierarchy& hierarchy() {
  static const Hierarchy h;
  return h;
}

SecureBytes password(const std::string& s) { return SecureBytes(s.begin(), s.end()); }

Pkcs12Ptr parse(const SecureBytes& der) {
  const unsigned char* p = der.data();
  return Pkcs12Ptr(d2i_PKCS12(nullptr, &p, static_cast<long>(der.size())));
}

template <class T>
T* unpack(const ASN1_TYPE* param, const ASN1_ITEM* it) {
  if (param == nullptr || param->type != V_ASN1_SEQUENCE) return nullptr;
  return static_cast<T*>(ASN1_item_unpack(param->value.sequence, it));
}

std::string sn(const ASN1_OBJECT* obj) { return OBJ_nid2sn(OBJ_obj2nid(obj)); }

// "PBES2/PBKDF2/hmacWithSHA256/2048/AES-256-CBC" or "PBE-SHA1-3DES/2048".
std::string describe(const X509_ALGOR* alg) {
  if (OBJ_obj2nid(alg->algorithm) != NID_pbes2) {
    PBEPARAM* pbe = unpack<PBEPARAM>(alg->parameter, ASN1_ITEM_rptr(PBEPARAM));
    std::string out = sn(alg->algorithm) + "/" + (pbe ? std::to_string(ASN1_INTEGER_get(pbe->iter)) : "?");
    PBEPARAM_free(pbe);
    return out;
  }
  PBE2PARAM* pbe2 = unpack<PBE2PARAM>(alg->parameter, ASN1_ITEM_rptr(PBE2PARAM));
  if (pbe2 == nullptr) return "PBES2/?";
  PBKDF2PARAM* kdf = unpack<PBKDF2PARAM>(pbe2->keyfunc->parameter, ASN1_ITEM_rptr(PBKDF2PARAM));
  std::string out = "PBES2/" + sn(pbe2->keyfunc->algorithm) + "/" +
                    (kdf && kdf->prf ? sn(kdf->prf->algorithm) : std::string("hmacWithSHA1")) + "/" +
                    (kdf ? std::to_string(ASN1_INTEGER_get(kdf->iter)) : "?") + "/" + sn(pbe2->encryption->algorithm);
  PBKDF2PARAM_free(kdf);
  PBE2PARAM_free(pbe2);
  return out;
}

// What protects each part of the file, read from its ASN.1 structure.
struct Protections {
  std::vector<std::string> key_bags;       // shrouded key bags
  std::vector<std::string> encrypted_safes;  // EncryptedData safes (the certificates)
  int plain_cert_bags = 0;
  std::string mac;
  long mac_iterations = 0;
};

void read_safe_contents(STACK_OF(PKCS12_SAFEBAG) * bags, Protections& out) {
  for (int j = 0; j < sk_PKCS12_SAFEBAG_num(bags); ++j) {
    const PKCS12_SAFEBAG* bag = sk_PKCS12_SAFEBAG_value(bags, j);
    if (PKCS12_SAFEBAG_get_nid(bag) == NID_pkcs8ShroudedKeyBag) {
      const X509_ALGOR* alg = nullptr;
      X509_SIG_get0(PKCS12_SAFEBAG_get0_pkcs8(bag), &alg, nullptr);
      out.key_bags.push_back(describe(alg));
    } else if (PKCS12_SAFEBAG_get_nid(bag) == NID_certBag) {
      ++out.plain_cert_bags;
    }
  }
}

Protections protections(PKCS12* p12) {
  Protections out;
  STACK_OF(PKCS7)* safes = PKCS12_unpack_authsafes(p12);
  for (int i = 0; i < sk_PKCS7_num(safes); ++i) {
    PKCS7* p7 = sk_PKCS7_value(safes, i);
    if (OBJ_obj2nid(p7->type) == NID_pkcs7_encrypted) {
      out.encrypted_safes.push_back(describe(p7->d.encrypted->enc_data->algorithm));
    } else if (OBJ_obj2nid(p7->type) == NID_pkcs7_data) {
      STACK_OF(PKCS12_SAFEBAG)* bags = PKCS12_unpack_p7data(p7);
      read_safe_contents(bags, out);
      sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
    }
  }
  sk_PKCS7_pop_free(safes, PKCS7_free);
  const X509_ALGOR* mac_alg = nullptr;
  const ASN1_INTEGER* iter = nullptr;
  PKCS12_get0_mac(nullptr, &mac_alg, nullptr, &iter, p12);
  if (mac_alg != nullptr) out.mac = sn(mac_alg->algorithm);
  out.mac_iterations = iter != nullptr ? ASN1_INTEGER_get(iter) : 1;
  return out;
}

struct Opened {
  EvpPkeyPtr key;
  X509Ptr cert;
  std::vector<X509Ptr> ca;
};

// PKCS12_parse with the password, as a recipient's software would.
std::optional<Opened> open(const SecureBytes& der, const std::string& pw) {
  Pkcs12Ptr p12 = parse(der);
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  STACK_OF(X509)* ca = nullptr;
  if (!p12 || PKCS12_parse(p12.get(), pw.c_str(), &key, &cert, &ca) != 1) return std::nullopt;
  Opened o{EvpPkeyPtr(key), X509Ptr(cert), {}};
  while (sk_X509_num(ca) > 0) o.ca.emplace_back(sk_X509_shift(ca));
  sk_X509_free(ca);
  return o;
}

class Pkcs12Build : public ::testing::TestWithParam<PfxFormat> {};

TEST_P(Pkcs12Build, OpensWithThePasswordWithKeyCertificateAndChain) {
  const Hierarchy& h = hierarchy();
  EvpPkeyPtr keys[] = {rsa_key(2048), ec_key()};
  for (const EvpPkeyPtr& key : keys) {
    X509Ptr leaf = h.leaf(key.get(), "alice@example.com");
    ASSERT_TRUE(leaf);
    SecureBytes pw = pfx::random_password();
    auto der = pfx::build_pkcs12(key.get(), leaf.get(), h.chain(), "alice", pw, GetParam());
    ASSERT_TRUE(der) << der.error().to_string();

    auto opened = open(*der, std::string(as_string_view(pw)));
    ASSERT_TRUE(opened);
    EXPECT_EQ(EVP_PKEY_eq(opened->key.get(), key.get()), 1);
    EXPECT_EQ(X509_cmp(opened->cert.get(), leaf.get()), 0);
    int alias_len = 0;
    const unsigned char* alias = X509_alias_get0(opened->cert.get(), &alias_len);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(alias), static_cast<std::size_t>(alias_len)), "alice");
    ASSERT_EQ(opened->ca.size(), 2u);
    std::set<int> found;
    for (const X509Ptr& c : opened->ca) {
      if (X509_cmp(c.get(), h.root.get()) == 0) found.insert(0);
      if (X509_cmp(c.get(), h.sub.get()) == 0) found.insert(1);
    }
    EXPECT_EQ(found.size(), 2u);
    EXPECT_FALSE(open(*der, "wrong-password"));
  }
}

TEST_P(Pkcs12Build, UsesTheAlgorithmsOfItsFormatAndNeverRc2) {
  EvpPkeyPtr key = rsa_key(2048);
  X509Ptr leaf = hierarchy().leaf(key.get(), "bob");
  auto der = pfx::build_pkcs12(key.get(), leaf.get(), hierarchy().chain(), "", password("pw-1"), GetParam());
  ASSERT_TRUE(der) << der.error().to_string();
  Pkcs12Ptr p12 = parse(*der);
  ASSERT_TRUE(p12);
  const Protections p = protections(p12.get());
  const bool aes = GetParam() == PfxFormat::aes256_sha256;
  const std::string bag = aes ? "PBES2/PBKDF2/hmacWithSHA256/2048/AES-256-CBC" : "PBE-SHA1-3DES/2048";
  EXPECT_EQ(p.key_bags, std::vector<std::string>{bag});
  EXPECT_EQ(p.encrypted_safes, std::vector<std::string>{bag});
  EXPECT_EQ(p.plain_cert_bags, 0);
  EXPECT_EQ(p.mac, aes ? "SHA256" : "SHA1");
  EXPECT_EQ(p.mac_iterations, 2048);
  for (const auto& s : p.key_bags) EXPECT_EQ(s.find("RC2"), std::string::npos) << s;
  for (const auto& s : p.encrypted_safes) EXPECT_EQ(s.find("RC2"), std::string::npos) << s;
  EXPECT_EQ(PKCS12_verify_mac(p12.get(), "pw-1", -1), 1);
}

INSTANTIATE_TEST_SUITE_P(Formats, Pkcs12Build,
                         ::testing::Values(PfxFormat::aes256_sha256, PfxFormat::compat_3des_sha1),
                         [](const auto& p) {
                           return p.param == PfxFormat::aes256_sha256 ? std::string("aes256_sha256")
                                                                         : std::string("compat_3des_sha1");
                         });

TEST(Pkcs12Builder, RefusesAKeyThatIsNotTheCertificates) {
  EvpPkeyPtr key = rsa_key(2048), other = ec_key();
  X509Ptr leaf = hierarchy().leaf(key.get(), "carol");
  auto r = pfx::build_pkcs12(other.get(), leaf.get(), {}, "carol", password("pw"), PfxFormat::aes256_sha256);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "pfx.key_mismatch");
  auto empty = pfx::build_pkcs12(key.get(), leaf.get(), {}, "carol", SecureBytes{}, PfxFormat::aes256_sha256);
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, "pfx.password_empty");
}

TEST(Pkcs12Builder, RandomPasswordsAre32Base64UrlCharactersAndDiffer) {
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::set<std::string> seen;
  for (int i = 0; i < 8; ++i) {
    SecureBytes pw = pfx::random_password();
    ASSERT_EQ(pw.size(), 32u);
    for (std::uint8_t c : pw) EXPECT_NE(alphabet.find(static_cast<char>(c)), std::string::npos) << int{c};
    seen.insert(std::string(as_string_view(pw)));
  }
  EXPECT_EQ(seen.size(), 8u);
}

TEST(Pkcs12Builder, ParsesFormatNames) {
  for (PfxFormat f : {PfxFormat::aes256_sha256, PfxFormat::compat_3des_sha1}) {
    auto back = pfx::parse_pfx_format(pfx::pfx_format_name(f));
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, f);
  }
  EXPECT_EQ(pfx::pfx_format_name(PfxFormat::aes256_sha256), "aes256-sha256");
  EXPECT_EQ(pfx::pfx_format_name(PfxFormat::compat_3des_sha1), "3des-sha1");
  for (const char* bad : {"", "AES256-SHA256", "rc2-40", "3des"}) {
    auto r = pfx::parse_pfx_format(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, "config.pfx_format_invalid");
    const std::string text = r.error().what + r.error().remedy;
    EXPECT_NE(text.find("aes256-sha256"), std::string::npos);
    EXPECT_NE(text.find("3des-sha1"), std::string::npos);
  }
}

}  // namespace
}  // namespace certcustody::testing
