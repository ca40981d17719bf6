// The CMP client against OpenSSL's own CMP mock server (`openssl cmp -port`):
// p10cr + certConf and rr, each message signed with the RA key in SoftHSM
// through the certcustody provider, and the named error for each way a
// transaction can fail. The mock answers every enrolment with its fixed
// -rsp_cert, so the requests are made for that certificate's key (K).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "ca/cmp_client.h"
#include "ca/resilience.h"
#include "custody/pkcs11_custody.h"
#include "provider.h"
#include "provider_context.h"
#include "ra_fixture.h"
#include "support/tls_server.h"

namespace certcustody::testing {
namespace {

using ca::CmpOptions;
using ca::Enrollment;
using ca::RevocationReason;
using ca::RevokeRequest;
using ca::SubmitRequest;
using Clock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds kConnect{10000}, kTimeout{60000};

long ms_since(Clock::time_point t0) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count());
}

// A listening socket on 127.0.0.1 and a free port.
int listen_loopback(int& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 8) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    ADD_FAILURE() << "cannot listen on loopback";
  port = ntohs(a.sin_port);
  return fd;
}

// A loopback TCP peer for transport failures. `silent`: nobody ever
// accepts (the kernel completes the handshake from the backlog), the request
// is never answered. Otherwise each connection's request is read, then it is
// closed (`hang_up`), answered with `reply`, or (`forward_once`) sent to the
// backend port, whose answer is passed back after the listener has closed:
// the transaction's next message finds the port refusing.
class RawHttpPeer {
 public:
  enum class Mode { silent, hang_up, reply, forward_once };
  explicit RawHttpPeer(Mode mode, std::string reply = {}, int backend_port = 0)
      : mode_(mode), reply_(std::move(reply)), backend_port_(backend_port) {
    fd_ = listen_loopback(port_);
    if (mode_ != Mode::silent) thread_ = std::thread([this] { serve(); });
  }
  ~RawHttpPeer() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }
  RawHttpPeer(const RawHttpPeer&) = delete;
  RawHttpPeer& operator=(const RawHttpPeer&) = delete;
  int port() const { return port_; }
  int connections() const { return connections_.load(); }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const int conn = ::accept(fd_, nullptr, nullptr);
      if (conn < 0) continue;
      ++connections_;
      std::string in;
      char buf[4096];
      // Headers, then Content-Length bytes of body (2 s at most).
      const auto until = Clock::now() + std::chrono::seconds(2);
      for (;;) {
        const auto end = in.find("\r\n\r\n");
        if (end != std::string::npos) {
          const auto cl = in.find("Content-Length: ");
          const std::size_t body = cl == std::string::npos ? 0 : std::stoul(in.substr(cl + 16));
          if (in.size() >= end + 4 + body) break;
        }
        pollfd c{conn, POLLIN, 0};
        if (Clock::now() >= until || ::poll(&c, 1, 100) < 0) break;
        if ((c.revents & POLLIN) == 0) continue;
        const ssize_t n = ::read(conn, buf, sizeof buf);
        if (n <= 0) break;
        in.append(buf, static_cast<std::size_t>(n));
      }
      if (mode_ == Mode::reply) (void)!::write(conn, reply_.data(), reply_.size());
      if (mode_ == Mode::forward_once) {
        const std::string answer = forward(in);
        ::close(fd_);
        fd_ = -1;
        (void)!::write(conn, answer.data(), answer.size());
        ::close(conn);
        return;
      }
      ::close(conn);
    }
  }
  // The request to the backend, its whole answer back (it closes after one).
  std::string forward(const std::string& request) const {
    const int up = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(backend_port_));
    std::string answer;
    if (::connect(up, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::write(up, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buf[4096];
      for (ssize_t n; (n = ::read(up, buf, sizeof buf)) > 0;) answer.append(buf, static_cast<std::size_t>(n));
    }
    ::close(up);
    return answer;
  }

  Mode mode_;
  std::string reply_;
  int backend_port_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

std::string http_200(const std::string& content_type, const std::string& body) {
  return "HTTP/1.0 200 OK\r\nContent-Type: " + content_type + "\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

// HTTPS in front of the mock CMP server (which speaks plain HTTP): TLS with
// a required client certificate from `client_ca`, each connection relayed
// byte for byte to the mock.
class TlsRelay {
 public:
  TlsRelay(const std::string& cert, const std::string& key, const std::string& client_ca, int backend_port)
      : backend_port_(backend_port) {
    ctx_ = SSL_CTX_new(TLS_server_method());
    if (ctx_ == nullptr || SSL_CTX_use_certificate_chain_file(ctx_, cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx_, key.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_load_verify_locations(ctx_, client_ca.c_str(), nullptr) != 1)
      ADD_FAILURE() << "relay TLS set-up failed";
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    // The client resumes sessions: with client verification that needs an id context.
    static const unsigned char sid[] = "cmp-relay";
    SSL_CTX_set_session_id_context(ctx_, sid, sizeof sid - 1);
    fd_ = listen_loopback(port_);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~TlsRelay() {
    stop_ = true;
    acceptor_.join();
    for (auto& w : workers_) w.join();
    ::close(fd_);
    SSL_CTX_free(ctx_);
  }
  TlsRelay(const TlsRelay&) = delete;
  TlsRelay& operator=(const TlsRelay&) = delete;
  int port() const { return port_; }
  std::vector<std::string> client_subjects() const {
    std::lock_guard l(mu_);
    return subjects_;
  }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const int conn = ::accept(fd_, nullptr, nullptr);
      if (conn >= 0) workers_.emplace_back([this, conn] { relay(conn); });
    }
  }
  void relay(int conn) {
    SSL* ssl = SSL_new(ctx_);
    SSL_set_fd(ssl, conn);
    int up = -1;
    if (SSL_accept(ssl) == 1) {
      if (X509* peer = SSL_get1_peer_certificate(ssl)) {
        char name[256];
        X509_NAME_oneline(X509_get_subject_name(peer), name, sizeof name);
        std::lock_guard l(mu_);
        subjects_.emplace_back(name);
        X509_free(peer);
      }
      up = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<std::uint16_t>(backend_port_));
      if (::connect(up, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ADD_FAILURE() << "relay: backend refused";
      char buf[16384];
      for (bool open = true; open && !stop_;) {
        pollfd p[2] = {{conn, POLLIN, 0}, {up, POLLIN, 0}};
        if (SSL_pending(ssl) == 0 && ::poll(p, 2, 100) <= 0) continue;
        if (SSL_pending(ssl) > 0 || (p[0].revents & (POLLIN | POLLHUP)) != 0) {
          const int n = SSL_read(ssl, buf, sizeof buf);
          open = n > 0 && ::write(up, buf, static_cast<std::size_t>(n)) == n;
        }
        if (open && (p[1].revents & (POLLIN | POLLHUP)) != 0) {
          const ssize_t n = ::read(up, buf, sizeof buf);
          open = n > 0 && SSL_write(ssl, buf, static_cast<int>(n)) == n;
        }
      }
      SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    if (up >= 0) ::close(up);
    ::close(conn);
  }

  SSL_CTX* ctx_ = nullptr;
  int backend_port_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::vector<std::thread> workers_;  // touched by the acceptor thread only until it is joined
  mutable std::mutex mu_;
  std::vector<std::string> subjects_;
};

class Cmp : public RaFixture {
 protected:
  void SetUp() override {
    RaFixture::SetUp();
    make_ra("ra", "rsa2048");
    share_custody_with_provider();
    // K, a user key in software, and the certificate the mock hands out for it.
    make_user("k");
    ASSERT_EQ(openssl({"x509", "-req", "-in", path("k.csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"),
                       "-CAcreateserial", "-days", "2", "-out", path("k.pem")})
                  .exit_code,
              0);
    // A CA that has nothing to do with the RA or the server.
    ASSERT_EQ(openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                       path("other.key"), "-out", path("other.pem"), "-subj", "/CN=Other CA", "-days", "2"})
                  .exit_code,
              0);
  }
  void TearDown() override {
    unshare_custody();
    RaFixture::TearDown();
  }

  void make_user(const std::string& name) {
    ASSERT_EQ(openssl({"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                       path(name + ".key"), "-out", path(name + ".csr"), "-subj", "/CN=User " + name})
                  .exit_code,
              0);
  }

  // The mock CMP server: signs its answers with ca.key (so ca.pem verifies
  // them), accepts requests signed by a certificate from `srv_trusted`,
  // sends ca.pem in extraCerts (caPubs it sends in answers to ir only).
  std::unique_ptr<Process> mock(const std::string& srv_trusted, const std::vector<std::string>& extra = {}) {
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = free_loopback_port();
      std::vector<std::string> a = {"openssl", "cmp", "-port", std::to_string(port_), "-srv_cert", path("ca.pem"),
                                    "-srv_key", path("ca.key"), "-srv_trusted", srv_trusted, "-rsp_cert",
                                    path("k.pem"), "-rsp_extracerts", path("ca.pem"), "-rsp_capubs", path("ca.pem")};
      a.insert(a.end(), extra.begin(), extra.end());
      auto p = std::make_unique<Process>(a, std::vector<std::string>{}, path("cmp." + std::to_string(port_)));
      if (p->wait_for_output("ACCEPT", 5000)) return p;
    }
    ADD_FAILURE() << "the CMP mock server did not start";
    return nullptr;
  }
  std::string url(int port = 0) const { return "http://127.0.0.1:" + std::to_string(port ? port : port_) + "/pkix/"; }

  std::unique_ptr<ca::CaClient> client(const std::string& u, const std::string& anchor = {}, int connect_ms = 10000,
                                       int timeout_ms = 60000) {
    CmpOptions o;
    o.url = u;
    o.trust_anchor = anchor.empty() ? path("ca.pem") : anchor;
    o.connect_timeout = std::chrono::milliseconds(connect_ms);
    o.timeout = std::chrono::milliseconds(timeout_ms);
    auto id = load_token_identity("pkcs11:token=certcustody-test;object=ra");
    EXPECT_TRUE(id) << id.error().to_string();
    if (!id) return nullptr;
    auto c = ca::make_cmp_client(std::move(o), std::move(id.value()));
    EXPECT_TRUE(c) << c.error().to_string();
    return c ? std::move(c.value()) : nullptr;
  }

  SubmitRequest request_for(const std::string& name) const {
    BioPtr bio(BIO_new_file(path(name + ".csr").c_str(), "r"));
    X509ReqPtr req(bio ? PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    EXPECT_TRUE(req);
    SubmitRequest r;
    unsigned char* der = nullptr;
    const int n = req ? i2d_X509_REQ(req.get(), &der) : 0;
    if (n > 0) r.csr_der.assign(der, der + n);
    OPENSSL_free(der);
    r.transaction_id = "req-" + name;
    return r;
  }
  Bytes cert_der(const std::string& file) const {
    BioPtr bio(BIO_new_file(path(file).c_str(), "r"));
    X509Ptr x(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
    EXPECT_TRUE(x) << file;
    Bytes out;
    unsigned char* der = nullptr;
    const int n = x ? i2d_X509(x.get(), &der) : 0;
    if (n > 0) out.assign(der, der + n);
    OPENSSL_free(der);
    return out;
  }
  static std::size_t requests_in(const Process& p) {
    std::size_t n = 0;
    const std::string log = p.log();
    for (auto at = log.find("Received request"); at != std::string::npos; at = log.find("Received request", at + 1))
      ++n;
    return n;
  }

  int port_ = 0;
};

TEST_F(Cmp, P10crSignedInTheTokenIsIssuedConfirmedAndRevoked) {
  auto srv = mock(path("ca.pem"));
  ASSERT_TRUE(srv);
  auto c = client(url());
  ASSERT_TRUE(c);
  EXPECT_EQ(c->dialect(), "cmp");

  auto e = c->submit(request_for("k"));
  ASSERT_TRUE(e) << e.error().to_string() << "\n" << srv->log();
  EXPECT_EQ(e->status, Enrollment::Status::issued);
  EXPECT_EQ(e->certificate, cert_der("k.pem"));
  ASSERT_EQ(e->chain.size(), 1u);  // from extraCerts: the self-signed CA
  EXPECT_EQ(e->chain.front(), cert_der("ca.pem"));
  EXPECT_EQ(requests_in(*srv), 2u) << srv->log();  // p10cr, certConf

  auto r = c->revoke(RevokeRequest{e->certificate, RevocationReason::key_compromise, "rev-k"});
  ASSERT_TRUE(r) << r.error().to_string() << "\n" << srv->log();
  EXPECT_EQ(requests_in(*srv), 3u);
}

TEST_F(Cmp, RevokingACertificateTheCaDidNotIssueIsRejected) {
  auto srv = mock(path("ca.pem"));
  ASSERT_TRUE(srv);
  auto c = client(url());
  ASSERT_TRUE(c);
  auto r = c->revoke(RevokeRequest{cert_der("ra.pem"), RevocationReason::superseded, "rev-ra"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "ca.bad_request") << r.error().to_string();
  EXPECT_FALSE(ca::is_transient(r.error()));
}

TEST_F(Cmp, ConcurrentOperationsEachHaveTheirOwnTransaction) {
  auto srv = mock(path("ca.pem"));
  ASSERT_TRUE(srv);
  auto c = client(url());
  ASSERT_TRUE(c);
  const Bytes issued = cert_der("k.pem");
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 2; ++i)
        if (!c->revoke(RevokeRequest{issued, RevocationReason::cessation_of_operation, "rev"})) ++failures;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0) << srv->log();
  EXPECT_EQ(requests_in(*srv), 8u);
}

TEST_F(Cmp, CaThatDoesNotTrustTheRaRefusesIt) {
  auto srv = mock(path("other.pem"));
  ASSERT_TRUE(srv);
  auto c = client(url());
  ASSERT_TRUE(c);
  auto e = c->submit(request_for("k"));
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, "ca.ra_not_authorized") << e.error().to_string();
  EXPECT_NE(e.error().what.find("rejection"), std::string::npos) << e.error().what;
  EXPECT_FALSE(ca::is_transient(e.error()));
}

TEST_F(Cmp, AnswerTheTrustAnchorDoesNotVerifyIsUntrusted) {
  auto srv = mock(path("ca.pem"));
  ASSERT_TRUE(srv);
  auto c = client(url(), path("other.pem"));
  ASSERT_TRUE(c);
  auto e = c->submit(request_for("k"));
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, "ca.response_untrusted") << e.error().to_string();
  EXPECT_FALSE(ca::is_transient(e.error()));
  EXPECT_TRUE(ca::may_have_reached_ca(e.error()));
}

TEST_F(Cmp, CertificateForAnotherKeyIsRejectedWithCertConf) {
  auto srv = mock(path("ca.pem"));
  ASSERT_TRUE(srv);
  make_user("j");  // the mock still answers with K's certificate
  auto c = client(url());
  ASSERT_TRUE(c);
  auto e = c->submit(request_for("j"));
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, "ca.issued_key_mismatch") << e.error().to_string();
  EXPECT_EQ(requests_in(*srv), 2u) << srv->log();  // the negative certConf reached the CA
}

TEST_F(Cmp, CertConfThatCannotBeDeliveredIsNotNamedUnreached) {
  auto srv = mock(path("ca.pem"));
  ASSERT_TRUE(srv);
  // The p10cr reaches the CA and is answered; the certConf finds nobody.
  RawHttpPeer once(RawHttpPeer::Mode::forward_once, {}, port_);
  auto c = client(url(once.port()));
  ASSERT_TRUE(c);
  auto e = c->submit(request_for("k"));
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, "ca.transaction_failed") << e.error().to_string();
  EXPECT_NE(e.error().what.find("Connection refused"), std::string::npos) << e.error().what;
  EXPECT_TRUE(ca::may_have_reached_ca(e.error()));
  EXPECT_EQ(requests_in(*srv), 1u);
}

TEST_F(Cmp, WaitingIsPolledWithinTheTransaction) {
  // "waiting", then one pollRep (checkAfter 1 s), then the certificate.
  auto srv = mock(path("ca.pem"), {"-poll_count", "2", "-check_after", "1"});
  ASSERT_TRUE(srv);
  auto c = client(url());
  ASSERT_TRUE(c);
  const auto t0 = Clock::now();
  auto e = c->submit(request_for("k"));
  ASSERT_TRUE(e) << e.error().to_string() << "\n" << srv->log();
  EXPECT_EQ(e->certificate, cert_der("k.pem"));
  EXPECT_GE(ms_since(t0), 900);  // checkAfter 1 s
  EXPECT_EQ(requests_in(*srv), 4u) << srv->log();  // p10cr, pollReq, pollReq, certConf

  auto p = c->poll(ca::PendingTicket{});
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, "ca.operation_unsupported");
  auto policy = c->fetch_policy("any");
  ASSERT_TRUE(policy);
  EXPECT_TRUE(policy->supported.empty());
  EXPECT_TRUE(policy->fixed.empty());
}

TEST_F(Cmp, WaitingLongerThanTheTimeoutIsNamed) {
  auto srv = mock(path("ca.pem"), {"-poll_count", "100", "-check_after", "1"});
  ASSERT_TRUE(srv);
  auto c = client(url(), "", 2000, 3000);
  ASSERT_TRUE(c);
  const auto t0 = Clock::now();
  auto e = c->submit(request_for("k"));
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, "ca.pending_timeout") << e.error().to_string();
  EXPECT_LT(ms_since(t0), 3000 + 3000);
}

TEST_F(Cmp, NothingListeningIsUnreachable) {
  auto c = client(url(free_loopback_port()));
  ASSERT_TRUE(c);
  const auto t0 = Clock::now();
  auto e = c->submit(request_for("k"));
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, "net.ca_unreachable") << e.error().to_string();
  EXPECT_LT(ms_since(t0), 2000);  // named at once, not after the timeout
  EXPECT_FALSE(ca::may_have_reached_ca(e.error()));
}

TEST_F(Cmp, ServerThatNeverAnswersHitsTheTimeout) {
  RawHttpPeer silent(RawHttpPeer::Mode::silent);
  auto c = client(url(silent.port()), "", 1000, 2000);
  ASSERT_TRUE(c);
  const auto t0 = Clock::now();
  auto e = c->submit(request_for("k"));
  const long elapsed = ms_since(t0);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, "net.ca_timeout") << e.error().to_string();
  EXPECT_GE(elapsed, 900);  // OpenSSL counts whole seconds
  EXPECT_LT(elapsed, 2000 + 3000);
}

TEST_F(Cmp, HttpAnswersThatAreNotCmpAreNamed) {
  RawHttpPeer junk(RawHttpPeer::Mode::reply,
                   "HTTP/1.0 200 OK\r\nContent-Type: application/pkixcmp\r\nContent-Length: 5\r\n\r\nhello");
  auto c = client(url(junk.port()));
  ASSERT_TRUE(c);
  auto e = c->submit(request_for("k"));
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, "ca.response_unreadable") << e.error().to_string();

  RawHttpPeer missing(RawHttpPeer::Mode::reply, "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
  auto c404 = client(url(missing.port()));
  ASSERT_TRUE(c404);
  auto e404 = c404->submit(request_for("k"));
  ASSERT_FALSE(e404);
  EXPECT_EQ(e404.error().code, "ca.endpoint_not_found") << e404.error().to_string();

  RawHttpPeer hang_up(RawHttpPeer::Mode::hang_up);
  auto lost = client(url(hang_up.port()));
  ASSERT_TRUE(lost);
  auto el = lost->submit(request_for("k"));
  ASSERT_FALSE(el);
  EXPECT_EQ(el.error().code, "net.connection_lost") << el.error().to_string();
}

// Issue 16 item 5: an HTTP 200 answer that is no CMP message came after the
// p10cr was sent: the CA may have issued. It is an unknown outcome, never a
// definitive rejection, and with the connector's retries it is not re-sent.
TEST_F(Cmp, GarbageAnswersLeaveTheOutcomeUnknownAndAreNotResent) {
  const Bytes cert = cert_der("k.pem");
  const std::string half(reinterpret_cast<const char*>(cert.data()), cert.size() / 2);
  const std::string answers[] = {
      http_200("text/html", "<!DOCTYPE html><html><body><h1>Maintenance</h1></body></html>"),
      http_200("application/pkixcmp", half),                  // a DER message cut off
      http_200("application/pkixcmp", std::string(cert.begin(), cert.end())),  // DER, but no PKIMessage
      http_200("application/pkixcmp", ""),                    // nothing
      "HTTP/1.0 200 OK\r\nContent-Type: application/pkixcmp\r\nContent-Length: 4000\r\n\r\n" + half,  // short
  };
  for (const std::string& answer : answers) {
    SCOPED_TRACE(answer.substr(0, 60));
    RawHttpPeer peer(RawHttpPeer::Mode::reply, answer);
    auto raw = client(url(peer.port()));
    ASSERT_TRUE(raw);
    auto e = raw->submit(request_for("k"));
    ASSERT_FALSE(e);
    EXPECT_TRUE(ca::may_have_reached_ca(e.error())) << e.error().to_string();
    EXPECT_TRUE(ca::leaves_outcome_unknown(e.error())) << e.error().to_string();
    ca::ResilientCaClient resilient("cmp-ca", client(url(peer.port())), ca::RetryPolicy{3, std::chrono::milliseconds(1)},
                                    ca::BreakerPolicy{}, [](std::chrono::milliseconds) {});
    const int before = peer.connections();
    auto r = resilient.submit(request_for("k"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, "ca.outcome_unknown") << r.error().to_string();
    EXPECT_EQ(peer.connections() - before, 1);
  }
}

TEST_F(Cmp, OverHttpsWithTheRasMutualTls) {
  auto srv = mock(path("ca.pem"));
  ASSERT_TRUE(srv);
  make_server("srv", "ec", "localhost", "DNS:localhost,IP:127.0.0.1");
  TlsRelay relay(path("srv.pem"), path("srv.key"), path("ca.pem"), port_);
  // One anchor file: the TLS server's root and the CMP signer's CA.
  write_file(path("anchors.pem"), read_file(path("srv.pem")) + read_file(path("ca.pem")));
  auto c = client("https://localhost:" + std::to_string(relay.port()) + "/pkix/", path("anchors.pem"));
  ASSERT_TRUE(c);
  auto e = c->submit(request_for("k"));
  ASSERT_TRUE(e) << e.error().to_string() << "\n" << srv->log();
  EXPECT_EQ(e->certificate, cert_der("k.pem"));
  auto r = c->revoke(RevokeRequest{e->certificate, RevocationReason::superseded, "rev-k"});
  ASSERT_TRUE(r) << r.error().to_string() << "\n" << srv->log();
  EXPECT_EQ(requests_in(*srv), 3u);
  ASSERT_FALSE(relay.client_subjects().empty());
  for (const auto& subject : relay.client_subjects()) EXPECT_EQ(subject, "/CN=RA ra");
}

TEST_F(Cmp, HttpsAnswerThatIsNotCmpIsInvalid) {
  make_server("srv", "ec", "localhost", "DNS:localhost,IP:127.0.0.1");
  // The test server demands a client certificate from ca.pem and answers
  // text, not CMP: the RA's TLS identity reached it, the answer is refused.
  TlsTestServer tls({path("srv.pem"), path("srv.key"), path("ca.pem"), 0, false});
  auto c = client("https://localhost:" + std::to_string(tls.port()) + "/pkix/", path("srv.pem"));
  ASSERT_TRUE(c);
  auto e = c->submit(request_for("k"));
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, "ca.response_unreadable") << e.error().to_string();
  EXPECT_TRUE(ca::leaves_outcome_unknown(e.error()));
  ASSERT_EQ(tls.client_subjects().size(), 1u);
  EXPECT_EQ(tls.client_subjects().front(), "/CN=RA ra");
}

TEST_F(Cmp, ConfigurationErrorsAreNamed) {
  auto bad_url = [&](const std::string& u) {
    auto id = load_token_identity("pkcs11:token=certcustody-test;object=ra");
    EXPECT_TRUE(id);
    if (!id) return std::string();
    auto made = ca::make_cmp_client(CmpOptions{u, path("ca.pem"), kConnect, kTimeout}, std::move(id.value()));
    return made ? std::string("accepted") : made.error().code;
  };
  EXPECT_EQ(bad_url("ftp://127.0.0.1/pkix/"), "ca.url_invalid");
  EXPECT_EQ(bad_url("127.0.0.1:8080/pkix/"), "ca.url_invalid");
  EXPECT_EQ(bad_url("http:///pkix/"), "ca.url_invalid");
  EXPECT_EQ(bad_url("http://127.0.0.1:99999/pkix/"), "ca.url_invalid");
  EXPECT_EQ(bad_url("http://127.0.0.1:8080/pkix/"), "accepted");

  auto id = load_token_identity("pkcs11:token=certcustody-test;object=ra");
  ASSERT_TRUE(id);
  auto no_anchor = ca::make_cmp_client(CmpOptions{"http://127.0.0.1/", path("absent.pem"), kConnect, kTimeout},
                                       std::move(id.value()));
  ASSERT_FALSE(no_anchor);
  EXPECT_EQ(no_anchor.error().code, "net.trust_anchor_unreadable") << no_anchor.error().to_string();
}

}  // namespace
}  // namespace certcustody::testing
