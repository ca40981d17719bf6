// Signatures per second with a key in a PKCS#11 token (SoftHSM), measured
// three ways for RSA-2048 PSS/SHA-256 and EC P-256 ECDSA/SHA-256:
//
//   <alg>/raw                  one session, C_SignInit + C_Sign in a loop on the
//                              module's function list: the baseline
//   <alg>/pool/.../threads:N   Pkcs11Custody::sign_digest through the session
//                              pool from N threads
//   <alg>/software             EVP_PKEY_sign with an OpenSSL key: no token at all
//
// Every benchmark signs the same precomputed SHA-256 digest and reports
// items_per_second (signatures per second, wall clock). One SoftHSM token is
// made for the whole run, on first use. bench/run-custody-bench.sh builds this
// in Release and prints each figure as a ratio against raw.
//
// SoftHSM 2.6.1 crashes when C_CloseSession/C_Finalize run at process exit
// after OpenSSL has cleaned up, so main() tears the token down explicitly
// before it returns; nothing PKCS#11 is left to static destructors.

#include <benchmark/benchmark.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <p11-kit/pkcs11.h>

#include <array>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/ossl.h"
#include "bench_support.h"
#include "custody/ck_error.h"
#include "custody/mechanisms.h"
#include "custody/pkcs11_custody.h"
#include "custody/pkcs11_module.h"
#include "support/softhsm_token.h"

namespace {

using namespace certcustody;
using certcustody::testing::SoftHsmToken;

struct Algorithm {
  const char* name;   // benchmark family prefix
  KeyType type;
  SignScheme scheme;
  const char* label;  // key label on the token
};

constexpr std::array<Algorithm, 2> kAlgorithms{{
    {"rsa2048_pss_sha256", KeyType::rsa2048, SignScheme::rsa_pss, "bench-rsa2048"},
    {"ec_p256_ecdsa_sha256", KeyType::ec_p256, SignScheme::ecdsa, "bench-ec-p256"},
}};
constexpr std::size_t kSha256Size = 32;

// The digest every benchmark signs.
const Bytes& message_digest() {
  static const Bytes d = [] {
    static const char kMessage[] = "certcustody benchmark: the to-be-signed bytes of a certificate";
    auto r = digest("SHA256", std::span(reinterpret_cast<const std::uint8_t*>(kMessage), sizeof kMessage - 1));
    if (!r || r->size() != kSha256Size) throw std::runtime_error("cannot compute the SHA-256 digest");
    return std::move(r).value();
  }();
  return d;
}

// PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt (what CKM_RSA_PKCS_PSS gets
// from sign_digest), or ECDSA with SHA-256, on an OpenSSL sign/verify context.
bool set_scheme(EVP_PKEY_CTX* ctx, SignScheme scheme) {
  if (scheme == SignScheme::rsa_pss &&
      (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) != 1 ||
       EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, static_cast<int>(kSha256Size)) != 1 ||
       EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) != 1))
    return false;
  return EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1;
}

// Checks once, before measuring, that a path really produces valid signatures.
void verify_or_throw(EVP_PKEY* key, SignScheme scheme, std::span<const std::uint8_t> sig, const std::string& what) {
  const Bytes& d = message_digest();
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
  if (!ctx || EVP_PKEY_verify_init(ctx.get()) != 1 || !set_scheme(ctx.get(), scheme) ||
      EVP_PKEY_verify(ctx.get(), sig.data(), sig.size(), d.data(), d.size()) != 1)
    throw std::runtime_error(what + ": the signature does not verify " + drain_openssl_errors());
}

template <class T>
T value_or_throw(Result<T> r, const std::string& what) {
  if (!r) throw std::runtime_error(what + ": " + r.error().to_string());
  return std::move(r).value();
}

void ck_or_throw(CK_RV rv, const std::string& what) {
  if (rv != CKR_OK) throw std::runtime_error(what + " failed: " + ck_rv_name(rv));
}

// A session opened straight on the module's function list; closed (never
// logged out: the login is shared with the pool) when destroyed.
struct RawSession {
  std::shared_ptr<Pkcs11Module> module;
  CK_SESSION_HANDLE handle = CK_INVALID_HANDLE;
  CK_SLOT_ID slot = 0;
  std::array<CK_OBJECT_HANDLE, kAlgorithms.size()> keys{};

  RawSession() = default;
  RawSession(const RawSession&) = delete;
  RawSession& operator=(const RawSession&) = delete;
  ~RawSession() {
    if (module && handle != CK_INVALID_HANDLE) (void)P11_CALL(*module, C_CloseSession, handle);
  }
};

// One signature on the raw session; CKR_OK or the failing CK_RV.
CK_RV raw_sign(RawSession& raw, CK_SESSION_HANDLE session, std::size_t alg, CK_MECHANISM& mech, Bytes& digest_in,
               std::span<CK_BYTE> sig, CK_ULONG& len) {
  CK_RV rv = P11_CALL(*raw.module, C_SignInit, session, &mech, raw.keys[alg]);
  if (rv != CKR_OK) return rv;
  len = static_cast<CK_ULONG>(sig.size());
  return P11_CALL(*raw.module, C_Sign, session, digest_in.data(), static_cast<CK_ULONG>(digest_in.size()),
                  sig.data(), &len);
}

CK_MECHANISM raw_mechanism(SignScheme scheme, CK_RSA_PKCS_PSS_PARAMS& pss) {
  pss = CK_RSA_PKCS_PSS_PARAMS{CKM_SHA256, CKG_MGF1_SHA256, kSha256Size};
  if (scheme == SignScheme::rsa_pss) return CK_MECHANISM{CKM_RSA_PKCS_PSS, &pss, sizeof pss};
  return CK_MECHANISM{CKM_ECDSA, nullptr, 0};
}

// The SoftHSM token, the custody on it with one key pair per algorithm, and a
// raw session on the same token. Members are destroyed in reverse order: the
// raw session closes, then the pool logs out and finalises the module, then
// the token directory goes.
class TokenBench {
 public:
  TokenBench() : token_("certcustody-bench") {
    custody_ = value_or_throw(Pkcs11Custody::open(token_.custody_config()), "Pkcs11Custody::open");
    const Bytes& d = message_digest();
    for (std::size_t i = 0; i < kAlgorithms.size(); ++i) {
      const Algorithm& a = kAlgorithms[i];
      (void)value_or_throw(custody_->generate_key_pair(a.label, a.type, KeyPurpose::sign), std::string("generating ") + a.label);
      public_keys_[i] = value_or_throw(custody_->public_key(a.label), std::string("public key of ") + a.label);
      // Also fills the pool's key-handle cache, as in steady state.
      Bytes sig = value_or_throw(custody_->sign_digest(a.label, a.scheme, HashAlg::sha256, d),
                                 std::string("sign_digest with ") + a.label);
      verify_or_throw(public_keys_[i].get(), a.scheme, sig, std::string("pool signature of ") + a.name);
    }
    open_raw_session();
  }

  Pkcs11Custody& custody() { return *custody_; }
  RawSession& raw() { return raw_; }

 private:
  void open_raw_session() {
    // The same library as the pool's: C_Initialize answers
    // CKR_CRYPTOKI_ALREADY_INITIALIZED (accepted by initialize()).
    raw_.module = value_or_throw(Pkcs11Module::load(certcustody::testing::kSoftHsmModule), "loading SoftHSM");
    Pkcs11Module& m = *raw_.module;
    if (Status s = m.initialize(); !s) throw std::runtime_error("C_Initialize: " + s.error().to_string());

    CK_ULONG n = 0;
    ck_or_throw(P11_CALL(m, C_GetSlotList, CK_TRUE, nullptr, &n), "C_GetSlotList");
    std::vector<CK_SLOT_ID> slots(n);
    if (n > 0) ck_or_throw(P11_CALL(m, C_GetSlotList, CK_TRUE, slots.data(), &n), "C_GetSlotList");
    slots.resize(n);
    std::optional<CK_SLOT_ID> slot;
    for (CK_SLOT_ID id : slots) {
      CK_TOKEN_INFO ti{};
      if (P11_CALL(m, C_GetTokenInfo, id, &ti) == CKR_OK && p11_text(ti.label, sizeof ti.label) == token_.label())
        slot = id;
    }
    if (!slot) throw std::runtime_error("raw session: token " + token_.label() + " not found");
    raw_.slot = *slot;

    ck_or_throw(P11_CALL(m, C_OpenSession, *slot, CKF_SERIAL_SESSION, nullptr, nullptr, &raw_.handle),
                "C_OpenSession");
    std::string pin = token_.user_pin();
    CK_RV rv = P11_CALL(m, C_Login, raw_.handle, CKU_USER, reinterpret_cast<CK_UTF8CHAR*>(pin.data()),
                        static_cast<CK_ULONG>(pin.size()));
    if (rv != CKR_USER_ALREADY_LOGGED_IN) ck_or_throw(rv, "C_Login");  // the pool has normally logged in already

    const Bytes& d = message_digest();
    for (std::size_t i = 0; i < kAlgorithms.size(); ++i) {
      const Algorithm& a = kAlgorithms[i];
      CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
      CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls},
                             {CKA_LABEL, const_cast<char*>(a.label), static_cast<CK_ULONG>(std::strlen(a.label))}};
      ck_or_throw(P11_CALL(m, C_FindObjectsInit, raw_.handle, tmpl, static_cast<CK_ULONG>(std::size(tmpl))),
                  "C_FindObjectsInit");
      CK_OBJECT_HANDLE found[2];
      CK_ULONG count = 0;
      rv = P11_CALL(m, C_FindObjects, raw_.handle, found, static_cast<CK_ULONG>(std::size(found)), &count);
      (void)P11_CALL(m, C_FindObjectsFinal, raw_.handle);
      ck_or_throw(rv, "C_FindObjects");
      if (count != 1) throw std::runtime_error(std::string("raw session: expected one private key ") + a.label);
      raw_.keys[i] = found[0];

      CK_RSA_PKCS_PSS_PARAMS pss{};
      CK_MECHANISM mech = raw_mechanism(a.scheme, pss);
      Bytes in = d;
      std::array<CK_BYTE, 512> sig{};
      CK_ULONG len = 0;
      ck_or_throw(raw_sign(raw_, raw_.handle, i, mech, in, sig, len), std::string("raw C_SignInit/C_Sign with ") + a.label);
      Bytes der(sig.begin(), sig.begin() + static_cast<std::ptrdiff_t>(len));
      if (a.scheme == SignScheme::ecdsa) der = value_or_throw(ecdsa_raw_to_der(der), "ecdsa_raw_to_der");
      verify_or_throw(public_keys_[i].get(), a.scheme, der, std::string("raw signature of ") + a.name);
    }
  }

  SoftHsmToken token_;
  std::unique_ptr<Pkcs11Custody> custody_;
  std::array<EvpPkeyPtr, kAlgorithms.size()> public_keys_;
  RawSession raw_;
};

// OpenSSL keys for the software reference, one per algorithm.
struct SoftwareKeys {
  std::array<EvpPkeyPtr, kAlgorithms.size()> keys;

  SoftwareKeys() {
    for (std::size_t i = 0; i < kAlgorithms.size(); ++i) {
      EVP_PKEY* k = kAlgorithms[i].type == KeyType::rsa2048
                        ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<std::size_t>(2048))
                        : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
      if (k == nullptr) throw std::runtime_error("software key generation failed " + drain_openssl_errors());
      keys[i].reset(k);
    }
  }
};

certcustody::bench::Lazy<TokenBench> g_token;
certcustody::bench::Lazy<SoftwareKeys> g_software;

// --- benchmarks -------------------------------------------------------------

// One thread signs on the shared raw session; with more threads each thread
// opens its own session (the login is per application), so raw/threads:N is
// what the token itself gives N threads, without any pool.
void bm_raw(benchmark::State& state, std::size_t alg) {
  std::string error;
  TokenBench* t = g_token.get(error);
  if (t == nullptr) {
    state.SkipWithError(error.c_str());
    return;
  }
  RawSession& raw = t->raw();
  CK_SESSION_HANDLE session = raw.handle;
  if (state.threads() > 1) {
    CK_RV rv = P11_CALL(*raw.module, C_OpenSession, raw.slot, CKF_SERIAL_SESSION, nullptr, nullptr, &session);
    if (rv != CKR_OK) {
      state.SkipWithError(("C_OpenSession: " + ck_rv_name(rv)).c_str());
      return;
    }
  }
  CK_RSA_PKCS_PSS_PARAMS pss{};
  CK_MECHANISM mech = raw_mechanism(kAlgorithms[alg].scheme, pss);
  Bytes in = message_digest();
  std::array<CK_BYTE, 512> sig{};
  CK_ULONG len = 0;
  const std::uint64_t calls0 = raw.module->call_count();
  for (auto _ : state) {
    CK_RV rv = raw_sign(raw, session, alg, mech, in, sig, len);
    if (rv != CKR_OK) {
      state.SkipWithError(("C_SignInit/C_Sign: " + ck_rv_name(rv)).c_str());
      break;
    }
    benchmark::DoNotOptimize(sig);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
  if (state.threads() > 1) {
    (void)P11_CALL(*raw.module, C_CloseSession, session);
    return;
  }
  state.counters["p11_calls_per_sign"] = benchmark::Counter(
      static_cast<double>(raw.module->call_count() - calls0), benchmark::Counter::kAvgIterations);
}

void bm_pool(benchmark::State& state, std::size_t alg) {
  std::string error;
  TokenBench* t = g_token.get(error);
  if (t == nullptr) {
    state.SkipWithError(error.c_str());
    return;
  }
  Pkcs11Custody& custody = t->custody();
  const Algorithm& a = kAlgorithms[alg];
  const std::string label = a.label;
  const Bytes& d = message_digest();
  Pkcs11Module& module = custody.pool().module();
  const std::uint64_t calls0 = module.call_count();
  for (auto _ : state) {
    auto sig = custody.sign_digest(label, a.scheme, HashAlg::sha256, d);
    if (!sig) {
      state.SkipWithError(sig.error().to_string().c_str());
      break;
    }
    benchmark::DoNotOptimize(sig);
  }
  state.SetItemsProcessed(state.iterations());
  // The module's call counter is shared by all threads: exact only for one.
  if (state.threads() == 1)
    state.counters["p11_calls_per_sign"] = benchmark::Counter(static_cast<double>(module.call_count() - calls0),
                                                              benchmark::Counter::kAvgIterations);
}

void bm_software(benchmark::State& state, std::size_t alg) {
  std::string error;
  SoftwareKeys* keys = g_software.get(error);
  if (keys == nullptr) {
    state.SkipWithError(error.c_str());
    return;
  }
  // One context, initialised once: the cheapest software path.
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, keys->keys[alg].get(), nullptr));
  if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1 || !set_scheme(ctx.get(), kAlgorithms[alg].scheme)) {
    state.SkipWithError(("EVP_PKEY_sign_init: " + drain_openssl_errors()).c_str());
    return;
  }
  const Bytes& d = message_digest();
  std::array<unsigned char, 512> sig{};
  for (auto _ : state) {
    std::size_t len = sig.size();
    if (EVP_PKEY_sign(ctx.get(), sig.data(), &len, d.data(), d.size()) != 1) {
      state.SkipWithError(("EVP_PKEY_sign: " + drain_openssl_errors()).c_str());
      break;
    }
    benchmark::DoNotOptimize(sig);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}

}  // namespace

int main(int argc, char** argv) {
  if (!certcustody::bench::initialize(argc, argv, "custody_bench")) return 1;
  benchmark::AddCustomContext("softhsm_module", certcustody::testing::kSoftHsmModule);

  for (std::size_t i = 0; i < kAlgorithms.size(); ++i) {
    const std::string base = kAlgorithms[i].name;
    benchmark::RegisterBenchmark((base + "/raw").c_str(), bm_raw, i)
        ->Unit(benchmark::kMicrosecond)
        ->Threads(1)
        ->Threads(2)
        ->UseRealTime();
    benchmark::RegisterBenchmark((base + "/pool").c_str(), bm_pool, i)
        ->Unit(benchmark::kMicrosecond)
        ->Threads(1)
        ->Threads(2)
        ->Threads(8)
        ->UseRealTime();
    benchmark::RegisterBenchmark((base + "/software").c_str(), bm_software, i)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
  }

  benchmark::RunSpecifiedBenchmarks();

  // Before returning: close the raw session, log out and C_Finalize (pool),
  // remove the token, while OpenSSL is still intact.
  const bool failed = g_token.failed() || g_software.failed();
  g_token.reset();
  g_software.reset();
  benchmark::Shutdown();
  return failed ? 1 : 0;
}
