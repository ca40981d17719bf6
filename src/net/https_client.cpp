#include "net/https_client.h"

#include <curl/curl.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include <cstring>
#include <optional>
#include <vector>

namespace certcustody {
namespace {

struct CurlInit {
  CurlInit() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};

struct Sink {
  std::string* body;
  std::size_t limit;
  bool overflow = false;
};

size_t collect(char* data, size_t size, size_t n, void* out) {
  auto* sink = static_cast<Sink*>(out);
  if (sink->body->size() + size * n > sink->limit) {
    sink->overflow = true;
    return 0;  // curl aborts the transfer with CURLE_WRITE_ERROR
  }
  sink->body->append(data, size * n);
  return size * n;
}

// Puts the RA certificate and the token key handle into curl's SSL_CTX.
// A C callback: nothing may escape.
CURLcode on_ssl_ctx(CURL*, void* ssl_ctx, void* arg) noexcept {
  const auto* id = static_cast<const TlsIdentity*>(arg);
  auto* ctx = static_cast<SSL_CTX*>(ssl_ctx);
  if (SSL_CTX_use_certificate(ctx, id->certificate.get()) != 1 || SSL_CTX_use_PrivateKey(ctx, id->key.get()) != 1 ||
      SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
    return CURLE_SSL_CERTPROBLEM;
  return CURLE_OK;
}

void share_lock(CURL*, curl_lock_data data, curl_lock_access, void* arg) {
  static_cast<std::mutex*>(arg)[static_cast<int>(data) % 8].lock();
}
void share_unlock(CURL*, curl_lock_data data, void* arg) { static_cast<std::mutex*>(arg)[static_cast<int>(data) % 8].unlock(); }

std::string host_of(const std::string& url) {
  auto start = url.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  auto end = url.find_first_of(":/", start);
  return url.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

Error curl_error(CURLcode rc, CURL* curl, const char* detail, const std::string& url,
                 const HttpsOptions& options) {
  std::string what = url + ": " + (detail[0] != '\0' ? detail : curl_easy_strerror(rc));
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT: {
      // Before the request went out nothing can have happened at the CA:
      // callers may retry even a non-idempotent submission.
      curl_off_t pretransfer = 0;
      curl_easy_getinfo(curl, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
      const char* code = pretransfer == 0 ? "net.ca_connect_timeout" : "net.ca_timeout";
      return Error{code, what + " (connect timeout " + std::to_string(options.connect_timeout.count()) +
                                         " ms, total " + std::to_string(options.total_timeout.count()) + " ms)",
                   "check that the CA is reachable; raise the CA's connect/total timeout "
                   "(the reference's CloudCAConnTimeoutInMilliseconds) and retry",
                   static_cast<unsigned long>(rc)};
    }
    case CURLE_COULDNT_RESOLVE_HOST:
      return Error{"net.ca_host_unknown", what, "fix the CA host name (no scheme, path or trailing slash)",
                   static_cast<unsigned long>(rc)};
    case CURLE_COULDNT_CONNECT:
      return Error{"net.ca_unreachable", what, "check the CA host and port and the network path to it",
                   static_cast<unsigned long>(rc)};
    case CURLE_PEER_FAILED_VERIFICATION: {
      long verify = X509_V_OK;
      curl_easy_getinfo(curl, CURLINFO_SSL_VERIFYRESULT, &verify);
      // curl checks the host name itself after OpenSSL verified the chain and
      // reports it only in words ("... target host name ...").
      if (verify == X509_V_OK || verify == X509_V_ERR_HOSTNAME_MISMATCH ||
          std::strstr(detail, "target host name") != nullptr)
        return Error{"net.ca_name_mismatch", what + " (host " + host_of(url) + ")",
                     "use the CA's host name exactly as its certificate names it", static_cast<unsigned long>(rc)};
      return Error{"net.ca_untrusted", what + " (" + X509_verify_cert_error_string(verify) + ")",
                   "configure the CA server's issuing root as the trust anchor", static_cast<unsigned long>(rc)};
    }
    case CURLE_SSL_CACERT_BADFILE:
      return Error{"net.trust_anchor_unreadable", what + " (" + options.trust_anchor + ")",
                   "point the trust anchor at a readable PEM file", static_cast<unsigned long>(rc)};
    case CURLE_SSL_CERTPROBLEM:
      return Error{"net.ra_credential_refused", what,
                   "the RA certificate or token key cannot be used for TLS: check `certcustody token info`",
                   static_cast<unsigned long>(rc)};
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
      return Error{"net.tls_channel_failed", what,
                   "could not create a secure TLS channel: check the token (PIN, key present), that the CA accepts "
                   "this RA certificate, and the CA host name",
                   static_cast<unsigned long>(rc)};
    case CURLE_GOT_NOTHING:
      return Error{"net.connection_lost", what, "transient: retry", static_cast<unsigned long>(rc)};
    default:
      return Error{"net.transfer_failed", what, "retry; if it persists check the CA's availability",
                   static_cast<unsigned long>(rc)};
  }
}

// After a failed handshake: can the token key still sign? If not, the
// provider's named error (token gone, PIN, ...) says more than curl's text.
std::optional<Error> key_problem(EVP_PKEY* key) {
  ERR_clear_error();
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  static const unsigned char probe[] = "certcustody key probe";
  size_t len = 0;
  if (ctx && EVP_DigestSignInit_ex(ctx.get(), nullptr, "SHA256", nullptr, nullptr, key, nullptr) == 1 &&
      EVP_DigestSign(ctx.get(), nullptr, &len, probe, sizeof probe) == 1) {
    std::vector<unsigned char> sig(len);
    if (EVP_DigestSign(ctx.get(), sig.data(), &len, probe, sizeof probe) == 1) return std::nullopt;
  }
  return error_from_openssl_queue(Error{"net.ra_key_unusable", "the RA key in the token cannot sign",
                                        "check the token with `certcustody token info`"});
}

}  // namespace

struct HttpsClient::Handle {
  CURL* curl = nullptr;
  ~Handle() {
    if (curl != nullptr) curl_easy_cleanup(curl);
  }
};

HttpsClient::HttpsClient(HttpsOptions options, TlsIdentity identity)
    : options_(std::move(options)), identity_(std::move(identity)) {}

Result<std::unique_ptr<HttpsClient>> HttpsClient::create(HttpsOptions options, TlsIdentity identity) {
  static CurlInit init;
  if (!identity.key || !identity.certificate)
    return Error{"net.identity_unavailable", "no RA key or certificate", "load the RA identity from the token"};
  std::unique_ptr<HttpsClient> c(new HttpsClient(std::move(options), std::move(identity)));
  CURLSH* share = curl_share_init();
  if (share == nullptr) return Error{"net.init_failed", "curl_share_init failed", "check memory"};
  curl_share_setopt(share, CURLSHOPT_LOCKFUNC, share_lock);
  curl_share_setopt(share, CURLSHOPT_UNLOCKFUNC, share_unlock);
  curl_share_setopt(share, CURLSHOPT_USERDATA, c->share_mu_);
  curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  c->share_ = share;
  return c;
}

HttpsClient::~HttpsClient() {
  idle_.clear();
  if (share_ != nullptr) curl_share_cleanup(static_cast<CURLSH*>(share_));
}

long HttpsClient::connections_opened() const {
  std::lock_guard l(mu_);
  return connections_;
}

std::unique_ptr<HttpsClient::Handle> HttpsClient::take() {
  {
    std::lock_guard l(mu_);
    if (options_.reuse_connections && !idle_.empty()) {
      auto h = std::move(idle_.back());
      idle_.pop_back();
      return h;
    }
  }
  auto h = std::make_unique<Handle>();
  h->curl = curl_easy_init();
  return h;
}

void HttpsClient::give_back(std::unique_ptr<Handle> h) {
  if (!options_.reuse_connections) return;
  std::lock_guard l(mu_);
  idle_.push_back(std::move(h));
}

Result<HttpsResponse> HttpsClient::perform(const std::string& url, const std::string* content_type,
                                           std::string_view body, const std::vector<std::string>& extra_headers) {
  if (url.rfind("https://", 0) != 0)
    return Error{"net.url_invalid", "\"" + url + "\" is not an https:// URL", "the CA is reached over HTTPS only"};
  auto h = take();
  CURL* curl = h->curl;
  if (curl == nullptr) return Error{"net.init_failed", "curl_easy_init failed", "check memory"};
  HttpsResponse resp;
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_slist* headers = nullptr;
  std::string ct_header;
  if (content_type != nullptr) {
    ct_header = "Content-Type: " + *content_type;
    headers = curl_slist_append(headers, ct_header.c_str());
  }
  for (const std::string& hdr : extra_headers) headers = curl_slist_append(headers, hdr.c_str());
  curl_easy_reset(curl);  // keeps live connections and the session cache
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https");
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_SHARE, share_);
  curl_easy_setopt(curl, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2) | static_cast<long>(CURL_SSLVERSION_MAX_TLSv1_3));
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(curl, CURLOPT_CAINFO, options_.trust_anchor.c_str());
  curl_easy_setopt(curl, CURLOPT_CAPATH, nullptr);  // the configured anchor only, not the system store
  curl_easy_setopt(curl, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
  curl_easy_setopt(curl, CURLOPT_SSL_CTX_DATA, &identity_);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout.count()));
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.total_timeout.count()));
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(curl, CURLOPT_FORBID_REUSE, options_.reuse_connections ? 0L : 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
  Sink sink{&resp.body, options_.max_response_bytes};
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
  if (headers != nullptr) curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  if (content_type != nullptr) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  CURLcode rc = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  long new_connects = 0;
  curl_easy_getinfo(curl, CURLINFO_NUM_CONNECTS, &new_connects);
  {
    std::lock_guard l(mu_);
    connections_ += new_connects;
  }
  if (rc == CURLE_WRITE_ERROR && sink.overflow)
    return Error{"net.response_too_large",
                 url + ": the answer exceeds " + std::to_string(options_.max_response_bytes) + " bytes",
                 "check that the CA URL names the CA's service; something else answered with a huge body"};
  if (rc != CURLE_OK) {
    if (rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR)
      if (auto named = key_problem(identity_.key.get())) return *named;
    return curl_error(rc, curl, errbuf, url, options_);  // the handle (and any half-open connection) is dropped
  }
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp.status);
  char* ct = nullptr;
  if (curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct != nullptr) resp.content_type = ct;
  resp.reused_connection = new_connects == 0;
  give_back(std::move(h));
  return resp;
}

Result<HttpsResponse> HttpsClient::get(const std::string& url) { return perform(url, nullptr, {}, {}); }

Result<HttpsResponse> HttpsClient::post(const std::string& url, std::string_view content_type, std::string_view body,
                                        const std::vector<std::string>& extra_headers) {
  const std::string ct(content_type);
  return perform(url, &ct, body, extra_headers);
}

}  // namespace certcustody
