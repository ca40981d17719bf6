// The crypto-only limit of the issuance pipeline (issue 7): requests per
// second when a request costs only its cryptography — no disk, no network, no
// request store, no TLS, HTTP or XML. bench/run-pipeline-bench.sh runs it next
// to the real daemon (`certcustody serve`) against the CA simulator and
// reports end-to-end ÷ this.
//
//   BM_Crypto/<alg>/minimal   what issue 7 names: user key generation, the CA's
//                             signature of the certificate, the PKCS#12, and
//                             the two token wraps (pfx::envelope_for for the
//                             password and for the PKCS#12: content key made,
//                             used and OAEP-wrapped in the token)
//   BM_Crypto/<alg>/full      minimal + all the other per-request cryptography
//                             of the daemon and of the CA: the PKCS#10 (signed
//                             with the user key; decoded and verified as the CA
//                             does), the at-rest seals as the pipeline makes them
//                             (PKCS#8 sealed with AES-GCM in the token, unsealed
//                             and decoded again for the PKCS#12; PKCS#12 and
//                             password sealed) and the certificate's DER round
//                             trip (stored, read back)
//   BM_Step/<alg>/<step>      each step of `full` alone, one thread: where the
//                             time of a request goes
//
// <alg>: ec-p256 | rsa2048, the user key (the profile's key_type). The CA key
// is EC P-256 in software, as the simulator's issuing CA; the certificate is
// made as the simulator makes it (subject, SAN and EKU of the request,
// CA:FALSE, SKI, AKI, random serial, one day). PKCS#12: aes256-sha256 (the
// default pfx_format), with the CA certificate as chain. Token: a private
// SoftHSM token (file object store, as provisioned) with an AES-256 KEK and
// the pool's default 8 sessions; recipient: an RSA-2048 certificate, as the
// device-management service's. The OpenSSL environment is the daemon's: the
// certcustody provider built in with the default one, and a 4 MiB secure heap
// for private keys (CRYPTO_secure_malloc_init, as `serve` sets up).
//
// Threads: 2 = the daemon's workers in the end-to-end run (the limit the
// ratio uses), 1 for reference. Every iteration is a new request id (AAD of the
// seals, friendly name of the PKCS#12); the first one of each run is opened
// as the recipient would open it (CMS_decrypt, PKCS12_parse), so the benchmark
// measures the real thing. Minimum times are set per benchmark (and win over
// --benchmark_min_time): 1 s for EC, 8 s for RSA, whose key generation varies
// a lot from key to key; 0.5 s per step (4 s for the RSA key).
//
// SoftHSM 2.6.1 crashes when C_CloseSession/C_Finalize run at process exit
// after OpenSSL has cleaned up, so main() tears the token down before it returns.

#include <benchmark/benchmark.h>
#include <openssl/cms.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bench_pki.h"
#include "bench_support.h"
#include "common/ossl.h"
#include "common/secure_buffer.h"
#include "custody/pkcs11_custody.h"
#include "custody/pkcs11_module.h"
#include "pfx/enveloped_data.h"
#include "pfx/pkcs12_builder.h"
#include "pipeline/sealed.h"
#include "pipeline/user_key.h"
#include "policy.h"
#include "provider.h"
#include "support/softhsm_token.h"

namespace {

using namespace certcustody;
using namespace certcustody::bench;  // value_or_throw, openssl_or_throw, the test PKI
using certcustody::testing::SoftHsmToken;

constexpr const char* kTokenLabel = "certcustody-pipeline-bench";
constexpr const char* kKek = "pfx-kek";

struct Algorithm {
  const char* name;
  KeyType type;
};
constexpr std::array<Algorithm, 2> kAlgorithms{{{"ec-p256", KeyType::ec_p256}, {"rsa2048", KeyType::rsa2048}}};

// Set when any benchmark reports an error: main() then exits 1.
std::atomic<bool> g_benchmark_error{false};
std::atomic<std::uint64_t> g_request_number{0};

void skip(benchmark::State& state, const std::string& why) {
  g_benchmark_error = true;
  state.SkipWithError(why.c_str());
}

std::string next_request_id() { return "bench-" + std::to_string(g_request_number.fetch_add(1)); }

using ExtPtr = std::unique_ptr<X509_EXTENSION, OsslDeleter<X509_EXTENSION_free>>;
using Pkcs12Ptr = std::unique_ptr<PKCS12, OsslDeleter<PKCS12_free>>;
using CmsPtr = std::unique_ptr<CMS_ContentInfo, OsslDeleter<CMS_ContentInfo_free>>;

// The token with its KEK, the issuing CA and the recipient: shared by all
// benchmarks, made on first use.
class Fixture {
 public:
  Fixture() : token_(kTokenLabel) {
    custody_ = value_or_throw(Pkcs11Custody::open(token_.custody_config()), "Pkcs11Custody::open");
    (void)value_or_throw(custody_->generate_secret_key(kKek, 256), "generating the KEK");
    // An issuing CA like the simulator's: EC P-256, with a subject key identifier.
    ca_.key = software_key(KeyType::ec_p256);
    ca_.certificate = issue_certificate(ca_.key.get(), common_name("Bench Issuing CA").get(), nullptr, ca_.key.get(),
                                        {{NID_basic_constraints, "critical,CA:TRUE"},
                                         {NID_key_usage, "critical,keyCertSign,cRLSign"},
                                         {NID_subject_key_identifier, "hash"}});
    recipient_key_ = software_key(KeyType::rsa2048);
    recipient_ = issue_certificate(recipient_key_.get(), common_name("Bench MDM service").get(), nullptr,
                                   recipient_key_.get(), {{NID_key_usage, "critical,keyEncipherment"}});
  }

  Pkcs11Custody& custody() { return *custody_; }
  const TestCa& ca() const { return ca_; }
  X509* recipient() const { return recipient_.get(); }
  EVP_PKEY* recipient_key() const { return recipient_key_.get(); }

 private:
  SoftHsmToken token_;
  std::unique_ptr<Pkcs11Custody> custody_;
  TestCa ca_;
  EvpPkeyPtr recipient_key_;
  X509Ptr recipient_;
};

Lazy<Fixture> g_fixture;

// One worker's view: the request specification (profile "users": CN, e-mail
// SAN, clientAuth, as the end-to-end run's profiles) and the chain.
struct Worker {
  policy::RequestSpec spec;
  std::vector<X509Ptr> chain;
};

Worker make_worker(const Fixture& f, KeyType type) {
  policy::Profile profile;
  profile.name = "bench";
  profile.subject = policy::SubjectForm::cn;
  profile.san = {policy::SanEntry{}};  // email
  profile.key_type = type;
  profile.ekus = {"clientAuth"};
  policy::RequestAttributes attributes;
  attributes.common_name = "IWUser0";
  attributes.email = "IWUser0@contoso.example";
  Worker w;
  w.spec = value_or_throw(policy::evaluate(profile, attributes), "policy::evaluate");
  openssl_or_throw(X509_up_ref(f.ca().certificate.get()) == 1, "X509_up_ref");
  w.chain.emplace_back(f.ca().certificate.get());
  return w;
}

// The CA's part: a certificate for `pub` as the simulator issues one.
X509Ptr ca_certificate(const Fixture& f, const policy::RequestSpec& spec, EVP_PKEY* pub) {
  X509* ca = f.ca().certificate.get();
  X509Ptr c(X509_new());
  unsigned char serial[16];
  openssl_or_throw(RAND_bytes(serial, sizeof serial) == 1, "RAND_bytes");
  serial[0] = static_cast<unsigned char>((serial[0] & 0x3F) | 0x40);
  std::unique_ptr<BIGNUM, OsslDeleter<BN_free>> bn(BN_bin2bn(serial, sizeof serial, nullptr));
  openssl_or_throw(c && bn && X509_set_version(c.get(), X509_VERSION_3) == 1 &&
                       BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(c.get())) != nullptr &&
                       X509_set_subject_name(c.get(), spec.subject.get()) == 1 &&
                       X509_set_issuer_name(c.get(), X509_get_subject_name(ca)) == 1 &&
                       X509_set_pubkey(c.get(), pub) == 1 &&
                       X509_gmtime_adj(X509_getm_notBefore(c.get()), -300) != nullptr &&
                       X509_gmtime_adj(X509_getm_notAfter(c.get()), 86400) != nullptr,
                   "assembling the user certificate");
  if (spec.san) {
    ExtPtr e(X509V3_EXT_i2d(NID_subject_alt_name, 0, spec.san.get()));
    openssl_or_throw(e && X509_add_ext(c.get(), e.get(), -1) == 1, "adding the SAN");
  }
  if (!spec.ekus.empty()) {
    std::unique_ptr<EXTENDED_KEY_USAGE, OsslDeleter<EXTENDED_KEY_USAGE_free>> eku(sk_ASN1_OBJECT_new_null());
    for (const std::string& oid : spec.ekus) {
      ASN1_OBJECT* o = OBJ_txt2obj(oid.c_str(), 1);
      openssl_or_throw(o != nullptr && sk_ASN1_OBJECT_push(eku.get(), o) > 0, "EKU " + oid);
    }
    ExtPtr e(X509V3_EXT_i2d(NID_ext_key_usage, 0, eku.get()));
    openssl_or_throw(e && X509_add_ext(c.get(), e.get(), -1) == 1, "adding the EKU");
  }
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, ca, c.get(), nullptr, nullptr, 0);
  for (auto [nid, value] : {std::pair{NID_basic_constraints, "CA:FALSE"}, std::pair{NID_subject_key_identifier, "hash"},
                            std::pair{NID_authority_key_identifier, "keyid"}}) {
    ExtPtr e(X509V3_EXT_conf_nid(nullptr, &v3, nid, value));
    openssl_or_throw(e && X509_add_ext(c.get(), e.get(), -1) == 1, std::string("adding ") + OBJ_nid2sn(nid));
  }
  openssl_or_throw(X509_sign(c.get(), f.ca().key.get(), EVP_sha256()) > 0, "X509_sign");
  return c;
}

// The CA decodes the PKCS#10 and checks its signature.
void ca_check_csr(const Bytes& der) {
  const unsigned char* p = der.data();
  X509ReqPtr req(d2i_X509_REQ(nullptr, &p, static_cast<long>(der.size())));
  EVP_PKEY* pub = req ? X509_REQ_get0_pubkey(req.get()) : nullptr;
  openssl_or_throw(pub != nullptr && X509_REQ_verify(req.get(), pub) == 1, "verifying the PKCS#10");
}

// Stored as DER and read back, as the pipeline keeps the certificate.
X509Ptr der_round_trip(X509* cert) {
  unsigned char* der = nullptr;
  const int n = i2d_X509(cert, &der);
  openssl_or_throw(n > 0, "i2d_X509");
  const unsigned char* p = der;
  X509Ptr back(d2i_X509(nullptr, &p, n));
  OPENSSL_free(der);
  openssl_or_throw(back != nullptr, "d2i_X509");
  return back;
}

// What one request produced (checked once, before measuring).
struct Output {
  SecureBytes password, p12;
  Bytes env_password, env_p12;
};

// One request's cryptography. `full`: with the PKCS#10, the at-rest seals and
// the DER round trips (see the top of the file).
Output one_request(Fixture& f, const Worker& w, KeyType type, bool full) {
  const std::string id = next_request_id();
  KeyCustody& custody = f.custody();
  EvpPkeyPtr key = value_or_throw(pipeline::generate_user_key(type), "generate_user_key");
  X509Ptr cert;
  if (full) {
    Bytes csr = value_or_throw(pipeline::build_csr(w.spec, key.get()), "build_csr");
    SecureBytes pk8 = value_or_throw(pipeline::private_key_pkcs8(key.get()), "private_key_pkcs8");
    std::string sealed_key =
        value_or_throw(pipeline::seal_at_rest(custody, kKek, id, "user-key", pk8), "sealing the user key");
    ca_check_csr(csr);
    X509Ptr issued = ca_certificate(f, w.spec, key.get());
    cert = der_round_trip(issued.get());
    // The delivery reads the user key back from its sealed form.
    SecureBytes opened =
        value_or_throw(pipeline::unseal_at_rest(custody, kKek, id, "user-key", sealed_key), "unsealing the user key");
    key = value_or_throw(pipeline::private_key_from_pkcs8(opened), "private_key_from_pkcs8");
  } else {
    cert = ca_certificate(f, w.spec, key.get());
  }
  Output out;
  out.password = pfx::random_password();
  out.p12 = value_or_throw(
      pfx::build_pkcs12(key.get(), cert.get(), w.chain, id, out.password, pfx::PfxFormat::aes256_sha256),
      "build_pkcs12");
  if (full) {
    std::string sealed_pfx = value_or_throw(pipeline::seal_at_rest(custody, kKek, id, "pfx", out.p12), "sealing the PKCS#12");
    std::string sealed_pw =
        value_or_throw(pipeline::seal_at_rest(custody, kKek, id, "pfx-password", out.password), "sealing the password");
    benchmark::DoNotOptimize(sealed_pfx.data());
    benchmark::DoNotOptimize(sealed_pw.data());
  }
  out.env_password = value_or_throw(pfx::envelope_for(custody, f.recipient(), out.password), "envelope (password)");
  out.env_p12 = value_or_throw(pfx::envelope_for(custody, f.recipient(), out.p12), "envelope (PKCS#12)");
  return out;
}

// The recipient opens both envelopes with its key and the PKCS#12 with the
// password: the benchmark makes the real thing, not something cheaper.
void check_output(const Fixture& f, const Output& o) {
  auto open = [&](const Bytes& env) {
    const unsigned char* p = env.data();
    CmsPtr cms(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(env.size())));
    BioPtr out(BIO_new(BIO_s_mem()));
    openssl_or_throw(cms && out && CMS_decrypt(cms.get(), f.recipient_key(), f.recipient(), nullptr, out.get(), 0) == 1,
                     "CMS_decrypt of an envelope");
    char* data = nullptr;
    const long n = BIO_get_mem_data(out.get(), &data);
    return std::string(data, static_cast<std::size_t>(n));
  };
  const std::string password = open(o.env_password);
  const std::string p12 = open(o.env_p12);
  if (password != std::string(as_string_view(o.password)) || p12 != std::string(as_string_view(o.p12)))
    throw std::runtime_error("an envelope does not hold what was sealed");
  const unsigned char* p = reinterpret_cast<const unsigned char*>(p12.data());
  Pkcs12Ptr pkcs12(d2i_PKCS12(nullptr, &p, static_cast<long>(p12.size())));
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  openssl_or_throw(pkcs12 && PKCS12_parse(pkcs12.get(), password.c_str(), &key, &cert, nullptr) == 1,
                   "PKCS12_parse with the password");
  const bool match = X509_check_private_key(cert, key) == 1;
  EVP_PKEY_free(key);
  X509_free(cert);
  openssl_or_throw(match, "the PKCS#12 key matches its certificate");
}

// --- benchmarks -------------------------------------------------------------

void bm_crypto(benchmark::State& state, KeyType type, bool full) {
  std::string error;
  Fixture* f = g_fixture.get(error);
  if (f == nullptr) {
    skip(state, error);
    return;
  }
  try {
    const Worker w = make_worker(*f, type);
    if (state.thread_index() == 0) check_output(*f, one_request(*f, w, type, full));
    Pkcs11Module& module = f->custody().pool().module();
    const std::uint64_t calls0 = module.call_count();
    for (auto _ : state) {
      Output o = one_request(*f, w, type, full);
      benchmark::DoNotOptimize(o.env_p12.data());
    }
    state.SetItemsProcessed(state.iterations());
    // The module's call counter is shared by all threads: exact only for one.
    if (state.threads() == 1)
      state.counters["p11_calls"] = benchmark::Counter(static_cast<double>(module.call_count() - calls0),
                                                       benchmark::Counter::kAvgIterations);
  } catch (const std::exception& e) {
    skip(state, e.what());
  }
}

enum class Step { keygen, csr, ca_check_csr, ca_sign, pkcs12, at_rest, envelopes };
constexpr std::array<std::pair<const char*, Step>, 7> kSteps{{{"keygen", Step::keygen},
                                                               {"csr", Step::csr},
                                                               {"ca_check_csr", Step::ca_check_csr},
                                                               {"ca_sign", Step::ca_sign},
                                                               {"pkcs12", Step::pkcs12},
                                                               {"at_rest", Step::at_rest},
                                                               {"envelopes", Step::envelopes}}};

// One step of `full` on the inputs of one request made beforehand.
void bm_step(benchmark::State& state, KeyType type, Step step) {
  std::string error;
  Fixture* f = g_fixture.get(error);
  if (f == nullptr) {
    skip(state, error);
    return;
  }
  try {
    KeyCustody& custody = f->custody();
    const Worker w = make_worker(*f, type);
    EvpPkeyPtr key = value_or_throw(pipeline::generate_user_key(type), "generate_user_key");
    const Bytes csr = value_or_throw(pipeline::build_csr(w.spec, key.get()), "build_csr");
    const X509Ptr cert = ca_certificate(*f, w.spec, key.get());
    const SecureBytes password = pfx::random_password();
    const SecureBytes p12 = value_or_throw(
        pfx::build_pkcs12(key.get(), cert.get(), w.chain, "bench", password, pfx::PfxFormat::aes256_sha256),
        "build_pkcs12");
    for (auto _ : state) {
      switch (step) {
        case Step::keygen: {
          EvpPkeyPtr k = value_or_throw(pipeline::generate_user_key(type), "generate_user_key");
          benchmark::DoNotOptimize(k.get());
          break;
        }
        case Step::csr: {
          Bytes c = value_or_throw(pipeline::build_csr(w.spec, key.get()), "build_csr");
          benchmark::DoNotOptimize(c.data());
          break;
        }
        case Step::ca_check_csr: ca_check_csr(csr); break;
        case Step::ca_sign: {
          X509Ptr c = der_round_trip(ca_certificate(*f, w.spec, key.get()).get());
          benchmark::DoNotOptimize(c.get());
          break;
        }
        case Step::pkcs12: {
          SecureBytes pw = pfx::random_password();
          SecureBytes b = value_or_throw(
              pfx::build_pkcs12(key.get(), cert.get(), w.chain, "bench", pw, pfx::PfxFormat::aes256_sha256),
              "build_pkcs12");
          benchmark::DoNotOptimize(b.data());
          break;
        }
        case Step::at_rest: {
          const std::string id = next_request_id();
          SecureBytes pk8 = value_or_throw(pipeline::private_key_pkcs8(key.get()), "private_key_pkcs8");
          std::string sealed = value_or_throw(pipeline::seal_at_rest(custody, kKek, id, "user-key", pk8), "seal");
          SecureBytes opened = value_or_throw(pipeline::unseal_at_rest(custody, kKek, id, "user-key", sealed), "unseal");
          EvpPkeyPtr back = value_or_throw(pipeline::private_key_from_pkcs8(opened), "private_key_from_pkcs8");
          std::string a = value_or_throw(pipeline::seal_at_rest(custody, kKek, id, "pfx", p12), "seal");
          std::string b = value_or_throw(pipeline::seal_at_rest(custody, kKek, id, "pfx-password", password), "seal");
          benchmark::DoNotOptimize(back.get());
          benchmark::DoNotOptimize(a.data());
          benchmark::DoNotOptimize(b.data());
          break;
        }
        case Step::envelopes: {
          Bytes a = value_or_throw(pfx::envelope_for(custody, f->recipient(), password), "envelope");
          Bytes b = value_or_throw(pfx::envelope_for(custody, f->recipient(), p12), "envelope");
          benchmark::DoNotOptimize(a.data());
          benchmark::DoNotOptimize(b.data());
          break;
        }
      }
    }
    state.SetItemsProcessed(state.iterations());
  } catch (const std::exception& e) {
    skip(state, e.what());
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (!certcustody::bench::initialize(argc, argv, "pipeline_crypto_bench")) return 1;
  // As `certcustody serve`: user keys in OpenSSL's locked, zeroed heap.
  (void)CRYPTO_secure_malloc_init(4u << 20, 16);
  // The certcustody provider built in, plus OpenSSL's default provider, as in
  // the executable; unloaded below, after everything that uses them.
  auto providers = std::make_unique<provider::BuiltinProviders>();
  if (!providers->ok()) {
    std::fprintf(stderr, "pipeline_crypto_bench: cannot load the providers: %s\n", drain_openssl_errors().c_str());
    return 1;
  }
  benchmark::AddCustomContext("softhsm_module", certcustody::testing::kSoftHsmModule);
  benchmark::AddCustomContext("openssl", OpenSSL_version(OPENSSL_VERSION));
  benchmark::AddCustomContext("secure_heap", CRYPTO_secure_malloc_initialized() == 1 ? "4 MiB" : "none");

  for (const Algorithm& a : kAlgorithms) {
    const std::string base = std::string("BM_Crypto/") + a.name;
    // RSA key generation varies a lot from key to key (the search for
    // primes): more time, so that the mean settles.
    const double min_time = a.type == KeyType::rsa2048 ? 8.0 : 1.0;
    for (auto [variant, full] : {std::pair{"/minimal", false}, std::pair{"/full", true}})
      benchmark::RegisterBenchmark((base + variant).c_str(), bm_crypto, a.type, full)
          ->Unit(benchmark::kMicrosecond)
          ->MinTime(min_time)
          ->UseRealTime()
          ->Threads(2)
          ->Threads(1);
  }
  for (const Algorithm& a : kAlgorithms)
    for (auto [name, step] : kSteps)
      benchmark::RegisterBenchmark((std::string("BM_Step/") + a.name + "/" + name).c_str(), bm_step, a.type, step)
          ->Unit(benchmark::kMicrosecond)
          ->MinTime(a.type == KeyType::rsa2048 && step == Step::keygen ? 4.0 : 0.5)
          ->UseRealTime();

  benchmark::RunSpecifiedBenchmarks();

  // Log out and C_Finalize, remove the token, unload the providers, while
  // OpenSSL is still intact.
  const bool failed = g_fixture.failed() || g_benchmark_error;
  g_fixture.reset();
  providers.reset();
  benchmark::Shutdown();
  return failed ? 1 : 0;
}
