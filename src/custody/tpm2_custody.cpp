#include "custody/tpm2_custody.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/durable_file.h"
#include "custody/mechanisms.h"
#include "custody/tpm2_impl.h"

namespace certcustody {
namespace {

constexpr std::size_t kGcmIvSize = 12;
constexpr std::size_t kGcmTagSize = 16;
constexpr std::size_t kContentKeySize = 32;  // AES-256
constexpr std::uint32_t kCounterBase = 0x01300000;
constexpr const char* kKeySuffix = ".tss2";
constexpr const char* kCertSuffix = ".crt.pem";
// Context of the HMAC-derived content keys (KEKs on TPMs without EncryptDecrypt).
constexpr const char kHmacKdfContext[] = "certcustody kek v1";

bool valid_label(const std::string& l) {
  if (l.empty() || l.size() > 64 || l[0] == '.' || l[0] == '-') return false;
  return std::all_of(l.begin(), l.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  });
}

Error label_invalid(const std::string& label) {
  return Error{"custody.label_invalid",
               "\"" + label + "\" is not a TPM key name: use 1 to 64 letters, digits, '.', '_' or '-', or a "
               "tpm2:object=, tpm2:file= or tpm2:handle= URI",
               "choose another label"};
}

std::optional<std::uint32_t> parse_hex32(const std::string& s) {
  if (s.size() < 3 || s.size() > 10 || s.rfind("0x", 0) != 0) return std::nullopt;
  char* end = nullptr;
  const unsigned long v = std::strtoul(s.c_str() + 2, &end, 16);
  if (*end != '\0') return std::nullopt;
  return static_cast<std::uint32_t>(v);
}

// The hashes a TPM signs and decrypts with (TPM 2.0 Part 2 §6.3).
Result<TPMI_ALG_HASH> tpm_hash(HashAlg h) {
  switch (h) {
    case HashAlg::sha1: return TPMI_ALG_HASH{TPM2_ALG_SHA1};
    case HashAlg::sha256: return TPMI_ALG_HASH{TPM2_ALG_SHA256};
    case HashAlg::sha384: return TPMI_ALG_HASH{TPM2_ALG_SHA384};
    case HashAlg::sha512: return TPMI_ALG_HASH{TPM2_ALG_SHA512};
    default: break;
  }
  return Error{"custody.mechanism_unsupported",
               std::string("the TPM signs and decrypts with SHA-1, SHA-256, SHA-384 or SHA-512, not ") + hash_name(h),
               "use SHA-256, SHA-384 or SHA-512"};
}

// What TPM2_Sign can express: a digest of a TPM hash; PSS with MGF1 of the
// same digest and a salt of its length.
Status check_tpm_sign_params(const SignParams& p) {
  auto refuse = [](const std::string& what) {
    return Error{"custody.mechanism_unsupported", "the TPM cannot sign " + what,
                 "sign a SHA-256/384/512 digest; with RSA-PSS use rsa_pss_saltlen:digest and the same MGF1 digest"};
  };
  if (!p.hash) return refuse("input that is not a digest (no digest was named)");
  if (p.scheme == SignScheme::rsa_pss && p.mgf1 && *p.mgf1 != *p.hash)
    return refuse("RSA-PSS with an MGF1 digest other than the message digest");
  if (p.scheme == SignScheme::rsa_pss && p.salt_len && *p.salt_len != hash_size(*p.hash))
    return refuse("RSA-PSS with a salt of " + std::to_string(*p.salt_len) + " bytes (its salt is the digest length)");
  return tpm_hash(*p.hash).status();
}

Result<std::string> read_small_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{"custody.file_unreadable", "cannot read " + path, "check the path and permissions"};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A key is never written over an existing file (Existing::keep).
Status write_file(const std::string& path, const std::string& data, mode_t mode, bool replace) {
  const int err = write_file_durably(path, data, mode, replace ? Existing::replace : Existing::keep);
  if (err == EEXIST)
    return Error{"custody.label_exists", path + " already exists", "choose another label; the existing key is kept"};
  if (err != 0)
    return Error{"custody.key_dir_unwritable", "cannot write " + path + ": " + std::strerror(err),
                 "check that [custody] key_dir exists, this user may write to it, and free space"};
  return {};
}

Status ensure_key_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) == 0 || errno == EEXIST) return {};
  return Error{"custody.key_dir_unwritable", "cannot create the TPM key directory " + dir + ": " + std::strerror(errno),
               "create it (mode 0700, owned by the certcustody user) or fix [custody] key_dir"};
}

Bytes to_bytes(const std::uint8_t* p, std::size_t n) { return Bytes(p, p + n); }

Result<Bytes> ecdsa_to_der(const TPMS_SIGNATURE_ECC& s) {
  Bytes raw(2 * std::max(s.signatureR.size, s.signatureS.size), 0);
  const std::size_t half = raw.size() / 2;
  std::memcpy(raw.data() + half - s.signatureR.size, s.signatureR.buffer, s.signatureR.size);
  std::memcpy(raw.data() + raw.size() - s.signatureS.size, s.signatureS.buffer, s.signatureS.size);
  return ecdsa_raw_to_der(raw);
}

using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, OsslDeleter<EVP_CIPHER_CTX_free>>;
using CipherPtr = std::unique_ptr<EVP_CIPHER, OsslDeleter<EVP_CIPHER_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, OsslDeleter<EVP_PKEY_CTX_free>>;

Error crypto_failed(const std::string& what) {
  return openssl_error("crypto.cipher_failed", what, "retry; check memory and the OpenSSL installation");
}

// AES-256-GCM in software with a content key the TPM derived.
Result<Bytes> gcm_encrypt(const SoftwareContext& sw, const SecureBytes& key, const Bytes& iv,
                          std::span<const std::uint8_t> in, std::span<const std::uint8_t> aad) {
  CipherPtr cipher(EVP_CIPHER_fetch(sw.libctx, "AES-256-GCM", sw.propq));
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  Bytes out(in.size() + kGcmTagSize);
  int n = 0, m = 0;
  if (!cipher || !ctx || EVP_EncryptInit_ex2(ctx.get(), cipher.get(), key.data(), iv.data(), nullptr) != 1 ||
      (!aad.empty() && EVP_EncryptUpdate(ctx.get(), nullptr, &n, aad.data(), static_cast<int>(aad.size())) != 1) ||
      EVP_EncryptUpdate(ctx.get(), out.data(), &n, in.data(), static_cast<int>(in.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), out.data() + n, &m) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kGcmTagSize, out.data() + in.size()) != 1)
    return crypto_failed("AES-GCM encryption failed");
  return out;
}

Result<SecureBytes> gcm_decrypt(const SoftwareContext& sw, const SecureBytes& key, const Bytes& iv,
                                std::span<const std::uint8_t> in, std::span<const std::uint8_t> aad) {
  const std::size_t body = in.size() - kGcmTagSize;
  CipherPtr cipher(EVP_CIPHER_fetch(sw.libctx, "AES-256-GCM", sw.propq));
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  SecureBytes out(body + 16);
  int n = 0, m = 0;
  Bytes tag(in.end() - kGcmTagSize, in.end());
  if (!cipher || !ctx || EVP_DecryptInit_ex2(ctx.get(), cipher.get(), key.data(), iv.data(), nullptr) != 1 ||
      (!aad.empty() && EVP_DecryptUpdate(ctx.get(), nullptr, &n, aad.data(), static_cast<int>(aad.size())) != 1) ||
      EVP_DecryptUpdate(ctx.get(), out.data(), &n, in.data(), static_cast<int>(body)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kGcmTagSize, tag.data()) != 1)
    return crypto_failed("AES-GCM decryption failed");
  if (EVP_DecryptFinal_ex(ctx.get(), out.data() + n, &m) != 1) {
    ERR_clear_error();
    return Error{"custody.ciphertext_invalid",
                 "the sealed data does not authenticate under the TPM key (altered, or sealed by another key or TPM)",
                 "restore the data from backup; check [pipeline] kek names the key it was sealed with"};
  }
  out.resize(static_cast<std::size_t>(n + m));
  return out;
}

}  // namespace

// ---- names -------------------------------------------------------------

std::string TpmKeyLocation::describe() const {
  if (kind == Kind::handle) return "TPM key at " + tpm_handle_hex(handle);
  return "TPM key '" + label + "' (" + path + ")";
}

Result<TpmKeyLocation> locate_tpm_key(const std::string& label, const std::string& key_dir) {
  TpmKeyLocation loc;
  loc.label = label;
  std::string name = label;
  if (label.rfind("tpm2:", 0) == 0) {
    const std::string rest = label.substr(5);
    const auto eq = rest.find('=');
    const std::string attr = rest.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : rest.substr(eq + 1);
    if (attr == "handle") {
      auto h = parse_hex32(value);
      if (!h || *h < 0x81000000u || *h > 0x81FFFFFFu)
        return Error{"provider.uri_invalid", "\"" + label + "\": handle= must be a persistent handle in hex (0x81xxxxxx)",
                     "write e.g. tpm2:handle=0x81000002"};
      loc.kind = TpmKeyLocation::Kind::handle;
      loc.handle = *h;
      loc.cert_path = key_dir + "/handle-" + tpm_handle_hex(*h) + kCertSuffix;
      return loc;
    }
    if (attr == "file") {
      if (value.empty() || value[0] != '/')
        return Error{"provider.uri_invalid", "\"" + label + "\": file= must be an absolute path",
                     "write e.g. tpm2:file=/var/lib/certcustody/tpm/ra.tss2"};
      loc.path = value;
      const bool tss2 = value.size() > 5 && value.compare(value.size() - 5, 5, kKeySuffix) == 0;
      loc.cert_path = (tss2 ? value.substr(0, value.size() - 5) : value) + kCertSuffix;
      return loc;
    }
    if (attr != "object")
      return Error{"provider.uri_invalid", "\"" + label + "\" is not a certcustody TPM key URI",
                   "use tpm2:object=<label>, tpm2:file=/path/key.tss2 or tpm2:handle=0x81xxxxxx"};
    name = value;
  }
  if (!valid_label(name)) return label_invalid(label);
  loc.path = key_dir + "/" + name + kKeySuffix;
  loc.cert_path = key_dir + "/" + name + kCertSuffix;
  return loc;
}

Result<std::uint32_t> tpm_counter_index(const std::string& label) {
  if (label.rfind("tpm2:nv=", 0) == 0) {
    auto v = parse_hex32(label.substr(8));
    if (!v || *v < 0x01000000u || *v > 0x01BFFFFFu)
      return Error{"config.invalid_value", "\"" + label + "\": the NV index must be in hex, 0x01000000 to 0x01BFFFFF",
                   "write e.g. [audit] counter = \"tpm2:nv=0x01300001\""};
    return *v;
  }
  if (!valid_label(label)) return label_invalid(label);
  auto h = digest("SHA256", {reinterpret_cast<const std::uint8_t*>(label.data()), label.size()});
  if (!h) return h.error();
  return kCounterBase | (static_cast<std::uint32_t>((*h)[0]) << 8) | (*h)[1];
}

// ---- lifecycle -----------------------------------------------------------

Tpm2Custody::Tpm2Custody(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tpm2Custody::~Tpm2Custody() = default;

Result<std::unique_ptr<Tpm2Custody>> Tpm2Custody::open(const CustodyConfig& config, SoftwareContext software) {
  if (config.tcti.empty())
    return Error{"config.missing_key", "[custody] tcti is required with backend = \"tpm2\"",
                 "set tcti = \"device:/dev/tpmrm0\" (or \"tabrmd\")"};
  if (config.key_dir.empty())
    return Error{"config.missing_key", "[custody] key_dir is required with backend = \"tpm2\"",
                 "set key_dir = \"/var/lib/certcustody/tpm\""};
  CC_TRY_ASSIGN(PinSource auth, PinSource::from_config(config.auth_file));
  // tpm2-tss logs failed commands to stderr; certcustody reports them itself.
  ::setenv("TSS2_LOG", "all+none", 0);
  return std::unique_ptr<Tpm2Custody>(new Tpm2Custody(std::make_unique<Impl>(config, software, std::move(auth))));
}

Status Tpm2Custody::connect() {
  EsysLock lock = impl_->lock();
  CC_TRY(impl_->ready());
  return impl_->verify_auth();
}

std::string Tpm2Custody::location() const { return "tpm2 " + impl_->cfg.tcti; }

CustodyHealth Tpm2Custody::health() const {
  std::lock_guard lock(impl_->health_mu);
  return impl_->last_health;
}

Status Tpm2Custody::check() {
  EsysLock lock = impl_->lock();
  return impl_->ready();
}

void Tpm2Custody::abandon() {
  EsysLock lock = impl_->lock();
  impl_->disconnect();
}

std::size_t Tpm2Custody::loaded_objects() const {
  EsysLock lock = impl_->lock();
  return static_cast<std::size_t>(std::count_if(impl_->keys.begin(), impl_->keys.end(),
                                                [](const auto& e) { return e.second.transient; }));
}

Result<TpmDeviceInfo> Tpm2Custody::device_info() {
  return impl_->run([&]() { return impl_->device_info(); });
}

// ---- keys ----------------------------------------------------------------

namespace {

// Keeps a key just created at its persistent handle: loaded, made persistent
// (owner authorisation), the transient copy flushed. No blob is written.
Status persist_key(Tpm2Custody::Impl& impl, const TpmKeyLocation& loc, const TPM2B_PRIVATE& priv,
                   const TPM2B_PUBLIC& pub) {
  ESYS_TR loaded = ESYS_TR_NONE, persistent = ESYS_TR_NONE;
  TSS2_RC rc = Esys_Load(impl.esys, impl.srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &priv, &pub, &loaded);
  if (rc != TSS2_RC_SUCCESS) return impl.failed(rc, impl.context("TPM2_Load", loc.describe()));
  rc = Esys_EvictControl(impl.esys, ESYS_TR_RH_OWNER, loaded, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, loc.handle,
                         &persistent);
  Esys_FlushContext(impl.esys, loaded);
  if (rc == TSS2_RC_SUCCESS) {
    Esys_TR_Close(impl.esys, &persistent);
    return {};
  }
  Error e = impl.failed(rc, impl.context("TPM2_EvictControl", loc.describe()));
  if (tpm_is_auth_failure(rc)) {
    impl.refused.reset();  // the owner's auth value, not the keys'
    e.code = "custody.tpm_owner_auth";
    e.remedy = "making a key persistent needs the owner's auth value: generate it under a label (a blob), then the "
               "owner runs `tpm2_load -r <blob> -c key.ctx && tpm2_evictcontrol -C o -P <owner auth> -c key.ctx " +
               tpm_handle_hex(loc.handle) + "`";
  }
  return e;
}

Result<ObjectInfo> create_key(Tpm2Custody::Impl& impl, const TpmKeyLocation& loc, TPM2B_PUBLIC tmpl) {
  if (loc.kind == TpmKeyLocation::Kind::file && ::access(loc.path.c_str(), F_OK) == 0)
    return Error{"custody.label_exists", loc.describe() + " already exists",
                 "choose another label; the existing key is kept"};
  if (loc.kind == TpmKeyLocation::Kind::handle) {
    ESYS_TR taken = ESYS_TR_NONE;
    if (Esys_TR_FromTPMPublic(impl.esys, loc.handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &taken) ==
        TSS2_RC_SUCCESS) {
      Esys_TR_Close(impl.esys, &taken);
      return Error{"custody.label_exists", "the TPM already holds an object at " + tpm_handle_hex(loc.handle),
                   "choose a free persistent handle (`tpm2_getcap handles-persistent`); the existing key is kept"};
    }
  }
  TPM2B_SENSITIVE_CREATE sensitive{};
  sensitive.sensitive.userAuth.size = static_cast<UINT16>(impl.auth.size());
  std::memcpy(sensitive.sensitive.userAuth.buffer, impl.auth.data(), impl.auth.size());
  TPM2B_DATA outside{};
  TPML_PCR_SELECTION pcrs{};
  TPM2B_PRIVATE* priv = nullptr;
  TPM2B_PUBLIC* pub = nullptr;
  // DECRYPT: the new key's auth value crosses the bus encrypted.
  TSS2_RC rc = Esys_Create(impl.esys, impl.srk, impl.auth_session(TPMA_SESSION_DECRYPT), ESYS_TR_NONE, ESYS_TR_NONE,
                           &sensitive, &tmpl, &outside, &pcrs, &priv, &pub, nullptr, nullptr, nullptr);
  secure_wipe(&sensitive, sizeof sensitive);
  if (rc != TSS2_RC_SUCCESS) return impl.failed(rc, impl.context("TPM2_Create", loc.describe()));
  EsysPtr<TPM2B_PRIVATE> priv_hold(priv);
  EsysPtr<TPM2B_PUBLIC> pub_hold(pub);
  if (loc.kind == TpmKeyLocation::Kind::handle) {
    CC_TRY(persist_key(impl, loc, *priv, *pub));
    return public_area_info(pub->publicArea, loc.label);
  }
  TpmKeyBlob blob;
  blob.pub = *pub;
  blob.priv = *priv;
  blob.parent = impl.cfg.srk_handle;
  blob.empty_auth = impl.auth.empty();
  CC_TRY_ASSIGN(std::string pem, encode_tss2_pem(blob));
  CC_TRY(write_file(loc.path, pem, 0600, false));
  return public_area_info(pub->publicArea, loc.label);
}

Result<TPM2B_PUBLIC> public_of(Tpm2Custody::Impl& impl, const TpmKeyLocation& loc) {
  if (loc.kind == TpmKeyLocation::Kind::file) {
    CC_TRY_ASSIGN(TpmKeyBlob blob, read_tss2_file(loc.path));
    return blob.pub;
  }
  return impl.run([&]() -> Result<TPM2B_PUBLIC> {
    CC_TRY_ASSIGN(LoadedKey * k, impl.load(loc));
    return k->pub;
  });
}

}  // namespace

Result<ObjectInfo> Tpm2Custody::generate_key_pair(const std::string& label, KeyType type, KeyPurpose purpose) {
  CC_TRY_ASSIGN(TpmKeyLocation loc, locate_tpm_key(label, impl_->cfg.key_dir));
  CC_TRY_ASSIGN(TPM2B_PUBLIC tmpl, key_pair_template(type, purpose));
  if (loc.kind == TpmKeyLocation::Kind::file) CC_TRY(ensure_key_dir(impl_->cfg.key_dir));
  return impl_->run([&]() { return create_key(*impl_, loc, tmpl); });
}

Result<ObjectInfo> Tpm2Custody::generate_secret_key(const std::string& label, unsigned bits) {
  if (bits != 128 && bits != 256)
    return Error{"custody.key_type_invalid", "an AES key has 128 or 256 bits, not " + std::to_string(bits),
                 "use 256"};
  CC_TRY_ASSIGN(TpmKeyLocation loc, locate_tpm_key(label, impl_->cfg.key_dir));
  CC_TRY(ensure_key_dir(impl_->cfg.key_dir));
  return impl_->run([&]() {
    // An AES key where the TPM encrypts with it; else an HMAC key. Either
    // derives each blob's content key, so the sealed format is the same.
    const bool aes = impl_->encrypt_decrypt2 || impl_->encrypt_decrypt;
    return create_key(*impl_, loc, aes ? aes_kek_template(bits) : hmac_kek_template());
  });
}

Result<std::vector<ObjectInfo>> Tpm2Custody::list_objects() {
  std::vector<ObjectInfo> out;
  if (DIR* d = ::opendir(impl_->cfg.key_dir.c_str())) {
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
    ::closedir(d);
    std::sort(names.begin(), names.end());
    auto ends_with = [](const std::string& s, const char* suffix) {
      const std::size_t n = std::strlen(suffix);
      return s.size() > n && s.compare(s.size() - n, n, suffix) == 0;
    };
    for (const std::string& n : names) {
      if (ends_with(n, kKeySuffix)) {
        const std::string label = n.substr(0, n.size() - 5);
        auto blob = read_tss2_file(impl_->cfg.key_dir + "/" + n);
        if (blob) out.push_back(public_area_info(blob->pub.publicArea, label));
      } else if (ends_with(n, kCertSuffix)) {
        ObjectInfo c;
        c.kind = ObjectKind::certificate;
        c.label = n.substr(0, n.size() - std::strlen(kCertSuffix));
        if (c.label.rfind("handle-", 0) == 0) c.label = "tpm2:handle=" + c.label.substr(7);
        c.algorithm = "X.509";
        out.push_back(c);
      }
    }
  }
  CC_TRY_ASSIGN(TpmDeviceInfo dev, device_info());
  for (std::uint32_t h : dev.persistent) {
    if (h == impl_->cfg.srk_handle) continue;
    TpmKeyLocation loc;
    loc.kind = TpmKeyLocation::Kind::handle;
    loc.label = "tpm2:handle=" + tpm_handle_hex(h);
    loc.handle = h;
    if (auto pub = public_of(*impl_, loc)) out.push_back(public_area_info(pub->publicArea, loc.label));
  }
  return out;
}

Result<ObjectInfo> Tpm2Custody::find_key(const std::string& label) {
  CC_TRY_ASSIGN(TpmKeyLocation loc, locate_tpm_key(label, impl_->cfg.key_dir));
  CC_TRY_ASSIGN(TPM2B_PUBLIC pub, public_of(*impl_, loc));
  return public_area_info(pub.publicArea, label);
}

Result<EvpPkeyPtr> Tpm2Custody::public_key(const std::string& label) {
  CC_TRY_ASSIGN(TpmKeyLocation loc, locate_tpm_key(label, impl_->cfg.key_dir));
  CC_TRY_ASSIGN(TPM2B_PUBLIC pub, public_of(*impl_, loc));
  return public_area_to_pkey(pub.publicArea, label, impl_->sw);
}

// ---- signatures and decryption --------------------------------------------

Result<Bytes> Tpm2Custody::sign_input(const std::string& label, const SignParams& params,
                                      std::span<const std::uint8_t> digest) {
  CC_TRY(check_tpm_sign_params(params));
  const HashAlg hash = *params.hash;
  const SignScheme scheme = params.scheme;
  CC_TRY(check_digest_length(hash, digest));
  CC_TRY_ASSIGN(TpmKeyLocation loc, locate_tpm_key(label, impl_->cfg.key_dir));
  const bool want_ec = scheme == SignScheme::ecdsa;
  return impl_->run([&]() -> Result<Bytes> {
    CC_TRY_ASSIGN(LoadedKey * k, impl_->load(loc));
    const bool is_ec = k->pub.publicArea.type == TPM2_ALG_ECC;
    if (is_ec != want_ec || (!is_ec && k->pub.publicArea.type != TPM2_ALG_RSA))
      return Error{"custody.scheme_mismatch", loc.describe() + " is " + (is_ec ? "EC" : "not EC") +
                                                  " and cannot make this kind of signature",
                   "use ECDSA with EC keys and PKCS#1 v1.5 or PSS with RSA keys"};
    TPM2B_DIGEST d{};
    d.size = static_cast<UINT16>(digest.size());
    std::memcpy(d.buffer, digest.data(), digest.size());
    TPMT_SIG_SCHEME s{};
    s.scheme = want_ec ? TPM2_ALG_ECDSA : scheme == SignScheme::rsa_pss ? TPM2_ALG_RSAPSS : TPM2_ALG_RSASSA;
    s.details.any.hashAlg = *tpm_hash(hash);
    CC_TRY_ASSIGN(TPMT_SIGNATURE sig, impl_->sign(*k, loc, d, s));
    if (want_ec) return ecdsa_to_der(sig.signature.ecdsa);
    const auto& rsa = scheme == SignScheme::rsa_pss ? sig.signature.rsapss.sig : sig.signature.rsassa.sig;
    return to_bytes(rsa.buffer, rsa.size);
  });
}

Result<Bytes> Tpm2Custody::rsa_oaep_encrypt(const std::string& label, HashAlg hash,
                                            std::span<const std::uint8_t> plaintext) {
  // A public-key operation: done in software with the key's public half.
  CC_TRY_ASSIGN(EvpPkeyPtr pub, public_key(label));
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(impl_->sw.libctx, pub.get(), impl_->sw.propq));
  std::size_t n = 0;
  if (!ctx || EVP_PKEY_encrypt_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) != 1 ||
      EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx.get(), hash_name(hash), nullptr) != 1 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx.get(), hash_name(hash), nullptr) != 1 ||
      EVP_PKEY_encrypt(ctx.get(), nullptr, &n, plaintext.data(), plaintext.size()) != 1)
    return crypto_failed("RSA-OAEP encryption with '" + label + "' failed");
  Bytes out(n);
  if (EVP_PKEY_encrypt(ctx.get(), out.data(), &n, plaintext.data(), plaintext.size()) != 1)
    return crypto_failed("RSA-OAEP encryption with '" + label + "' failed");
  out.resize(n);
  return out;
}

Result<SecureBytes> Tpm2Custody::rsa_oaep_decrypt(const std::string& label, HashAlg hash,
                                                  std::span<const std::uint8_t> ciphertext) {
  CC_TRY_ASSIGN(TpmKeyLocation loc, locate_tpm_key(label, impl_->cfg.key_dir));
  if (ciphertext.size() > TPM2_MAX_RSA_KEY_BYTES)
    return Error{"custody.ciphertext_invalid", "the RSA ciphertext is longer than any TPM RSA key",
                 "check that the data was encrypted for this key"};
  return impl_->run([&]() -> Result<SecureBytes> {
    CC_TRY_ASSIGN(LoadedKey * k, impl_->load(loc));
    TPM2B_PUBLIC_KEY_RSA ct{};
    ct.size = static_cast<UINT16>(ciphertext.size());
    std::memcpy(ct.buffer, ciphertext.data(), ciphertext.size());
    TPMT_RSA_DECRYPT scheme{};
    scheme.scheme = TPM2_ALG_OAEP;
    CC_TRY_ASSIGN(scheme.details.oaep.hashAlg, tpm_hash(hash));
    TPM2B_DATA no_label{};
    TPM2B_PUBLIC_KEY_RSA* raw = nullptr;
    // ENCRYPT: the plaintext comes back encrypted under the session key.
    TSS2_RC rc = Esys_RSA_Decrypt(impl_->esys, k->tr, impl_->auth_session(TPMA_SESSION_ENCRYPT), ESYS_TR_NONE,
                                  ESYS_TR_NONE, &ct, &scheme, &no_label, &raw);
    if (rc != TSS2_RC_SUCCESS) return impl_->failed(rc, impl_->context("TPM2_RSA_Decrypt", loc.describe()));
    SecureBytes out(raw->buffer, raw->buffer + raw->size);
    secure_wipe(raw, sizeof *raw);
    Esys_Free(raw);
    return out;
  });
}

// ---- the KEK: AES-GCM with a per-blob content key derived in the TPM --------

namespace {

// The content key for one nonce: AES-CFB encryption of a zero block pair in
// the TPM (K = E(n||1) || E(E(n||1)), a PRF of the nonce under the KEK), or
// HMAC-SHA-256(KEK, context || nonce) on TPMs that do not encrypt with
// symmetric keys. The key is returned through the encrypted session.
Result<SecureBytes> derive_content_key(Tpm2Custody::Impl& impl, const TpmKeyLocation& loc, const Bytes& nonce) {
  CC_TRY_ASSIGN(LoadedKey * k, impl.load(loc));
  const TPMT_PUBLIC& p = k->pub.publicArea;
  if (p.type == TPM2_ALG_SYMCIPHER) {
    TPM2B_MAX_BUFFER in{};
    in.size = kContentKeySize;
    TPM2B_IV iv{};
    iv.size = 16;
    std::memcpy(iv.buffer, nonce.data(), nonce.size());
    iv.buffer[15] = 1;
    TPM2B_MAX_BUFFER* out = nullptr;
    TPM2B_IV* iv_out = nullptr;
    TSS2_RC rc = impl.encrypt_decrypt2
                     ? Esys_EncryptDecrypt2(impl.esys, k->tr, impl.auth_session(TPMA_SESSION_ENCRYPT), ESYS_TR_NONE,
                                            ESYS_TR_NONE, &in, TPM2_NO, TPM2_ALG_CFB, &iv, &out, &iv_out)
                     : Esys_EncryptDecrypt(impl.esys, k->tr, impl.auth_session(TPMA_SESSION_ENCRYPT), ESYS_TR_NONE,
                                           ESYS_TR_NONE, TPM2_NO, TPM2_ALG_CFB, &iv, &in, &out, &iv_out);
    if (rc != TSS2_RC_SUCCESS) return impl.failed(rc, impl.context("TPM2_EncryptDecrypt2", loc.describe()));
    Esys_Free(iv_out);
    SecureBytes key(out->buffer, out->buffer + out->size);
    secure_wipe(out, sizeof *out);
    Esys_Free(out);
    if (key.size() != kContentKeySize) return crypto_failed("the TPM returned a short content key");
    return key;
  }
  if (p.type == TPM2_ALG_KEYEDHASH) {
    TPM2B_MAX_BUFFER in{};
    in.size = static_cast<UINT16>(sizeof kHmacKdfContext - 1 + nonce.size());
    std::memcpy(in.buffer, kHmacKdfContext, sizeof kHmacKdfContext - 1);
    std::memcpy(in.buffer + sizeof kHmacKdfContext - 1, nonce.data(), nonce.size());
    TPM2B_DIGEST* out = nullptr;
    TSS2_RC rc = Esys_HMAC(impl.esys, k->tr, impl.auth_session(TPMA_SESSION_ENCRYPT), ESYS_TR_NONE, ESYS_TR_NONE,
                           &in, TPM2_ALG_SHA256, &out);
    if (rc != TSS2_RC_SUCCESS) return impl.failed(rc, impl.context("TPM2_HMAC", loc.describe()));
    SecureBytes key(out->buffer, out->buffer + out->size);
    secure_wipe(out, sizeof *out);
    Esys_Free(out);
    return key;
  }
  return Error{"custody.key_unusable", loc.describe() + " is not a KEK (an AES or HMAC key)",
               "create the KEK with `certcustody kek create`"};
}

}  // namespace

Result<GcmCiphertext> Tpm2Custody::aes_gcm_encrypt(const std::string& label, std::span<const std::uint8_t> plaintext,
                                                   std::span<const std::uint8_t> aad) {
  CC_TRY_ASSIGN(TpmKeyLocation loc, locate_tpm_key(label, impl_->cfg.key_dir));
  GcmCiphertext out;
  out.iv.resize(kGcmIvSize);
  if (RAND_bytes(out.iv.data(), static_cast<int>(out.iv.size())) != 1)
    return openssl_error("crypto.random_failed", "no random IV could be drawn", "check the system entropy source");
  CC_TRY_ASSIGN(SecureBytes key, impl_->run([&]() { return derive_content_key(*impl_, loc, out.iv); }));
  CC_TRY_ASSIGN(out.ciphertext_and_tag, gcm_encrypt(impl_->sw, key, out.iv, plaintext, aad));
  return out;
}

Result<SecureBytes> Tpm2Custody::aes_gcm_decrypt(const std::string& label, const GcmCiphertext& in,
                                                 std::span<const std::uint8_t> aad) {
  if (in.iv.size() != kGcmIvSize || in.ciphertext_and_tag.size() < kGcmTagSize)
    return Error{"custody.ciphertext_invalid", "the AES-GCM input is truncated (IV or tag missing)",
                 "the stored data is damaged; restore it from backup"};
  CC_TRY_ASSIGN(TpmKeyLocation loc, locate_tpm_key(label, impl_->cfg.key_dir));
  CC_TRY_ASSIGN(SecureBytes key, impl_->run([&]() { return derive_content_key(*impl_, loc, in.iv); }));
  return gcm_decrypt(impl_->sw, key, in.iv, in.ciphertext_and_tag, aad);
}

// ---- sealing for a recipient ---------------------------------------------

Result<SealedContent> Tpm2Custody::seal_for_recipient(const EVP_PKEY* recipient_rsa_public,
                                                      std::span<const std::uint8_t> plaintext) {
  // The recipient's key is public and the content key is used once, so a
  // TPM adds nothing here: both run in software, the content key in locked,
  // wiped memory for the length of one encryption.
  if (recipient_rsa_public == nullptr || EVP_PKEY_is_a(recipient_rsa_public, "RSA") != 1 ||
      EVP_PKEY_get_bits(recipient_rsa_public) < 2048)
    return Error{"pfx.recipient_unsupported", "the recipient key is not RSA of 2048 bits or more; keys are sealed for RSA only",
                 "issue the recipient an RSA certificate (2048 bits or more)"};
  SealedContent out;
  SecureBytes key(kContentKeySize);
  out.iv.resize(16);
  if (RAND_priv_bytes(key.data(), static_cast<int>(key.size())) != 1 || RAND_bytes(out.iv.data(), 16) != 1)
    return openssl_error("crypto.random_failed", "no random content key could be drawn", "check the system entropy source");
  CipherPtr cipher(EVP_CIPHER_fetch(impl_->sw.libctx, "AES-256-CBC", impl_->sw.propq));
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  out.ciphertext.resize(plaintext.size() + 16);
  int n = 0, m = 0;
  if (!cipher || !ctx || EVP_EncryptInit_ex2(ctx.get(), cipher.get(), key.data(), out.iv.data(), nullptr) != 1 ||
      EVP_EncryptUpdate(ctx.get(), out.ciphertext.data(), &n, plaintext.data(), static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), out.ciphertext.data() + n, &m) != 1)
    return crypto_failed("AES-256-CBC encryption of the content failed");
  out.ciphertext.resize(static_cast<std::size_t>(n + m));
  PkeyCtxPtr pctx(EVP_PKEY_CTX_new_from_pkey(impl_->sw.libctx, const_cast<EVP_PKEY*>(recipient_rsa_public),
                                             impl_->sw.propq));
  std::size_t len = 0;
  // SHA-1 with no label: the RFC 8017 OAEP defaults, as the PKCS#11 backend writes.
  if (!pctx || EVP_PKEY_encrypt_init(pctx.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(pctx.get(), RSA_PKCS1_OAEP_PADDING) != 1 ||
      EVP_PKEY_CTX_set_rsa_oaep_md_name(pctx.get(), "SHA1", nullptr) != 1 ||
      EVP_PKEY_encrypt(pctx.get(), nullptr, &len, key.data(), key.size()) != 1)
    return crypto_failed("RSA-OAEP wrapping of the content key failed");
  out.wrapped_key.resize(len);
  if (EVP_PKEY_encrypt(pctx.get(), out.wrapped_key.data(), &len, key.data(), key.size()) != 1)
    return crypto_failed("RSA-OAEP wrapping of the content key failed");
  out.wrapped_key.resize(len);
  return out;
}

// ---- the monotonic counter: a TPM NV counter ------------------------------

namespace {

constexpr TPMA_NV kCounterAttributes =
    (TPM2_NT_COUNTER << TPMA_NV_TPM2_NT_SHIFT) | TPMA_NV_AUTHWRITE | TPMA_NV_AUTHREAD;

// The counter's ESYS handle, defined first when `create` (owner auth empty).
Result<std::optional<ESYS_TR>> counter_handle(Tpm2Custody::Impl& impl, std::uint32_t index, bool create) {
  if (auto it = impl.counters.find(index); it != impl.counters.end()) return std::optional<ESYS_TR>{it->second};
  const std::string name = "NV counter " + tpm_handle_hex(index);
  ESYS_TR tr = ESYS_TR_NONE;
  TSS2_RC rc = Esys_TR_FromTPMPublic(impl.esys, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr);
  if (rc == TSS2_RC_SUCCESS) {
    TPM2B_NV_PUBLIC* raw = nullptr;
    rc = Esys_NV_ReadPublic(impl.esys, tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &raw, nullptr);
    if (rc != TSS2_RC_SUCCESS) return impl.failed(rc, impl.context("TPM2_NV_ReadPublic", name));
    EsysPtr<TPM2B_NV_PUBLIC> pub(raw);
    const TPMA_NV a = pub->nvPublic.attributes;
    if (((a & TPMA_NV_TPM2_NT_MASK) >> TPMA_NV_TPM2_NT_SHIFT) != TPM2_NT_COUNTER || !(a & TPMA_NV_AUTHWRITE) ||
        !(a & TPMA_NV_AUTHREAD)) {
      Esys_TR_Close(impl.esys, &tr);
      return Error{"custody.tpm_nv_conflict", name + " exists but is not a counter certcustody can use (type "
                                                     "counter, authread, authwrite)",
                   "name another index with [audit] counter = \"tpm2:nv=0x013xxxxx\" (see `tpm2_getcap handles-nv-index`)"};
    }
  } else if (tpm_base_rc(rc) == TPM2_RC_HANDLE) {
    if (!create) return std::optional<ESYS_TR>{};
    TPM2B_AUTH auth{};
    auth.size = static_cast<UINT16>(impl.auth.size());
    std::memcpy(auth.buffer, impl.auth.data(), impl.auth.size());
    TPM2B_NV_PUBLIC pub{};
    pub.nvPublic.nvIndex = index;
    pub.nvPublic.nameAlg = TPM2_ALG_SHA256;
    pub.nvPublic.attributes = kCounterAttributes;
    pub.nvPublic.dataSize = 8;
    rc = Esys_NV_DefineSpace(impl.esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &auth, &pub, &tr);
    secure_wipe(&auth, sizeof auth);
    if (rc != TSS2_RC_SUCCESS) {
      Error e = impl.failed(rc, impl.context("TPM2_NV_DefineSpace", name));
      if (tpm_is_auth_failure(rc)) {
        impl.refused.reset();  // the owner's auth, not the key's
        e.code = "custody.tpm_owner_auth";
        e.remedy = "the TPM owner defines it once: `tpm2_nvdefine " + tpm_handle_hex(index) +
                   " -C o -P <owner auth> -s 8 -a 'nt=counter|authread|authwrite' -p file:<[custody] auth_file>`";
      }
      return e;
    }
  } else {
    return impl.failed(rc, impl.context("opening the " + name));
  }
  TPM2B_AUTH auth{};
  auth.size = static_cast<UINT16>(impl.auth.size());
  std::memcpy(auth.buffer, impl.auth.data(), impl.auth.size());
  rc = Esys_TR_SetAuth(impl.esys, tr, &auth);
  secure_wipe(&auth, sizeof auth);
  if (rc != TSS2_RC_SUCCESS) return impl.failed(rc, impl.context("Esys_TR_SetAuth", name));
  impl.counters[index] = tr;
  return std::optional<ESYS_TR>{tr};
}

Result<std::uint64_t> read_nv_counter(Tpm2Custody::Impl& impl, std::uint32_t index, ESYS_TR tr) {
  TPM2B_MAX_NV_BUFFER* raw = nullptr;
  TSS2_RC rc = Esys_NV_Read(impl.esys, tr, tr, impl.auth_session(0), ESYS_TR_NONE, ESYS_TR_NONE, 8, 0, &raw);
  if (tpm_base_rc(rc) == TPM2_RC_NV_UNINITIALIZED) return std::uint64_t{0};
  if (rc != TSS2_RC_SUCCESS) return impl.failed(rc, impl.context("TPM2_NV_Read", "NV counter " + tpm_handle_hex(index)));
  EsysPtr<TPM2B_MAX_NV_BUFFER> data(raw);
  if (data->size != 8) return Error{"custody.tpm_nv_conflict", "NV counter " + tpm_handle_hex(index) + " is not 8 bytes", "name another index"};
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | data->buffer[i];
  return v;
}

}  // namespace

Result<std::uint64_t> Tpm2Custody::advance_counter(const std::string& label) {
  CC_TRY_ASSIGN(std::uint32_t index, tpm_counter_index(label));
  return impl_->run([&]() -> Result<std::uint64_t> {
    CC_TRY_ASSIGN(auto tr, counter_handle(*impl_, index, true));
    TSS2_RC rc = Esys_NV_Increment(impl_->esys, *tr, *tr, impl_->auth_session(0), ESYS_TR_NONE, ESYS_TR_NONE);
    if (rc != TSS2_RC_SUCCESS) return impl_->failed(rc, impl_->context("TPM2_NV_Increment", "NV counter " + tpm_handle_hex(index)));
    return read_nv_counter(*impl_, index, *tr);
  });
}

Result<std::uint64_t> Tpm2Custody::read_counter(const std::string& label) {
  CC_TRY_ASSIGN(std::uint32_t index, tpm_counter_index(label));
  return impl_->run([&]() -> Result<std::uint64_t> {
    CC_TRY_ASSIGN(auto tr, counter_handle(*impl_, index, false));
    if (!tr) return std::uint64_t{0};
    return read_nv_counter(*impl_, index, *tr);
  });
}

// ---- certificates: a PEM file beside the key ------------------------------

Status Tpm2Custody::store_certificate(const std::string& label, std::span<const std::uint8_t> der, bool replace) {
  CC_TRY_ASSIGN(TpmKeyLocation loc, locate_tpm_key(label, impl_->cfg.key_dir));
  const unsigned char* p = der.data();
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert)
    return openssl_error("custody.certificate_invalid", "the certificate is not valid DER X.509",
                         "give a PEM or DER X.509 certificate");
  CC_TRY_ASSIGN(EvpPkeyPtr key, public_key(label));
  if (EVP_PKEY_eq(X509_get0_pubkey(cert.get()), key.get()) != 1)
    return Error{"custody.certificate_mismatch", "the certificate is not for " + loc.describe(),
                 "import the certificate issued for this key's CSR"};
  if (!replace && ::access(loc.cert_path.c_str(), F_OK) == 0)
    return Error{"custody.certificate_exists", "a certificate is already kept for " + loc.describe() + " (" +
                                                   loc.cert_path + ")",
                 "pass --replace to renew the RA certificate"};
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert.get()) != 1)
    return openssl_error("crypto.encode_failed", "cannot encode the certificate", "retry; check memory");
  char* text = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &text);
  CC_TRY(ensure_key_dir(impl_->cfg.key_dir));
  return write_file(loc.cert_path, std::string(text, static_cast<std::size_t>(n)), 0644, replace);
}

Result<std::optional<Bytes>> Tpm2Custody::find_certificate(const std::string& label) {
  CC_TRY_ASSIGN(TpmKeyLocation loc, locate_tpm_key(label, impl_->cfg.key_dir));
  if (::access(loc.cert_path.c_str(), F_OK) != 0) return std::optional<Bytes>{};
  CC_TRY_ASSIGN(std::string pem, read_small_file(loc.cert_path));
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!cert)
    return openssl_error("custody.certificate_invalid", loc.cert_path + " holds no PEM certificate",
                         "import the RA certificate again (`certcustody ra import --replace`)");
  // Bound to the key by its public key: a certificate file swapped for
  // another is refused here, not at the CA.
  CC_TRY_ASSIGN(EvpPkeyPtr key, public_key(label));
  if (EVP_PKEY_eq(X509_get0_pubkey(cert.get()), key.get()) != 1)
    return Error{"custody.certificate_mismatch", loc.cert_path + " is not a certificate for " + loc.describe(),
                 "import the certificate issued for this key (`certcustody ra import --replace`)"};
  const int len = i2d_X509(cert.get(), nullptr);
  Bytes der(static_cast<std::size_t>(len > 0 ? len : 0));
  unsigned char* q = der.data();
  if (len <= 0 || i2d_X509(cert.get(), &q) != len)
    return openssl_error("crypto.encode_failed", "cannot encode the certificate", "retry; check memory");
  return std::optional<Bytes>{std::move(der)};
}

}  // namespace certcustody
