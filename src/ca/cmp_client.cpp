#include "ca/cmp_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/cmp.h>
#include <openssl/err.h>
#include <openssl/http.h>
#include <openssl/httperr.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <vector>

#include "ca/resilience.h"
#include "net/https_client.h"

namespace certcustody::ca {
namespace {

using CmpCtxPtr = std::unique_ptr<OSSL_CMP_CTX, OsslDeleter<OSSL_CMP_CTX_free>>;
using CmpMsgPtr = std::unique_ptr<OSSL_CMP_MSG, OsslDeleter<OSSL_CMP_MSG_free>>;
using X509StorePtr = std::unique_ptr<X509_STORE, OsslDeleter<X509_STORE_free>>;
void free_cert_stack(STACK_OF(X509) * s) { sk_X509_pop_free(s, X509_free); }
using CertStackPtr = std::unique_ptr<STACK_OF(X509), OsslDeleter<free_cert_stack>>;

constexpr const char* kContentType = "application/pkixcmp";  // RFC 6712
// A PKIMessage with a certificate, its chain and caPubs is a few KiB; a
// hostile answer must not fill memory.
constexpr std::size_t kMaxResponseBytes = 1u << 20;

// ---------------------------------------------------------------------------
// URL

struct Url {
  bool tls = false;
  std::string host, port, path;  // path starts with '/'
};

// libcurl's URL parser (RFC 3986), not our own.
Result<Url> parse_url(const std::string& url) {
  auto bad = [&](const std::string& why) {
    return Error{"ca.url_invalid", "CMP server URL \"" + url + "\" " + why,
                 "configure the CMP endpoint as http://host[:port]/path (RFC 6712) or https://host[:port]/path"};
  };
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> h(curl_url(), curl_url_cleanup);
  if (!h) return bad("cannot be parsed (out of memory)");
  if (curl_url_set(h.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return bad("is not a valid URL");
  // curl reads "http:///path" as host "path"; an empty authority names no host.
  if (const auto sep = url.find("://"); sep == std::string::npos || url.compare(sep + 3, 1, "/") == 0)
    return bad("names no host");
  auto part = [&](CURLUPart which, unsigned flags = 0) -> std::optional<std::string> {
    char* v = nullptr;
    if (curl_url_get(h.get(), which, &v, flags) != CURLUE_OK || v == nullptr) return std::nullopt;
    std::string out(v);
    curl_free(v);
    return out;
  };
  const std::string scheme = part(CURLUPART_SCHEME).value_or("");
  if (scheme != "http" && scheme != "https") return bad("is neither http:// nor https://");
  if (part(CURLUPART_USER) || part(CURLUPART_PASSWORD)) return bad("carries user information");
  Url u;
  u.tls = scheme == "https";
  u.host = part(CURLUPART_HOST).value_or("");
  if (u.host.size() > 2 && u.host.front() == '[' && u.host.back() == ']') u.host = u.host.substr(1, u.host.size() - 2);
  if (u.host.empty()) return bad("names no host");
  u.port = part(CURLUPART_PORT, CURLU_DEFAULT_PORT).value_or("");
  if (u.port.empty() || u.port == "0") return bad("has an invalid port");
  u.path = part(CURLUPART_PATH).value_or("/");
  if (auto q = part(CURLUPART_QUERY)) u.path += "?" + *q;
  return u;
}

// ---------------------------------------------------------------------------
// OpenSSL's error queue, read once and examined by library and reason.

struct QueueEntry {
  int lib = 0;
  int reason = 0;
  std::string text;  // reason string, with the entry's data
  std::string data;
};

struct Queue {
  std::vector<QueueEntry> entries;

  const QueueEntry* find(int lib, int reason) const {
    for (const auto& e : entries)
      if (e.lib == lib && e.reason == reason) return &e;
    return nullptr;
  }
  bool has(int lib, int reason) const { return find(lib, reason) != nullptr; }
  bool has_any(int lib, std::initializer_list<int> reasons) const {
    return std::any_of(reasons.begin(), reasons.end(), [&](int r) { return has(lib, r); });
  }
  std::string text() const {
    std::string out;
    for (const auto& e : entries) out += (out.empty() ? "" : "; ") + e.text;
    return out;
  }
};

Queue drain_queue() {
  Queue q;
  const char* data = nullptr;
  int flags = 0;
  unsigned long e;
  while ((e = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags)) != 0) {
    QueueEntry x;
    x.lib = ERR_GET_LIB(e);
    x.reason = ERR_GET_REASON(e);
    if (const char* r = ERR_reason_error_string(e)) {
      x.text = r;
    } else {
      char buf[256];
      ERR_error_string_n(e, buf, sizeof buf);
      x.text = buf;
    }
    if (data != nullptr && (flags & ERR_TXT_STRING) != 0 && *data != '\0') {
      x.data = data;
      x.text += ": " + x.data;
    }
    q.entries.push_back(std::move(x));
  }
  return q;
}

// The named error our provider raised ("error <code>: <what> — <remedy>"),
// e.g. when the token could not sign the request's protection.
std::optional<Error> provider_error(const Queue& q) {
  for (const auto& e : q.entries) {
    if (e.data.rfind("error ", 0) != 0) continue;
    const auto colon = e.data.find(": ", 6);
    if (colon == std::string::npos) continue;
    const auto dash = e.data.find(" \xE2\x80\x94 ");
    Error n;
    n.code = e.data.substr(6, colon - 6);
    n.what = e.data.substr(colon + 2, dash == std::string::npos ? std::string::npos : dash - colon - 2);
    n.remedy = dash == std::string::npos ? "" : e.data.substr(dash + 5);
    return n;
  }
  return std::nullopt;
}

std::string with_detail(const std::string& what, const std::string& detail) {
  return detail.empty() ? what : what + " (" + detail + ")";
}

// ---------------------------------------------------------------------------
// Named transport errors (the same codes the HTTPS client and the SOAP
// dialects use).

// net.ca_connect_timeout: the request never left (so it may be retried).
Error timeout_error(const std::string& what, const char* code = "net.ca_timeout") {
  return Error{code, what,
               "check that the CA is reachable; raise the CA's connect/total timeout (connect_timeout_ms / "
               "timeout_ms) and retry"};
}

Error http_status_error(long status, const std::string& where) {
  const std::string what = where + ": HTTP " + std::to_string(status);
  const auto native = static_cast<unsigned long>(status);
  if (status == 401 || status == 403)
    return Error{"ca.ra_not_authorized", what + " — the CA refused the RA",
                 "register/enable the connector's RA certificate with the CA (and check it is the one in the token: "
                 "`certcustody token info`)",
                 native};
  if (status == 404)
    return Error{"ca.endpoint_not_found", what + " — no CMP service at this URL",
                 "fix the CMP URL (its path names the CA's CMP alias/profile)", native};
  if (status == 503)
    return Error{"ca.service_unavailable", what + " — the CA service is not available",
                 "transient: retried automatically; if it persists check the CA service", native};
  if (status >= 500)
    return Error{"ca.server_error", what, "transient: retried automatically; if it persists check the CA service",
                 native};
  return Error{"ca.http_error", what, "check the CMP URL and the CA type in the configuration", native};
}

Error response_unreadable(const std::string& what) {
  return ca::unreadable(what, "check that the URL names the CA's CMP endpoint and the CA type is cmp, and report the "
                          "answer if they do; the request may have reached the CA: look it up there");
}

// A TCP connection made by us, not by OpenSSL: OpenSSL 3.0's HTTP client
// retries a refused connection until its timeout and then reports "connect
// timeout" — for a port nobody listens on and for a host that does not
// resolve alike. Connecting ourselves names those at once and honours the
// connect timeout. Returns a non-blocking socket.
Result<int> tcp_connect(const Url& u, std::chrono::steady_clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int gai = ::getaddrinfo(u.host.c_str(), u.port.c_str(), &hints, &found);
  if (gai != 0)
    return Error{"net.ca_host_unknown", "CMP server host \"" + u.host + "\": " + ::gai_strerror(gai),
                 "fix the host name in the CMP URL", static_cast<unsigned long>(-gai)};
  std::unique_ptr<addrinfo, OsslDeleter<::freeaddrinfo>> addresses(found);
  int last_errno = ECONNREFUSED;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      last_errno = errno;
      continue;
    }
    int err = ::connect(fd, a->ai_addr, a->ai_addrlen) == 0 ? 0 : errno;
    while (err == EINPROGRESS || err == EINTR) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        ::close(fd);
        return timeout_error("connecting to the CMP server " + u.host + ":" + u.port + " timed out",
                             "net.ca_connect_timeout");
      }
      pollfd p{fd, POLLOUT, 0};
      const int n = ::poll(&p, 1, static_cast<int>(left.count()) + 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) continue;  // deadline checked above
      socklen_t len = sizeof err;
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    }
    if (err == 0) return fd;
    ::close(fd);
    last_errno = err;
  }
  return Error{"net.ca_unreachable",
               "cannot connect to the CMP server " + u.host + ":" + u.port + ": " + std::strerror(last_errno),
               "check the CA host and port and the network path to it", static_cast<unsigned long>(last_errno)};
}

Result<CmpMsgPtr> parse_message(const unsigned char* der, std::size_t len, const std::string& where) {
  if (len > kMaxResponseBytes)
    return response_unreadable(where + ": the answer is longer than " + std::to_string(kMaxResponseBytes) + " bytes");
  const unsigned char* p = der;
  CmpMsgPtr msg(d2i_OSSL_CMP_MSG(nullptr, &p, static_cast<long>(len)));
  if (!msg || p != der + len)
    return response_unreadable(with_detail(where + ": the answer is not a DER PKIMessage", drain_openssl_errors()));
  return msg;
}

bool is_pkixcmp(const std::string& content_type) {
  std::string t;
  for (char c : content_type) {
    if (c == ';' || c == ' ') break;
    t.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  return t == kContentType;
}

// ---------------------------------------------------------------------------
// Per-operation state the C callbacks reach.

class CmpClient;

struct Exchange {
  const CmpClient* client = nullptr;
  std::optional<Error> transport;  // why the transfer callback returned no response
  int responses = 0;               // PKIMessages received
  std::vector<std::string> log;    // OSSL_CMP's error lines
};

// OSSL_CMP's log callback takes no argument; the operation that runs on this
// thread collects the lines (and they stay off stdout).
thread_local Exchange* t_exchange = nullptr;

class ExchangeScope {
 public:
  explicit ExchangeScope(Exchange* e) : previous_(t_exchange) { t_exchange = e; }
  ~ExchangeScope() { t_exchange = previous_; }
  ExchangeScope(const ExchangeScope&) = delete;
  ExchangeScope& operator=(const ExchangeScope&) = delete;

 private:
  Exchange* previous_;
};

int on_cmp_log(const char*, const char*, int, OSSL_CMP_severity level, const char* msg) noexcept {
  try {
    if (t_exchange != nullptr && msg != nullptr && level <= OSSL_CMP_LOG_ERR && t_exchange->log.size() < 16)
      t_exchange->log.emplace_back(msg);
  } catch (...) {
  }
  return 1;
}

OSSL_CMP_MSG* on_transfer(OSSL_CMP_CTX* ctx, const OSSL_CMP_MSG* request) noexcept;

Bytes der_of(X509* cert) {
  unsigned char* buf = nullptr;
  const int len = i2d_X509(cert, &buf);
  if (len <= 0) return {};
  Bytes out(buf, buf + len);
  OPENSSL_free(buf);
  return out;
}

// PKIFailureInfo bit `b` set in `bits` (-1: none received).
bool fail_bit(int bits, int b) { return bits > 0 && (bits & (1 << b)) != 0; }

// OpenSSL-based CMP servers (its mock server, servers built on OSSL_CMP_SRV)
// answer a request whose protection they cannot verify with badRequest and
// their own error code: recognise that as "the CA does not trust the RA".
bool server_could_not_verify_us(const Queue& q) {
  const QueueEntry* e = q.find(ERR_LIB_CMP, CMP_R_RECEIVED_ERROR);
  if (e == nullptr) return false;
  const auto at = e->data.find("errorCode: ");
  if (at == std::string::npos) return false;
  const unsigned long code = std::strtoul(e->data.c_str() + at + 11, nullptr, 16);
  if (ERR_GET_LIB(code) != ERR_LIB_CMP) return false;
  switch (ERR_GET_REASON(code)) {
    case CMP_R_NO_SUITABLE_SENDER_CERT:
    case CMP_R_ERROR_VALIDATING_PROTECTION:
    case CMP_R_ERROR_VALIDATING_SIGNATURE:
    case CMP_R_MISSING_PROTECTION:
    case CMP_R_POTENTIALLY_INVALID_CERTIFICATE:
    case CMP_R_WRONG_PBM_VALUE:
      return true;
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------

class CmpClient final : public CaClient {
 public:
  CmpClient(CmpOptions o, Url u, TlsIdentity ra, std::vector<X509Ptr> anchors, std::unique_ptr<HttpsClient> https)
      : o_(std::move(o)), url_(std::move(u)), ra_(std::move(ra)), anchors_(std::move(anchors)),
        https_(std::move(https)) {}

  std::string_view dialect() const override { return "cmp"; }

  // CMP carries no description of a certificate profile in the terms of the
  // policy layer (attributes supported/fixed, key constraints): the profile
  // is chosen by the endpoint (URL path), and RFC 9480's certReqTemplate
  // genm is a CRMF template that OpenSSL 3.0 has no client for. The empty
  // policy means "unknown, no check"; the CA enforces its profile itself.
  Result<policy::TemplatePolicy> fetch_policy(const std::string&) override { return policy::TemplatePolicy{}; }

  Result<Enrollment> submit(const SubmitRequest& request) override {
    ERR_clear_error();
    const unsigned char* p = request.csr_der.data();
    X509ReqPtr csr(d2i_X509_REQ(nullptr, &p, static_cast<long>(request.csr_der.size())));
    if (!csr || p != request.csr_der.data() + request.csr_der.size())
      return openssl_error("ca.request_invalid", "the request to submit is not a DER PKCS#10",
                           "this is a bug in the caller: submit the CSR the pipeline made");
    // request.transaction_id travels nowhere: a CMP transactionID must be a
    // fresh random value per transaction (OpenSSL makes one), and a CA
    // answers a reused one with transactionIdInUse, not with the old result.
    Exchange ex;
    CC_TRY_ASSIGN(CmpCtxPtr ctx, new_ctx(ex));
    if (OSSL_CMP_CTX_set1_p10CSR(ctx.get(), csr.get()) != 1)
      return openssl_error("ca.request_failed", "cannot put the PKCS#10 into the CMP request", "check memory");
    X509* issued = nullptr;
    {
      ExchangeScope scope(&ex);
      // p10cr, then certConf: OpenSSL checks that the returned certificate
      // is for the CSR's key and confirms (or rejects) it to the CA. While
      // the CA answers "waiting" it polls, within the total timeout.
      issued = OSSL_CMP_exec_P10CR_ses(ctx.get());  // owned by ctx
    }
    if (issued == nullptr) return failure(ctx.get(), ex, "p10cr");
    // OpenSSL's certConf check made this one already; the shared check
    // keeps every dialect's "issued" under the same rule.
    CC_TRY(check_issued_key(issued, request.csr_der, where("p10cr")));
    Enrollment e;
    e.status = Enrollment::Status::issued;
    e.certificate = der_of(issued);
    e.chain = chain_of(issued, ctx.get());
    ERR_clear_error();
    if (e.certificate.empty()) return response_unreadable(where("p10cr") + ": the issued certificate cannot be encoded");
    return e;
  }

  Result<Enrollment> poll(const PendingTicket&) override {
    return Error{"ca.operation_unsupported",
                 "CMP polls within one transaction: while the CA answers \"waiting\", OpenSSL asks again (pollReq) "
                 "until it issues or the CA timeout ends; there is no pending request to poll later",
                 "raise the CA's timeout_ms if it needs longer to issue; a request that ran out of time "
                 "(ca.pending_timeout) must be finished on the CA"};
  }

  Status revoke(const RevokeRequest& request) override {
    ERR_clear_error();
    const unsigned char* p = request.certificate.data();
    X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(request.certificate.size())));
    if (!cert || p != request.certificate.data() + request.certificate.size())
      return openssl_error("ca.certificate_invalid", "the certificate to revoke is not DER X.509",
                           "pass the issued certificate");
    Exchange ex;
    CC_TRY_ASSIGN(CmpCtxPtr ctx, new_ctx(ex));
    if (OSSL_CMP_CTX_set1_oldCert(ctx.get(), cert.get()) != 1 ||
        OSSL_CMP_CTX_set_option(ctx.get(), OSSL_CMP_OPT_REVOCATION_REASON, static_cast<int>(request.reason)) != 1)
      return openssl_error("ca.request_failed", "cannot set up the CMP revocation request", "check memory");
    int ok = 0;
    {
      ExchangeScope scope(&ex);
      ok = OSSL_CMP_exec_RR_ses(ctx.get());
    }
    if (ok != 1) return failure(ctx.get(), ex, "rr");
    ERR_clear_error();
    return {};
  }

  // The transfer callback's work: one DER request out, one PKIMessage in.
  Result<CmpMsgPtr> exchange(OSSL_CMP_CTX* ctx, const OSSL_CMP_MSG* request) const {
    unsigned char* raw = nullptr;
    const int len = i2d_OSSL_CMP_MSG(request, &raw);
    if (len <= 0) return openssl_error("ca.request_failed", "cannot encode the CMP request", "check memory");
    Bytes der(raw, raw + len);
    OPENSSL_free(raw);
    const std::string at = "CMP server " + o_.url;
    if (url_.tls) {
      CC_TRY_ASSIGN(HttpsResponse r,
                    https_->post(o_.url, kContentType,
                                 std::string_view(reinterpret_cast<const char*>(der.data()), der.size())));
      if (r.status != 200) return http_status_error(r.status, at);
      if (!is_pkixcmp(r.content_type))
        return response_unreadable(at + " answered Content-Type \"" + r.content_type + "\", not " + kContentType);
      return parse_message(reinterpret_cast<const unsigned char*>(r.body.data()), r.body.size(), at);
    }
    // OpenSSL cuts the message timeout to what is left of the transaction.
    const int timeout_s = OSSL_CMP_CTX_get_option(ctx, OSSL_CMP_OPT_MSG_TIMEOUT);
    return post_http(der, timeout_s > 0 ? timeout_s : 1, at);
  }

 private:
  std::string where(const std::string& operation) const { return operation + " at CMP server " + o_.url; }

  Result<CmpCtxPtr> new_ctx(Exchange& ex) const {
    ex.client = this;
    CmpCtxPtr ctx(OSSL_CMP_CTX_new(nullptr, nullptr));
    if (!ctx) return openssl_error("ca.request_failed", "cannot create a CMP context", "check memory");
    X509StorePtr store(X509_STORE_new());
    bool ok = store != nullptr;
    for (const auto& a : anchors_) ok = ok && X509_STORE_add_cert(store.get(), a.get()) == 1;
    // The anchor may be the server's own (not self-signed) certificate.
    ok = ok && X509_STORE_set_flags(store.get(), X509_V_FLAG_PARTIAL_CHAIN) == 1;
    const int timeout_s = static_cast<int>((o_.timeout.count() + 999) / 1000);
    ok = ok && OSSL_CMP_CTX_set_log_cb(ctx.get(), on_cmp_log) == 1 &&
         OSSL_CMP_CTX_set_log_verbosity(ctx.get(), OSSL_CMP_LOG_ERR) == 1 &&
         OSSL_CMP_CTX_set_transfer_cb(ctx.get(), on_transfer) == 1 &&
         OSSL_CMP_CTX_set_transfer_cb_arg(ctx.get(), &ex) == 1 &&
         OSSL_CMP_CTX_set_option(ctx.get(), OSSL_CMP_OPT_MSG_TIMEOUT, timeout_s) == 1 &&
         OSSL_CMP_CTX_set_option(ctx.get(), OSSL_CMP_OPT_TOTAL_TIMEOUT, timeout_s) == 1 &&
         OSSL_CMP_CTX_set1_cert(ctx.get(), ra_.certificate.get()) == 1 &&
         OSSL_CMP_CTX_set1_pkey(ctx.get(), ra_.key.get()) == 1 &&
         OSSL_CMP_CTX_set0_trustedStore(ctx.get(), store.get()) == 1;
    if (!ok) return openssl_error("ca.request_failed", "cannot set up the CMP context", "check memory");
    store.release();  // owned by ctx now
    return ctx;
  }

  // OpenSSL's HTTP client over a connection we made (see tcp_connect).
  Result<CmpMsgPtr> post_http(const Bytes& der, int timeout_s, const std::string& at) const {
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + std::chrono::seconds(timeout_s);
    CC_TRY_ASSIGN(int fd, tcp_connect(url_, std::min(deadline, start + o_.connect_timeout)));
    BioPtr sock(BIO_new_socket(fd, BIO_CLOSE));
    if (!sock) {
      ::close(fd);
      return openssl_error("ca.request_failed", "cannot make a socket BIO", "check memory");
    }
    BioPtr req(BIO_new_mem_buf(der.data(), static_cast<int>(der.size())));
    if (!req) return openssl_error("ca.request_failed", "cannot make a memory BIO", "check memory");
    const auto left = std::chrono::ceil<std::chrono::seconds>(deadline - std::chrono::steady_clock::now());
    // bio and rbio given: OpenSSL neither connects nor uses a proxy.
    BioPtr rsp(OSSL_HTTP_transfer(nullptr, url_.host.c_str(), url_.port.c_str(), url_.path.c_str(), 0, nullptr,
                                  nullptr, sock.get(), sock.get(), nullptr, nullptr, 0, nullptr, kContentType,
                                  req.get(), kContentType, 1, kMaxResponseBytes,
                                  static_cast<int>(std::max<std::int64_t>(left.count(), 1)), 0));
    if (!rsp) return http_failure(drain_queue(), at, timeout_s);
    CmpMsgPtr msg(d2i_OSSL_CMP_MSG_bio(rsp.get(), nullptr));
    if (!msg) return response_unreadable(with_detail(at + ": the answer is not a DER PKIMessage", drain_openssl_errors()));
    return msg;
  }

  static Error http_failure(const Queue& q, const std::string& at, int timeout_s) {
    if (q.has(ERR_LIB_BIO, BIO_R_TRANSFER_TIMEOUT) || q.has(ERR_LIB_BIO, BIO_R_CONNECT_TIMEOUT) ||
        q.has(ERR_LIB_HTTP, HTTP_R_RETRY_TIMEOUT))
      return timeout_error(at + " did not answer within " + std::to_string(timeout_s) + " s");
    if (const QueueEntry* e = q.find(ERR_LIB_HTTP, HTTP_R_RECEIVED_ERROR)) {
      const auto c = e->data.find("code=");
      if (c != std::string::npos) return http_status_error(std::strtol(e->data.c_str() + c + 5, nullptr, 10), at);
    }
    // A status OpenSSL does not follow (1xx, 3xx): the server said where, not what.
    if (q.has_any(ERR_LIB_HTTP, {HTTP_R_STATUS_CODE_UNSUPPORTED, HTTP_R_REDIRECTION_NOT_ENABLED}))
      return Error{"ca.http_error", with_detail(at + " answered with an HTTP status that is neither 200 nor an error",
                                                q.text()),
                   "configure the CMP URL the server answers at itself (no redirection)"};
    // Bytes came back after the request was sent, but not a CMP message.
    if (q.has_any(ERR_LIB_HTTP, {HTTP_R_MISSING_ASN1_ENCODING, HTTP_R_ERROR_PARSING_ASN1_LENGTH,
                                 HTTP_R_ASN1_LEN_EXCEEDS_MAX_RESP_LEN, HTTP_R_MAX_RESP_LEN_EXCEEDED,
                                 HTTP_R_UNEXPECTED_CONTENT_TYPE, HTTP_R_MISSING_CONTENT_TYPE,
                                 HTTP_R_RESPONSE_PARSE_ERROR, HTTP_R_HEADER_PARSE_ERROR,
                                 HTTP_R_RESPONSE_LINE_TOO_LONG, HTTP_R_RECEIVED_WRONG_HTTP_VERSION,
                                 HTTP_R_INCONSISTENT_CONTENT_LENGTH, HTTP_R_ERROR_PARSING_CONTENT_LENGTH}))
      return response_unreadable(with_detail(at + ": the answer is not an HTTP response with a CMP message", q.text()));
    // The peer closed the connection before a whole answer arrived.
    if (q.has_any(ERR_LIB_HTTP, {HTTP_R_SERVER_CANCELED_CONNECTION, HTTP_R_FAILED_READING_DATA,
                                 HTTP_R_ERROR_SENDING, HTTP_R_ERROR_RECEIVING}))
      return Error{"net.connection_lost", with_detail(at + " closed the connection without a whole reply", q.text()),
                   "transient: retry; if it persists check the CA"};
    return Error{"net.transfer_failed", with_detail(at + ": the HTTP exchange failed", q.text()),
                 "retry; if it persists check the CA's availability"};
  }

  // What went wrong, after OSSL_CMP_exec_* failed.
  Error failure(OSSL_CMP_CTX* ctx, const Exchange& ex, const std::string& operation) const {
    const Queue q = drain_queue();
    const std::string at = where(operation);
    std::string detail = q.text();
    if (detail.empty())
      for (const auto& line : ex.log) detail += (detail.empty() ? "" : "; ") + line;
    // Named by the transfer callback: connection, timeout, HTTP status, not CMP.
    if (ex.transport) {
      // A later message of the transaction (certConf, pollReq) that could not
      // be delivered: the CA has the request, whatever the transport says.
      if (ex.responses > 0 && !may_have_reached_ca(*ex.transport))
        return transaction_failed(at + ": the CA answered, but the next message of the transaction could not be "
                                       "delivered: " + ex.transport->what,
                                  ex.transport->native);
      return *ex.transport;
    }
    // The provider's named error: the token could not sign the protection.
    if (auto named = provider_error(q)) return *named;
    const int status = OSSL_CMP_CTX_get_status(ctx);
    if (status == OSSL_CMP_PKISTATUS_waiting &&
        q.has_any(ERR_LIB_CMP, {CMP_R_TOTAL_TIMEOUT, CMP_R_POLLING_FAILED}))
      return Error{"ca.pending_timeout",
                   at + ": the CA holds the request for approval (\"waiting\") and did not issue within the "
                        "transaction timeout of " + std::to_string(o_.timeout.count()) +
                        " ms (OpenSSL 3.0 stops polling once less than about 5 s of it remain)",
                   "the request stays at the CA: approve and fetch it there, or raise timeout_ms; submitting again "
                   "makes a new request"};
    if (q.has(ERR_LIB_CMP, CMP_R_TOTAL_TIMEOUT))
      return timeout_error(with_detail(at + ": the CMP transaction took longer than " +
                                           std::to_string(o_.timeout.count()) + " ms",
                                       detail));
    // These come only after the answer's protection verified.
    if (q.has(ERR_LIB_CMP, CMP_R_CERTIFICATE_NOT_ACCEPTED))
      return Error{"ca.issued_key_mismatch",
                   with_detail(at + ": the CA returned a certificate that is not for the CSR's key; it was "
                                    "rejected to the CA (certConf)",
                               detail),
                   "check the CA's CMP alias/profile (it must certify the key in the PKCS#10, not generate or "
                   "substitute one) and report the CA's behaviour"};
    if (q.has_any(ERR_LIB_CMP, {CMP_R_RECEIVED_ERROR, CMP_R_REQUEST_REJECTED_BY_SERVER}))
      return rejection(ctx, q, at, operation);
    // An answer whose protection does not verify says nothing, whatever its status.
    if (q.has_any(ERR_LIB_CMP, {CMP_R_ERROR_VALIDATING_PROTECTION, CMP_R_ERROR_VALIDATING_SIGNATURE,
                                CMP_R_NO_SUITABLE_SENDER_CERT, CMP_R_MISSING_PROTECTION,
                                CMP_R_SRVCERT_DOES_NOT_VALIDATE_MSG, CMP_R_WRONG_PBM_VALUE,
                                CMP_R_MISSING_TRUST_STORE}))
      return Error{"ca.response_untrusted",
                   with_detail(at + ": the answer's protection does not verify against the trust anchor " +
                                   o_.trust_anchor,
                               detail),
                   "configure as CMP trust anchor the CA's CMP signing certificate or the CA that issued it; the "
                   "request may have reached the CA, check there before submitting again"};
    if (status == OSSL_CMP_PKISTATUS_rejection) return rejection(ctx, q, at, operation);
    if (q.has_any(ERR_LIB_CMP, {CMP_R_ERROR_PROTECTING_MESSAGE, CMP_R_ERROR_CALCULATING_PROTECTION})) {
      if (ex.responses > 0)
        return transaction_failed(with_detail(at + ": the CA answered, but the next message of the transaction "
                                                   "cannot be signed with the RA key",
                                              detail));
      return Error{"ca.request_failed", with_detail(at + ": the request cannot be signed with the RA key", detail),
                   "check the RA key and certificate in the token (`certcustody token info`)"};
    }
    if (ex.responses > 0)
      return response_unreadable(with_detail(at + ": the CA's answer is not a valid CMP response", detail));
    return Error{"ca.request_failed", with_detail(at + ": the CMP request could not be made", detail),
                 "check the RA key and certificate in the token (`certcustody token info`) and the CMP settings"};
  }

  static Error transaction_failed(const std::string& what, unsigned long native = 0) {
    return Error{"ca.transaction_failed", what,
                 "the CA may hold the request or have issued the certificate: check on the CA before submitting "
                 "again",
                 native};
  }

  // PKIStatus rejection (in a response or an error message), by PKIFailureInfo.
  static Error rejection(OSSL_CMP_CTX* ctx, const Queue& q, const std::string& at, const std::string& operation) {
    const int bits = OSSL_CMP_CTX_get_failInfoCode(ctx);
    char buf[OSSL_CMP_PKISI_BUFLEN] = {0};
    std::string text;
    // The error message's text also carries its errorCode and errorDetails.
    if (const QueueEntry* e = q.find(ERR_LIB_CMP, CMP_R_RECEIVED_ERROR); e != nullptr && !e->data.empty())
      text = e->data;
    else if (OSSL_CMP_CTX_snprint_PKIStatus(ctx, buf, sizeof buf) != nullptr)
      text = buf;
    else
      text = q.text();
    const std::string what = at + ": the CA rejected it: " + text;
    const auto native = static_cast<unsigned long>(bits < 0 ? 0 : bits);
    auto any = [&](std::initializer_list<int> list) {
      return std::any_of(list.begin(), list.end(), [&](int b) { return fail_bit(bits, b); });
    };
    if (any({OSSL_CMP_PKIFAILUREINFO_notAuthorized, OSSL_CMP_PKIFAILUREINFO_signerNotTrusted,
             OSSL_CMP_PKIFAILUREINFO_badMessageCheck, OSSL_CMP_PKIFAILUREINFO_wrongIntegrity}) ||
        server_could_not_verify_us(q))
      return Error{"ca.ra_not_authorized", what,
                   "the CA does not accept the RA's signature: register the RA certificate (or its issuing CA) with "
                   "the CMP server as an authorised RA, and check it is the one in the token (`certcustody token "
                   "info`)",
                   native};
    if (any({OSSL_CMP_PKIFAILUREINFO_badAlg, OSSL_CMP_PKIFAILUREINFO_badRequest, OSSL_CMP_PKIFAILUREINFO_badTime,
             OSSL_CMP_PKIFAILUREINFO_badCertId, OSSL_CMP_PKIFAILUREINFO_badDataFormat,
             OSSL_CMP_PKIFAILUREINFO_wrongAuthority, OSSL_CMP_PKIFAILUREINFO_incorrectData,
             OSSL_CMP_PKIFAILUREINFO_missingTimeStamp, OSSL_CMP_PKIFAILUREINFO_badPOP,
             OSSL_CMP_PKIFAILUREINFO_unacceptedPolicy, OSSL_CMP_PKIFAILUREINFO_unacceptedExtension,
             OSSL_CMP_PKIFAILUREINFO_badSenderNonce, OSSL_CMP_PKIFAILUREINFO_badRecipientNonce,
             OSSL_CMP_PKIFAILUREINFO_badCertTemplate, OSSL_CMP_PKIFAILUREINFO_unsupportedVersion,
             OSSL_CMP_PKIFAILUREINFO_duplicateCertReq}))
      return Error{"ca.bad_request", what,
                   operation == "rr"
                       ? "the CA refused the revocation request (PKIFailureInfo and its text say why): check that "
                         "this CA issued the certificate and that the reason is one it accepts"
                       : "the CA found the request malformed or against its profile (PKIFailureInfo says which "
                         "part): fix the request's key, subject or extensions, or the CMP alias/profile in the URL",
                   native};
    if (any({OSSL_CMP_PKIFAILUREINFO_systemUnavail, OSSL_CMP_PKIFAILUREINFO_systemFailure}))
      return Error{"ca.internal_error", what, "transient failure inside the CA: retried automatically; if it persists "
                                             "check the CA", native};
    return Error{"ca.rejected", what, "read the CA's status text; fix the request or the CA's configuration", native};
  }

  // The issued certificate's issuers, issuer first, from what the answer
  // carried (OpenSSL's chain for the new certificate, extraCerts, caPubs).
  static std::vector<Bytes> chain_of(X509* leaf, OSSL_CMP_CTX* ctx) {
    std::vector<X509Ptr> pool;
    const CertStackPtr stacks[] = {CertStackPtr(OSSL_CMP_CTX_get1_newChain(ctx)),
                                   CertStackPtr(OSSL_CMP_CTX_get1_extraCertsIn(ctx)),
                                   CertStackPtr(OSSL_CMP_CTX_get1_caPubs(ctx))};
    for (const auto& s : stacks)
      for (int i = 0; s && i < sk_X509_num(s.get()); ++i) {
        X509* c = sk_X509_value(s.get(), i);
        if (X509_up_ref(c) == 1) pool.emplace_back(c);
      }
    std::vector<Bytes> chain;
    std::vector<X509*> used{leaf};
    X509* current = leaf;
    for (int depth = 0; depth < 10 && X509_check_issued(current, current) != X509_V_OK; ++depth) {
      X509* next = nullptr;
      for (const auto& c : pool)
        if (X509_check_issued(c.get(), current) == X509_V_OK &&
            std::none_of(used.begin(), used.end(), [&](X509* u) { return X509_cmp(u, c.get()) == 0; })) {
          next = c.get();
          break;
        }
      if (next == nullptr) break;
      chain.push_back(der_of(next));
      used.push_back(next);
      current = next;
    }
    return chain;
  }

  CmpOptions o_;
  Url url_;
  TlsIdentity ra_;
  std::vector<X509Ptr> anchors_;
  std::unique_ptr<HttpsClient> https_;  // https:// only
};

OSSL_CMP_MSG* on_transfer(OSSL_CMP_CTX* ctx, const OSSL_CMP_MSG* request) noexcept {
  auto* ex = static_cast<Exchange*>(OSSL_CMP_CTX_get_transfer_cb_arg(ctx));
  if (ex == nullptr || ex->client == nullptr) return nullptr;
  try {
    ex->transport.reset();
    auto r = ex->client->exchange(ctx, request);
    if (!r) {
      ex->transport = r.error();
      return nullptr;
    }
    ++ex->responses;
    return r.value().release();  // OpenSSL frees it
  } catch (const std::exception& e) {
    ex->transport = Error{"ca.request_failed", std::string("CMP transfer: ") + e.what(), "check memory"};
    return nullptr;
  }
}

Result<std::vector<X509Ptr>> load_anchors(const std::string& file) {
  auto bad_anchor = [&](const std::string& why) {
    return openssl_error("net.trust_anchor_unreadable", "CMP trust anchor " + file + ": " + why,
                         "point trust_anchor at a PEM file with the CMP server's signing certificate or its CA");
  };
  BioPtr bio(BIO_new_file(file.c_str(), "r"));
  if (!bio) return bad_anchor("cannot be read");
  std::vector<X509Ptr> certs;
  while (X509* c = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) certs.emplace_back(c);
  ERR_clear_error();  // the end of the file reads as "no start line"
  if (certs.empty()) return bad_anchor("holds no PEM certificate");
  return certs;
}

}  // namespace

Result<std::unique_ptr<CaClient>> make_cmp_client(CmpOptions options, TlsIdentity ra) {
  CC_TRY_ASSIGN(Url url, parse_url(options.url));
  if (!ra.key || !ra.certificate)
    return Error{"net.identity_unavailable", "no RA key or certificate for the CMP client",
                 "load the RA identity from the token"};
  if (options.timeout.count() <= 0 || options.connect_timeout.count() <= 0)
    return Error{"config.invalid_value", "the CMP connect timeout and timeout must be positive",
                 "set connect_timeout_ms and timeout_ms to positive numbers of milliseconds"};
  CC_TRY_ASSIGN(std::vector<X509Ptr> anchors, load_anchors(options.trust_anchor));
  // The RA certificate came out of OSSL_STORE with the property query
  // "provider=certcustody", which it keeps: OSSL_CMP_CTX_set1_cert's
  // extension check then fetches SHA-1 from our provider, which offers no
  // digests, and fails ("potentially invalid certificate"). A copy decoded
  // afresh uses the default providers; the key handle stays the token's.
  const Bytes ra_der = der_of(ra.certificate.get());
  const unsigned char* p = ra_der.data();
  X509Ptr plain(ra_der.empty() ? nullptr : d2i_X509(nullptr, &p, static_cast<long>(ra_der.size())));
  if (!plain)
    return openssl_error("net.identity_unavailable", "the RA certificate cannot be re-encoded",
                         "check the RA certificate in the token (`certcustody token info`)");
  std::unique_ptr<HttpsClient> https;
  if (url.tls) {
    // The HTTPS client takes its own references to the same RA identity.
    TlsIdentity tls;
    if (EVP_PKEY_up_ref(ra.key.get()) == 1) tls.key.reset(ra.key.get());
    if (X509_up_ref(ra.certificate.get()) == 1) tls.certificate.reset(ra.certificate.get());
    if (!tls.key || !tls.certificate)
      return openssl_error("ca.request_failed", "cannot share the RA identity", "check memory");
    HttpsOptions ho;
    ho.trust_anchor = options.trust_anchor;
    ho.connect_timeout = options.connect_timeout;
    ho.total_timeout = options.timeout;
    CC_TRY_ASSIGN(https, HttpsClient::create(std::move(ho), std::move(tls)));
  }
  ra.certificate = std::move(plain);
  return std::unique_ptr<CaClient>(
      new CmpClient(std::move(options), std::move(url), std::move(ra), std::move(anchors), std::move(https)));
}

}  // namespace certcustody::ca
