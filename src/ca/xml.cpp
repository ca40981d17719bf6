#include "ca/xml.h"

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <openssl/evp.h>

#include <cctype>
#include <mutex>

namespace certcustody::ca::xml {
namespace {

const xmlChar* X(std::string_view s) { return reinterpret_cast<const xmlChar*>(s.data()); }
std::string_view sv(const xmlChar* s) {
  return s == nullptr ? std::string_view{} : std::string_view(reinterpret_cast<const char*>(s));
}

struct ParseState {
  bool doctype = false;
};

// Any DOCTYPE stops the parser: SOAP forbids it (SOAP 1.2 part 1 §5), and
// refusing it outright removes external entities and entity expansion.
void on_doctype(void* ctx, const xmlChar*, const xmlChar*, const xmlChar*) {
  auto* p = static_cast<xmlParserCtxtPtr>(ctx);
  static_cast<ParseState*>(p->_private)->doctype = true;
  xmlStopParser(p);
}

void init_once() {
  static std::once_flag once;
  std::call_once(once, [] { xmlInitParser(); });
}

Error malformed(const std::string& what, const std::string& detail) {
  return Error{"ca.xml_malformed", what + " is not well-formed XML: " + detail,
               "check that the CA URL names the service endpoint (not a web page or a proxy's error page)"};
}

std::string trim(std::string s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

}  // namespace

Result<Document> Document::parse(std::string_view text, const std::string& what, std::size_t max_bytes) {
  if (text.size() > max_bytes)
    return Error{"ca.xml_too_large", what + " is " + std::to_string(text.size()) + " bytes, over the limit of " +
                                         std::to_string(max_bytes),
                 "the CA's answer is far larger than any certificate response: check the CA URL"};
  if (text.empty()) return malformed(what, "the document is empty");
  init_once();
  // Not xmlCtxtReadMemory: it resets the context, and with it _private.
  std::unique_ptr<xmlParserCtxt, decltype(&xmlFreeParserCtxt)> ctxt(
      xmlCreateMemoryParserCtxt(text.data(), static_cast<int>(text.size())), xmlFreeParserCtxt);
  if (!ctxt || ctxt->sax == nullptr) return Error{"ca.out_of_memory", "cannot create an XML parser", "check memory"};
  ParseState state;
  ctxt->_private = &state;
  ctxt->sax->internalSubset = on_doctype;
  ctxt->sax->externalSubset = on_doctype;
  xmlCtxtUseOptions(ctxt.get(), XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);
  xmlParseDocument(ctxt.get());
  xmlDoc* doc = ctxt->myDoc;
  ctxt->myDoc = nullptr;
  Document out;
  out.doc_.reset(doc);
  if (state.doctype)
    return Error{"ca.xml_hostile", what + " carries a DOCTYPE (DTDs, entity declarations): refused unread",
                 "SOAP never uses a DOCTYPE; something between the connector and the CA may be tampering with "
                 "traffic — check the CA URL and the network path"};
  if (doc == nullptr || !ctxt->wellFormed || out.root() == nullptr) {
    const xmlError* e = xmlCtxtGetLastError(ctxt.get());
    std::string detail = e != nullptr && e->message != nullptr ? trim(e->message) : "no document element";
    if (e != nullptr) detail += " (line " + std::to_string(e->line) + ")";
    return malformed(what, detail);
  }
  return out;
}

Document Document::create(std::string_view ns, std::string_view prefix, std::string_view local) {
  init_once();
  Document d;
  d.doc_.reset(xmlNewDoc(X("1.0")));
  xmlNode* root = xmlNewDocNode(d.doc_.get(), nullptr, X(std::string(local)), nullptr);
  xmlDocSetRootElement(d.doc_.get(), root);
  xmlSetNs(root, declare(root, ns, prefix));
  return d;
}

std::string Document::serialize() const {
  xmlChar* mem = nullptr;
  int len = 0;
  xmlDocDumpMemoryEnc(doc_.get(), &mem, &len, "UTF-8");
  std::string s(reinterpret_cast<const char*>(mem), static_cast<std::size_t>(len));
  xmlFree(mem);
  return s;
}

std::string_view ns_of(const xmlNode* n) { return n != nullptr && n->ns != nullptr ? sv(n->ns->href) : ""; }
std::string_view name_of(const xmlNode* n) { return n != nullptr ? sv(n->name) : ""; }

bool is(const xmlNode* n, std::string_view ns, std::string_view local) {
  return n != nullptr && n->type == XML_ELEMENT_NODE && name_of(n) == local && ns_of(n) == ns;
}

xmlNode* child(const xmlNode* parent, std::string_view ns, std::string_view local) {
  if (parent == nullptr) return nullptr;
  for (xmlNode* c = parent->children; c != nullptr; c = c->next)
    if (is(c, ns, local)) return c;
  return nullptr;
}

std::vector<xmlNode*> children(const xmlNode* parent, std::string_view ns, std::string_view local) {
  std::vector<xmlNode*> out;
  if (parent == nullptr) return out;
  for (xmlNode* c = parent->children; c != nullptr; c = c->next)
    if (is(c, ns, local)) out.push_back(c);
  return out;
}

std::vector<xmlNode*> elements(const xmlNode* parent) {
  std::vector<xmlNode*> out;
  if (parent == nullptr) return out;
  for (xmlNode* c = parent->children; c != nullptr; c = c->next)
    if (c->type == XML_ELEMENT_NODE) out.push_back(c);
  return out;
}

xmlNode* path(const xmlNode* from, std::initializer_list<std::pair<std::string_view, std::string_view>> steps) {
  const xmlNode* n = from;
  for (const auto& [ns, local] : steps) {
    n = child(n, ns, local);
    if (n == nullptr) return nullptr;
  }
  return const_cast<xmlNode*>(n);
}

std::string text(const xmlNode* n) {
  if (n == nullptr) return {};
  xmlChar* c = xmlNodeGetContent(n);
  std::string s = c != nullptr ? reinterpret_cast<const char*>(c) : "";
  xmlFree(c);
  return trim(std::move(s));
}

std::optional<std::string> attribute(const xmlNode* n, std::string_view ns, std::string_view local) {
  if (n == nullptr) return std::nullopt;
  const std::string l(local);
  xmlChar* v = ns.empty() ? xmlGetNoNsProp(n, X(l)) : xmlGetNsProp(n, X(l), X(std::string(ns)));
  if (v == nullptr) return std::nullopt;
  std::string s = reinterpret_cast<const char*>(v);
  xmlFree(v);
  return s;
}

bool is_nil(const xmlNode* n) {
  auto v = attribute(n, kXsi, "nil");
  return v && (trim(*v) == "true" || trim(*v) == "1");
}

xmlNs* declare(xmlNode* n, std::string_view ns, std::string_view prefix) {
  const std::string p(prefix);
  if (xmlNs* existing = xmlSearchNsByHref(n->doc, n, X(std::string(ns)));
      existing != nullptr && sv(existing->prefix) == prefix)
    return existing;
  return xmlNewNs(n, X(std::string(ns)), p.empty() ? nullptr : X(p));
}

xmlNode* add(xmlNode* parent, xmlNs* ns, std::string_view local, std::string_view text) {
  xmlNode* c = xmlNewChild(parent, ns, X(std::string(local)), nullptr);
  if (!text.empty()) xmlNodeAddContentLen(c, X(text), static_cast<int>(text.size()));  // escapes for us
  return c;
}

void set_attribute(xmlNode* n, xmlNs* ns, std::string_view local, std::string_view value) {
  xmlSetNsProp(n, ns, X(std::string(local)), X(std::string(value)));
}

void set_nil(xmlNode* n) {
  xmlNs* xsi = xmlSearchNsByHref(n->doc, n, X(std::string(kXsi)));
  if (xsi == nullptr) xsi = declare(n, kXsi, "xsi");
  set_attribute(n, xsi, "nil", "true");
}

Result<std::vector<unsigned char>> base64_decode(std::string_view text, const std::string& what) {
  std::string clean;
  clean.reserve(text.size());
  for (char c : text)
    if (!std::isspace(static_cast<unsigned char>(c))) clean.push_back(c);
  auto bad = [&] {
    return Error{"ca.response_unreadable", what + " is not valid base64",
                 "the CA's answer is damaged or not what this dialect expects: check the CA type and URL; a "
                 "request answered this way may have reached the CA"};
  };
  if (clean.empty()) return std::vector<unsigned char>{};
  if (clean.size() % 4 != 0 || clean.size() > static_cast<std::size_t>(INT32_MAX)) return bad();
  std::vector<unsigned char> out(clean.size() / 4 * 3);
  int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(clean.data()),
                          static_cast<int>(clean.size()));
  if (n < 0) return bad();
  std::size_t pad = clean.back() == '=' ? (clean[clean.size() - 2] == '=' ? 2 : 1) : 0;
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

std::string base64_encode(const std::vector<unsigned char>& bytes, bool wrap64) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  if (!wrap64) return out;
  std::string wrapped;
  for (std::size_t i = 0; i < out.size(); i += 64) wrapped += out.substr(i, 64) + "\n";
  return wrapped;
}

}  // namespace certcustody::ca::xml
