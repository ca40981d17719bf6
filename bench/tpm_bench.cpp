// Signatures per second with a key in a TPM 2.0 (a private swtpm), the same
// key blob signed three ways in one run, for RSA-2048 PKCS#1 v1.5/SHA-256 and
// EC P-256 ECDSA/SHA-256:
//
//   tpm/<alg>/certcustody    Tpm2Custody::sign_digest in a loop: one
//                            connection, the key kept loaded, TPM2_Sign
//                            through its own salted HMAC session
//                            (tpm2_sign_session.cpp; what the daemon does)
//   tpm/<alg>/tpm2-openssl   the same .tss2 blob decoded once through
//                            OpenSSL's tpm2 provider (its own OSSL_LIB_CTX
//                            with "tpm2" and "default"), then per signature
//                            EVP_DigestSignInit_ex + EVP_DigestSign of the
//                            32-byte message, propquery "?provider=tpm2":
//                            the comparison the issue asks for
//   tpm/<alg>/tpm2_sign-loop one `tpm2_sign -c key.ctx -p file:auth -g sha256
//                            -o sig msg` process per signature, the key
//                            loaded once by `tpm2_load -r <blob> -c key.ctx`
//
// and, to show where the time goes, the floor under all of them: raw ESYS
// calls on the same blob (tpm2-tss's TPM2_Sign with the key kept loaded),
//
//   tpm/<alg>/esys-password  Esys_Sign authorised by a password session
//                            (what tpm2-openssl and tpm2-tools do)
//   tpm/<alg>/esys-salted-hmac  Esys_Sign through one salted HMAC session
//                            started once (what Tpm2Custody did first: tpm2-tss
//                            3.2 spends ~2 ms of CPU per command on it)
//   tpm/<alg>/esys-unsalted-hmac  the same session without the salt
//
// All rows sign the same 32-byte message (certcustody and ESYS its SHA-256,
// the others hash it themselves) with the same key and report items_per_second
// (signatures per second, wall clock) and, per signature, the CPU swtpm used
// (swtpm_cpu_us: the TPM's own work) and, for the loop, the CPU of the
// tpm2_sign process (child_cpu_us). bench/run-tpm-bench.sh builds this in
// Release and prints the ratios certcustody / tpm2-openssl and
// certcustody / tpm2_sign.
//
// Each benchmark opens its own client (custody, provider, ESYS context)
// before its loop and closes it after, so that what it loaded is flushed
// before the next one runs: swtpm has three object slots and there is no
// resource manager. After the custody is gone, `tpm2_getcap
// handles-transient` must list nothing (everything it loaded was flushed);
// otherwise the benchmark fails with an error and the process exits 1.
//
// Without a resource manager, every tpm2_sign leaves the object its
// ContextLoad made in the TPM (3 slots: the fourth call fails with 0x902), so
// the loop runs `tpm2_flushcontext -t` after each signature with the timer
// paused.

#include <benchmark/benchmark.h>
#include <dirent.h>
#include <openssl/decoder.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_support.h"
#include "common/ossl.h"
#include "custody/tpm2_custody.h"
#include "custody/tpm2_key_file.h"
#include "support/swtpm.h"
#include "support/temp_dir.h"

namespace {

using namespace certcustody;
using certcustody::testing::Swtpm;

struct Algorithm {
  const char* name;   // tpm/<name>/...
  KeyType type;
  SignScheme scheme;
  const char* label;  // <key_dir>/<label>.tss2
};

constexpr std::array<Algorithm, 2> kAlgorithms{{
    {"rsa2048", KeyType::rsa2048, SignScheme::rsa_pkcs1, "bench-rsa2048"},
    {"ec_p256", KeyType::ec_p256, SignScheme::ecdsa, "bench-ec-p256"},
}};
constexpr const char* kPropq = "?provider=tpm2";

// The 32-byte message every variant signs, and its SHA-256 (what
// sign_digest is given).
const Bytes& message() {
  static const Bytes m = [] {
    Bytes b(32);
    for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(0xA5 ^ (i * 7));
    return b;
  }();
  return m;
}

const Bytes& message_digest() {
  static const Bytes d = [] {
    auto r = digest("SHA256", message());
    if (!r || r->size() != 32) throw std::runtime_error("cannot compute the SHA-256 digest");
    return std::move(r).value();
  }();
  return d;
}

template <class T>
T value_or_throw(Result<T> r, const std::string& what) {
  if (!r) throw std::runtime_error(what + ": " + r.error().to_string());
  return std::move(r).value();
}

// Checks once, before measuring, that a path really produces valid signatures
// over message().
void verify_or_throw(EVP_PKEY* key, std::span<const std::uint8_t> sig, const std::string& what) {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit_ex(ctx.get(), nullptr, "SHA256", nullptr, nullptr, key, nullptr) != 1 ||
      EVP_DigestVerify(ctx.get(), sig.data(), sig.size(), message().data(), message().size()) != 1)
    throw std::runtime_error(what + ": the signature does not verify " + drain_openssl_errors());
}

// The swtpm process listening on `port` (its CPU time is the TPM's work).
pid_t find_swtpm_pid(int port) {
  const std::string needle = "type=tcp,port=" + std::to_string(port) + ",";
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return -1;
  pid_t found = -1;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    std::ifstream f(std::string("/proc/") + e->d_name + "/cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    for (char& c : cmdline)
      if (c == '\0') c = ' ';
    if (cmdline.rfind("swtpm ", 0) == 0 && cmdline.find(needle) != std::string::npos) {
      found = static_cast<pid_t>(pid);
      break;
    }
  }
  ::closedir(d);
  return found;
}

// CPU time of a process in microseconds: the scheduler's run time of all its
// threads (/proc/<pid>/task/*/schedstat, nanoseconds; utime/stime in
// /proc/<pid>/stat only count 10 ms ticks).
double process_cpu_us(pid_t pid) {
  if (pid <= 0) return 0;
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(tasks.c_str());
  if (d == nullptr) return 0;
  double ns = 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream f(tasks + "/" + e->d_name + "/schedstat");
    unsigned long long run_ns = 0;
    if (f >> run_ns) ns += static_cast<double>(run_ns);
  }
  ::closedir(d);
  return ns / 1e3;
}

double children_cpu_us() {
  rusage ru{};
  ::getrusage(RUSAGE_CHILDREN, &ru);
  auto us = [](const timeval& t) { return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_usec); };
  return us(ru.ru_utime) + us(ru.ru_stime);
}

// The private swtpm, one key per algorithm made through Tpm2Custody (which
// also creates the SRK at 0x81000001), and what the tpm2_sign loop needs:
// each blob loaded once by tpm2_load into a context file, the message and a
// newline-free copy of the auth value in files.
class TpmBench {
 public:
  TpmBench() {
    {
      auto custody = value_or_throw(Tpm2Custody::open(tpm_.custody_config()), "Tpm2Custody::open");
      for (std::size_t i = 0; i < kAlgorithms.size(); ++i) {
        const Algorithm& a = kAlgorithms[i];
        (void)value_or_throw(custody->generate_key_pair(a.label, a.type, KeyPurpose::sign),
                             std::string("generating ") + a.label);
        public_keys_[i] = value_or_throw(custody->public_key(a.label), std::string("public key of ") + a.label);
        Bytes sig = value_or_throw(custody->sign_digest(a.label, a.scheme, HashAlg::sha256, message_digest()),
                                   std::string("sign_digest with ") + a.label);
        verify_or_throw(public_keys_[i].get(), sig, std::string("certcustody signature with ") + a.label);
      }
    }
    if (std::string left = transient(); !left.empty())
      throw std::runtime_error("Tpm2Custody left transient objects after key generation:\n" + left);

    message_path_ = tpm_.path("msg");
    testing::write_file(message_path_, std::string(message().begin(), message().end()));
    // tpm2-tools takes a file: password as the file's bytes, newline included.
    tool_auth_path_ = tpm_.path("tool.auth");
    testing::write_file(tool_auth_path_, tpm_.auth_value(), 0600);

    for (std::size_t i = 0; i < kAlgorithms.size(); ++i) {
      const Algorithm& a = kAlgorithms[i];
      ctx_paths_[i] = tpm_.path(std::string(a.label) + ".ctx");
      run_tool({"tpm2_load", "-r", tpm_.blob(a.label), "-c", ctx_paths_[i]}, "tpm2_load");
      flush_transient();
      // One plain signature from the loop's exact command line, verified.
      const std::string sig_path = tpm_.path(std::string(a.label) + ".sig");
      run_tool({"tpm2_sign", "-c", ctx_paths_[i], "-p", "file:" + tool_auth_path_, "-g", "sha256", "-f", "plain",
                "-o", sig_path, message_path_},
               "tpm2_sign");
      flush_transient();
      const std::string sig = testing::read_file(sig_path);
      verify_or_throw(public_keys_[i].get(), std::span(reinterpret_cast<const std::uint8_t*>(sig.data()), sig.size()),
                      std::string("tpm2_sign signature with ") + a.label);
    }
    swtpm_pid_ = find_swtpm_pid(tpm_.port());
  }

  Swtpm& tpm() { return tpm_; }
  EVP_PKEY* public_key(std::size_t alg) { return public_keys_[alg].get(); }
  const std::string& ctx_path(std::size_t alg) const { return ctx_paths_[alg]; }
  const std::string& message_path() const { return message_path_; }
  const std::string& tool_auth_path() const { return tool_auth_path_; }
  double swtpm_cpu_us() const { return process_cpu_us(swtpm_pid_); }

  // The handles `tpm2_getcap handles-transient` lists (empty: nothing
  // loaded), or its error. Run without TSS2_LOG, whose lines would be mixed in.
  std::string transient() const {
    std::vector<std::string> env = tpm_.env();
    env.push_back("TSS2_LOG=all+none");
    testing::RunResult r = testing::run({"tpm2_getcap", "handles-transient"}, env);
    if (r.exit_code != 0) return "tpm2_getcap handles-transient failed: " + r.output;
    std::string handles;
    std::istringstream lines(r.output);
    for (std::string line; std::getline(lines, line);)
      if (line.rfind("- 0x", 0) == 0) handles += (handles.empty() ? "" : " ") + line.substr(2);
    return handles;
  }
  void flush_transient() const { run_tool({"tpm2_flushcontext", "-t"}, "tpm2_flushcontext -t"); }

  void run_tool(const std::vector<std::string>& argv, const std::string& what) const {
    testing::RunResult r = tpm_.tool(argv);
    if (r.exit_code != 0) throw std::runtime_error(what + " failed (" + std::to_string(r.exit_code) + "): " + r.output);
  }

 private:
  Swtpm tpm_;
  std::array<EvpPkeyPtr, kAlgorithms.size()> public_keys_;
  std::array<std::string, kAlgorithms.size()> ctx_paths_;
  std::string message_path_;
  std::string tool_auth_path_;
  pid_t swtpm_pid_ = -1;
};

certcustody::bench::Lazy<TpmBench> g_tpm;
bool g_leak = false;  // a custody left a transient object: main() exits 1

TpmBench* fixture(benchmark::State& state) {
  std::string error;
  TpmBench* t = g_tpm.get(error);
  if (t == nullptr) state.SkipWithError(error.c_str());
  return t;
}

void set_swtpm_counter(benchmark::State& state, double cpu_us) {
  state.counters["swtpm_cpu_us"] = benchmark::Counter(cpu_us, benchmark::Counter::kAvgIterations);
}

// --- benchmarks -------------------------------------------------------------

// The end of a run through someone else's client (tpm2-openssl, raw ESYS):
// what it left loaded is not ours to judge, but the next benchmark needs the
// slots.
void finish_peer_run(benchmark::State& state, TpmBench& t, double swtpm_us) {
  state.SetItemsProcessed(state.iterations());
  set_swtpm_counter(state, swtpm_us);
  if (std::string left = t.transient(); !left.empty()) {
    state.counters["transient_left"] = 1;
    t.flush_transient();
  }
}

void bm_certcustody(benchmark::State& state, std::size_t alg) {
  TpmBench* t = fixture(state);
  if (t == nullptr) return;
  const Algorithm& a = kAlgorithms[alg];
  const std::string label = a.label;
  const Bytes& d = message_digest();
  std::size_t loaded = 0;
  double swtpm0 = 0, swtpm1 = 0;
  {
    auto opened = Tpm2Custody::open(t->tpm().custody_config());
    if (!opened) {
      state.SkipWithError(opened.error().to_string().c_str());
      return;
    }
    std::unique_ptr<Tpm2Custody> custody = std::move(opened).value();
    // Connect, start the session and load the key outside the timed loop:
    // the steady state of a running daemon.
    if (auto first = custody->sign_digest(label, a.scheme, HashAlg::sha256, d); !first) {
      state.SkipWithError(first.error().to_string().c_str());
      return;
    }
    swtpm0 = t->swtpm_cpu_us();
    for (auto _ : state) {
      auto sig = custody->sign_digest(label, a.scheme, HashAlg::sha256, d);
      if (!sig) {
        state.SkipWithError(sig.error().to_string().c_str());
        break;
      }
      benchmark::DoNotOptimize(sig);
    }
    swtpm1 = t->swtpm_cpu_us();
    loaded = custody->loaded_objects();
  }  // the custody is destroyed: it flushes its key and session and disconnects
  state.SetItemsProcessed(state.iterations());
  set_swtpm_counter(state, swtpm1 - swtpm0);
  state.counters["loaded_objects"] = static_cast<double>(loaded);
  if (std::string left = t->transient(); !left.empty()) {
    std::fprintf(stderr, "tpm_bench: Tpm2Custody left transient objects in the TPM after it was destroyed:\n%s\n",
                 left.c_str());
    g_leak = true;
    state.SkipWithError(("Tpm2Custody left transient objects: " + left).c_str());
    try {
      t->flush_transient();  // so that the next benchmark starts clean
    } catch (const std::exception&) {
    }
  }
}

// OpenSSL with the tpm2 provider in a library context of its own; the
// provider opens its TCTI (TPM2OPENSSL_TCTI) when it is loaded and closes it
// when the context is freed.
class Tpm2OpensslContext {
 public:
  explicit Tpm2OpensslContext(const std::string& tcti) {
    ::setenv("TPM2OPENSSL_TCTI", tcti.c_str(), 1);
    lib_ = OSSL_LIB_CTX_new();
    if (lib_ == nullptr) throw std::runtime_error("OSSL_LIB_CTX_new failed");
    tpm2_ = OSSL_PROVIDER_load(lib_, "tpm2");
    if (tpm2_ == nullptr) throw std::runtime_error("cannot load the tpm2 provider " + drain_openssl_errors());
    default_ = OSSL_PROVIDER_load(lib_, "default");
    if (default_ == nullptr) throw std::runtime_error("cannot load the default provider " + drain_openssl_errors());
  }
  ~Tpm2OpensslContext() {
    key_.reset();
    if (default_ != nullptr) OSSL_PROVIDER_unload(default_);
    if (tpm2_ != nullptr) OSSL_PROVIDER_unload(tpm2_);
    OSSL_LIB_CTX_free(lib_);
  }
  Tpm2OpensslContext(const Tpm2OpensslContext&) = delete;
  Tpm2OpensslContext& operator=(const Tpm2OpensslContext&) = delete;

  // Decodes the TSS2 PRIVATE KEY PEM through the provider (it loads the key
  // into the TPM under the parent the PEM names), with the key auth value
  // as the passphrase.
  EVP_PKEY* load_key(const std::string& pem_path, const std::string& auth) {
    std::string pem = testing::read_file(pem_path);
    EVP_PKEY* pkey = nullptr;
    std::unique_ptr<OSSL_DECODER_CTX, OsslDeleter<OSSL_DECODER_CTX_free>> dctx(OSSL_DECODER_CTX_new_for_pkey(
        &pkey, "PEM", nullptr, nullptr, EVP_PKEY_KEYPAIR, lib_, kPropq));
    if (!dctx || OSSL_DECODER_CTX_get_num_decoders(dctx.get()) == 0)
      throw std::runtime_error("no decoder for a TSS2 key " + drain_openssl_errors());
    const auto* pass = reinterpret_cast<const unsigned char*>(auth.data());
    if (OSSL_DECODER_CTX_set_passphrase(dctx.get(), pass, auth.size()) != 1)
      throw std::runtime_error("OSSL_DECODER_CTX_set_passphrase failed " + drain_openssl_errors());
    const unsigned char* data = reinterpret_cast<const unsigned char*>(pem.data());
    std::size_t len = pem.size();
    if (OSSL_DECODER_from_data(dctx.get(), &data, &len) != 1 || pkey == nullptr)
      throw std::runtime_error("cannot decode " + pem_path + " through the tpm2 provider " + drain_openssl_errors());
    key_.reset(pkey);
    return pkey;
  }

  OSSL_LIB_CTX* lib() const { return lib_; }

 private:
  OSSL_LIB_CTX* lib_ = nullptr;
  OSSL_PROVIDER* tpm2_ = nullptr;
  OSSL_PROVIDER* default_ = nullptr;
  EvpPkeyPtr key_;
};

// One EVP_DigestSignInit_ex + EVP_DigestSign; false with the error queue set.
bool openssl_sign(EVP_MD_CTX* md, OSSL_LIB_CTX* lib, EVP_PKEY* key, std::array<unsigned char, 512>& sig,
                  std::size_t& len) {
  EVP_MD_CTX_reset(md);
  if (EVP_DigestSignInit_ex(md, nullptr, "SHA256", lib, kPropq, key, nullptr) != 1) return false;
  len = sig.size();
  return EVP_DigestSign(md, sig.data(), &len, message().data(), message().size()) == 1;
}

void bm_tpm2_openssl(benchmark::State& state, std::size_t alg) {
  TpmBench* t = fixture(state);
  if (t == nullptr) return;
  const Algorithm& a = kAlgorithms[alg];
  double swtpm0 = 0, swtpm1 = 0;
  try {
    Tpm2OpensslContext ossl(t->tpm().tcti());
    EVP_PKEY* key = ossl.load_key(t->tpm().blob(a.label), t->tpm().auth_value());
    EvpMdCtxPtr md(EVP_MD_CTX_new());
    std::array<unsigned char, 512> sig{};
    std::size_t len = 0;
    if (!md || !openssl_sign(md.get(), ossl.lib(), key, sig, len))
      throw std::runtime_error("EVP_DigestSign through tpm2-openssl: " + drain_openssl_errors());
    verify_or_throw(t->public_key(alg), std::span(sig.data(), len),
                    std::string("tpm2-openssl signature with ") + a.label);
    swtpm0 = t->swtpm_cpu_us();
    for (auto _ : state) {
      if (!openssl_sign(md.get(), ossl.lib(), key, sig, len)) {
        state.SkipWithError(("EVP_DigestSign: " + drain_openssl_errors()).c_str());
        break;
      }
      benchmark::DoNotOptimize(sig);
      benchmark::ClobberMemory();
    }
    swtpm1 = t->swtpm_cpu_us();
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  finish_peer_run(state, *t, swtpm1 - swtpm0);
}

void bm_tpm2_sign_loop(benchmark::State& state, std::size_t alg) {
  TpmBench* t = fixture(state);
  if (t == nullptr) return;
  const std::vector<std::string> argv{"tpm2_sign", "-c",       t->ctx_path(alg), "-p", "file:" + t->tool_auth_path(),
                                      "-g",        "sha256",   "-o",             t->tpm().path("loop.sig"),
                                      t->message_path()};
  const std::vector<std::string> flush{"tpm2_flushcontext", "-t"};
  double swtpm_us = 0, child_us = 0;
  try {
    // CPU is sampled and the flush run with the timer paused; both are
    // counted for the tpm2_sign call alone.
    double s0 = t->swtpm_cpu_us(), c0 = children_cpu_us();
    for (auto _ : state) {
      testing::RunResult r = t->tpm().tool(argv);
      state.PauseTiming();
      swtpm_us += t->swtpm_cpu_us() - s0;
      child_us += children_cpu_us() - c0;
      if (r.exit_code != 0) {
        state.SkipWithError(("tpm2_sign: " + r.output).c_str());
        break;
      }
      testing::RunResult f = t->tpm().tool(flush);  // the object ContextLoad left (no resource manager)
      if (f.exit_code != 0) {
        state.SkipWithError(("tpm2_flushcontext -t: " + f.output).c_str());
        break;
      }
      s0 = t->swtpm_cpu_us();
      c0 = children_cpu_us();
      state.ResumeTiming();
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  state.SetItemsProcessed(state.iterations());
  set_swtpm_counter(state, swtpm_us);
  state.counters["child_cpu_us"] = benchmark::Counter(child_us, benchmark::Counter::kAvgIterations);
}

enum class Auth { password, salted_hmac, unsalted_hmac };

// A raw ESYS connection with one key blob loaded under the SRK, and
// optionally an HMAC session (AES-128-CFB, SHA-256, continueSession; salted
// with the SRK as Tpm2Custody opens it, or not). Everything is flushed on
// destruction.
class EsysSigner {
 public:
  EsysSigner(const Swtpm& tpm, const std::string& blob_path, Auth mode) {
    TpmKeyBlob blob = value_or_throw(read_tss2_file(blob_path), "reading " + blob_path);
    check(Tss2_TctiLdr_Initialize(tpm.tcti().c_str(), &tcti_), "Tss2_TctiLdr_Initialize");
    check(Esys_Initialize(&esys_, tcti_, nullptr), "Esys_Initialize");
    check(Esys_TR_FromTPMPublic(esys_, blob.parent, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &srk_),
          "Esys_TR_FromTPMPublic(SRK)");
    check(Esys_Load(esys_, srk_, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &blob.priv, &blob.pub, &key_),
          "Esys_Load");
    TPM2B_AUTH auth{};
    auth.size = static_cast<UINT16>(tpm.auth_value().size());
    std::memcpy(auth.buffer, tpm.auth_value().data(), auth.size);
    check(Esys_TR_SetAuth(esys_, key_, &auth), "Esys_TR_SetAuth");
    ecc_ = blob.pub.publicArea.type == TPM2_ALG_ECC;
    if (mode != Auth::password) {
      TPMT_SYM_DEF sym{};
      sym.algorithm = TPM2_ALG_AES;
      sym.keyBits.aes = 128;
      sym.mode.aes = TPM2_ALG_CFB;
      const ESYS_TR salt_key = mode == Auth::salted_hmac ? srk_ : ESYS_TR_NONE;
      check(Esys_StartAuthSession(esys_, salt_key, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, nullptr,
                                  TPM2_SE_HMAC, &sym, TPM2_ALG_SHA256, &session_),
            "Esys_StartAuthSession");
      check(Esys_TRSess_SetAttributes(esys_, session_, TPMA_SESSION_CONTINUESESSION, 0xff),
            "Esys_TRSess_SetAttributes");
    }
  }
  ~EsysSigner() {
    if (esys_ != nullptr) {
      if (session_ != ESYS_TR_NONE) Esys_FlushContext(esys_, session_);
      if (key_ != ESYS_TR_NONE) Esys_FlushContext(esys_, key_);
      if (srk_ != ESYS_TR_NONE) Esys_TR_Close(esys_, &srk_);
      Esys_Finalize(&esys_);
    }
    if (tcti_ != nullptr) Tss2_TctiLdr_Finalize(&tcti_);
  }
  EsysSigner(const EsysSigner&) = delete;
  EsysSigner& operator=(const EsysSigner&) = delete;

  // TPM2_Sign of message_digest(): RSASSA or ECDSA with SHA-256.
  TSS2_RC sign() {
    TPM2B_DIGEST d{};
    d.size = 32;
    std::memcpy(d.buffer, message_digest().data(), 32);
    TPMT_SIG_SCHEME scheme{};
    scheme.scheme = ecc_ ? TPM2_ALG_ECDSA : TPM2_ALG_RSASSA;
    scheme.details.any.hashAlg = TPM2_ALG_SHA256;
    TPMT_TK_HASHCHECK validation{};
    validation.tag = TPM2_ST_HASHCHECK;
    validation.hierarchy = TPM2_RH_NULL;
    TPMT_SIGNATURE* sig = nullptr;
    TSS2_RC rc = Esys_Sign(esys_, key_, session_ != ESYS_TR_NONE ? session_ : ESYS_TR_PASSWORD, ESYS_TR_NONE,
                           ESYS_TR_NONE, &d, &scheme, &validation, &sig);
    Esys_Free(sig);
    return rc;
  }

 private:
  static void check(TSS2_RC rc, const char* what) {
    if (rc != TSS2_RC_SUCCESS) {
      char hex[16];
      std::snprintf(hex, sizeof hex, "0x%x", rc);
      throw std::runtime_error(std::string(what) + " failed: " + hex);
    }
  }

  TSS2_TCTI_CONTEXT* tcti_ = nullptr;
  ESYS_CONTEXT* esys_ = nullptr;
  ESYS_TR srk_ = ESYS_TR_NONE;
  ESYS_TR key_ = ESYS_TR_NONE;
  ESYS_TR session_ = ESYS_TR_NONE;
  bool ecc_ = false;
};

void bm_esys(benchmark::State& state, std::size_t alg, Auth mode) {
  TpmBench* t = fixture(state);
  if (t == nullptr) return;
  double swtpm0 = 0, swtpm1 = 0;
  try {
    EsysSigner signer(t->tpm(), t->tpm().blob(kAlgorithms[alg].label), mode);
    if (TSS2_RC rc = signer.sign(); rc != TSS2_RC_SUCCESS)
      throw std::runtime_error("Esys_Sign failed: " + std::to_string(rc));
    swtpm0 = t->swtpm_cpu_us();
    for (auto _ : state) {
      if (TSS2_RC rc = signer.sign(); rc != TSS2_RC_SUCCESS) {
        state.SkipWithError(("Esys_Sign failed: " + std::to_string(rc)).c_str());
        break;
      }
    }
    swtpm1 = t->swtpm_cpu_us();
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  finish_peer_run(state, *t, swtpm1 - swtpm0);
}

}  // namespace

int main(int argc, char** argv) {
  if (!certcustody::bench::initialize(argc, argv, "tpm_bench")) return 1;
  if (const char* log = std::getenv("TSS2_LOG"); log != nullptr && *log != '\0')
    std::fprintf(stderr, "tpm_bench: TSS2_LOG=%s is set; the figures include its logging\n", log);

  for (std::size_t i = 0; i < kAlgorithms.size(); ++i) {
    const std::string base = std::string("tpm/") + kAlgorithms[i].name;
    benchmark::RegisterBenchmark((base + "/certcustody").c_str(), bm_certcustody, i)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark((base + "/tpm2-openssl").c_str(), bm_tpm2_openssl, i)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark((base + "/tpm2_sign-loop").c_str(), bm_tpm2_sign_loop, i)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark((base + "/esys-password").c_str(), bm_esys, i, Auth::password)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark((base + "/esys-salted-hmac").c_str(), bm_esys, i, Auth::salted_hmac)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark((base + "/esys-unsalted-hmac").c_str(), bm_esys, i, Auth::unsalted_hmac)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
  }

  benchmark::RunSpecifiedBenchmarks();

  // Stop swtpm and remove its directory before OpenSSL's exit cleanup.
  const bool failed = g_tpm.failed() || g_leak;
  g_tpm.reset();
  benchmark::Shutdown();
  return failed ? 1 : 0;
}
