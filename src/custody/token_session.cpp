#include "custody/token_session.h"

#include <openssl/core_names.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include <memory>

namespace certcustody {
namespace {

CK_BBOOL kTrue = CK_TRUE;
CK_BBOOL kFalse = CK_FALSE;

CK_ATTRIBUTE attr(CK_ATTRIBUTE_TYPE t, const void* p, std::size_t n) {
  return CK_ATTRIBUTE{t, const_cast<void*>(p), static_cast<CK_ULONG>(n)};
}
template <class T>
CK_ATTRIBUTE attr(CK_ATTRIBUTE_TYPE t, const T& v) {
  return attr(t, &v, sizeof v);
}

int curve_nid(KeyType t) { return t == KeyType::ec_p384 ? NID_secp384r1 : NID_X9_62_prime256v1; }
bool is_rsa(KeyType t) { return t == KeyType::rsa2048 || t == KeyType::rsa3072 || t == KeyType::rsa4096; }
CK_ULONG rsa_bits(KeyType t) { return t == KeyType::rsa2048 ? 2048 : t == KeyType::rsa3072 ? 3072 : 4096; }

// DER of the curve's OBJECT IDENTIFIER, as CKA_EC_PARAMS wants it (namedCurve).
Bytes ec_params_der(int nid) {
  const ASN1_OBJECT* obj = OBJ_nid2obj(nid);
  int n = i2d_ASN1_OBJECT(obj, nullptr);
  Bytes der(static_cast<std::size_t>(n));
  unsigned char* p = der.data();
  i2d_ASN1_OBJECT(obj, &p);
  return der;
}

int nid_of_ec_params(const Bytes& der) {
  const unsigned char* p = der.data();
  ASN1_OBJECT* obj = d2i_ASN1_OBJECT(nullptr, &p, static_cast<long>(der.size()));
  if (obj == nullptr) return NID_undef;
  int nid = OBJ_obj2nid(obj);
  ASN1_OBJECT_free(obj);
  return nid;
}

const char* curve_display(int nid) {
  switch (nid) {
    case NID_X9_62_prime256v1: return "P-256";
    case NID_secp384r1: return "P-384";
    case NID_secp521r1: return "P-521";
    default: return OBJ_nid2sn(nid);
  }
}

Result<EvpPkeyPtr> pkey_from_params(const char* type, OSSL_PARAM_BLD* bld, const std::string& label,
                                    const SoftwareContext* sw) {
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(sw ? sw->libctx : nullptr, type, sw ? sw->propq : nullptr));
  EVP_PKEY* key = nullptr;
  bool ok = params != nullptr && ctx && EVP_PKEY_fromdata_init(ctx.get()) == 1 &&
            EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params) == 1;
  OSSL_PARAM_free(params);
  if (!ok)
    return openssl_error("custody.public_key_invalid", "the public key of '" + label + "' cannot be decoded",
                         "the token returned malformed public key attributes; regenerate the key");
  return EvpPkeyPtr(key);
}

}  // namespace

Error TokenSession::error(CK_RV rv, const std::string& operation, const std::string& object) const {
  CkContext c = *context_;
  c.operation = operation;
  c.object = object;
  return ck_error(rv, c);
}

Result<std::vector<CK_OBJECT_HANDLE>> TokenSession::find(std::span<CK_ATTRIBUTE> tmpl, CK_ULONG max) {
  CK_RV rv = P11_CALL(*module_, C_FindObjectsInit, handle_, tmpl.data(), static_cast<CK_ULONG>(tmpl.size()));
  if (rv != CKR_OK) return error(rv, "C_FindObjectsInit");
  std::vector<CK_OBJECT_HANDLE> out(max);
  CK_ULONG n = 0;
  rv = P11_CALL(*module_, C_FindObjects, handle_, out.data(), max, &n);
  CK_RV frv = P11_CALL(*module_, C_FindObjectsFinal, handle_);
  if (rv != CKR_OK) return error(rv, "C_FindObjects");
  if (frv != CKR_OK) return error(frv, "C_FindObjectsFinal");
  out.resize(n);
  return out;
}

Result<std::optional<CK_OBJECT_HANDLE>> TokenSession::find_by_label(CK_OBJECT_CLASS cls, const std::string& label) {
  return find_one(cls, label, std::nullopt);
}

Result<std::vector<CK_OBJECT_HANDLE>> TokenSession::find_all(CK_OBJECT_CLASS cls,
                                                             const std::optional<std::string>& label,
                                                             const std::optional<Bytes>& id) {
  std::vector<CK_ATTRIBUTE> tmpl = {attr(CKA_CLASS, cls)};
  if (label) tmpl.push_back(attr(CKA_LABEL, label->data(), label->size()));
  if (id) tmpl.push_back(attr(CKA_ID, id->data(), id->size()));
  return find(tmpl, 4096);
}

Result<std::optional<CK_OBJECT_HANDLE>> TokenSession::find_one(CK_OBJECT_CLASS cls,
                                                               const std::optional<std::string>& label,
                                                               const std::optional<Bytes>& id) {
  CC_TRY_ASSIGN(auto found, find_all(cls, label, id));
  if (found.empty()) return std::optional<CK_OBJECT_HANDLE>{};
  if (found.size() > 1)
    return Error{"custody.label_ambiguous",
                 "several objects of one kind carry the " +
                     (label ? "label '" + *label + "'" + (id ? " and that id" : "") : std::string("same id")),
                 "give each key a unique label (delete the duplicate with the HSM vendor's tool), or name the key "
                 "by label and id (pkcs11:object=…;id=…)"};
  return std::optional<CK_OBJECT_HANDLE>{found.front()};
}

Result<Bytes> TokenSession::attribute(CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, const std::string& what) {
  CK_ATTRIBUTE a{type, nullptr, 0};
  CK_RV rv = P11_CALL(*module_, C_GetAttributeValue, handle_, obj, &a, 1UL);
  if (rv != CKR_OK) return error(rv, "C_GetAttributeValue", what);
  if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION) return error(CKR_ATTRIBUTE_TYPE_INVALID, "C_GetAttributeValue", what);
  Bytes v(a.ulValueLen);
  a.pValue = v.data();
  rv = P11_CALL(*module_, C_GetAttributeValue, handle_, obj, &a, 1UL);
  if (rv != CKR_OK) return error(rv, "C_GetAttributeValue", what);
  v.resize(a.ulValueLen);
  return v;
}

Result<ObjectInfo> TokenSession::describe(CK_OBJECT_HANDLE obj) {
  ObjectInfo info;
  CC_TRY_ASSIGN(Bytes cls_b, attribute(obj, CKA_CLASS, "object"));
  CK_OBJECT_CLASS cls = cls_b.size() == sizeof(CK_OBJECT_CLASS) ? *reinterpret_cast<CK_OBJECT_CLASS*>(cls_b.data()) : ~0UL;
  info.kind = cls == CKO_PRIVATE_KEY ? ObjectKind::private_key
              : cls == CKO_PUBLIC_KEY ? ObjectKind::public_key
              : cls == CKO_SECRET_KEY ? ObjectKind::secret_key
              : cls == CKO_CERTIFICATE ? ObjectKind::certificate
                                       : ObjectKind::other;
  if (auto l = attribute(obj, CKA_LABEL, "object")) info.label.assign(l->begin(), l->end());
  if (auto id = attribute(obj, CKA_ID, info.label)) info.id = std::move(id.value());
  if (info.kind == ObjectKind::certificate) {
    info.algorithm = "X.509";
    return info;
  }
  if (info.kind == ObjectKind::other) return info;
  auto flag = [&](CK_ATTRIBUTE_TYPE t) {
    auto v = attribute(obj, t, info.label);
    return v && v->size() == 1 && (*v)[0] == CK_TRUE;
  };
  info.sensitive = flag(CKA_SENSITIVE);
  info.extractable = flag(CKA_EXTRACTABLE);
  info.always_sensitive = flag(CKA_ALWAYS_SENSITIVE);
  info.never_extractable = flag(CKA_NEVER_EXTRACTABLE);
  info.local = flag(CKA_LOCAL);
  CC_TRY_ASSIGN(Bytes kt_b, attribute(obj, CKA_KEY_TYPE, info.label));
  CK_KEY_TYPE kt = kt_b.size() == sizeof(CK_KEY_TYPE) ? *reinterpret_cast<CK_KEY_TYPE*>(kt_b.data()) : ~0UL;
  if (kt == CKK_RSA) {
    info.algorithm = "RSA";
    if (auto m = attribute(obj, CKA_MODULUS, info.label)) info.bits = static_cast<unsigned>(m->size() * 8);
  } else if (kt == CKK_EC) {
    info.algorithm = "EC";
    if (auto p = attribute(obj, CKA_EC_PARAMS, info.label)) {
      int nid = nid_of_ec_params(*p);
      info.curve = nid == NID_undef ? "unknown" : curve_display(nid);
      info.bits = nid == NID_secp384r1 ? 384 : nid == NID_secp521r1 ? 521 : 256;
    }
  } else if (kt == CKK_AES) {
    info.algorithm = "AES";
    if (auto l = attribute(obj, CKA_VALUE_LEN, info.label); l && l->size() == sizeof(CK_ULONG))
      info.bits = static_cast<unsigned>(*reinterpret_cast<CK_ULONG*>(l->data()) * 8);
  } else {
    info.algorithm = "other";
  }
  return info;
}

Result<EvpPkeyPtr> TokenSession::public_key(CK_OBJECT_HANDLE pub, const std::string& label) {
  CC_TRY_ASSIGN(Bytes kt_b, attribute(pub, CKA_KEY_TYPE, label));
  CK_KEY_TYPE kt = kt_b.size() == sizeof(CK_KEY_TYPE) ? *reinterpret_cast<CK_KEY_TYPE*>(kt_b.data()) : ~0UL;
  std::unique_ptr<OSSL_PARAM_BLD, OsslDeleter<OSSL_PARAM_BLD_free>> bld(OSSL_PARAM_BLD_new());
  if (kt == CKK_RSA) {
    CC_TRY_ASSIGN(Bytes n, attribute(pub, CKA_MODULUS, label));
    CC_TRY_ASSIGN(Bytes e, attribute(pub, CKA_PUBLIC_EXPONENT, label));
    std::unique_ptr<BIGNUM, OsslDeleter<BN_free>> bn_n(BN_bin2bn(n.data(), static_cast<int>(n.size()), nullptr));
    std::unique_ptr<BIGNUM, OsslDeleter<BN_free>> bn_e(BN_bin2bn(e.data(), static_cast<int>(e.size()), nullptr));
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get());
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get());
    return pkey_from_params("RSA", bld.get(), label, software_);
  }
  if (kt == CKK_EC) {
    CC_TRY_ASSIGN(Bytes params, attribute(pub, CKA_EC_PARAMS, label));
    CC_TRY_ASSIGN(Bytes point_der, attribute(pub, CKA_EC_POINT, label));
    int nid = nid_of_ec_params(params);
    if (nid == NID_undef)
      return Error{"custody.public_key_invalid", "key '" + label + "' uses EC parameters that are not a named curve",
                   "generate the key on P-256 or P-384"};
    // CKA_EC_POINT is DER OCTET STRING(point); some modules return the raw point.
    Bytes point = point_der;
    const unsigned char* p = point_der.data();
    if (ASN1_OCTET_STRING* os = d2i_ASN1_OCTET_STRING(nullptr, &p, static_cast<long>(point_der.size()))) {
      if (p == point_der.data() + point_der.size())
        point.assign(ASN1_STRING_get0_data(os), ASN1_STRING_get0_data(os) + ASN1_STRING_length(os));
      ASN1_OCTET_STRING_free(os);
    }
    OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, OBJ_nid2sn(nid), 0);
    OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size());
    return pkey_from_params("EC", bld.get(), label, software_);
  }
  return Error{"custody.key_type_unsupported", "key '" + label + "' is neither RSA nor EC",
               "use an RSA or EC key pair"};
}

Result<EvpPkeyPtr> TokenSession::certificate_public_key(std::span<const std::uint8_t> der,
                                                      const std::string& label) const {
  const unsigned char* p = der.data();
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  unsigned char* spki = nullptr;
  const int n = cert ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert.get()), &spki) : 0;
  const unsigned char* q = spki;
  EVP_PKEY* key = n > 0 ? d2i_PUBKEY_ex(nullptr, &q, n, software_ ? software_->libctx : nullptr,
                                        software_ ? software_->propq : nullptr)
                        : nullptr;
  OPENSSL_free(spki);
  if (key == nullptr)
    return openssl_error("custody.certificate_invalid", "the certificate of '" + label + "' on the token cannot be read",
                         "replace it with a valid X.509 certificate (`certcustody ra import --replace`)");
  return EvpPkeyPtr(key);
}

Result<std::pair<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE>> TokenSession::generate_key_pair(const std::string& label,
                                                                                      const Bytes& id,
                                                                                      KeyType type,
                                                                                      KeyPurpose purpose) {
  const bool sign = purpose == KeyPurpose::sign;
  if (!sign && !is_rsa(type))
    return Error{"custody.key_type_invalid", "decryption keys must be RSA (" + key_type_name(type) + " was asked)",
                 "use rsa2048, rsa3072 or rsa4096 for a decryption key"};
  CK_OBJECT_CLASS pub_cls = CKO_PUBLIC_KEY, priv_cls = CKO_PRIVATE_KEY;
  CK_KEY_TYPE kt = is_rsa(type) ? CKK_RSA : CKK_EC;
  CK_ULONG bits = rsa_bits(type);
  static const CK_BYTE kExponent[] = {0x01, 0x00, 0x01};
  Bytes ec_params = ec_params_der(curve_nid(type));

  std::vector<CK_ATTRIBUTE> pub = {
      attr(CKA_CLASS, pub_cls),   attr(CKA_KEY_TYPE, kt),  attr(CKA_TOKEN, kTrue),
      attr(CKA_PRIVATE, kFalse),  attr(CKA_VERIFY, sign ? kTrue : kFalse),
      attr(CKA_ENCRYPT, sign ? kFalse : kTrue), attr(CKA_WRAP, sign ? kFalse : kTrue),
      attr(CKA_LABEL, label.data(), label.size()),
      attr(CKA_ID, id.data(), id.size())};
  std::vector<CK_ATTRIBUTE> priv = {
      attr(CKA_CLASS, priv_cls),      attr(CKA_KEY_TYPE, kt),         attr(CKA_TOKEN, kTrue),
      attr(CKA_PRIVATE, kTrue),       attr(CKA_SENSITIVE, kTrue),     attr(CKA_EXTRACTABLE, kFalse),
      attr(CKA_SIGN, sign ? kTrue : kFalse),
      attr(CKA_DECRYPT, sign ? kFalse : kTrue), attr(CKA_UNWRAP, sign ? kFalse : kTrue),
      attr(CKA_LABEL, label.data(), label.size()),
      attr(CKA_ID, id.data(), id.size())};
  CK_MECHANISM mech{CKM_RSA_PKCS_KEY_PAIR_GEN, nullptr, 0};
  if (is_rsa(type)) {
    pub.push_back(attr(CKA_MODULUS_BITS, bits));
    pub.push_back(attr(CKA_PUBLIC_EXPONENT, kExponent, sizeof kExponent));
  } else {
    mech.mechanism = CKM_EC_KEY_PAIR_GEN;
    pub.push_back(attr(CKA_EC_PARAMS, ec_params.data(), ec_params.size()));
  }
  CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE;
  CK_RV rv = P11_CALL(*module_, C_GenerateKeyPair, handle_, &mech, pub.data(), static_cast<CK_ULONG>(pub.size()),
                      priv.data(), static_cast<CK_ULONG>(priv.size()), &hpub, &hpriv);
  if (rv != CKR_OK) return error(rv, "C_GenerateKeyPair (" + key_type_name(type) + ")", label);
  return std::pair{hpub, hpriv};
}

Result<CK_OBJECT_HANDLE> TokenSession::generate_aes_key(const std::string& label, const Bytes& id, unsigned bits,
                                                        bool token) {
  if (bits != 128 && bits != 192 && bits != 256)
    return Error{"custody.key_size_invalid", "AES keys are 128, 192 or 256 bits, not " + std::to_string(bits),
                 "use 256"};
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE kt = CKK_AES;
  CK_ULONG len = bits / 8;
  // A token key (the PFX encryption key / KEK) never leaves the token. A
  // transient content key may be wrapped out (under a KEK or a recipient's
  // public key) but its value can never be read in clear: CKA_SENSITIVE.
  std::vector<CK_ATTRIBUTE> tmpl = {
      attr(CKA_CLASS, cls),        attr(CKA_KEY_TYPE, kt),        attr(CKA_VALUE_LEN, len),
      attr(CKA_TOKEN, token ? kTrue : kFalse), attr(CKA_PRIVATE, kTrue), attr(CKA_SENSITIVE, kTrue),
      attr(CKA_EXTRACTABLE, token ? kFalse : kTrue),
      attr(CKA_ENCRYPT, kTrue),    attr(CKA_DECRYPT, kTrue),
      attr(CKA_WRAP, token ? kTrue : kFalse), attr(CKA_UNWRAP, token ? kTrue : kFalse)};
  if (!label.empty()) tmpl.push_back(attr(CKA_LABEL, label.data(), label.size()));
  if (!id.empty()) tmpl.push_back(attr(CKA_ID, id.data(), id.size()));
  CK_MECHANISM mech{CKM_AES_KEY_GEN, nullptr, 0};
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  CK_RV rv = P11_CALL(*module_, C_GenerateKey, handle_, &mech, tmpl.data(), static_cast<CK_ULONG>(tmpl.size()), &h);
  if (rv != CKR_OK) return error(rv, "C_GenerateKey (AES-" + std::to_string(bits) + ")", label);
  return h;
}

Result<Bytes> TokenSession::sign(CK_OBJECT_HANDLE key, CK_MECHANISM& mech, std::span<const std::uint8_t> data,
                                 std::size_t size_hint, const std::string& label) {
  CK_RV rv = P11_CALL(*module_, C_SignInit, handle_, &mech, key);
  if (rv != CKR_OK) return error(rv, "C_SignInit", label);
  Bytes sig(size_hint);
  CK_ULONG len = size_hint;
  auto* in = const_cast<CK_BYTE*>(data.data());
  rv = P11_CALL(*module_, C_Sign, handle_, in, static_cast<CK_ULONG>(data.size()), size_hint ? sig.data() : nullptr, &len);
  if (rv == CKR_OK && size_hint == 0) {  // that was the length query
    sig.resize(len);
    rv = P11_CALL(*module_, C_Sign, handle_, in, static_cast<CK_ULONG>(data.size()), sig.data(), &len);
  } else if (rv == CKR_BUFFER_TOO_SMALL) {  // the operation stays active (PKCS#11 §5.2)
    sig.resize(len);
    rv = P11_CALL(*module_, C_Sign, handle_, in, static_cast<CK_ULONG>(data.size()), sig.data(), &len);
  }
  if (rv != CKR_OK) return error(rv, "C_Sign", label);
  sig.resize(len);
  return sig;
}

Result<Bytes> TokenSession::encrypt(CK_OBJECT_HANDLE key, CK_MECHANISM& mech, std::span<const std::uint8_t> data,
                                    const std::string& label) {
  CK_RV rv = P11_CALL(*module_, C_EncryptInit, handle_, &mech, key);
  if (rv != CKR_OK) return error(rv, "C_EncryptInit", label);
  auto* in = const_cast<CK_BYTE*>(data.data());
  CK_ULONG len = 0;
  rv = P11_CALL(*module_, C_Encrypt, handle_, in, static_cast<CK_ULONG>(data.size()), nullptr, &len);
  if (rv != CKR_OK) return error(rv, "C_Encrypt", label);
  Bytes out(len);
  rv = P11_CALL(*module_, C_Encrypt, handle_, in, static_cast<CK_ULONG>(data.size()), out.data(), &len);
  if (rv != CKR_OK) return error(rv, "C_Encrypt", label);
  out.resize(len);
  return out;
}

Result<SecureBytes> TokenSession::decrypt(CK_OBJECT_HANDLE key, CK_MECHANISM& mech, std::span<const std::uint8_t> data,
                                          const std::string& label) {
  CK_RV rv = P11_CALL(*module_, C_DecryptInit, handle_, &mech, key);
  if (rv != CKR_OK) return error(rv, "C_DecryptInit", label);
  auto* in = const_cast<CK_BYTE*>(data.data());
  CK_ULONG len = 0;
  rv = P11_CALL(*module_, C_Decrypt, handle_, in, static_cast<CK_ULONG>(data.size()), nullptr, &len);
  if (rv != CKR_OK) return error(rv, "C_Decrypt", label);
  SecureBytes out(len);
  rv = P11_CALL(*module_, C_Decrypt, handle_, in, static_cast<CK_ULONG>(data.size()), out.data(), &len);
  if (rv != CKR_OK) return error(rv, "C_Decrypt", label);
  out.resize(len);
  return out;
}

Result<Bytes> TokenSession::wrap(CK_OBJECT_HANDLE wrapping_key, CK_MECHANISM& mech, CK_OBJECT_HANDLE key,
                                 const std::string& label) {
  CK_ULONG len = 0;
  CK_RV rv = P11_CALL(*module_, C_WrapKey, handle_, &mech, wrapping_key, key, nullptr, &len);
  if (rv != CKR_OK) return error(rv, "C_WrapKey", label);
  Bytes out(len);
  rv = P11_CALL(*module_, C_WrapKey, handle_, &mech, wrapping_key, key, out.data(), &len);
  if (rv != CKR_OK) return error(rv, "C_WrapKey", label);
  out.resize(len);
  return out;
}

Result<CK_OBJECT_HANDLE> TokenSession::unwrap_aes(CK_OBJECT_HANDLE unwrapping_key, CK_MECHANISM& mech,
                                                  std::span<const std::uint8_t> wrapped, const std::string& label) {
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE kt = CKK_AES;
  CK_ATTRIBUTE tmpl[] = {attr(CKA_CLASS, cls),      attr(CKA_KEY_TYPE, kt),     attr(CKA_TOKEN, kFalse),
                         attr(CKA_PRIVATE, kTrue),  attr(CKA_SENSITIVE, kTrue), attr(CKA_EXTRACTABLE, kFalse),
                         attr(CKA_ENCRYPT, kTrue),  attr(CKA_DECRYPT, kTrue)};
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  CK_RV rv = P11_CALL(*module_, C_UnwrapKey, handle_, &mech, unwrapping_key, const_cast<CK_BYTE*>(wrapped.data()),
                      static_cast<CK_ULONG>(wrapped.size()), tmpl, static_cast<CK_ULONG>(std::size(tmpl)), &h);
  if (rv != CKR_OK) return error(rv, "C_UnwrapKey", label);
  return h;
}

Result<CK_OBJECT_HANDLE> TokenSession::create_object(std::span<CK_ATTRIBUTE> tmpl, const std::string& what) {
  CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
  CK_RV rv = P11_CALL(*module_, C_CreateObject, handle_, tmpl.data(), static_cast<CK_ULONG>(tmpl.size()), &h);
  if (rv != CKR_OK) return error(rv, "C_CreateObject", what);
  return h;
}

Status TokenSession::destroy_object(CK_OBJECT_HANDLE obj, const std::string& what) {
  CK_RV rv = P11_CALL(*module_, C_DestroyObject, handle_, obj);
  if (rv != CKR_OK) return error(rv, "C_DestroyObject", what);
  return {};
}

Result<std::map<CK_MECHANISM_TYPE, CK_MECHANISM_INFO>> TokenSession::mechanisms() {
  CK_SESSION_INFO si{};
  CK_RV rv = P11_CALL(*module_, C_GetSessionInfo, handle_, &si);
  if (rv != CKR_OK) return error(rv, "C_GetSessionInfo");
  CK_ULONG n = 0;
  rv = P11_CALL(*module_, C_GetMechanismList, si.slotID, nullptr, &n);
  std::vector<CK_MECHANISM_TYPE> types(n);
  if (rv == CKR_OK) rv = P11_CALL(*module_, C_GetMechanismList, si.slotID, types.data(), &n);
  if (rv != CKR_OK) return error(rv, "C_GetMechanismList");
  types.resize(n);
  std::map<CK_MECHANISM_TYPE, CK_MECHANISM_INFO> out;
  for (CK_MECHANISM_TYPE t : types) {
    CK_MECHANISM_INFO info{};
    if (P11_CALL(*module_, C_GetMechanismInfo, si.slotID, t, &info) == CKR_OK) out[t] = info;
  }
  return out;
}

Result<Bytes> TokenSession::random(std::size_t n) {
  Bytes out(n);
  CK_RV rv = P11_CALL(*module_, C_GenerateRandom, handle_, out.data(), static_cast<CK_ULONG>(n));
  if (rv != CKR_OK) return error(rv, "C_GenerateRandom");
  return out;
}

}  // namespace certcustody
