// An HTTPS/1.1 server for tests and benchmarks, in this process, on a free
// loopback port: TLS 1.2/1.3 with a required client certificate from a given
// CA, keep-alive, and a reply naming the client certificate's subject. It
// counts full handshakes and resumptions. In `silent` mode it accepts TCP
// connections and never answers (for timeout tests).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

typedef struct ssl_ctx_st SSL_CTX;

namespace certcustody::testing {

class TlsTestServer {
 public:
  struct Options {
    std::string cert_file, key_file;  // the server's credential
    std::string client_ca_file;       // issuer of acceptable client certificates
    int max_version = 0;              // 0: TLS 1.3; or TLS1_2_VERSION
    bool silent = false;
  };
  explicit TlsTestServer(const Options& options);
  ~TlsTestServer();
  TlsTestServer(const TlsTestServer&) = delete;
  TlsTestServer& operator=(const TlsTestServer&) = delete;

  int port() const { return port_; }
  long full_handshakes() const { return full_handshakes_.load(); }
  long resumed_handshakes() const { return resumed_.load(); }
  long requests() const { return requests_.load(); }
  std::vector<std::string> client_subjects() const;

 private:
  void accept_loop();
  void serve(int fd);

  Options options_;
  SSL_CTX* ctx_ = nullptr;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::vector<std::thread> workers_;
  std::vector<int> open_fds_;
  std::vector<std::string> subjects_;
  std::atomic<long> full_handshakes_{0}, resumed_{0}, requests_{0};
};

}  // namespace certcustody::testing
