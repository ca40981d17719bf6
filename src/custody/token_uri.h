// An RFC 7512 "pkcs11:" URI, parsed by p11-kit (never by hand).
#pragma once

#include <p11-kit/pkcs11.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"

struct p11_kit_uri;

namespace certcustody {

class TokenUri {
 public:
  // Refuses URIs that carry a PIN (pin-value): PINs come from files only.
  static Result<TokenUri> parse(const std::string& text);

  const std::string& text() const { return text_; }
  bool matches(CK_SLOT_ID slot, const CK_SLOT_INFO& slot_info, const CK_TOKEN_INFO& token_info) const;

  // Object selectors (object=, id=, type=) when the URI names a key/certificate.
  std::optional<std::string> object_label() const;
  // The token= attribute, when the URI has one.
  std::optional<std::string> token_label() const;
  std::optional<std::vector<unsigned char>> object_id() const;
  std::optional<CK_OBJECT_CLASS> object_class() const;

  // This URI narrowed to one object, e.g. "pkcs11:token=cc;object=ra;type=private",
  // formatted (and percent-encoded) by p11-kit.
  std::string object_uri(const std::string& label, CK_OBJECT_CLASS cls) const;
  // "pkcs11:object=<label>;id=<id>" with what is given, formatted by p11-kit.
  static std::string object_name(const std::optional<std::string>& label,
                                 const std::optional<std::vector<unsigned char>>& id);

 private:
  struct Free {
    void operator()(p11_kit_uri* u) const noexcept;
  };
  std::string text_;
  std::shared_ptr<p11_kit_uri> uri_;
};

}  // namespace certcustody
