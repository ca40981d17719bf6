// One SOAP request/response over the RA's mutual TLS: HTTP-level outcomes
// become named errors; a SOAP fault comes back inside the Response for the
// dialect to decode.
#pragma once

#include <string>
#include <vector>

#include "ca/soap.h"
#include "net/https_client.h"

namespace certcustody::ca {

Result<soap::Response> soap_call(HttpsClient& http, const std::string& url, const soap::Envelope& request,
                                 const std::string& operation,
                                 const std::vector<std::string>& extra_headers = {});

// A response with no fault must carry `ns`:`local` as its Body payload.
Status expect_payload(const soap::Response& r, std::string_view ns, std::string_view local, const std::string& what);

}  // namespace certcustody::ca
