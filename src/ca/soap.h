// SOAP 1.1 / 1.2 envelopes with WS-Addressing, shared by the DigiCert and the
// Microsoft CA clients (and the CA simulator). Faults are decoded into their
// parts; the dialects turn them into named errors.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "ca/xml.h"
#include "common/error.h"

namespace certcustody::ca::soap {

inline constexpr std::string_view kSoap11 = "http://schemas.xmlsoap.org/soap/envelope/";
inline constexpr std::string_view kSoap12 = "http://www.w3.org/2003/05/soap-envelope";
inline constexpr std::string_view kWsa = "http://www.w3.org/2005/08/addressing";

enum class Version { soap11, soap12 };

struct Envelope {
  xml::Document doc;
  xmlNode* header = nullptr;
  xmlNode* body = nullptr;
  Version version = Version::soap12;
  std::string action;  // for the HTTP headers (SOAP 1.1 SOAPAction / SOAP 1.2 action parameter)

  std::string content_type() const;  // the HTTP Content-Type to send it with
};

// An envelope; with a non-empty `to`, WS-Addressing headers Action, MessageID
// (urn:uuid), To (MS-WSTEP servers fault when To does not match the endpoint).
Envelope make_envelope(Version v, std::string_view action, std::string_view to, std::string_view message_id = {});
std::string new_message_id();  // urn:uuid:<random v4>

struct Fault {
  std::string code;     // "Receiver", "Sender", "Server", "Client" (namespace prefix dropped)
  std::string subcode;  // e.g. "InternalServiceFault", "DestinationUnreachable"
  std::string reason;   // human text, may be empty
  xmlNode* detail = nullptr;  // the Detail/detail element, if any
};

struct Response {
  xml::Document doc;
  Version version = Version::soap12;
  std::string action;      // wsa:Action, trimmed
  std::string relates_to;  // wsa:RelatesTo
  xmlNode* payload = nullptr;  // first element child of Body (when not a fault)
  std::optional<Fault> fault;
};

// Parses a SOAP response body (either version). An envelope without a Body,
// or a Body without an element, is an error naming `what`.
Result<Response> parse_response(std::string_view text, const std::string& what,
                                std::size_t max_bytes = xml::kDefaultMaxBytes);

// A request envelope as a server (the CA simulator) reads it.
struct Request {
  xml::Document doc;
  Version version = Version::soap12;
  std::string action, to, message_id;
  xmlNode* header = nullptr;
  xmlNode* payload = nullptr;
};
Result<Request> parse_request(std::string_view text, const std::string& what,
                              std::size_t max_bytes = xml::kDefaultMaxBytes);

}  // namespace certcustody::ca::soap
