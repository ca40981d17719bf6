#include "ca/mscep_client.h"

#include <algorithm>
#include <chrono>
#include <mutex>

#include "ca/mscep_wire.h"
#include "ca/resilience.h"
#include "ca/soap_call.h"

namespace certcustody::ca {
namespace {

using Clock = std::chrono::steady_clock;
using Policy = std::shared_ptr<const mscep::PolicyResponse>;

// "https://host:port" of a URL ("" when it is not https).
std::string origin(const std::string& url) {
  if (url.rfind("https://", 0) != 0) return {};
  return url.substr(0, url.find('/', 8));
}

// How long a policy answer is used before it is asked again: nextUpdateHours
// (MS-XCEP 3.1.4.1.3.23), at most 8 hours; an hour when not given.
Clock::duration policy_lifetime(const mscep::PolicyResponse& p) {
  return std::chrono::hours(std::clamp<std::uint32_t>(p.next_update_hours.value_or(1), 1, 8));
}

class MscepClient final : public CaClient {
 public:
  MscepClient(MscepOptions o, std::shared_ptr<HttpsClient> http) : o_(std::move(o)), http_(std::move(http)) {}
  std::string_view dialect() const override { return "mscep"; }

  Result<policy::TemplatePolicy> fetch_policy(const std::string& template_name) override {
    if (o_.cep_url.empty())
      return Error{"ca.policy_server_missing", "no enrollment policy (CEP) server is configured for this CA",
                   "set policy_url in the [ca.<name>] section to the CEP endpoint URL"};
    CC_TRY_ASSIGN(Policy p, fresh_policy());
    return mscep::template_policy(*p, template_name, "GetPolicies at " + o_.cep_url);
  }

  // At the CAs the template's policy names, in priority order, then at the
  // configured CES URL; on to the next only while a failure shows the
  // request never reached a CA (docs/ca-protocols.md, "Where a request goes").
  Result<Enrollment> submit(const SubmitRequest& request) override {
    CC_TRY_ASSIGN(std::vector<std::string> endpoints, endpoints_for(request.template_id));
    const PendingTicket context = ticket_for(request);
    std::string tried;
    for (std::size_t i = 0;; ++i) {
      auto r = submit_at(endpoints[i], request, context);
      if (r || may_have_reached_ca(r.error()) || i + 1 == endpoints.size()) {
        if (r || tried.empty()) return r;
        Error e = r.error();
        e.what += " (after " + tried + ")";
        return e;
      }
      tried += (tried.empty() ? "" : "; ") + endpoints[i] + ": " + r.error().code;
    }
  }

  Result<Enrollment> poll(const PendingTicket& ticket) override {
    if (ticket.request_id.empty())
      return Error{"ca.ticket_invalid", "a pending request without a CA RequestID cannot be polled",
                   "the request state is damaged: resubmit it"};
    // MS-WSTEP: ask at the URI the pending answer named — but only on a CES
    // host the configuration or the policy names: the RA's TLS identity is
    // not shown to other servers.
    const std::string url = trusted(ticket.poll_uri) ? ticket.poll_uri : o_.ces_url;
    CC_TRY_ASSIGN(soap::Response r,
                  soap_call(*http_, url, mscep::query_request(url, ticket.request_id), "QueryTokenStatus"));
    auto e = mscep::enrollment_result(r, ticket, "QueryTokenStatus " + ticket.request_id + " at " + url);
    if (e && e->status == Enrollment::Status::pending) e->ticket.poll_uri = poll_uri_at(url, e->ticket.poll_uri);
    return e;
  }

  Status revoke(const RevokeRequest&) override {
    return Error{"ca.operation_unsupported",
                 "the Microsoft CA's enrollment web services (MS-WSTEP) have no revocation operation",
                 "revoke on the CA itself (certutil -revoke <serial> <reason>)"};
  }

 private:
  Result<Enrollment> submit_at(const std::string& url, const SubmitRequest& request, const PendingTicket& context) {
    CC_TRY_ASSIGN(soap::Response r,
                  soap_call(*http_, url, mscep::issue_request(url, request.csr_der, request.template_id),
                            "RequestSecurityToken"));
    auto e = mscep::enrollment_result(r, context, "RequestSecurityToken at " + url);
    if (e && e->status == Enrollment::Status::pending) e->ticket.poll_uri = poll_uri_at(url, e->ticket.poll_uri);
    return e;
  }

  // The pending answer's Reference URI when it is on the CES that answered;
  // that CES itself otherwise.
  static std::string poll_uri_at(const std::string& ces, const std::string& reference) {
    return !reference.empty() && origin(reference) == origin(ces) ? reference : ces;
  }

  // The configured CES alone without a policy server, or when the policy
  // cannot be had or does not list the template (the CA then decides).
  Result<std::vector<std::string>> endpoints_for(const std::string& template_name) {
    const std::vector<std::string> configured{o_.ces_url};
    if (o_.cep_url.empty() || template_name.empty()) return configured;
    const Policy p = cached_policy();
    if (!p || p->find(template_name) == nullptr) return configured;
    CC_TRY_ASSIGN(std::vector<std::string> uris,
                  mscep::enrolment_uris(*p, template_name, "the enrollment policy of " + o_.cep_url));
    if (std::find(uris.begin(), uris.end(), o_.ces_url) == uris.end()) uris.push_back(o_.ces_url);
    return uris;
  }

  bool trusted(const std::string& uri) {
    const std::string o = origin(uri);
    if (o.empty()) return false;
    if (o == origin(o_.ces_url)) return true;
    const Policy p = o_.cep_url.empty() ? nullptr : cached_policy();
    if (!p) return false;
    for (const mscep::PolicyCa& ca : p->cas)
      for (const mscep::CaUri& u : ca.uris)
        if (origin(u.uri) == o) return true;
    return false;
  }

  Result<Policy> fresh_policy() {
    CC_TRY_ASSIGN(soap::Response r, soap_call(*http_, o_.cep_url, mscep::get_policies_request(o_.cep_url),
                                              "GetPolicies"));
    CC_TRY_ASSIGN(mscep::PolicyResponse parsed, mscep::policy_response(r, "GetPolicies at " + o_.cep_url));
    auto p = std::make_shared<const mscep::PolicyResponse>(std::move(parsed));
    std::lock_guard l(mu_);
    policy_ = p;
    policy_until_ = Clock::now() + policy_lifetime(*p);
    return p;
  }

  // The last policy answer while it is fresh, else a new one (nullptr when
  // the policy server cannot be had).
  Policy cached_policy() {
    {
      std::lock_guard l(mu_);
      if (policy_ && Clock::now() < policy_until_) return policy_;
    }
    auto p = fresh_policy();
    return p ? *p : nullptr;
  }

  MscepOptions o_;
  std::shared_ptr<HttpsClient> http_;
  std::mutex mu_;
  Policy policy_;
  Clock::time_point policy_until_{};
};

}  // namespace

Result<std::unique_ptr<CaClient>> make_mscep_client(MscepOptions options, std::shared_ptr<HttpsClient> http) {
  for (const std::string* u : {&options.ces_url, &options.cep_url})
    if (!u->empty() && u->rfind("https://", 0) != 0)
      return Error{"ca.url_invalid", "\"" + *u + "\" is not an https:// URL",
                   "the Microsoft CA's web services are reached over HTTPS only"};
  if (options.ces_url.empty())
    return Error{"ca.url_invalid", "no enrollment (CES) URL", "set url in the [ca.<name>] section"};
  return std::unique_ptr<CaClient>(new MscepClient(std::move(options), std::move(http)));
}

}  // namespace certcustody::ca
