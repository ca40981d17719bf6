// Signatures and decryption through our provider have OpenSSL's semantics
// (issue 16, items 11 and 13): for every combination a user can set with
// pkeyutl, req and x509, what our provider signs verifies with OpenSSL's
// default provider and what the default provider signs verifies through
// ours, in both provider orders; deterministic signatures (RSA PKCS#1 v1.5)
// are byte-identical. What the token cannot do is refused by name.
#include <gtest/gtest.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/store.h>

#include "software_keys_fixture.h"

namespace certcustody::testing {
namespace {

// One pkeyutl signature. `input`: "msg" signs the message with -rawin and
// -digest `digest`; a digest name signs that digest of the message; "raw:N"
// signs N bytes as given.
struct SignCase {
  const char* name;
  const char* key;
  const char* input;
  const char* digest;
  std::vector<std::string> pkeyopts;
  bool deterministic;
};
void PrintTo(const SignCase& c, std::ostream* os) { *os << c.name; }

std::vector<std::string> pss(const std::string& saltlen) {
  return {"rsa_padding_mode:pss", "rsa_pss_saltlen:" + saltlen};
}
std::vector<std::string> plus(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

const SignCase kSignCases[] = {
    // RSA PKCS#1 v1.5: no digest set = these bytes, padded, no DigestInfo
    {"rsa_raw_32", "swrsa", "raw:32", "", {}, true},
    {"rsa_raw_64", "swrsa", "raw:64", "", {}, true},  // pkeyutl takes at most 64 bytes without a digest
    {"rsa_raw_explicit_pkcs1", "swrsa", "raw:48", "", {"rsa_padding_mode:pkcs1"}, true},
    // digest set = input is that digest, DigestInfo added
    {"rsa_sha1", "swrsa", "sha1", "", {"digest:sha1"}, true},
    {"rsa_sha224", "swrsa", "sha224", "", {"digest:sha224"}, true},
    {"rsa_sha256", "swrsa", "sha256", "", {"digest:sha256"}, true},
    {"rsa_sha384", "swrsa", "sha384", "", {"digest:sha384"}, true},
    {"rsa_sha512", "swrsa", "sha512", "", {"digest:sha512"}, true},
    {"rsa_sha512_256", "swrsa", "sha512-256", "", {"digest:sha512-256"}, true},
    {"rsa_sha3_256", "swrsa", "sha3-256", "", {"digest:sha3-256"}, true},
    {"rsa_sha3_384", "swrsa", "sha3-384", "", {"digest:sha3-384"}, true},
    {"rsa_sha3_512", "swrsa", "sha3-512", "", {"digest:sha3-512"}, true},
    {"rsa_rawin_sha256", "swrsa", "msg", "sha256", {}, true},
    {"rsa_rawin_sha224", "swrsa", "msg", "sha224", {}, true},
    {"rsa_rawin_sha3_384", "swrsa", "msg", "sha3-384", {}, true},
    // RSA-PSS: salt digest / max / auto / N; MGF1 apart; no digest = SHA-1
    {"pss_sha256_salt_digest", "swrsa", "sha256", "", plus({"digest:sha256"}, pss("digest")), false},
    {"pss_sha256_salt_max", "swrsa", "sha256", "", plus({"digest:sha256"}, pss("max")), false},
    {"pss_sha256_salt_auto", "swrsa", "sha256", "", plus({"digest:sha256"}, pss("auto")), false},
    {"pss_sha256_salt_0", "swrsa", "sha256", "", plus({"digest:sha256"}, pss("0")), false},
    {"pss_sha256_salt_31", "swrsa", "sha256", "", plus({"digest:sha256"}, pss("31")), false},
    {"pss_sha256_salt_222_largest", "swrsa", "sha256", "", plus({"digest:sha256"}, pss("222")), false},
    {"pss_sha224_salt_digest", "swrsa", "sha224", "", plus({"digest:sha224"}, pss("digest")), false},
    {"pss_no_digest_is_sha1", "swrsa", "sha1", "", {"rsa_padding_mode:pss"}, false},
    {"pss_rawin_sha384_salt_max", "swrsa", "msg", "sha384", pss("max"), false},
    {"pss_rawin_sha512_default_salt", "swrsa", "msg", "sha512", {"rsa_padding_mode:pss"}, false},
    // ECDSA: no digest set = the input is the hash, of any length
    {"ecdsa_raw_32", "swec", "raw:32", "", {}, false},
    {"ecdsa_raw_20", "swec", "raw:20", "", {}, false},
    {"ecdsa_raw_48_truncated", "swec", "raw:48", "", {}, false},
    {"ecdsa_sha384", "swec", "sha384", "", {"digest:sha384"}, false},
    {"ecdsa_rawin_sha256", "swec", "msg", "sha256", {}, false},
    {"ecdsa_rawin_sha224", "swec", "msg", "sha224", {}, false},
    {"ecdsa_rawin_sha512", "swec", "msg", "sha512", {}, false},
    {"ecdsa_rawin_sha3_256", "swec", "msg", "sha3-256", {}, false},
};

class ProviderSigning : public SoftwareKeysFixture, public ::testing::WithParamInterface<SignCase> {
 protected:
  // The input file of a case.
  std::string input_file(const SignCase& c) {
    const std::string in = path("in");
    const std::string input = c.input;
    if (input == "msg") return path("msg");
    if (input.rfind("raw:", 0) == 0) {
      std::string bytes;
      for (int i = 0, n = std::stoi(input.substr(4)); i < n; ++i) bytes.push_back(static_cast<char>(0x30 + i % 64));
      write_file(in, bytes);
      return in;
    }
    EXPECT_EQ(openssl({"dgst", "-" + input, "-binary", "-out", in, path("msg")}).exit_code, 0);
    return in;
  }
  static std::vector<std::string> options(const SignCase& c) {
    std::vector<std::string> o;
    if (*c.digest != '\0') o = {"-rawin", "-digest", c.digest};
    for (const std::string& p : c.pkeyopts) o.insert(o.end(), {"-pkeyopt", p});
    return o;
  }
};

TEST_P(ProviderSigning, VerifiesBothWaysWithTheDefaultProvider) {
  const SignCase& c = GetParam();
  write_file(path("msg"), "a message signed by certcustody's provider\n");
  const std::string in = input_file(c), key = c.key;
  const auto opts = options(c);
  for (bool ours_first : {true, false}) {
    SCOPED_TRACE(ours_first ? "certcustody first" : "default first");
    auto s = ours(plus({"pkeyutl", "-sign", "-inkey", uri(key), "-in", in, "-out", path("sig.ours")}, opts),
                  ours_first);
    ASSERT_EQ(s.exit_code, 0) << s.output;
    auto v = openssl(plus({"pkeyutl", "-verify", "-pubin", "-inkey", path(key + ".pub"), "-in", in, "-sigfile",
                           path("sig.ours")},
                          opts));
    EXPECT_EQ(v.exit_code, 0) << v.output;
    EXPECT_NE(v.output.find("Signature Verified Successfully"), std::string::npos) << v.output;

    ASSERT_EQ(openssl(plus({"pkeyutl", "-sign", "-inkey", path(key + ".key"), "-in", in, "-out",
                            path("sig.default")},
                           opts))
                  .exit_code,
              0);
    auto back = ours(plus({"pkeyutl", "-verify", "-inkey", uri(key), "-in", in, "-sigfile", path("sig.default")}, opts),
                     ours_first);
    EXPECT_EQ(back.exit_code, 0) << back.output;
    EXPECT_NE(back.output.find("Signature Verified Successfully"), std::string::npos) << back.output;
    if (c.deterministic) {
      EXPECT_EQ(read_file(path("sig.ours")), read_file(path("sig.default")));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Pkeyutl, ProviderSigning, ::testing::ValuesIn(kSignCases),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

// What OpenSSL itself refuses, or the token cannot do, fails by name.
struct RefusalCase {
  const char* name;
  const char* key;
  const char* input;
  std::vector<std::string> pkeyopts;
  const char* error;
};
void PrintTo(const RefusalCase& c, std::ostream* os) { *os << c.name; }

const RefusalCase kRefusals[] = {
    {"digest_length_mismatch", "swrsa", "raw:20", {"digest:sha256"}, "custody.digest_length"},
    {"ecdsa_digest_length_mismatch", "swec", "raw:20", {"digest:sha384"}, "custody.digest_length"},
    {"pss_salt_223_too_long", "swrsa", "raw:32", plus({"digest:sha256"}, pss("223")), "custody.data_invalid"},
    // SoftHSM 2.6 lists no SHA-3 digest: its PSS cannot hash with it
    {"pss_sha3_not_in_token", "swrsa", "raw:32", plus({"digest:sha3-256"}, pss("digest")),
     "custody.mechanism_unsupported"},
    {"pss_sha512_224_no_mgf1", "swrsa", "raw:28", plus({"digest:sha512-224"}, pss("digest")),
     "custody.mechanism_unsupported"},
    // SoftHSM lists CKM_RSA_PKCS_PSS but takes MGF1 of the message digest only
    {"pss_mgf1_apart_refused_by_token", "swrsa", "raw:32", plus(pss("20"), {"digest:sha256", "rsa_mgf1_md:sha1"}),
     "custody.mechanism_unsupported"},
    {"md5", "swrsa", "raw:16", {"digest:md5"}, "provider.signature_parameters"},
};

class ProviderSigningRefusals : public SoftwareKeysFixture, public ::testing::WithParamInterface<RefusalCase> {};

TEST_P(ProviderSigningRefusals, AreNamed) {
  const RefusalCase& c = GetParam();
  std::string bytes(static_cast<std::size_t>(std::stoi(std::string(c.input).substr(4))), '\x11');
  write_file(path("in"), bytes);
  std::vector<std::string> args = {"pkeyutl", "-sign", "-inkey", uri(c.key), "-in", path("in"), "-out", path("sig")};
  for (const std::string& p : c.pkeyopts) args.insert(args.end(), {"-pkeyopt", p});
  for (bool ours_first : {true, false}) {
    auto r = ours(args, ours_first);
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find(std::string("error ") + c.error), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("custody.token_error"), std::string::npos) << r.output;  // not a bare CKR_*
  }
}

INSTANTIATE_TEST_SUITE_P(Pkeyutl, ProviderSigningRefusals, ::testing::ValuesIn(kRefusals),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

// RSA decryption (item 13): PKCS#1 v1.5, OpenSSL's default, refused by name
// (a padding oracle); encryption is OpenSSL's. OAEP decryption in the token:
// Provider.RsaOaepDecryptsInTheToken.
class ProviderDecryption : public SoftwareKeysFixture {};

TEST_F(ProviderDecryption, Pkcs1IsRefusedByNameEncryptionIsOpenssls) {
  write_file(path("secret"), "a content-encryption key");
  ASSERT_EQ(openssl({"pkeyutl", "-encrypt", "-pubin", "-inkey", path("swrsa.pub"), "-in", path("secret"), "-out",
                     path("v15.enc")})
                .exit_code,
            0);
  for (bool ours_first : {true, false}) {
    SCOPED_TRACE(ours_first ? "certcustody first" : "default first");
    for (const std::vector<std::string>& opts :
         {std::vector<std::string>{}, std::vector<std::string>{"-pkeyopt", "rsa_padding_mode:pkcs1"}}) {
      std::vector<std::string> args = {"pkeyutl", "-decrypt", "-inkey", uri("swrsa"), "-in", path("v15.enc"),
                                       "-out", path("out")};
      args.insert(args.end(), opts.begin(), opts.end());
      auto r = ours(args, ours_first);
      EXPECT_NE(r.exit_code, 0);
      EXPECT_NE(r.output.find("error provider.rsa_pkcs1_decrypt_refused"), std::string::npos) << r.output;
      EXPECT_EQ(r.output.find("CKR_"), std::string::npos) << r.output;  // the token is never asked
    }
    auto raw = ours({"pkeyutl", "-decrypt", "-inkey", uri("swrsa"), "-in", path("v15.enc"), "-pkeyopt",
                     "rsa_padding_mode:none"},
                    ours_first);
    EXPECT_NE(raw.output.find("error provider.cipher_parameters"), std::string::npos) << raw.output;

    // Encryption through our provider is OpenSSL's (PKCS#1 v1.5 by default,
    // OAEP with its label); the software key decrypts it.
    for (const std::vector<std::string>& opts :
         {std::vector<std::string>{},
          std::vector<std::string>{"-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_label:0102"}}) {
      std::vector<std::string> enc = {"pkeyutl", "-encrypt", "-pubin", "-inkey", uri("swrsa", "public"), "-in",
                                      path("secret"), "-out", path("ours.enc")};
      enc.insert(enc.end(), opts.begin(), opts.end());
      ASSERT_EQ(ours(enc, ours_first).exit_code, 0);
      std::vector<std::string> dec = {"pkeyutl", "-decrypt", "-inkey", path("swrsa.key"), "-in", path("ours.enc"),
                                      "-out", path("plain")};
      dec.insert(dec.end(), opts.begin(), opts.end());
      ASSERT_EQ(openssl(dec).exit_code, 0);
      EXPECT_EQ(read_file(path("plain")), "a content-encryption key");
    }
  }
}

// Certificates and requests signed through the provider, with -sigopt: the
// AlgorithmIdentifier (RSA-PSS parameters included) is what OpenSSL writes,
// and `req -verify` / `openssl verify` accept them.
struct CertCase {
  const char* name;
  const char* key;
  const char* digest;
  std::vector<std::string> sigopts;
  const char* algorithm;  // as `x509 -text` prints it
};
void PrintTo(const CertCase& c, std::ostream* os) { *os << c.name; }

const CertCase kCertCases[] = {
    {"rsa_pss_salt_digest", "swrsa", "sha256", {"rsa_padding_mode:pss", "rsa_pss_saltlen:digest"}, "rsassaPss"},
    {"rsa_pss_salt_max_sha384", "swrsa", "sha384", {"rsa_padding_mode:pss", "rsa_pss_saltlen:max"}, "rsassaPss"},
    {"rsa_pss_salt_20", "swrsa", "sha256", {"rsa_padding_mode:pss", "rsa_pss_saltlen:20"}, "rsassaPss"},
    {"rsa_pss_default_salt", "swrsa", "sha512", {"rsa_padding_mode:pss"}, "rsassaPss"},
    {"rsa_pkcs1_sha224", "swrsa", "sha224", {}, "sha224WithRSAEncryption"},
    {"rsa_pkcs1_sha3_256", "swrsa", "sha3-256", {}, "RSA-SHA3-256"},
    {"ecdsa_sha512", "swec", "sha512", {}, "ecdsa-with-SHA512"},
    {"ecdsa_sha384", "swec", "sha384", {}, "ecdsa-with-SHA384"},  // OpenSSL 3.0 cannot verify ECDSA-SHA3 certificates
};

class ProviderCertificates : public SoftwareKeysFixture, public ::testing::WithParamInterface<CertCase> {
 protected:
  std::vector<std::string> sign_options(const CertCase& c) const {
    std::vector<std::string> o = {std::string("-") + c.digest};
    for (const std::string& s : c.sigopts) o.insert(o.end(), {"-sigopt", s});
    return o;
  }
  void expect_self_signed_ok(const std::string& cert, const CertCase& c) {
    auto v = openssl({"verify", "-check_ss_sig", "-CAfile", cert, cert});
    EXPECT_EQ(v.exit_code, 0) << v.output;
    EXPECT_NE(v.output.find(": OK"), std::string::npos) << v.output;
    auto t = openssl({"x509", "-in", cert, "-noout", "-text"});
    EXPECT_NE(t.output.find(c.algorithm), std::string::npos) << t.output;
  }
};

TEST_P(ProviderCertificates, VerifyWithOpenssl) {
  const CertCase& c = GetParam();
  const auto opts = sign_options(c);
  for (bool ours_first : {true, false}) {
    SCOPED_TRACE(ours_first ? "certcustody first" : "default first");
    auto r = ours(plus({"req", "-new", "-key", uri(c.key), "-subj", "/CN=req", "-out", path("r.csr")}, opts),
                  ours_first);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto rv = openssl({"req", "-in", path("r.csr"), "-verify", "-noout"});
    EXPECT_EQ(rv.exit_code, 0) << rv.output;
    EXPECT_NE(rv.output.find("verify OK"), std::string::npos) << rv.output;

    auto x = ours(plus({"req", "-x509", "-new", "-key", uri(c.key), "-subj", "/CN=self", "-days", "1", "-out",
                        path("self.pem")},
                       opts),
                  ours_first);
    ASSERT_EQ(x.exit_code, 0) << x.output;
    expect_self_signed_ok(path("self.pem"), c);

    auto re = ours(plus({"x509", "-in", path("self.pem"), "-signkey", uri(c.key), "-out", path("re.pem")}, opts),
                   ours_first);
    ASSERT_EQ(re.exit_code, 0) << re.output;
    expect_self_signed_ok(path("re.pem"), c);

    // The certificate as a CA: a leaf issued from the request, signed through us.
    auto leaf = ours(plus({"x509", "-req", "-in", path("r.csr"), "-CA", path("self.pem"), "-CAkey", uri(c.key),
                           "-CAcreateserial", "-days", "1", "-out", path("leaf.pem")},
                          opts),
                     ours_first);
    ASSERT_EQ(leaf.exit_code, 0) << leaf.output;
    auto lv = openssl({"verify", "-CAfile", path("self.pem"), path("leaf.pem")});
    EXPECT_EQ(lv.exit_code, 0) << lv.output;
  }
}

INSTANTIATE_TEST_SUITE_P(ReqX509, ProviderCertificates, ::testing::ValuesIn(kCertCases),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

// The same in-process through EVP calls, with the built-in provider: our key
// loaded by URI, the software key by OpenSSL's default provider.
class ProviderEvp : public SoftwareKeysFixture {
 protected:
  void SetUp() override {
    SoftwareKeysFixture::SetUp();
    share_custody_with_provider();
  }
  void TearDown() override {
    unshare_custody();
    SoftwareKeysFixture::TearDown();
  }
  static EvpPkeyPtr load_uri(const std::string& u) {
    std::unique_ptr<OSSL_STORE_CTX, OsslDeleter<OSSL_STORE_close>> store(
        OSSL_STORE_open_ex(u.c_str(), nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr));
    while (store && !OSSL_STORE_eof(store.get())) {
      std::unique_ptr<OSSL_STORE_INFO, OsslDeleter<OSSL_STORE_INFO_free>> info(OSSL_STORE_load(store.get()));
      if (info && OSSL_STORE_INFO_get_type(info.get()) == OSSL_STORE_INFO_PKEY)
        return EvpPkeyPtr(OSSL_STORE_INFO_get1_PKEY(info.get()));
    }
    return nullptr;
  }
  EvpPkeyPtr load_file(const std::string& name) const {
    std::unique_ptr<BIO, OsslDeleter<BIO_free>> bio(BIO_new_file(path(name).c_str(), "r"));
    return EvpPkeyPtr(bio ? PEM_read_bio_PrivateKey_ex(bio.get(), nullptr, nullptr, nullptr, nullptr,
                                                        "provider=default")
                          : nullptr);
  }
};

struct EvpCase {
  const char* md;  // nullptr: EVP_PKEY_sign over the bytes as given
  int pad;
  int saltlen;
  const char* mgf1;
};

bool configure(EVP_PKEY_CTX* pctx, const EvpCase& c) {
  if (c.pad == 0) return true;  // ECDSA
  if (EVP_PKEY_CTX_set_rsa_padding(pctx, c.pad) != 1) return false;
  if (c.pad != RSA_PKCS1_PSS_PADDING) return true;
  return EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, c.saltlen) == 1 &&
         (c.mgf1 == nullptr || EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, c.mgf1, nullptr) == 1);
}

Bytes digest_sign(EVP_PKEY* key, const EvpCase& c, const std::string& msg, Bytes* algorithm_id) {
  EvpMdCtxPtr md(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  std::size_t n = 0;
  if (EVP_DigestSignInit_ex(md.get(), &pctx, c.md, nullptr, nullptr, key, nullptr) != 1 || !configure(pctx, c) ||
      EVP_DigestSign(md.get(), nullptr, &n, nullptr, 0) != 1)
    return {};
  unsigned char aid[256];
  OSSL_PARAM p[] = {OSSL_PARAM_construct_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, aid, sizeof aid),
                    OSSL_PARAM_construct_end()};
  if (EVP_PKEY_CTX_get_params(pctx, p) == 1) algorithm_id->assign(aid, aid + p[0].return_size);
  Bytes sig(n);
  const auto* m = reinterpret_cast<const unsigned char*>(msg.data());
  if (EVP_DigestSign(md.get(), sig.data(), &n, m, msg.size()) != 1) return {};
  sig.resize(n);
  return sig;
}

bool digest_verify(EVP_PKEY* key, const EvpCase& c, const std::string& msg, const Bytes& sig) {
  EvpMdCtxPtr md(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  const auto* m = reinterpret_cast<const unsigned char*>(msg.data());
  return EVP_DigestVerifyInit_ex(md.get(), &pctx, c.md, nullptr, nullptr, key, nullptr) == 1 && configure(pctx, c) &&
         EVP_DigestVerify(md.get(), sig.data(), sig.size(), m, msg.size()) == 1;
}

TEST_F(ProviderEvp, DigestSignMatchesTheDefaultProvider) {
  const std::string msg = "in-process signature";
  const EvpCase cases[] = {{"SHA256", RSA_PKCS1_PADDING, 0, nullptr},
                           {"SHA3-512", RSA_PKCS1_PADDING, 0, nullptr},
                           {"SHA256", RSA_PKCS1_PSS_PADDING, RSA_PSS_SALTLEN_DIGEST, nullptr},
                           {"SHA384", RSA_PKCS1_PSS_PADDING, RSA_PSS_SALTLEN_MAX, nullptr},
                           {"SHA256", RSA_PKCS1_PSS_PADDING, 7, "SHA256"},
                           {"SHA224", RSA_PKCS1_PSS_PADDING, RSA_PSS_SALTLEN_AUTO, nullptr}};
  EvpPkeyPtr token = load_uri(uri("swrsa")), software = load_file("swrsa.key");
  ASSERT_TRUE(token && software);
  for (const EvpCase& c : cases) {
    SCOPED_TRACE(std::string(c.md) + " pad " + std::to_string(c.pad) + " salt " + std::to_string(c.saltlen));
    Bytes ours_aid, default_aid;
    Bytes ours_sig = digest_sign(token.get(), c, msg, &ours_aid);
    Bytes default_sig = digest_sign(software.get(), c, msg, &default_aid);
    ASSERT_FALSE(ours_sig.empty());
    ASSERT_FALSE(default_sig.empty());
    EXPECT_EQ(ours_aid, default_aid);  // the AlgorithmIdentifier a certificate would carry
    EXPECT_TRUE(digest_verify(software.get(), c, msg, ours_sig));
    EXPECT_TRUE(digest_verify(token.get(), c, msg, default_sig));
    if (c.pad == RSA_PKCS1_PADDING) {
      EXPECT_EQ(ours_sig, default_sig);
    }
  }
  EvpPkeyPtr ec_token = load_uri(uri("swec")), ec_software = load_file("swec.key");
  ASSERT_TRUE(ec_token && ec_software);
  for (const char* md : {"SHA256", "SHA384", "SHA3-256"}) {
    Bytes ours_aid, default_aid;
    const EvpCase c{md, 0, 0, nullptr};
    Bytes sig = digest_sign(ec_token.get(), c, msg, &ours_aid);
    digest_sign(ec_software.get(), c, msg, &default_aid);
    EXPECT_EQ(ours_aid, default_aid) << md;
    EXPECT_TRUE(digest_verify(ec_software.get(), c, msg, sig)) << md;
  }
}

// EVP_PKEY_sign over `input`; `pad` 0 keeps the default padding.
Bytes raw_sign(EVP_PKEY* key, const Bytes& input, int pad = 0) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
  std::size_t n = 512;
  Bytes sig(n);
  if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1 || (pad != 0 && EVP_PKEY_CTX_set_rsa_padding(ctx.get(), pad) != 1) ||
      EVP_PKEY_sign(ctx.get(), sig.data(), &n, input.data(), input.size()) != 1)
    return Bytes{};
  sig.resize(n);
  return sig;
}

TEST_F(ProviderEvp, SignWithoutDigestSignsTheBytesAsGiven) {
  EvpPkeyPtr token = load_uri(uri("swrsa")), software = load_file("swrsa.key");
  ASSERT_TRUE(token && software);
  const Bytes input(100, 0x5a);  // not a DigestInfo, not a digest
  const Bytes ours_sig = raw_sign(token.get(), input);
  ASSERT_FALSE(ours_sig.empty());
  EXPECT_EQ(ours_sig, raw_sign(software.get(), input));
  // Up to k - 11 bytes (RFC 8017 §9.2), as OpenSSL; one more is named.
  const Bytes longest(245, 0x33), too_long(246, 0x33);
  EXPECT_EQ(raw_sign(token.get(), longest), raw_sign(software.get(), longest));
  ERR_clear_error();
  EXPECT_TRUE(raw_sign(token.get(), too_long).empty());
  EXPECT_NE(error_queue().find("error custody.data_invalid"), std::string::npos);
  // Raw RSA (no padding) is not offered by name.
  EXPECT_TRUE(raw_sign(token.get(), Bytes(256, 0x01), RSA_NO_PADDING).empty());
  EXPECT_NE(error_queue().find("error provider.signature_parameters"), std::string::npos);
  // Recovering the signature with the public key gives the input back.
  EvpPkeyCtxPtr rec(EVP_PKEY_CTX_new_from_pkey(nullptr, software.get(), "provider=default"));
  Bytes out(512);
  std::size_t n = out.size();
  ASSERT_EQ(EVP_PKEY_verify_recover_init(rec.get()), 1);
  ASSERT_EQ(EVP_PKEY_verify_recover(rec.get(), out.data(), &n, ours_sig.data(), ours_sig.size()), 1);
  out.resize(n);
  EXPECT_EQ(out, input);
}

}  // namespace
}  // namespace certcustody::testing
