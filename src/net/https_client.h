// HTTPS to a CA over mutual TLS, the client key in the token.
//
// libcurl does the HTTP; its OpenSSL SSL_CTX gets the RA certificate and the
// provider's key handle (CURLOPT_SSL_CTX_FUNCTION — bookworm's curl has no
// provider URIs). TLS 1.2 and 1.3 only; the server is verified against one
// configured trust anchor, host name included. Easy handles are pooled and
// TLS sessions shared, so a burst of requests reuses connections instead of
// paying one handshake each.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "net/token_identity.h"

namespace certcustody {

struct HttpsOptions {
  std::string trust_anchor;  // PEM file with the CA server's issuing root(s)
  std::chrono::milliseconds connect_timeout{10000};  // the reference's CloudCAConnTimeoutInMilliseconds
  std::chrono::milliseconds total_timeout{60000};
  // false: a new connection per request (TLS sessions are still resumed
  // from the shared cache, so the token signs only the first handshake)
  bool reuse_connections = true;
  // Answers longer than this are cut off and refused (net.response_too_large):
  // a CA's answer is a few KiB, a hostile one must not fill memory.
  std::size_t max_response_bytes = 8u << 20;
};

struct HttpsResponse {
  long status = 0;
  std::string content_type;
  std::string body;
  bool reused_connection = false;  // no new connection was made for this request
};

class HttpsClient {
 public:
  static Result<std::unique_ptr<HttpsClient>> create(HttpsOptions options, TlsIdentity identity);
  ~HttpsClient();
  HttpsClient(const HttpsClient&) = delete;
  HttpsClient& operator=(const HttpsClient&) = delete;

  // Thread-safe; concurrent requests use separate pooled handles.
  Result<HttpsResponse> get(const std::string& url);
  Result<HttpsResponse> post(const std::string& url, std::string_view content_type, std::string_view body,
                             const std::vector<std::string>& extra_headers = {});

  // Full handshakes made so far (connections opened), for tests and benchmarks.
  long connections_opened() const;

 private:
  struct Handle;
  HttpsClient(HttpsOptions options, TlsIdentity identity);
  Result<HttpsResponse> perform(const std::string& url, const std::string* content_type, std::string_view body,
                                const std::vector<std::string>& extra_headers);
  std::unique_ptr<Handle> take();
  void give_back(std::unique_ptr<Handle> h);

  HttpsOptions options_;
  TlsIdentity identity_;
  void* share_ = nullptr;  // CURLSH*: TLS session cache shared by all handles
  std::mutex share_mu_[8];
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Handle>> idle_;
  long connections_ = 0;
};

}  // namespace certcustody
