#include "custody/pkcs11_custody.h"

#include <openssl/rand.h>

#include <cstring>

#include "custody/mechanisms.h"

namespace certcustody {
namespace {

constexpr std::size_t kGcmIvSize = 12;   // NIST SP 800-38D §8.2: 96-bit IVs
constexpr CK_ULONG kGcmTagBits = 128;

Error key_not_found(const std::string& what, const std::string& label, const TokenUri& uri, CK_OBJECT_CLASS cls) {
  return Error{"custody.key_not_found",
               what + " '" + label + "' is not on token " + uri.text() + " (" + uri.object_uri(label, cls) + ")",
               "list the token with `certcustody token info`; create the key (`certcustody ra keygen` / "
               "`certcustody kek create`) or fix the label",
               CKR_KEY_HANDLE_INVALID};
}

const char* class_name(CK_OBJECT_CLASS cls) {
  switch (cls) {
    case CKO_PRIVATE_KEY: return "private key";
    case CKO_PUBLIC_KEY: return "public key";
    case CKO_SECRET_KEY: return "secret key";
    case CKO_CERTIFICATE: return "certificate";
    default: return "object";
  }
}

Result<CK_RSA_PKCS_OAEP_PARAMS> oaep_params(HashAlg hash) {
  auto mgf1 = ck_mgf1(hash);
  if (!mgf1)
    return Error{"custody.mechanism_unsupported", std::string("RSA-OAEP cannot use ") + hash_name(hash) +
                                                      ": PKCS#11 defines no MGF1 with it",
                 "use SHA-1 or SHA-256 for OAEP"};
  return CK_RSA_PKCS_OAEP_PARAMS{ck_hash(hash), *mgf1, CKZ_DATA_SPECIFIED, nullptr, 0};
}

// What a key name selects: a label, or a pkcs11: URI with object= and/or id=.
struct Selector {
  std::optional<std::string> label;
  std::optional<Bytes> id;
};

Result<Selector> selector_of(const std::string& name) {
  if (name.rfind("pkcs11:", 0) != 0) return Selector{name, std::nullopt};
  CC_TRY_ASSIGN(TokenUri uri, TokenUri::parse(name));
  Selector s{uri.object_label(), uri.object_id()};
  if (!s.label && !s.id)
    return Error{"custody.label_invalid", "\"" + name + "\" names no object",
                 "add object=<label> or id=<hex, percent-encoded> to the URI"};
  return s;
}

// The other objects of a key pair share its CKA_ID (PKCS#11 §4.4); without
// one, its label.
Selector pair_of(const ObjectInfo& o) {
  if (!o.id.empty()) return Selector{std::nullopt, o.id};
  return Selector{o.label, std::nullopt};
}

unsigned modulus_bits(const Bytes& n) {
  std::size_t i = 0;
  while (i < n.size() && n[i] == 0) ++i;
  if (i == n.size()) return 0;
  unsigned bits = static_cast<unsigned>((n.size() - i) * 8);
  for (unsigned char top = n[i]; (top & 0x80) == 0; top <<= 1) --bits;
  return bits;
}

bool is_rsa_or_ec(const ObjectInfo& o) { return o.algorithm == "RSA" || o.algorithm == "EC"; }

}  // namespace

Result<std::unique_ptr<Pkcs11Custody>> Pkcs11Custody::open(const CustodyConfig& config, SoftwareContext software) {
  CC_TRY_ASSIGN(auto module, Pkcs11Module::load(config.module));
  CC_TRY_ASSIGN(TokenUri uri, TokenUri::parse(config.token));
  CC_TRY_ASSIGN(PinSource pin, PinSource::from_config(config.pin_file));
  CC_TRY_ASSIGN(auto pool, TokenSessionPool::open(std::move(module), std::move(uri), std::move(pin),
                                                  TokenSessionPool::Options{config.sessions, std::chrono::milliseconds(config.reconnect_interval_ms), software}));
  return std::unique_ptr<Pkcs11Custody>(new Pkcs11Custody(std::move(pool)));
}

CustodyHealth Pkcs11Custody::health() const {
  const auto h = pool_->health();
  if (h.available) return {};
  return {false, h.error,
          std::chrono::duration_cast<std::chrono::milliseconds>(h.since.time_since_epoch()).count()};
}

void Pkcs11Custody::forget(CK_OBJECT_CLASS cls, const std::string& label) {
  std::lock_guard l(cache_mu_);
  cache_.erase({cls, label});
}

Result<Pkcs11Custody::KeyHandle> Pkcs11Custody::key(TokenSession& s, CK_OBJECT_CLASS cls, const std::string& label) {
  {
    std::lock_guard l(cache_mu_);
    auto it = cache_.find({cls, label});
    if (it != cache_.end() && it->second.generation == s.generation()) return it->second;
  }
  CC_TRY_ASSIGN(Selector sel, selector_of(label));
  CC_TRY_ASSIGN(auto found, s.find_one(cls, sel.label, sel.id));
  if (!found) {
    std::lock_guard l(cache_mu_);
    if (seen_.count({cls, label}) == 0) return key_not_found(class_name(cls), label, pool_->uri(), cls);
    return Error{"custody.key_vanished",
                 std::string(class_name(cls)) + " '" + label + "' was on token " + pool_->uri().text() +
                     " and is not found now",
                 "requests wait for it: if the token was restored or failed over, restore the key (from the HSM's "
                 "backup or the cluster's other members); certcustody finds it again by itself",
                 CKR_OBJECT_HANDLE_INVALID};
  }
  KeyHandle k;
  k.handle = *found;
  k.generation = s.generation();
  CC_TRY_ASSIGN(Bytes kt, s.attribute(k.handle, CKA_KEY_TYPE, label));
  if (kt.size() == sizeof(CK_KEY_TYPE)) std::memcpy(&k.type, kt.data(), sizeof k.type);
  if (cls == CKO_PRIVATE_KEY && k.type == CKK_RSA) {
    if (auto m = s.attribute(k.handle, CKA_MODULUS, label)) {
      k.signature_size = m->size();
      k.bits = modulus_bits(*m);
    }
  } else if (cls == CKO_PRIVATE_KEY && k.type == CKK_EC) {
    if (auto p = s.attribute(k.handle, CKA_EC_PARAMS, label)) {
      k.signature_size = ecdsa_signature_size(*p);
      k.bits = ec_degree(*p);
    }
  }
  std::lock_guard l(cache_mu_);
  cache_[{cls, label}] = k;
  seen_.insert({cls, label});
  return k;
}

Status Pkcs11Custody::require_free_label(TokenSession& s, const std::string& label) {
  if (label.empty() || label.size() > 128)
    return Error{"custody.label_invalid", "a key label must have 1 to 128 characters", "choose another label"};
  for (CK_OBJECT_CLASS cls : {CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, CKO_SECRET_KEY}) {
    CC_TRY_ASSIGN(auto found, s.find_by_label(cls, label));
    if (found)
      return Error{"custody.label_exists", "token " + pool_->context().token + " already holds a key labelled '" +
                                               label + "'",
                   "choose another label, or remove the old key with the HSM vendor's tool if it is retired"};
  }
  return {};
}

Result<ObjectInfo> Pkcs11Custody::generate_key_pair(const std::string& label, KeyType type, KeyPurpose purpose) {
  return pool_->run([&](TokenSession& s) -> Result<ObjectInfo> {
    CC_TRY(require_free_label(s, label));
    CC_TRY_ASSIGN(Bytes id, s.random(16));
    CC_TRY_ASSIGN(auto pair, s.generate_key_pair(label, id, type, purpose));
    return s.describe(pair.second);
  });
}

Result<ObjectInfo> Pkcs11Custody::generate_secret_key(const std::string& label, unsigned bits) {
  return pool_->run([&](TokenSession& s) -> Result<ObjectInfo> {
    CC_TRY(require_free_label(s, label));
    CC_TRY_ASSIGN(Bytes id, s.random(16));
    CC_TRY_ASSIGN(CK_OBJECT_HANDLE h, s.generate_aes_key(label, id, bits, true));
    return s.describe(h);
  });
}

Result<std::vector<ObjectInfo>> Pkcs11Custody::list_objects() {
  return pool_->run([&](TokenSession& s) -> Result<std::vector<ObjectInfo>> {
    CC_TRY_ASSIGN(auto handles, s.find({}, 4096));
    std::vector<ObjectInfo> out;
    for (CK_OBJECT_HANDLE h : handles) {
      CC_TRY_ASSIGN(ObjectInfo info, s.describe(h));
      out.push_back(std::move(info));
    }
    return out;
  });
}

Result<ObjectInfo> Pkcs11Custody::find_key(const std::string& label) {
  return pool_->run([&](TokenSession& s) -> Result<ObjectInfo> {
    for (CK_OBJECT_CLASS cls : {CKO_PRIVATE_KEY, CKO_SECRET_KEY}) {
      CC_TRY_ASSIGN(auto found, s.find_by_label(cls, label));
      if (found) return s.describe(*found);
    }
    return key_not_found("key", label, pool_->uri(), CKO_PRIVATE_KEY);
  });
}

Result<std::shared_ptr<const MechanismTable>> Pkcs11Custody::mechanisms(TokenSession& s) {
  {
    std::lock_guard l(cache_mu_);
    if (mechanisms_ && mechanisms_generation_ == s.generation()) return mechanisms_;
  }
  CC_TRY_ASSIGN(MechanismTable table, s.mechanisms());
  auto shared = std::make_shared<const MechanismTable>(std::move(table));
  std::lock_guard l(cache_mu_);
  mechanisms_ = shared;
  mechanisms_generation_ = s.generation();
  return shared;
}

Result<EvpPkeyPtr> Pkcs11Custody::public_half(TokenSession& s, const ObjectInfo& pair, const std::string& name,
                                             std::optional<CK_OBJECT_HANDLE> priv) {
  const Selector sel = pair_of(pair);
  CC_TRY_ASSIGN(auto pub, s.find_one(CKO_PUBLIC_KEY, sel.label, sel.id));
  if (pub) return s.public_key(*pub, name);
  CC_TRY_ASSIGN(auto cert, s.find_one(CKO_CERTIFICATE, sel.label, sel.id));
  if (cert) {
    CC_TRY_ASSIGN(Bytes der, s.attribute(*cert, CKA_VALUE, name));
    return s.certificate_public_key(der, name);
  }
  // An RSA private key carries its modulus and public exponent.
  if (priv && pair.algorithm == "RSA") return s.public_key(*priv, name);
  return Error{"custody.public_key_not_found",
               "key '" + name + "' on token " + pool_->uri().text() +
                   " has neither a public-key object nor a certificate with its CKA_ID",
               "import its certificate (`certcustody ra import`) or the public key (pkcs11-tool --write-object "
               "--type pubkey) with the same id"};  // no CK_RV: nothing for the pool to recover
}

Result<EvpPkeyPtr> Pkcs11Custody::public_key(const std::string& label) {
  CC_TRY_ASSIGN(Selector sel, selector_of(label));
  ObjectInfo pair;
  pair.label = sel.label.value_or("");
  if (sel.id) pair.id = *sel.id;
  auto pub = pool_->run_public([&](TokenSession& s) { return public_half(s, pair, label, std::nullopt); });
  if (pub || pub.error().code != "custody.public_key_not_found") return pub;
  // Neither object is public: what the private key itself shows (login).
  return pool_->run([&](TokenSession& s) -> Result<EvpPkeyPtr> {
    CC_TRY_ASSIGN(auto priv, s.find_one(CKO_PRIVATE_KEY, sel.label, sel.id));
    if (!priv) return key_not_found("public key", label, pool_->uri(), CKO_PUBLIC_KEY);
    CC_TRY_ASSIGN(ObjectInfo info, s.describe(*priv));
    return public_half(s, info, label, *priv);
  });
}

Result<std::vector<FoundObject>> Pkcs11Custody::find_objects_in(TokenSession& s, const ObjectQuery& q) {
  std::vector<FoundObject> out;
  auto each = [&](CK_OBJECT_CLASS cls, auto&& add) -> Status {
    CC_TRY_ASSIGN(auto handles, s.find_all(cls, q.label, q.id));
    for (CK_OBJECT_HANDLE h : handles) {
      FoundObject o;
      CC_TRY_ASSIGN(o.info, s.describe(h));
      CC_TRY(add(h, o));
    }
    return {};
  };
  if (q.private_keys)
    CC_TRY(each(CKO_PRIVATE_KEY, [&](CK_OBJECT_HANDLE h, FoundObject& o) -> Status {
      if (!is_rsa_or_ec(o.info) || (o.info.label.empty() && o.info.id.empty())) return {};
      o.key_name = o.info.id.empty() ? o.info.label
                                     : TokenUri::object_name(o.info.label.empty() ? std::nullopt
                                                                                  : std::optional(o.info.label),
                                                             o.info.id);
      auto pub = public_half(s, o.info, o.key_name, h);
      // A listing goes on past a key it cannot use; a key asked for by name does not.
      if (!pub && (q.label || q.id || pub.error().code != "custody.public_key_not_found")) return pub.error();
      if (pub) {
        o.public_key = std::move(pub.value());
        out.push_back(std::move(o));
      }
      return {};
    }));
  if (q.public_keys)
    CC_TRY(each(CKO_PUBLIC_KEY, [&](CK_OBJECT_HANDLE h, FoundObject& o) -> Status {
      if (!is_rsa_or_ec(o.info)) return {};
      CC_TRY_ASSIGN(o.public_key, s.public_key(h, o.info.label));
      out.push_back(std::move(o));
      return {};
    }));
  if (q.certificates)
    CC_TRY(each(CKO_CERTIFICATE, [&](CK_OBJECT_HANDLE h, FoundObject& o) -> Status {
      auto type = s.attribute(h, CKA_CERTIFICATE_TYPE, o.info.label);
      CK_CERTIFICATE_TYPE x509 = CKC_X_509;
      if (!type || type->size() != sizeof x509 || std::memcmp(type->data(), &x509, sizeof x509) != 0) return {};
      CC_TRY_ASSIGN(o.certificate, s.attribute(h, CKA_VALUE, o.info.label));
      CC_TRY_ASSIGN(o.public_key, s.certificate_public_key(o.certificate, o.info.label));
      out.push_back(std::move(o));
      return {};
    }));
  return out;
}

Result<std::vector<FoundObject>> Pkcs11Custody::find_objects(const ObjectQuery& query) {
  auto body = [&](TokenSession& s) { return find_objects_in(s, query); };
  // The PIN only when a private object is asked for.
  return query.private_keys ? pool_->run(body) : pool_->run_public(body);
}

Result<Bytes> Pkcs11Custody::sign_input(const std::string& label, const SignParams& params,
                                        std::span<const std::uint8_t> input) {
  const bool want_ec = params.scheme == SignScheme::ecdsa;
  return with_key(CKO_PRIVATE_KEY, label, [&](TokenSession& s, const KeyHandle& k) -> Result<Bytes> {
    if ((k.type == CKK_EC) != want_ec)
      return Error{"custody.scheme_mismatch", "key '" + label + "' is " + (k.type == CKK_EC ? "EC" : "RSA") +
                                                  " and cannot make this kind of signature",
                   "use ECDSA with EC keys and PKCS#1 v1.5 or PSS with RSA keys"};
    CC_TRY_ASSIGN(auto token, mechanisms(s));
    const SigningKey key{want_ec, k.bits, k.signature_size, "'" + label + "'"};
    CC_TRY_ASSIGN(Bytes data, signing_input(params, input, key, *token, "token " + pool_->uri().text()));
    CK_MECHANISM m{want_ec ? CKM_ECDSA : CKM_RSA_PKCS, nullptr, 0};
    CK_RSA_PKCS_PSS_PARAMS pss{};
    if (params.scheme == SignScheme::rsa_pss) {
      const HashAlg hash = *params.hash;  // signing_input checked both
      pss = CK_RSA_PKCS_PSS_PARAMS{ck_hash(hash), *ck_mgf1(params.mgf1.value_or(hash)),
                                   params.salt_len.value_or(hash_size(hash))};
      m = CK_MECHANISM{CKM_RSA_PKCS_PSS, &pss, sizeof pss};
    }
    auto sig = s.sign(k.handle, m, data, k.signature_size, label);
    // A mechanism the token lists may still refuse these parameters (SoftHSM:
    // PSS only with MGF1 of the message digest).
    if (!sig && (sig.error().native == CKR_ARGUMENTS_BAD || sig.error().native == CKR_MECHANISM_PARAM_INVALID))
      return Error{"custody.mechanism_unsupported",
                   "token " + pool_->uri().text() + " refuses " + describe_signature(params) + " (" +
                       ck_rv_name(static_cast<CK_RV>(sig.error().native)) + ")",
                   "use parameters the token takes, e.g. RSA-PSS with MGF1 of the message digest and "
                   "rsa_pss_saltlen:digest",
                   sig.error().native};
    if (!sig || !want_ec) return sig;
    return ecdsa_raw_to_der(*sig);
  });
}

Result<Bytes> Pkcs11Custody::rsa_oaep_encrypt(const std::string& label, HashAlg hash,
                                              std::span<const std::uint8_t> plaintext) {
  CC_TRY_ASSIGN(CK_RSA_PKCS_OAEP_PARAMS p, oaep_params(hash));
  return with_key(CKO_PUBLIC_KEY, label, [&](TokenSession& s, const KeyHandle& k) -> Result<Bytes> {
    CK_MECHANISM m{CKM_RSA_PKCS_OAEP, &p, sizeof p};
    return s.encrypt(k.handle, m, plaintext, label);
  });
}

Result<SecureBytes> Pkcs11Custody::rsa_oaep_decrypt(const std::string& label, HashAlg hash,
                                                    std::span<const std::uint8_t> ciphertext) {
  CC_TRY_ASSIGN(CK_RSA_PKCS_OAEP_PARAMS p, oaep_params(hash));
  return with_key(CKO_PRIVATE_KEY, label, [&](TokenSession& s, const KeyHandle& k) -> Result<SecureBytes> {
    CC_TRY_ASSIGN(auto token, mechanisms(s));
    CC_TRY(check_oaep_mechanism(hash, k.bits, *token, "token " + pool_->uri().text()));
    CK_MECHANISM m{CKM_RSA_PKCS_OAEP, &p, sizeof p};
    return s.decrypt(k.handle, m, ciphertext, label);
  });
}

Result<GcmCiphertext> Pkcs11Custody::aes_gcm_encrypt(const std::string& label, std::span<const std::uint8_t> plaintext,
                                                     std::span<const std::uint8_t> aad) {
  GcmCiphertext out;
  out.iv.resize(kGcmIvSize);
  if (RAND_bytes(out.iv.data(), static_cast<int>(out.iv.size())) != 1)
    return openssl_error("crypto.random_failed", "no random IV could be drawn", "check the system entropy source");
  auto r = with_key(CKO_SECRET_KEY, label, [&](TokenSession& s, const KeyHandle& k) -> Result<Bytes> {
    CK_GCM_PARAMS p{out.iv.data(), out.iv.size(), out.iv.size() * 8, const_cast<CK_BYTE*>(aad.data()),
                    aad.size(), kGcmTagBits};
    CK_MECHANISM m{CKM_AES_GCM, &p, sizeof p};
    return s.encrypt(k.handle, m, plaintext, label);
  });
  if (!r) return r.error();
  out.ciphertext_and_tag = std::move(r.value());
  return out;
}

Result<SecureBytes> Pkcs11Custody::aes_gcm_decrypt(const std::string& label, const GcmCiphertext& in,
                                                   std::span<const std::uint8_t> aad) {
  if (in.iv.size() != kGcmIvSize || in.ciphertext_and_tag.size() < kGcmTagBits / 8)
    return Error{"custody.ciphertext_invalid", "the AES-GCM input is truncated (IV or tag missing)",
                 "the stored data is damaged; restore it from backup"};
  return with_key(CKO_SECRET_KEY, label, [&](TokenSession& s, const KeyHandle& k) -> Result<SecureBytes> {
    Bytes iv = in.iv;
    CK_GCM_PARAMS p{iv.data(), iv.size(), iv.size() * 8, const_cast<CK_BYTE*>(aad.data()), aad.size(), kGcmTagBits};
    CK_MECHANISM m{CKM_AES_GCM, &p, sizeof p};
    return s.decrypt(k.handle, m, in.ciphertext_and_tag, label);
  });
}

Status Pkcs11Custody::store_certificate(const std::string& label, std::span<const std::uint8_t> der, bool replace) {
  const unsigned char* p = der.data();
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert)
    return openssl_error("custody.certificate_invalid", "the certificate is not valid DER X.509",
                         "give a PEM or DER X.509 certificate");
  auto i2d_name = [](X509_NAME* n) {
    Bytes out(static_cast<std::size_t>(i2d_X509_NAME(n, nullptr)));
    unsigned char* q = out.data();
    i2d_X509_NAME(n, &q);
    return out;
  };
  Bytes subject = i2d_name(X509_get_subject_name(cert.get()));
  Bytes issuer = i2d_name(X509_get_issuer_name(cert.get()));
  Bytes serial(static_cast<std::size_t>(i2d_ASN1_INTEGER(X509_get_serialNumber(cert.get()), nullptr)));
  unsigned char* q = serial.data();
  i2d_ASN1_INTEGER(X509_get_serialNumber(cert.get()), &q);

  return pool_->run([&](TokenSession& s) -> Status {
    CC_TRY_ASSIGN(auto priv, s.find_by_label(CKO_PRIVATE_KEY, label));
    if (!priv) return key_not_found("private key", label, pool_->uri(), CKO_PRIVATE_KEY);
    CC_TRY_ASSIGN(Bytes id, s.attribute(*priv, CKA_ID, label));
    CC_TRY_ASSIGN(auto old, s.find_by_label(CKO_CERTIFICATE, label));
    if (old && !replace)
      return Error{"custody.certificate_exists", "token already holds a certificate labelled '" + label + "'",
                   "pass --replace to renew the RA certificate"};
    CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
    CK_CERTIFICATE_TYPE ct = CKC_X_509;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_CERTIFICATE_TYPE, &ct, sizeof ct},
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_PRIVATE, &no, sizeof no},
        {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
        {CKA_ID, id.data(), id.size()},
        {CKA_SUBJECT, subject.data(), subject.size()},
        {CKA_ISSUER, issuer.data(), issuer.size()},
        {CKA_SERIAL_NUMBER, serial.data(), serial.size()},
        {CKA_VALUE, const_cast<std::uint8_t*>(der.data()), der.size()},
    };
    // The new certificate is stored before the old one goes, so a failure in
    // between never leaves the key without a certificate.
    CC_TRY(s.create_object(tmpl, "certificate '" + label + "'"));
    if (old) CC_TRY(s.destroy_object(*old, "old certificate '" + label + "'"));
    return {};
  });
}

Result<std::optional<Bytes>> Pkcs11Custody::find_certificate(const std::string& label) {
  CC_TRY_ASSIGN(Selector sel, selector_of(label));
  return pool_->run_public([&](TokenSession& s) -> Result<std::optional<Bytes>> {
    CC_TRY_ASSIGN(auto h, s.find_one(CKO_CERTIFICATE, sel.label, sel.id));
    if (!h) return std::optional<Bytes>{};
    CC_TRY_ASSIGN(Bytes der, s.attribute(*h, CKA_VALUE, label));
    return std::optional<Bytes>{std::move(der)};
  });
}

namespace {

// The slot holding a token: with `label`, the initialised token of that label;
// without, the first uninitialised one.
Result<std::optional<CK_SLOT_ID>> token_slot(Pkcs11Module& module, const std::optional<std::string>& label) {
  std::vector<CK_SLOT_ID> ids;
  if (CK_RV rv = module.slot_ids(true, ids); rv != CKR_OK) return ck_error(rv, CkContext{"C_GetSlotList", {}, {}, {}});
  for (CK_SLOT_ID id : ids) {
    CK_TOKEN_INFO ti{};
    if (P11_CALL(module, C_GetTokenInfo, id, &ti) != CKR_OK) continue;
    const bool initialised = (ti.flags & CKF_TOKEN_INITIALIZED) != 0;
    if (label ? initialised && p11_text(ti.label, sizeof ti.label) == *label : !initialised)
      return std::optional<CK_SLOT_ID>{id};
  }
  return std::optional<CK_SLOT_ID>{};
}

// As the SO on a fresh token: set the user PIN.
Status set_user_pin(Pkcs11Module& module, CK_SLOT_ID slot, const SecureBytes& so_pin, const SecureBytes& user_pin,
                    const CkContext& ctx) {
  CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
  CK_RV rv = P11_CALL(module, C_OpenSession, slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &h);
  if (rv != CKR_OK) return ck_error(rv, CkContext{"C_OpenSession", ctx.token, {}, {}});
  auto* so = const_cast<std::uint8_t*>(so_pin.data());
  auto* user = const_cast<std::uint8_t*>(user_pin.data());
  rv = P11_CALL(module, C_Login, h, CKU_SO, so, static_cast<CK_ULONG>(so_pin.size()));
  if (rv == CKR_OK) rv = P11_CALL(module, C_InitPIN, h, user, static_cast<CK_ULONG>(user_pin.size()));
  const CK_RV result = rv;
  (void)P11_CALL(module, C_Logout, h);
  (void)P11_CALL(module, C_CloseSession, h);
  if (result != CKR_OK) return ck_error(result, CkContext{"C_Login(SO)/C_InitPIN", ctx.token, {}, {}});
  return {};
}

}  // namespace

Status init_token(Pkcs11Module& module, const std::string& label, const SecureBytes& so_pin,
                  const SecureBytes& user_pin) {
  if (label.empty() || label.size() > 32)
    return Error{"custody.label_invalid", "a token label has 1 to 32 characters", "choose a shorter label"};
  const CkContext ctx{"", "token=" + label, {}, {}};
  CC_TRY(module.initialize());
  CC_TRY_ASSIGN(auto existing, token_slot(module, label));
  if (existing)
    return Error{"custody.token_exists", "a token labelled '" + label + "' is already initialised",
                 "use it, or choose another label; re-initialising would destroy its keys"};
  CC_TRY_ASSIGN(auto free_slot, token_slot(module, std::nullopt));
  if (!free_slot)
    return Error{"custody.no_free_slot", "no slot with an uninitialised token in " + module.path(),
                 "free a slot (HSM partition) for certcustody"};
  unsigned char padded[32];  // CK_TOKEN_INFO.label: blank-padded, not NUL-terminated
  std::memset(padded, ' ', sizeof padded);
  std::memcpy(padded, label.data(), label.size());
  CK_RV rv = P11_CALL(module, C_InitToken, *free_slot, const_cast<std::uint8_t*>(so_pin.data()),
                      static_cast<CK_ULONG>(so_pin.size()), padded);
  if (rv != CKR_OK) return ck_error(rv, CkContext{"C_InitToken", ctx.token, {}, {}});
  // Some modules (SoftHSM) renumber slots after C_InitToken: find it again.
  CC_TRY_ASSIGN(auto slot, token_slot(module, label));
  if (!slot) return ck_error(CKR_TOKEN_NOT_PRESENT, CkContext{"finding the new token", ctx.token, {}, {}});
  return set_user_pin(module, *slot, so_pin, user_pin, ctx);
}

}  // namespace certcustody
