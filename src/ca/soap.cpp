#include "ca/soap.h"

#include <openssl/rand.h>

#include <cstdio>

namespace certcustody::ca::soap {
namespace {

std::string_view env_ns(Version v) { return v == Version::soap11 ? kSoap11 : kSoap12; }

std::string drop_prefix(std::string qname) {
  auto colon = qname.find(':');
  return colon == std::string::npos ? qname : qname.substr(colon + 1);
}

struct Parsed {
  xml::Document doc;
  Version version;
  xmlNode* header;
  xmlNode* body;
};

Result<Parsed> parse_envelope(std::string_view text, const std::string& what, std::size_t max_bytes) {
  CC_TRY_ASSIGN(xml::Document doc, xml::Document::parse(text, what, max_bytes));
  xmlNode* root = doc.root();
  Version v;
  if (xml::is(root, kSoap12, "Envelope")) {
    v = Version::soap12;
  } else if (xml::is(root, kSoap11, "Envelope")) {
    v = Version::soap11;
  } else {
    return Error{"ca.response_unreadable",
                 what + " is not a SOAP envelope (document element {" + std::string(xml::ns_of(root)) + "}" +
                     std::string(xml::name_of(root)) + ")",
                 "check that the CA URL names the SOAP service endpoint and the CA type is right; a request "
                 "answered this way may have reached the CA"};
  }
  xmlNode* body = xml::child(root, env_ns(v), "Body");
  if (body == nullptr)
    return Error{"ca.response_unreadable", what + " is a SOAP envelope without a Body",
                 "report this CA answer; a request answered this way may have reached the CA"};
  xmlNode* header = xml::child(root, env_ns(v), "Header");
  return Parsed{std::move(doc), v, header, body};
}

Fault read_fault(const xmlNode* f, Version v) {
  Fault out;
  if (v == Version::soap12) {
    xmlNode* code = xml::child(f, kSoap12, "Code");
    out.code = drop_prefix(xml::text(xml::child(code, kSoap12, "Value")));
    out.subcode = drop_prefix(xml::text(xml::path(code, {{kSoap12, "Subcode"}, {kSoap12, "Value"}})));
    out.reason = xml::text(xml::path(f, {{kSoap12, "Reason"}, {kSoap12, "Text"}}));
    out.detail = xml::child(f, kSoap12, "Detail");
  } else {
    // SOAP 1.1 fault children are unqualified.
    out.code = drop_prefix(xml::text(xml::child(f, "", "faultcode")));
    out.reason = xml::text(xml::child(f, "", "faultstring"));
    out.detail = xml::child(f, "", "detail");
  }
  return out;
}

}  // namespace

std::string Envelope::content_type() const {
  if (version == Version::soap11) return "text/xml; charset=utf-8";
  return "application/soap+xml; charset=utf-8";
}

std::string new_message_id() {
  unsigned char b[16];
  RAND_bytes(b, sizeof b);
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  char s[64];
  std::snprintf(s, sizeof s, "urn:uuid:%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return s;
}

Envelope make_envelope(Version v, std::string_view action, std::string_view to, std::string_view message_id) {
  Envelope e{xml::Document::create(env_ns(v), "s", "Envelope"), nullptr, nullptr, v, std::string(action)};
  xmlNode* root = e.doc.root();
  xmlNs* s = root->ns;
  e.header = xml::add(root, s, "Header");
  if (!to.empty()) {
    xmlNs* a = xml::declare(root, kWsa, "a");
    xmlNode* act = xml::add(e.header, a, "Action", action);
    xml::set_attribute(act, s, "mustUnderstand", v == Version::soap12 ? "true" : "1");
    xml::add(e.header, a, "MessageID", message_id.empty() ? new_message_id() : std::string(message_id));
    xmlNode* dest = xml::add(e.header, a, "To", to);
    xml::set_attribute(dest, s, "mustUnderstand", v == Version::soap12 ? "true" : "1");
  }
  e.body = xml::add(root, s, "Body");
  return e;
}

Result<Response> parse_response(std::string_view text, const std::string& what, std::size_t max_bytes) {
  CC_TRY_ASSIGN(Parsed p, parse_envelope(text, what, max_bytes));
  Response r{std::move(p.doc), p.version, {}, {}, nullptr, std::nullopt};
  r.action = xml::text(xml::child(p.header, kWsa, "Action"));
  r.relates_to = xml::text(xml::child(p.header, kWsa, "RelatesTo"));
  auto body_elements = xml::elements(p.body);
  if (body_elements.empty())
    return Error{"ca.response_unreadable", what + " has an empty SOAP Body",
                 "report this CA answer; a request answered this way may have reached the CA"};
  if (xml::is(body_elements.front(), xml::ns_of(p.body), "Fault")) {
    r.fault = read_fault(body_elements.front(), p.version);
  } else {
    r.payload = body_elements.front();
  }
  return r;
}

Result<Request> parse_request(std::string_view text, const std::string& what, std::size_t max_bytes) {
  CC_TRY_ASSIGN(Parsed p, parse_envelope(text, what, max_bytes));
  Request r{std::move(p.doc), p.version, {}, {}, {}, p.header, nullptr};
  r.action = xml::text(xml::child(p.header, kWsa, "Action"));
  r.to = xml::text(xml::child(p.header, kWsa, "To"));
  r.message_id = xml::text(xml::child(p.header, kWsa, "MessageID"));
  auto body_elements = xml::elements(p.body);
  if (body_elements.empty()) return Error{"ca.request_invalid", what + " has an empty SOAP Body", "send a request"};
  r.payload = body_elements.front();
  return r;
}

}  // namespace certcustody::ca::soap
