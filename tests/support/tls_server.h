// An HTTPS/1.1 server for tests and benchmarks, in this process, on a free
// loopback port: TLS 1.2/1.3 with a required client certificate from a given
// CA, keep-alive, and a reply naming the client certificate's subject (or the
// reply of a handler, as the CA simulator uses it). It counts full handshakes
// and resumptions. In `silent` mode it accepts TCP connections and never
// answers (for timeout tests).
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace certcustody::testing {

// One HTTP/1.1 request with a Content-Length body (chunked bodies are refused).
struct HttpRequest {
  std::string method, target;                  // "POST", "/pki-ws/enrollmentService"
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  std::string client_subject;  // of the TLS client certificate, "/CN=..." form

  std::string header(const std::string& lower_case_name) const;  // "" when absent
};

struct HttpReply {
  int status = 200;
  std::string content_type = "text/plain";
  std::string body;
};

using HttpHandler = std::function<HttpReply(const HttpRequest&)>;

class TlsTestServer {
 public:
  struct Options {
    std::string cert_file, key_file;  // the server's credential
    std::string client_ca_file;       // issuer of acceptable client certificates
    int max_version = 0;              // 0: TLS 1.3; or TLS1_2_VERSION
    bool silent = false;
  };
  // Bodies over this are answered 413 and the connection closed.
  static constexpr std::size_t kMaxRequestBody = 1u << 20;

  explicit TlsTestServer(const Options& options);
  // Answers every request with `handler` (called on the connection's own
  // thread, so concurrently); port 0 picks a free one.
  TlsTestServer(const Options& options, HttpHandler handler, int port = 0);
  ~TlsTestServer();
  TlsTestServer(const TlsTestServer&) = delete;
  TlsTestServer& operator=(const TlsTestServer&) = delete;

  int port() const { return port_; }
  long full_handshakes() const { return full_handshakes_.load(); }
  long resumed_handshakes() const { return resumed_.load(); }
  long requests() const { return requests_.load(); }
  std::vector<std::string> client_subjects() const;

 private:
  struct Worker {
    std::thread thread;
    bool done = false;  // set (under mu_) as the connection's thread ends
  };

  void accept_loop();
  void serve(int fd, Worker* self);
  void serve_http(SSL* ssl, const std::string& subject);
  HttpReply answer(const HttpRequest& request) const;

  Options options_;
  HttpHandler handler_;
  SSL_CTX* ctx_ = nullptr;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::list<Worker> workers_;  // finished ones are joined as new connections come
  std::vector<int> open_fds_;
  std::vector<std::string> subjects_;
  std::atomic<long> full_handshakes_{0}, resumed_{0}, requests_{0};
};

}  // namespace certcustody::testing
