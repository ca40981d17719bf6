// XML for the SOAP CA dialects, on libxml2: parsing that refuses hostile
// documents, navigation by namespace URI + local name (never by prefix or by
// string matching), and building with declared namespaces.
//
// Refused on parse: a DOCTYPE of any kind (so no external entities, no entity
// expansion), network access, documents over the size limit, and libxml2's
// own depth/size limits (XML_PARSE_HUGE is never set).
#pragma once

#include <libxml/tree.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace certcustody::ca::xml {

inline constexpr std::size_t kDefaultMaxBytes = 4u << 20;  // a PKCS#7 chain is a few KiB

struct DocDeleter {
  void operator()(xmlDoc* d) const noexcept { xmlFreeDoc(d); }
};

class Document {
 public:
  // `what` names the document in errors ("response of https://…").
  static Result<Document> parse(std::string_view text, const std::string& what,
                                std::size_t max_bytes = kDefaultMaxBytes);
  // A new document whose root element is <prefix:local xmlns:prefix="ns">.
  static Document create(std::string_view ns, std::string_view prefix, std::string_view local);

  xmlNode* root() const { return xmlDocGetRootElement(doc_.get()); }
  std::string serialize() const;  // UTF-8 with an XML declaration

 private:
  std::unique_ptr<xmlDoc, DocDeleter> doc_;
};

// --- navigation ---------------------------------------------------------
bool is(const xmlNode* n, std::string_view ns, std::string_view local);
// First element child with this namespace and local name, or nullptr.
xmlNode* child(const xmlNode* parent, std::string_view ns, std::string_view local);
std::vector<xmlNode*> children(const xmlNode* parent, std::string_view ns, std::string_view local);
// All element children, whatever their names.
std::vector<xmlNode*> elements(const xmlNode* parent);
// Follows a path of (ns, local) steps from `from`; nullptr when a step is missing.
xmlNode* path(const xmlNode* from, std::initializer_list<std::pair<std::string_view, std::string_view>> steps);
// Text content, whitespace at both ends trimmed.
std::string text(const xmlNode* n);
// Attribute by namespace ("" for an unqualified attribute) and local name.
std::optional<std::string> attribute(const xmlNode* n, std::string_view ns, std::string_view local);
// xsi:nil="true" (or "1").
bool is_nil(const xmlNode* n);
std::string_view ns_of(const xmlNode* n);
std::string_view name_of(const xmlNode* n);

// --- building -----------------------------------------------------------
xmlNs* declare(xmlNode* n, std::string_view ns, std::string_view prefix);
xmlNode* add(xmlNode* parent, xmlNs* ns, std::string_view local, std::string_view text = {});
void set_attribute(xmlNode* n, xmlNs* ns, std::string_view local, std::string_view value);
void set_nil(xmlNode* n);  // xsi:nil="true", declaring xsi on n

inline constexpr std::string_view kXsi = "http://www.w3.org/2001/XMLSchema-instance";

// Base64 as XML schema's base64Binary: whitespace inside is allowed.
Result<std::vector<unsigned char>> base64_decode(std::string_view text, const std::string& what);
std::string base64_encode(const std::vector<unsigned char>& bytes, bool wrap64 = false);

}  // namespace certcustody::ca::xml
