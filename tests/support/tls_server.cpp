#include "support/tls_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

namespace certcustody::testing {

TlsTestServer::TlsTestServer(const Options& options) : options_(options) {
  ::signal(SIGPIPE, SIG_IGN);  // a client that hangs up must not kill the test process
  ctx_ = SSL_CTX_new(TLS_server_method());
  if (ctx_ == nullptr || SSL_CTX_use_certificate_chain_file(ctx_, options.cert_file.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx_, options.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_load_verify_locations(ctx_, options.client_ca_file.c_str(), nullptr) != 1)
    throw std::runtime_error("TlsTestServer: cannot load the server credential");
  SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
  if (options.max_version != 0) SSL_CTX_set_max_proto_version(ctx_, options.max_version);
  SSL_CTX_set_session_id_context(ctx_, reinterpret_cast<const unsigned char*>("cc-test"), 7);

  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 64) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    throw std::runtime_error("TlsTestServer: cannot listen");
  port_ = ntohs(a.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

TlsTestServer::~TlsTestServer() {
  stop_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  ::close(listen_fd_);
  acceptor_.join();
  {
    std::lock_guard l(mu_);
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : workers_) t.join();
  SSL_CTX_free(ctx_);
}

std::vector<std::string> TlsTestServer::client_subjects() const {
  std::lock_guard l(mu_);
  return subjects_;
}

void TlsTestServer::accept_loop() {
  while (!stop_) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stop_) return;
      continue;
    }
    // The ticket and the reply are separate writes: without TCP_NODELAY Nagle
    // holds the reply for the client's delayed ACK (40 ms per new connection).
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::lock_guard l(mu_);
    open_fds_.push_back(fd);
    workers_.emplace_back([this, fd] { serve(fd); });
  }
}

void TlsTestServer::serve(int fd) {
  if (options_.silent) {  // hold the connection, say nothing
    pollfd p{fd, POLLIN, 0};
    while (!stop_ && ::poll(&p, 1, 100) >= 0 && !(p.revents & (POLLHUP | POLLERR))) {
      char sink[512];
      if ((p.revents & POLLIN) && ::recv(fd, sink, sizeof sink, 0) <= 0) break;
    }
  } else if (SSL* ssl = SSL_new(ctx_)) {
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1) {
      (SSL_session_reused(ssl) ? resumed_ : full_handshakes_)++;
      std::string subject = "?";
      if (X509* peer = SSL_get1_peer_certificate(ssl)) {
        char buf[256];
        X509_NAME_oneline(X509_get_subject_name(peer), buf, sizeof buf);
        subject = buf;
        X509_free(peer);
      }
      {
        std::lock_guard l(mu_);
        subjects_.push_back(subject);
      }
      std::string in;
      char buf[4096];
      for (;;) {  // HTTP/1.1 keep-alive: one reply per request head (+ body)
        auto end = in.find("\r\n\r\n");
        if (end == std::string::npos) {
          int n = SSL_read(ssl, buf, sizeof buf);
          if (n <= 0) break;
          in.append(buf, static_cast<std::size_t>(n));
          continue;
        }
        std::size_t body = 0;
        std::string head = in.substr(0, end);
        std::string lower = head;
        std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
        if (auto cl = lower.find("content-length:"); cl != std::string::npos)
          body = std::strtoul(head.c_str() + cl + 15, nullptr, 10);
        if (in.size() < end + 4 + body) {
          int n = SSL_read(ssl, buf, sizeof buf);
          if (n <= 0) break;
          in.append(buf, static_cast<std::size_t>(n));
          continue;
        }
        in.erase(0, end + 4 + body);
        ++requests_;
        std::string reply = "client " + subject + "\n";
        std::string resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                           std::to_string(reply.size()) + "\r\n\r\n" + reply;
        if (SSL_write(ssl, resp.data(), static_cast<int>(resp.size())) <= 0) break;
      }
      SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    ERR_clear_error();
  }
  ::close(fd);
  std::lock_guard l(mu_);
  std::erase(open_fds_, fd);
}

}  // namespace certcustody::testing
