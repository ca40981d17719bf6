#include "ca/digicert_client.h"

#include "ca/digicert_wire.h"
#include "ca/soap_call.h"
#include "config/config.h"

namespace certcustody::ca {
namespace {

class DigicertClient final : public CaClient {
 public:
  DigicertClient(DigicertOptions o, std::shared_ptr<HttpsClient> http) : o_(std::move(o)), http_(std::move(http)) {}
  std::string_view dialect() const override { return "digicert"; }
  // The service answers a repeated clientTransactionID with the same certificate.
  bool submit_is_idempotent() const override { return true; }

  Result<policy::TemplatePolicy> fetch_policy(const std::string& profile_oid) override {
    CC_TRY(digicert::check_profile_oid(profile_oid));
    const std::string url = digicert::service_url(o_.fqdn, "policyService");
    CC_TRY_ASSIGN(soap::Response r, soap_call(*http_, url, digicert::policy_request(), "getPolicies"));
    return digicert::template_policy(r, profile_oid, "getPolicies at " + url);
  }

  Result<Enrollment> submit(const SubmitRequest& request) override {
    CC_TRY(digicert::check_profile_oid(request.template_id));
    if (request.transaction_id.empty() || request.transaction_id.size() > 128)
      return Error{"ca.transaction_id_invalid", "a DigiCert enrolment needs a clientTransactionID of 1–128 characters",
                   "pass the request's id as the transaction id"};
    const std::string url = digicert::service_url(o_.fqdn, "enrollmentService");
    CC_TRY_ASSIGN(soap::Response r, soap_call(*http_, url, digicert::enroll_request(request), "requestVSSecurityToken"));
    return digicert::enrollment_result(r, ticket_for(request),
                                       "enrolment " + request.transaction_id + " at " + url);
  }

  Result<Enrollment> poll(const PendingTicket& ticket) override {
    if (ticket.request_id.empty())
      return Error{"ca.ticket_invalid", "a pending DigiCert request without a requestID cannot be polled",
                   "the request state is damaged: resubmit it with the same transaction id"};
    // The poll names the certificate profile the request was enrolled with.
    if (ticket.template_id.empty())
      return Error{"ca.ticket_invalid",
                   "pending DigiCert request " + ticket.request_id + " has no certificate profile OID to poll with",
                   "poll with the profile OID it was enrolled with (`ca poll --template`)"};
    CC_TRY(digicert::check_profile_oid(ticket.template_id));
    const std::string url = digicert::service_url(o_.fqdn, "enrollmentService");
    CC_TRY_ASSIGN(soap::Response r, soap_call(*http_, url, digicert::poll_request(ticket), "QueryTokenStatus"));
    return digicert::enrollment_result(r, ticket, "poll of " + ticket.request_id + " at " + url);
  }

  Status revoke(const RevokeRequest& request) override {
    CC_TRY_ASSIGN(std::string serial, serial_hex(request.certificate));
    const std::string url = digicert::service_url(o_.fqdn, "certificateManagementService");
    CC_TRY_ASSIGN(soap::Response r,
                  soap_call(*http_, url, digicert::revoke_request(serial, request.reason, request.transaction_id),
                            "updateCertificateStatus"));
    return digicert::revoke_result(r, "revocation of " + serial + " at " + url);
  }

 private:
  DigicertOptions o_;
  std::shared_ptr<HttpsClient> http_;
};

}  // namespace

Result<std::unique_ptr<CaClient>> make_digicert_client(DigicertOptions options, std::shared_ptr<HttpsClient> http) {
  if (auto problem = ca_fqdn_problem(options.fqdn))
    return Error{"ca.fqdn_invalid", "certification authority \"" + options.fqdn + "\": " + *problem,
                 "give the bare FQDN of the DigiCert service, e.g. pki-ws.symauth.com"};
  if (options.ca_name != digicert::kCaName)
    return Error{"ca.ca_name_invalid",
                 "CA name \"" + options.ca_name + "\" — the DigiCert PKI Platform takes only \"Symantec\"",
                 "set ca_name = \"Symantec\" (exactly, case included)"};
  return std::unique_ptr<CaClient>(new DigicertClient(std::move(options), std::move(http)));
}

}  // namespace certcustody::ca
