// Enrolments per second through the CA clients, against the in-process CA
// simulator (tests/support/ca_simulator.h: HTTPS on loopback, client
// certificate required, a throwaway EC P-256 issuing CA):
//
//   BM_Enroll/<dialect>/<ra>         CaClient::submit of a user CSR through
//                                    ca::make_ca_client (retries and breaker
//                                    included), until the certificate is
//                                    parsed out of the answer
//   BM_Enroll/digicert/token/.../threads:2
//                                    the same from two threads sharing one
//                                    client (two pooled connections)
//   BM_ParseIssuedResponse/<dialect> soap::parse_response + the dialect's
//                                    enrollment_result on an issued answer
//                                    captured from the simulator at set-up
//
// <dialect>: digicert (SOAP 1.1 pki-ws, a new clientTransactionID per
// enrolment, so each one is a real issuance, not a replay) or mscep (SOAP 1.2
// MS-WSTEP RequestSecurityToken, template "PfxUser").
// <ra>: the RA's TLS client key — token: EC P-256 in SoftHSM, through the
// certcustody provider (load_token_identity, as the connector loads it);
// software: an EC P-256 key in memory with the same kind of certificate.
//
// Each run makes a new client and does not warm it up, so the first
// connection's full handshake (the only one the token signs: HttpsClient
// keeps the connection alive) is inside the timing, amortised over the run.
// The user CSRs (EC P-256 software keys, a pool of 64) are made once and
// cycled. Counters per enrolment: certificates the simulator issued, HTTP
// requests it answered, TLS connections it accepted, and the custody's
// PKCS#11 calls (the token's signatures for the handshakes).
// bench/run-ca-bench.sh builds this in Release and prints the ratios.
//
// SoftHSM 2.6.1 crashes when C_CloseSession/C_Finalize run at process exit
// after OpenSSL has cleaned up, so main() tears everything down before it
// returns: the clients, the simulator, the RA key handles, the provider's
// shared custody, the token, the providers.

#include <benchmark/benchmark.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bench_pki.h"
#include "bench_support.h"
#include "ca/ca_client.h"
#include "ca/ca_factory.h"
#include "ca/digicert_wire.h"
#include "ca/mscep_wire.h"
#include "ca/soap.h"
#include "common/ossl.h"
#include "config/config.h"
#include "custody/pkcs11_custody.h"
#include "custody/pkcs11_module.h"
#include "net/https_client.h"
#include "net/token_identity.h"
#include "provider.h"
#include "provider_context.h"
#include "support/ca_simulator.h"
#include "support/softhsm_token.h"

namespace {

using namespace certcustody;
using namespace certcustody::bench;  // value_or_throw, openssl_or_throw, the test PKI
using certcustody::testing::CaSimulator;
using certcustody::testing::SimTemplate;
using certcustody::testing::SoftHsmToken;

constexpr const char* kTokenLabel = "certcustody-ca-bench";
constexpr const char* kRaLabel = "ra";
constexpr const char* kProfileOid = "2.16.840.1.113733.1.16.1.2.3.1.1.61904612";  // DigiCert certificate profile
constexpr const char* kMsTemplate = "PfxUser";
constexpr std::size_t kCsrPool = 64;

enum class Dialect { digicert, mscep };
enum class Ra { token, software };

constexpr std::array<std::pair<const char*, Dialect>, 2> kDialects{{{"digicert", Dialect::digicert},
                                                                    {"mscep", Dialect::mscep}}};

// Set when any benchmark reports an error: main() then exits 1.
std::atomic<bool> g_benchmark_error{false};

void skip(benchmark::State& state, const std::string& why) {
  g_benchmark_error = true;
  state.SkipWithError(why.c_str());
}

// A user's enrolment request: a CSR of a software EC P-256 key and the
// DigiCert name-value pairs that go with it.
struct UserRequest {
  Bytes csr_der;
  std::vector<std::pair<std::string, std::string>> attributes;
};

UserRequest make_user_request(std::size_t i) {
  const std::string cn = "IWUser" + std::to_string(i);
  const std::string mail = "iw" + std::to_string(i) + "@contoso.example";
  EvpPkeyPtr key = software_key(KeyType::ec_p256);
  X509ReqPtr req(X509_REQ_new());
  X509NamePtr name = common_name(cn);
  openssl_or_throw(req && X509_REQ_set_version(req.get(), 0) == 1 &&
                       X509_REQ_set_subject_name(req.get(), name.get()) == 1 &&
                       X509_REQ_set_pubkey(req.get(), key.get()) == 1,
                   "assembling a user CSR");
  STACK_OF(X509_EXTENSION)* exts = sk_X509_EXTENSION_new_null();
  X509_EXTENSION* san = X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, ("email:" + mail).c_str());
  const bool pushed = exts != nullptr && san != nullptr && sk_X509_EXTENSION_push(exts, san) > 0;
  if (!pushed) X509_EXTENSION_free(san);
  const bool added = pushed && X509_REQ_add_extensions(req.get(), exts) == 1;
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);  // frees san when it was pushed
  openssl_or_throw(added, "adding the user CSR's subjectAltName");
  openssl_or_throw(X509_REQ_sign(req.get(), key.get(), EVP_sha256()) > 0, "X509_REQ_sign");
  unsigned char* der = nullptr;
  const int n = i2d_X509_REQ(req.get(), &der);
  openssl_or_throw(n > 0, "i2d_X509_REQ");
  UserRequest u;
  u.csr_der.assign(der, der + n);
  OPENSSL_free(der);
  u.attributes = {{"common_name", cn}, {"mail", mail}};
  return u;
}

// Everything the benchmarks share. Torn down in this order: the simulator,
// the RA key handles; then the provider stops using the custody, the custody
// logs out and finalises, the token directory goes.
class CaBench {
 public:
  CaBench() : token_(kTokenLabel) {
    try {
      set_up();
    } catch (...) {
      tear_down();  // the provider must not keep the custody until exit
      throw;
    }
  }
  ~CaBench() { tear_down(); }

  CaBench(const CaBench&) = delete;
  CaBench& operator=(const CaBench&) = delete;

  CaSimulator& sim() { return *sim_; }
  Pkcs11Custody& custody() { return *custody_; }
  const UserRequest& user(std::uint64_t n) const { return users_[n % users_.size()]; }
  // An issued answer of the simulator, as it came over HTTP.
  const std::string& issued_answer(Dialect d) const { return d == Dialect::digicert ? digicert_answer_ : ms_answer_; }
  static constexpr const char* kCaptureTransaction = "bench-capture";
  // The request the captured answers were made for, to check them against.
  ca::PendingTicket capture_request(Dialect d) const {
    return ca::ticket_for(ca::SubmitRequest{d == Dialect::digicert ? kProfileOid : kMsTemplate,
                                            users_.front().csr_der, kCaptureTransaction, {}});
  }

  // A new client as the connector makes one for a [ca.<name>] section.
  Result<std::unique_ptr<ca::CaClient>> client(Dialect d, Ra ra) const {
    return ca::make_ca_client(endpoint(d), share(ra == Ra::token ? token_ra_ : software_ra_));
  }

 private:
  CaEndpointConfig endpoint(Dialect d) const {
    CaEndpointConfig e;
    e.trust_anchor = sim_->trust_anchor();
    if (d == Dialect::digicert) {
      e.name = "sim-digicert";
      e.type = "digicert";
      e.fqdn = sim_->digicert_fqdn();
      e.ca_name = "Symantec";
    } else {
      e.name = "sim-mscep";
      e.type = "mscep";
      e.url = sim_->ces_url();
      e.policy_url = sim_->cep_url();
    }
    return e;  // timeouts, retries and breaker: the configuration's defaults
  }

  void set_up() {
    custody_ = value_or_throw(Pkcs11Custody::open(token_.custody_config()), "Pkcs11Custody::open");
    provider::set_shared_custody(custody_, token_.custody_config().token);
    sharing_ = true;

    const TestCa ca = make_test_ca("Bench RA CA");
    const std::string ra_ca_file = token_.dir() + "/ra-ca.pem";
    write_pem(ra_ca_file, ca.certificate.get(), nullptr);
    token_ra_ = make_token_ra(*custody_, kTokenLabel, kRaLabel, KeyType::ec_p256, ca);
    software_ra_ = make_software_ra(KeyType::ec_p256, "RA software", ca);

    sim_ = std::make_unique<CaSimulator>(CaSimulator::Options{token_.dir() + "/sim", ra_ca_file});
    SimTemplate profile;
    profile.supported = {"common_name", "mail"};
    sim_->add_template(kProfileOid, profile);
    sim_->add_template(kMsTemplate, SimTemplate{});

    users_.reserve(kCsrPool);
    for (std::size_t i = 0; i < kCsrPool; ++i) users_.push_back(make_user_request(i));

    capture_answers();
  }

  // One enrolment per dialect over a plain HttpsClient (headers as soap_call
  // sends them), keeping the answer's body for BM_ParseIssuedResponse.
  void capture_answers() {
    HttpsOptions o;
    o.trust_anchor = sim_->trust_anchor();
    std::unique_ptr<HttpsClient> http = value_or_throw(HttpsClient::create(o, share(software_ra_)), "HttpsClient");
    auto post = [&http](const std::string& url, const ca::soap::Envelope& envelope) {
      std::vector<std::string> headers;
      std::string content_type = envelope.content_type();
      if (envelope.version == ca::soap::Version::soap11) {
        headers.push_back("SOAPAction: \"" + envelope.action + "\"");
      } else if (!envelope.action.empty()) {
        content_type += "; action=\"" + envelope.action + "\"";
      }
      headers.push_back("Expect:");
      HttpsResponse r = value_or_throw(http->post(url, content_type, envelope.doc.serialize(), headers), url);
      if (r.status != 200)
        throw std::runtime_error("capturing an issued answer: HTTP " + std::to_string(r.status) + " from " + url);
      return std::move(r.body);
    };
    const UserRequest& u = users_.front();
    digicert_answer_ = post(ca::digicert::service_url(sim_->digicert_fqdn(), "enrollmentService"),
                            ca::digicert::enroll_request(
                                ca::SubmitRequest{kProfileOid, u.csr_der, kCaptureTransaction, u.attributes}));
    ms_answer_ = post(sim_->ces_url(), ca::mscep::issue_request(sim_->ces_url(), u.csr_der, kMsTemplate));
  }

  void tear_down() noexcept {
    sim_.reset();
    token_ra_ = TlsIdentity{};
    software_ra_ = TlsIdentity{};
    if (sharing_) provider::set_shared_custody(nullptr, {});
    sharing_ = false;
    custody_.reset();
  }

  SoftHsmToken token_;
  std::shared_ptr<Pkcs11Custody> custody_;
  bool sharing_ = false;
  TlsIdentity token_ra_;
  TlsIdentity software_ra_;
  std::unique_ptr<CaSimulator> sim_;
  std::vector<UserRequest> users_;
  std::string digicert_answer_;
  std::string ms_answer_;
};

certcustody::bench::Lazy<CaBench> g_bench;

// Numbers the enrolments: transaction ids stay unique across runs and threads.
std::atomic<std::uint64_t> g_sequence{0};

// The client of the current run, made by thread 0 before the loop and picked
// up by the other threads after the loop's start barrier.
std::mutex g_client_mu;
std::shared_ptr<ca::CaClient> g_client;

std::shared_ptr<ca::CaClient> current_client() {
  std::lock_guard l(g_client_mu);
  return g_client;
}

void set_current_client(std::shared_ptr<ca::CaClient> c) {
  std::lock_guard l(g_client_mu);
  g_client = std::move(c);
}

void bm_enroll(benchmark::State& state, Dialect dialect, Ra ra) {
  std::string error;
  CaBench* b = g_bench.get(error);
  if (b == nullptr) {
    skip(state, error);
    return;
  }
  const bool first = state.thread_index() == 0;
  CaSimulator& sim = b->sim();
  Pkcs11Module& module = b->custody().pool().module();
  long issued0 = 0, requests0 = 0;
  std::size_t connections0 = 0;
  std::uint64_t calls0 = 0;
  if (first) {
    auto c = b->client(dialect, ra);
    if (!c) {
      set_current_client(nullptr);
      skip(state, "make_ca_client: " + c.error().to_string());
      return;
    }
    set_current_client(std::shared_ptr<ca::CaClient>(std::move(c).value()));
    issued0 = sim.issued_total();
    requests0 = sim.requests();
    connections0 = sim.client_subjects().size();
    calls0 = module.call_count();
  }
  const std::string template_id = dialect == Dialect::digicert ? kProfileOid : kMsTemplate;
  std::shared_ptr<ca::CaClient> client;
  for (auto _ : state) {
    if (!client) {
      client = current_client();
      if (!client) {
        skip(state, "no CA client (thread 0 could not make one)");
        break;
      }
    }
    const std::uint64_t n = g_sequence.fetch_add(1, std::memory_order_relaxed);
    const UserRequest& u = b->user(n);
    ca::SubmitRequest request{template_id, u.csr_der, "bench-" + std::to_string(n), {}};
    if (dialect == Dialect::digicert) request.attributes = u.attributes;
    Result<ca::Enrollment> e = client->submit(request);
    if (!e) {
      skip(state, "submit: " + e.error().to_string());
      break;
    }
    if (e->status != ca::Enrollment::Status::issued || e->certificate.empty()) {
      skip(state, "submit: the simulator did not issue (pending: " + e->ticket.message + ")");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  client.reset();
  if (first) {
    // Every thread has left the loop: the deltas are the whole run's.
    set_current_client(nullptr);  // closes the connections
    auto per_item = [](double v) { return benchmark::Counter(v, benchmark::Counter::kAvgIterations); };
    state.counters["issued"] = per_item(static_cast<double>(sim.issued_total() - issued0));
    state.counters["requests"] = per_item(static_cast<double>(sim.requests() - requests0));
    state.counters["connections"] = per_item(static_cast<double>(sim.client_subjects().size() - connections0));
    state.counters["p11_calls"] = per_item(static_cast<double>(module.call_count() - calls0));
  }
}

void bm_parse(benchmark::State& state, Dialect dialect) {
  std::string error;
  CaBench* b = g_bench.get(error);
  if (b == nullptr) {
    skip(state, error);
    return;
  }
  const std::string& body = b->issued_answer(dialect);
  const std::string what = "issued answer of the CA simulator";
  const ca::PendingTicket request = b->capture_request(dialect);
  for (auto _ : state) {
    Result<ca::soap::Response> r = ca::soap::parse_response(body, what);
    if (!r) {
      skip(state, "parse_response: " + r.error().to_string());
      break;
    }
    Result<ca::Enrollment> e = dialect == Dialect::digicert
                                   ? ca::digicert::enrollment_result(*r, request, what)
                                   : ca::mscep::enrollment_result(*r, request, what);
    if (!e) {
      skip(state, "enrollment_result: " + e.error().to_string());
      break;
    }
    if (e->status != ca::Enrollment::Status::issued || e->certificate.empty() || e->chain.empty()) {
      skip(state, "enrollment_result: no certificate and chain in the captured answer");
      break;
    }
    benchmark::DoNotOptimize(e->certificate.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(body.size()));
  state.counters["answer_bytes"] = static_cast<double>(body.size());
}

}  // namespace

int main(int argc, char** argv) {
  if (!certcustody::bench::initialize(argc, argv, "ca_bench")) return 1;

  // The certcustody provider built in, plus OpenSSL's default provider;
  // unloaded below, after everything that uses them.
  auto providers = std::make_unique<provider::BuiltinProviders>();
  if (!providers->ok()) {
    std::fprintf(stderr, "ca_bench: cannot load the providers: %s\n", drain_openssl_errors().c_str());
    return 1;
  }
  benchmark::AddCustomContext("softhsm_module", certcustody::testing::kSoftHsmModule);
  benchmark::AddCustomContext("openssl", OpenSSL_version(OPENSSL_VERSION));
  benchmark::AddCustomContext("ra_key", "EC P-256 (token via the certcustody provider, or software)");
  benchmark::AddCustomContext("user_csrs", std::to_string(kCsrPool) + " EC P-256 software keys, cycled");

  for (auto [dialect_name, dialect] : kDialects) {
    const std::string base = std::string("BM_Enroll/") + dialect_name;
    for (auto [ra_name, ra] : {std::pair{"/token", Ra::token}, std::pair{"/software", Ra::software}})
      benchmark::RegisterBenchmark((base + ra_name).c_str(), bm_enroll, dialect, ra)
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
  }
  benchmark::RegisterBenchmark("BM_Enroll/digicert/token", bm_enroll, Dialect::digicert, Ra::token)
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime()
      ->Threads(2);
  for (auto [dialect_name, dialect] : kDialects)
    benchmark::RegisterBenchmark((std::string("BM_ParseIssuedResponse/") + dialect_name).c_str(), bm_parse, dialect)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();

  benchmark::RunSpecifiedBenchmarks();

  // Before returning, while OpenSSL is intact: the last client, the
  // simulator, the RA key handles, the shared custody (log out, C_Finalize),
  // the token, the providers.
  const bool failed = g_bench.failed() || g_benchmark_error.load();
  set_current_client(nullptr);
  g_bench.reset();
  providers.reset();
  benchmark::Shutdown();
  return failed ? 1 : 0;
}
