#include "ca/soap_call.h"

#include "ca/ca_client.h"

namespace certcustody::ca {
namespace {

Error http_status_error(long status, const std::string& url, const std::string& operation) {
  const std::string what = operation + " at " + url + ": HTTP " + std::to_string(status);
  if (status == 401 || status == 403)
    return Error{"ca.ra_not_authorized", what + " — the CA refused the RA",
                 "register/enable the connector's RA certificate with the CA (and check it is the one in the token: "
                 "`certcustody token info`)",
                 static_cast<unsigned long>(status)};
  if (status == 404)
    return Error{"ca.endpoint_not_found", what + " — no such service at this URL",
                 "fix the CA's URL or FQDN in the configuration", static_cast<unsigned long>(status)};
  if (status == 503)
    return Error{"ca.service_unavailable", what + " — the CA service is not available",
                 "transient: retried automatically; if it persists check the CA service",
                 static_cast<unsigned long>(status)};
  if (status >= 500)
    return Error{"ca.server_error", what, "transient: retried automatically; if it persists check the CA service",
                 static_cast<unsigned long>(status)};
  return Error{"ca.http_error", what, "check the CA URL and the CA type in the configuration",
               static_cast<unsigned long>(status)};
}

}  // namespace

Result<soap::Response> soap_call(HttpsClient& http, const std::string& url, const soap::Envelope& request,
                                 const std::string& operation, const std::vector<std::string>& extra_headers) {
  std::vector<std::string> headers = extra_headers;
  std::string content_type = request.content_type();
  if (request.version == soap::Version::soap11)
    headers.push_back("SOAPAction: \"" + request.action + "\"");
  else if (!request.action.empty())
    content_type += "; action=\"" + request.action + "\"";
  headers.push_back("Expect:");  // no 100-continue round trip
  CC_TRY_ASSIGN(HttpsResponse r, http.post(url, content_type, request.doc.serialize(), headers));
  const std::string what = operation + " response of " + url;
  if (r.status == 200) return soap::parse_response(r.body, what);
  // SOAP carries faults with 500 (and SOAP 1.2 Sender faults with 400).
  if (r.status == 500 || r.status == 400) {
    auto parsed = soap::parse_response(r.body, what);
    if (parsed && parsed->fault) return parsed;
  }
  return http_status_error(r.status, url, operation);
}

Status expect_payload(const soap::Response& r, std::string_view ns, std::string_view local, const std::string& what) {
  if (xml::is(r.payload, ns, local)) return {};
  return unreadable(what + ": expected {" + std::string(ns) + "}" + std::string(local) + ", got {" +
                    std::string(xml::ns_of(r.payload)) + "}" + std::string(xml::name_of(r.payload)));
}

}  // namespace certcustody::ca
