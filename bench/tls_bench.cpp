// Mutual-TLS cost of a client key in a PKCS#11 token (SoftHSM), against one
// in-process HTTPS/1.1 server (support/tls_server.h: EC P-256 server
// certificate, a client certificate from the test CA required):
//
//   tls13_handshake/<key>/provider     full TLS 1.3 handshakes per second, the
//                                      RA key in the token through the
//                                      certcustody provider (load_token_identity)
//   tls13_handshake/<key>/engine       the same token key through libp11's
//                                      pkcs11 engine (OpenSSL ENGINE API)
//   tls13_handshake/<key>/software     an OpenSSL key in memory: the baseline
//
//   https_get/<key>/reuse              HttpsClient GETs, reuse_connections=true:
//                                      one kept-alive connection, one handshake
//   https_get/<key>/new_connection     reuse_connections=false: a new connection
//                                      per request (curl's shared TLS session
//                                      cache resumes the session, so the token
//                                      does not sign)
//   https_get/<key>/new_client         a new HttpsClient per request (same key
//                                      handle): new connection, full handshake
//                                      signed in the token every time
//
// <key> is rsa2048 or ec_p256: the RA key in the token (generated there, CSR
// signed there by make_ra_csr, certificate issued by an in-memory test CA and
// stored beside the key by import_ra_certificate) and, for the software
// baseline, an in-memory key of the same type with a certificate from the
// same CA. Every handshake is a new TCP connection + SSL_connect + a
// bidirectional SSL_shutdown, on a fresh SSL_CTX per benchmark with the
// session cache off and no ticket ever offered back: no resumption, and a
// client certificate the server refused would fail the shutdown. The server's
// own counters (full/resumed handshakes per item) are reported beside the
// rate. bench/run-tls-bench.sh builds this in Release and prints the ratios.

//
// SoftHSM 2.6.1 crashes when C_CloseSession/C_Finalize run at process exit
// after OpenSSL has cleaned up, so main() tears everything down before it
// returns: the engine (its keys, ENGINE_finish, ENGINE_free), the server, the
// provider's key handles, the shared custody, the token, the providers.

#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/ossl.h"
#include "bench_pki.h"
#include "bench_support.h"
#include "custody/pkcs11_custody.h"
#include "net/https_client.h"
#include "net/token_identity.h"
#include "provider.h"
#include "provider_context.h"
#include "ra/ra_credential.h"
#include "support/softhsm_token.h"
#include "support/tls_server.h"

namespace {

using namespace certcustody;
using certcustody::testing::SoftHsmToken;
using certcustody::testing::TlsTestServer;
using namespace certcustody::bench;  // value_or_throw, openssl_or_throw, the test PKI

constexpr const char* kTokenLabel = "certcustody-bench";
constexpr const char* kEnginePath = "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so";

struct KeyKind {
  const char* name;   // benchmark name part
  KeyType type;
  const char* label;  // RA key label on the token
};

constexpr std::array<KeyKind, 2> kKinds{{
    {"rsa2048", KeyType::rsa2048, "ra-rsa2048"},
    {"ec_p256", KeyType::ec_p256, "ra-ec-p256"},
}};

enum class Source { provider, engine, software };
enum class HttpsMode { reuse, new_connection, new_client };

using SslCtxPtr = std::unique_ptr<SSL_CTX, OsslDeleter<SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, OsslDeleter<SSL_free>>;

// Set when any benchmark reports an error: main() then exits 1.
std::atomic<bool> g_benchmark_error{false};

void skip(benchmark::State& state, const std::string& why) {
  g_benchmark_error = true;
  state.SkipWithError(why.c_str());
}

// A client identity: key handle (token via provider or engine, or software)
// and its certificate.
struct ClientIdentity {
  EvpPkeyPtr key;
  X509Ptr certificate;

  // Another reference to the same key and certificate (HttpsClient takes its own).
  TlsIdentity share() const {
    TlsIdentity id;
    if (key && EVP_PKEY_up_ref(key.get()) == 1) id.key.reset(key.get());
    if (certificate && X509_up_ref(certificate.get()) == 1) id.certificate.reset(certificate.get());
    return id;
  }
};

// libp11's pkcs11 engine on SoftHSM. Loading is not fatal: a failure is kept
// in error() and reported by the engine benchmarks only. Destroyed first: the
// keys, then ENGINE_finish (libp11 C_Finalize's the module) and ENGINE_free.
class Pkcs11Engine {
 public:
  Pkcs11Engine() = default;
  Pkcs11Engine(const Pkcs11Engine&) = delete;
  Pkcs11Engine& operator=(const Pkcs11Engine&) = delete;
  ~Pkcs11Engine() {
    for (ClientIdentity& id : ids_) id = ClientIdentity{};
    if (engine_ != nullptr) {
      if (initialised_) ENGINE_finish(engine_);
      ENGINE_free(engine_);
    }
  }

  void load(const std::string& pin, const std::array<ClientIdentity, kKinds.size()>& token_ids) {
    try {
      engine_ = ENGINE_by_id("dynamic");
      openssl_or_throw(engine_ != nullptr, "ENGINE_by_id(\"dynamic\")");
      openssl_or_throw(ENGINE_ctrl_cmd_string(engine_, "SO_PATH", kEnginePath, 0) == 1 &&
                           ENGINE_ctrl_cmd_string(engine_, "ID", "pkcs11", 0) == 1 &&
                           ENGINE_ctrl_cmd_string(engine_, "LOAD", nullptr, 0) == 1,
                       std::string("loading the engine ") + kEnginePath);
      openssl_or_throw(
          ENGINE_ctrl_cmd_string(engine_, "MODULE_PATH", certcustody::testing::kSoftHsmModule, 0) == 1,
          "engine MODULE_PATH");
      openssl_or_throw(ENGINE_init(engine_) == 1, "ENGINE_init");
      initialised_ = true;
      openssl_or_throw(ENGINE_ctrl_cmd_string(engine_, "PIN", pin.c_str(), 0) == 1, "engine PIN");
      for (std::size_t i = 0; i < kKinds.size(); ++i) {
        const std::string uri =
            std::string("pkcs11:token=") + kTokenLabel + ";object=" + kKinds[i].label + ";type=private";
        EVP_PKEY* k = ENGINE_load_private_key(engine_, uri.c_str(), nullptr, nullptr);
        openssl_or_throw(k != nullptr, "ENGINE_load_private_key(" + uri + ")");
        ids_[i].key.reset(k);
        openssl_or_throw(X509_up_ref(token_ids[i].certificate.get()) == 1, "X509_up_ref");
        ids_[i].certificate.reset(token_ids[i].certificate.get());
        openssl_or_throw(X509_check_private_key(ids_[i].certificate.get(), k) == 1,
                         std::string("the engine's key ") + kKinds[i].label + " does not match its certificate");
      }
    } catch (const std::exception& e) {
      error_ = e.what();
    }
  }

  const std::string& error() const { return error_; }
  const ClientIdentity& identity(std::size_t kind) const { return ids_[kind]; }

 private:
  ENGINE* engine_ = nullptr;
  bool initialised_ = false;
  std::string error_;
  std::array<ClientIdentity, kKinds.size()> ids_;
};

// Everything the benchmarks share. Torn down in this order: the engine, the
// server, the key handles; then the provider stops using the custody, the
// custody logs out and finalises, the token directory goes.
class TlsBench {
 public:
  TlsBench() : token_(kTokenLabel) {
    try {
      set_up();
    } catch (...) {
      tear_down();  // the provider must not keep the custody until exit
      throw;
    }
  }
  ~TlsBench() { tear_down(); }

  TlsBench(const TlsBench&) = delete;
  TlsBench& operator=(const TlsBench&) = delete;

  std::string path(const std::string& name) const { return token_.dir() + "/" + name; }
  std::string ca_file() const { return path("ca.pem"); }
  TlsTestServer& server() { return *server_; }
  Pkcs11Custody& custody() { return *custody_; }
  std::string url() const { return "https://localhost:" + std::to_string(server_->port()) + "/"; }

  // The identity, or nullptr with `error` set.
  const ClientIdentity* identity(std::size_t kind, Source source, std::string& error) const {
    switch (source) {
      case Source::provider: return &token_ids_[kind];
      case Source::software: return &software_ids_[kind];
      case Source::engine:
        if (!engine_->error().empty()) {
          error = engine_->error();
          return nullptr;
        }
        return &engine_->identity(kind);
    }
    error = "unknown key source";
    return nullptr;
  }

 private:
  void set_up() {
    custody_ = value_or_throw(Pkcs11Custody::open(token_.custody_config()), "Pkcs11Custody::open");
    provider::set_shared_custody(custody_, token_.custody_config().token);
    sharing_ = true;

    // The test CA and the server credential, as PEM files for TlsTestServer.
    ca_ = make_test_ca("Bench RA CA");
    EvpPkeyPtr server_key = software_key(KeyType::ec_p256);
    X509Ptr server_cert = issue_certificate(server_key.get(), common_name("localhost").get(), ca_.certificate.get(),
                                            ca_.key.get(),
                                            {{NID_basic_constraints, "critical,CA:FALSE"},
                                             {NID_key_usage, "critical,digitalSignature"},
                                             {NID_ext_key_usage, "serverAuth"},
                                             {NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1"}});
    write_pem(ca_file(), ca_.certificate.get(), nullptr);
    write_pem(path("srv.pem"), server_cert.get(), nullptr);
    write_pem(path("srv.key"), nullptr, server_key.get());

    for (std::size_t i = 0; i < kKinds.size(); ++i) {
      const KeyKind& k = kKinds[i];
      TlsIdentity id = make_token_ra(*custody_, kTokenLabel, k.label, k.type, ca_);
      token_ids_[i] = ClientIdentity{std::move(id.key), std::move(id.certificate)};
      TlsIdentity sw = make_software_ra(k.type, std::string("software ") + k.name, ca_);
      software_ids_[i] = ClientIdentity{std::move(sw.key), std::move(sw.certificate)};
    }

    server_ = std::make_unique<TlsTestServer>(
        TlsTestServer::Options{path("srv.pem"), path("srv.key"), ca_file(), 0, false});
    engine_->load(token_.user_pin(), token_ids_);
  }

  void tear_down() noexcept {
    engine_.reset();
    server_.reset();
    for (ClientIdentity& id : token_ids_) id = ClientIdentity{};
    for (ClientIdentity& id : software_ids_) id = ClientIdentity{};
    if (sharing_) provider::set_shared_custody(nullptr, {});
    sharing_ = false;
    custody_.reset();
  }

  SoftHsmToken token_;
  std::shared_ptr<Pkcs11Custody> custody_;
  bool sharing_ = false;
  TestCa ca_;
  std::array<ClientIdentity, kKinds.size()> token_ids_;
  std::array<ClientIdentity, kKinds.size()> software_ids_;
  std::unique_ptr<TlsTestServer> server_;
  std::unique_ptr<Pkcs11Engine> engine_ = std::make_unique<Pkcs11Engine>();
};

certcustody::bench::Lazy<TlsBench> g_bench;

// --- handshakes -------------------------------------------------------------

// TLS 1.3 only, the server verified against the test CA, no session cache:
// every connection is a full handshake.
SslCtxPtr client_context(const ClientIdentity& id, const std::string& ca_file, std::string& error) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx || SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION) != 1 ||
      SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr) != 1 ||
      SSL_CTX_use_certificate(ctx.get(), id.certificate.get()) != 1 ||
      SSL_CTX_use_PrivateKey(ctx.get(), id.key.get()) != 1 || SSL_CTX_check_private_key(ctx.get()) != 1) {
    error = "client SSL_CTX: " + drain_openssl_errors();
    return nullptr;
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
  return ctx;
}

struct Socket {
  int fd = -1;
  ~Socket() {
    if (fd >= 0) ::close(fd);
  }
};

// New TCP connection, SSL_connect, SSL_shutdown both ways (the server's
// close_notify comes after it accepted the client certificate), close.
bool handshake_once(SSL_CTX* ctx, int port, std::string& error) {
  Socket s;
  s.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  int one = 1;
  if (s.fd < 0 || ::setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
      ::connect(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    error = "cannot connect to the test server on 127.0.0.1:" + std::to_string(port);
    return false;
  }
  SslPtr ssl(SSL_new(ctx));
  if (!ssl || SSL_set_fd(ssl.get(), s.fd) != 1 || SSL_set_tlsext_host_name(ssl.get(), "localhost") != 1 ||
      SSL_set1_host(ssl.get(), "localhost") != 1) {
    error = "SSL_new: " + drain_openssl_errors();
    return false;
  }
  if (SSL_connect(ssl.get()) != 1) {
    error = "SSL_connect: " + drain_openssl_errors();
    return false;
  }
  if (SSL_session_reused(ssl.get())) {
    error = "the session was resumed";
    return false;
  }
  int r = SSL_shutdown(ssl.get());
  if (r == 0) r = SSL_shutdown(ssl.get());  // reads the tickets and the server's close_notify
  if (r != 1) {
    error = "SSL_shutdown (did the server refuse the client certificate?): " + drain_openssl_errors();
    return false;
  }
  return true;
}

void bm_handshake(benchmark::State& state, std::size_t kind, Source source) {
  std::string error;
  TlsBench* b = g_bench.get(error);
  const ClientIdentity* id = b != nullptr ? b->identity(kind, source, error) : nullptr;
  if (id == nullptr) {
    skip(state, error);
    return;
  }
  SslCtxPtr ctx = client_context(*id, b->ca_file(), error);  // fresh per run: nothing to resume
  if (!ctx) {
    skip(state, error);
    return;
  }
  TlsTestServer& server = b->server();
  const long full0 = server.full_handshakes(), resumed0 = server.resumed_handshakes();
  Pkcs11Module& module = b->custody().pool().module();
  const std::uint64_t calls0 = module.call_count();
  for (auto _ : state) {
    if (!handshake_once(ctx.get(), server.port(), error)) {
      skip(state, error);
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["server_full_hs"] =
      benchmark::Counter(static_cast<double>(server.full_handshakes() - full0), benchmark::Counter::kAvgIterations);
  state.counters["server_resumed"] = benchmark::Counter(static_cast<double>(server.resumed_handshakes() - resumed0),
                                                        benchmark::Counter::kAvgIterations);
  // Only the custody's own calls are counted: zero for the engine and software.
  state.counters["p11_calls"] = benchmark::Counter(static_cast<double>(module.call_count() - calls0),
                                                   benchmark::Counter::kAvgIterations);
}

// --- HttpsClient ------------------------------------------------------------

void bm_https(benchmark::State& state, std::size_t kind, HttpsMode mode) {
  std::string error;
  TlsBench* b = g_bench.get(error);
  const ClientIdentity* id = b != nullptr ? b->identity(kind, Source::provider, error) : nullptr;
  if (id == nullptr) {
    skip(state, error);
    return;
  }
  auto make_client = [&](bool reuse) -> std::unique_ptr<HttpsClient> {
    HttpsOptions o;
    o.trust_anchor = b->ca_file();
    o.reuse_connections = reuse;
    auto c = HttpsClient::create(o, id->share());
    if (!c) {
      error = "HttpsClient::create: " + c.error().to_string();
      return nullptr;
    }
    return std::move(c).value();
  };
  auto get = [&](HttpsClient& c) {
    auto r = c.get(b->url());
    if (!r) {
      error = "GET: " + r.error().to_string();
      return false;
    }
    if (r->status != 200) {
      error = "GET: HTTP " + std::to_string(r->status);
      return false;
    }
    return true;
  };

  TlsTestServer& server = b->server();
  std::unique_ptr<HttpsClient> client;
  if (mode != HttpsMode::new_client) {
    // One client for the run; a first request outside the timing makes the
    // connection (reuse) or fills the TLS session cache (new_connection).
    client = make_client(mode == HttpsMode::reuse);
    if (!client || !get(*client)) {
      skip(state, error);
      return;
    }
  }
  const long full0 = server.full_handshakes(), resumed0 = server.resumed_handshakes();
  const long conns0 = client ? client->connections_opened() : 0;
  long conns = 0;
  for (auto _ : state) {
    if (mode == HttpsMode::new_client) {
      client = make_client(false);
      if (!client) {
        skip(state, error);
        break;
      }
    }
    if (!get(*client)) {
      skip(state, error);
      break;
    }
    if (mode == HttpsMode::new_client) {
      conns += client->connections_opened();
      client.reset();
    }
  }
  if (client) conns += client->connections_opened() - conns0;
  state.SetItemsProcessed(state.iterations());
  state.counters["connections"] =
      benchmark::Counter(static_cast<double>(conns), benchmark::Counter::kAvgIterations);
  state.counters["server_full_hs"] =
      benchmark::Counter(static_cast<double>(server.full_handshakes() - full0), benchmark::Counter::kAvgIterations);
  state.counters["server_resumed"] = benchmark::Counter(static_cast<double>(server.resumed_handshakes() - resumed0),
                                                        benchmark::Counter::kAvgIterations);
}

}  // namespace

int main(int argc, char** argv) {
  if (!certcustody::bench::initialize(argc, argv, "tls_bench")) return 1;

  // The certcustody provider built in, plus OpenSSL's default provider;
  // unloaded below, after everything that uses them.
  auto providers = std::make_unique<provider::BuiltinProviders>();
  if (!providers->ok()) {
    std::fprintf(stderr, "tls_bench: cannot load the providers: %s\n", drain_openssl_errors().c_str());
    return 1;
  }
  benchmark::AddCustomContext("softhsm_module", certcustody::testing::kSoftHsmModule);
  benchmark::AddCustomContext("pkcs11_engine", kEnginePath);
  benchmark::AddCustomContext("openssl", OpenSSL_version(OPENSSL_VERSION));

  for (std::size_t i = 0; i < kKinds.size(); ++i) {
    const std::string base = std::string("tls13_handshake/") + kKinds[i].name;
    for (auto [name, source] : {std::pair{"/provider", Source::provider}, std::pair{"/engine", Source::engine},
                                std::pair{"/software", Source::software}})
      benchmark::RegisterBenchmark((base + name).c_str(), bm_handshake, i, source)
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
  }
  for (std::size_t i = 0; i < kKinds.size(); ++i) {
    const std::string base = std::string("https_get/") + kKinds[i].name;
    for (auto [name, mode] : {std::pair{"/reuse", HttpsMode::reuse}, std::pair{"/new_connection", HttpsMode::new_connection},
                              std::pair{"/new_client", HttpsMode::new_client}})
      benchmark::RegisterBenchmark((base + name).c_str(), bm_https, i, mode)
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
  }

  benchmark::RunSpecifiedBenchmarks();

  // Before returning, while OpenSSL is intact: the engine, the server, the key
  // handles, the shared custody (log out, C_Finalize), the token, the providers.
  const bool failed = g_bench.failed() || g_benchmark_error.load();
  g_bench.reset();
  providers.reset();
  benchmark::Shutdown();
  return failed ? 1 : 0;
}
