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
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <stdexcept>

namespace certcustody::testing {
namespace {

constexpr std::size_t kMaxHead = 64u << 10;

const char* reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
  }
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

// The request line and headers (without the blank line); nullopt when malformed.
std::optional<HttpRequest> parse_head(const std::string& head) {
  HttpRequest r;
  auto line_end = head.find("\r\n");
  std::string line = head.substr(0, line_end);
  auto sp1 = line.find(' '), sp2 = line.rfind(' ');
  if (sp1 == std::string::npos || sp2 == sp1) return std::nullopt;
  r.method = line.substr(0, sp1);
  r.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  for (std::size_t pos = line_end; pos != std::string::npos && pos < head.size();) {
    std::size_t next = head.find("\r\n", pos + 2);
    std::string h = head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
    pos = next;
    auto colon = h.find(':');
    if (colon == std::string::npos) return std::nullopt;
    r.headers[lower(trim(h.substr(0, colon)))] = trim(h.substr(colon + 1));
  }
  return r;
}

bool write_all(SSL* ssl, const std::string& data) {
  return data.empty() || SSL_write(ssl, data.data(), static_cast<int>(data.size())) > 0;
}

bool send_reply(SSL* ssl, const HttpReply& reply, bool close) {
  std::string resp = "HTTP/1.1 " + std::to_string(reply.status) + " " + reason_phrase(reply.status) +
                     "\r\nContent-Type: " + reply.content_type +
                     "\r\nContent-Length: " + std::to_string(reply.body.size()) +
                     (close ? "\r\nConnection: close" : "") + "\r\n\r\n" + reply.body;
  return write_all(ssl, resp);
}

}  // namespace

std::string HttpRequest::header(const std::string& lower_case_name) const {
  auto it = headers.find(lower_case_name);
  return it == headers.end() ? std::string{} : it->second;
}

TlsTestServer::TlsTestServer(const Options& options) : TlsTestServer(options, nullptr, 0) {}

TlsTestServer::TlsTestServer(const Options& options, HttpHandler handler, int port)
    : options_(options), handler_(std::move(handler)) {
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
  a.sin_port = htons(static_cast<std::uint16_t>(port));
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
  for (auto& w : workers_) w.thread.join();
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
    workers_.remove_if([](Worker& w) {
      if (w.done) w.thread.join();  // it has only to return: it no longer needs mu_
      return w.done;
    });
    open_fds_.push_back(fd);
    Worker& w = workers_.emplace_back();
    w.thread = std::thread([this, fd, self = &w] { serve(fd, self); });
  }
}

void TlsTestServer::serve(int fd, Worker* self) {
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
      serve_http(ssl, subject);
      SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    ERR_clear_error();
  }
  ::close(fd);
  std::lock_guard l(mu_);
  std::erase(open_fds_, fd);
  self->done = true;
}

HttpReply TlsTestServer::answer(const HttpRequest& request) const {
  if (!handler_) return HttpReply{200, "text/plain", "client " + request.client_subject + "\n"};
  try {
    return handler_(request);
  } catch (const std::exception& e) {  // a handler bug must not take the test process down
    return HttpReply{500, "text/plain", std::string("handler failed: ") + e.what()};
  }
}

// HTTP/1.1 keep-alive: one reply per request head + Content-Length body.
void TlsTestServer::serve_http(SSL* ssl, const std::string& subject) {
  std::string in;
  char buf[4096];
  auto read_more = [&] {
    int n = SSL_read(ssl, buf, sizeof buf);
    if (n <= 0) return false;
    in.append(buf, static_cast<std::size_t>(n));
    return true;
  };
  for (;;) {
    auto end = in.find("\r\n\r\n");
    if (end == std::string::npos) {
      if (in.size() > kMaxHead) {
        send_reply(ssl, {431, "text/plain", "request head too large\n"}, true);
        return;
      }
      if (!read_more()) return;
      continue;
    }
    std::optional<HttpRequest> req = parse_head(in.substr(0, end));
    if (!req || !req->header("transfer-encoding").empty()) {
      send_reply(ssl, {req ? 501 : 400, "text/plain", "only Content-Length bodies are supported\n"}, true);
      return;
    }
    std::size_t length = std::strtoull(req->header("content-length").c_str(), nullptr, 10);
    if (length > kMaxRequestBody) {
      send_reply(ssl, {413, "text/plain", "request body over " + std::to_string(kMaxRequestBody) + " bytes\n"}, true);
      return;
    }
    // curl asks before sending a large body; answering saves it a one-second wait.
    if (in.size() < end + 4 + length && lower(req->header("expect")) == "100-continue" &&
        !write_all(ssl, "HTTP/1.1 100 Continue\r\n\r\n"))
      return;
    while (in.size() < end + 4 + length)
      if (!read_more()) return;
    req->body = in.substr(end + 4, length);
    req->client_subject = subject;
    in.erase(0, end + 4 + length);
    ++requests_;
    bool close = lower(req->header("connection")) == "close";
    if (!send_reply(ssl, answer(*req), close) || close) return;
  }
}

}  // namespace certcustody::testing
