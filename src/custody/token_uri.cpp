#include "custody/token_uri.h"

#include <p11-kit/uri.h>

#include "custody/pkcs11_module.h"

#include <cstdlib>

namespace certcustody {

void TokenUri::Free::operator()(p11_kit_uri* u) const noexcept { p11_kit_uri_free(u); }

Result<TokenUri> TokenUri::parse(const std::string& text) {
  TokenUri t;
  t.text_ = text;
  t.uri_.reset(p11_kit_uri_new(), Free{});
  int rc = p11_kit_uri_parse(text.c_str(), P11_KIT_URI_FOR_ANY, t.uri_.get());
  if (rc != P11_KIT_URI_OK)
    return Error{"custody.token_uri_invalid",
                 "\"" + text + "\" is not a valid pkcs11: URI (" + p11_kit_uri_message(rc) + ")",
                 "write the token as an RFC 7512 URI, e.g. pkcs11:token=certcustody"};
  if (p11_kit_uri_any_unrecognized(t.uri_.get()))
    return Error{"custody.token_uri_invalid", "\"" + text + "\" has attributes p11-kit does not recognise",
                 "use only RFC 7512 attributes (token, manufacturer, serial, model, slot-id, object, id, type)"};
  if (p11_kit_uri_get_pin_value(t.uri_.get()) != nullptr)
    return Error{"custody.pin_in_uri", "the pkcs11: URI \"" + text.substr(0, text.find("pin-value")) +
                                           "...\" carries a PIN (pin-value)",
                 "remove pin-value from the URI and put the PIN in the file named by [custody] pin_file"};
  return t;
}

bool TokenUri::matches(CK_SLOT_ID slot, const CK_SLOT_INFO& slot_info, const CK_TOKEN_INFO& token_info) const {
  p11_kit_uri* u = uri_.get();
  CK_SLOT_ID want = p11_kit_uri_get_slot_id(u);
  if (want != static_cast<CK_SLOT_ID>(-1) && want != slot) return false;
  CK_SLOT_INFO si = slot_info;
  CK_TOKEN_INFO ti = token_info;
  return p11_kit_uri_match_slot_info(u, &si) == 1 && p11_kit_uri_match_token_info(u, &ti) == 1;
}

std::optional<std::string> TokenUri::object_label() const {
  CK_ATTRIBUTE* a = p11_kit_uri_get_attribute(uri_.get(), CKA_LABEL);
  if (a == nullptr) return std::nullopt;
  return std::string(static_cast<const char*>(a->pValue), a->ulValueLen);
}

std::optional<std::string> TokenUri::token_label() const {
  CK_TOKEN_INFO* t = p11_kit_uri_get_token_info(uri_.get());
  std::string label = p11_text(t->label, sizeof t->label);
  // p11-kit leaves unset fields blank: an empty label means "any token".
  if (label.empty()) return std::nullopt;
  return label;
}

std::optional<std::vector<unsigned char>> TokenUri::object_id() const {
  CK_ATTRIBUTE* a = p11_kit_uri_get_attribute(uri_.get(), CKA_ID);
  if (a == nullptr) return std::nullopt;
  auto* p = static_cast<const unsigned char*>(a->pValue);
  return std::vector<unsigned char>(p, p + a->ulValueLen);
}

std::optional<CK_OBJECT_CLASS> TokenUri::object_class() const {
  CK_ATTRIBUTE* a = p11_kit_uri_get_attribute(uri_.get(), CKA_CLASS);
  if (a == nullptr || a->ulValueLen != sizeof(CK_OBJECT_CLASS)) return std::nullopt;
  return *static_cast<const CK_OBJECT_CLASS*>(a->pValue);
}

}  // namespace certcustody

namespace certcustody {

std::string TokenUri::object_uri(const std::string& label, CK_OBJECT_CLASS cls) const {
  std::unique_ptr<p11_kit_uri, Free> u(p11_kit_uri_new());
  if (p11_kit_uri_parse(text_.c_str(), P11_KIT_URI_FOR_ANY, u.get()) != P11_KIT_URI_OK) return text_;
  CK_ATTRIBUTE a_label{CKA_LABEL, const_cast<char*>(label.data()), static_cast<CK_ULONG>(label.size())};
  CK_ATTRIBUTE a_class{CKA_CLASS, &cls, sizeof cls};
  char* out = nullptr;
  if (p11_kit_uri_set_attribute(u.get(), &a_label) != P11_KIT_URI_OK ||
      p11_kit_uri_set_attribute(u.get(), &a_class) != P11_KIT_URI_OK ||
      p11_kit_uri_format(u.get(), P11_KIT_URI_FOR_OBJECT_ON_TOKEN, &out) != P11_KIT_URI_OK)
    return text_;
  std::string s(out);
  std::free(out);
  return s;
}

std::string TokenUri::object_name(const std::optional<std::string>& label,
                                  const std::optional<std::vector<unsigned char>>& id) {
  std::unique_ptr<p11_kit_uri, Free> u(p11_kit_uri_new());
  if (label) {
    CK_ATTRIBUTE a{CKA_LABEL, const_cast<char*>(label->data()), static_cast<CK_ULONG>(label->size())};
    p11_kit_uri_set_attribute(u.get(), &a);
  }
  if (id) {
    CK_ATTRIBUTE a{CKA_ID, const_cast<unsigned char*>(id->data()), static_cast<CK_ULONG>(id->size())};
    p11_kit_uri_set_attribute(u.get(), &a);
  }
  char* out = nullptr;
  if (p11_kit_uri_format(u.get(), P11_KIT_URI_FOR_OBJECT, &out) != P11_KIT_URI_OK) return "pkcs11:";
  std::string s(out);
  std::free(out);
  return s;
}

}  // namespace certcustody
