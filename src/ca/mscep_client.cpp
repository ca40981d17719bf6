#include "ca/mscep_client.h"

#include "ca/mscep_wire.h"
#include "ca/soap_call.h"

namespace certcustody::ca {
namespace {

// "https://host:port" of a URL ("" when it is not https).
std::string origin(const std::string& url) {
  if (url.rfind("https://", 0) != 0) return {};
  return url.substr(0, url.find('/', 8));
}

class MscepClient final : public CaClient {
 public:
  MscepClient(MscepOptions o, std::shared_ptr<HttpsClient> http) : o_(std::move(o)), http_(std::move(http)) {}
  std::string_view dialect() const override { return "mscep"; }

  Result<policy::TemplatePolicy> fetch_policy(const std::string& template_name) override {
    if (o_.cep_url.empty())
      return Error{"ca.policy_server_missing", "no enrollment policy (CEP) server is configured for this CA",
                   "set policy_url in the [ca.<name>] section to the CEP endpoint URL"};
    CC_TRY_ASSIGN(soap::Response r, soap_call(*http_, o_.cep_url, mscep::get_policies_request(o_.cep_url),
                                              "GetPolicies"));
    return mscep::template_policy(r, template_name, "GetPolicies at " + o_.cep_url);
  }

  Result<Enrollment> submit(const SubmitRequest& request) override {
    CC_TRY_ASSIGN(soap::Response r,
                  soap_call(*http_, o_.ces_url, mscep::issue_request(o_.ces_url, request.csr_der, request.template_id),
                            "RequestSecurityToken"));
    return mscep::enrollment_result(r, ticket_for(request), "RequestSecurityToken at " + o_.ces_url);
  }

  Result<Enrollment> poll(const PendingTicket& ticket) override {
    if (ticket.request_id.empty())
      return Error{"ca.ticket_invalid", "a pending request without a CA RequestID cannot be polled",
                   "the request state is damaged: resubmit it"};
    // MS-WSTEP: ask at the URI the pending answer named — but only on the
    // CES's own host: the RA's TLS identity is not shown to other servers.
    const std::string url = origin(ticket.poll_uri) == origin(o_.ces_url) ? ticket.poll_uri : o_.ces_url;
    CC_TRY_ASSIGN(soap::Response r,
                  soap_call(*http_, url, mscep::query_request(url, ticket.request_id), "QueryTokenStatus"));
    return mscep::enrollment_result(r, ticket, "QueryTokenStatus " + ticket.request_id + " at " + url);
  }

  Status revoke(const RevokeRequest&) override {
    return Error{"ca.operation_unsupported",
                 "the Microsoft CA's enrollment web services (MS-WSTEP) have no revocation operation",
                 "revoke on the CA itself (certutil -revoke <serial> <reason>)"};
  }

 private:
  MscepOptions o_;
  std::shared_ptr<HttpsClient> http_;
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
