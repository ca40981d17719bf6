// The ESYS connection of a Tpm2Custody: TCTI, storage key, HMAC session,
// loaded keys, and what an auth failure or a lost TPM does to them.
#include <dirent.h>
#include <openssl/crypto.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_sys.h>
#include <tss2/tss2_tctildr.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>

#include "custody/tpm2_impl.h"

namespace certcustody {
namespace {

constexpr std::size_t kMaxAuthBytes = 32;  // an object's authValue: at most its nameAlg's digest (SHA-256)

bool is_restricted_storage_key(const TPMT_PUBLIC& p) {
  const TPMA_OBJECT a = p.objectAttributes;
  return (a & TPMA_OBJECT_RESTRICTED) && (a & TPMA_OBJECT_DECRYPT) && !(a & TPMA_OBJECT_SIGN_ENCRYPT) &&
         (p.type == TPM2_ALG_RSA || p.type == TPM2_ALG_ECC);
}

TPM2B_AUTH to_tpm_auth(const SecureBytes& auth) {
  TPM2B_AUTH a{};
  a.size = static_cast<UINT16>(auth.size());
  std::memcpy(a.buffer, auth.data(), auth.size());
  return a;
}

}  // namespace

Status Tpm2Custody::Impl::ready() {
  Status s = ready_once();
  std::lock_guard l(health_mu);
  if (s) {
    last_health = {};
  } else {
    if (last_health.available)
      last_health.since_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
    last_health.available = false;
    last_health.error = s.error();
  }
  return s;
}

Status Tpm2Custody::Impl::ready_once() {
  if (refused) {
    if (const std::string now = auth_source.fingerprint(); now != refused->fingerprint) {
      auto value = read_auth();
      const bool same = value && value->size() == refused->value.size() &&
                        CRYPTO_memcmp(value->data(), refused->value.data(), value->size()) == 0;
      if (same) refused->fingerprint = now;  // rewritten with the same effective value
      else {
        disconnect();  // another value: start again with it
        refused.reset();
      }
    }
    if (refused)
      return Error{"custody.tpm_auth_failed",
                   "the TPM refused the auth value in " + auth_source.describe("auth file") +
                       " earlier; it is not sent again (each failure counts towards the TPM's lockout)",
                   "put the right auth value in [custody] auth_file; certcustody tries again once the file holds "
                   "another value"};
  }
  if (esys != nullptr) return {};
  if (connect_error && std::chrono::steady_clock::now() < retry_connect_at) return *connect_error;
  Status s = connect();
  if (!s) {
    disconnect();
    connect_error = s.error();
    retry_connect_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(cfg.reconnect_interval_ms);
    return s;
  }
  connect_error.reset();
  return {};
}

Result<SecureBytes> Tpm2Custody::Impl::read_auth() const {
  CC_TRY_ASSIGN(SecureBytes value, auth_source.read());
  strip_trailing_zeros(value);
  if (value.size() > kMaxAuthBytes)
    return Error{"custody.tpm_auth_invalid",
                 auth_source.describe("auth file") + " holds " + std::to_string(value.size()) +
                     " bytes; a TPM key's auth value has at most 32",
                 "use a shorter auth value (e.g. 32 random characters); keys made with the old value keep it"};
  return value;
}

Status Tpm2Custody::Impl::connect() {
  auth_fingerprint = auth_source.fingerprint();
  CC_TRY_ASSIGN(auth, read_auth());
  if (TSS2_RC rc = Tss2_TctiLdr_Initialize(cfg.tcti.c_str(), &tcti); rc != TSS2_RC_SUCCESS)
    return tpm_error(rc, context("opening the TCTI"));
  if (TSS2_RC rc = Esys_Initialize(&esys, tcti, nullptr); rc != TSS2_RC_SUCCESS)
    return tpm_error(rc, context("Esys_Initialize"));
  CC_TRY(read_commands());
  CC_TRY(open_srk());
  return start_session();
}

Status Tpm2Custody::Impl::read_commands() {
  CC_TRY_ASSIGN(TPMS_CAPABILITY_DATA * raw, capability(TPM2_CAP_COMMANDS, TPM2_CC_FIRST, TPM2_MAX_CAP_CC));
  EsysPtr<TPMS_CAPABILITY_DATA> cap(raw);
  for (UINT32 i = 0; i < cap->data.command.count; ++i) {
    const TPM2_CC cc = cap->data.command.commandAttributes[i] & TPMA_CC_COMMANDINDEX_MASK;
    if (cc == TPM2_CC_EncryptDecrypt2) encrypt_decrypt2 = true;
    if (cc == TPM2_CC_EncryptDecrypt) encrypt_decrypt = true;
  }
  // Without a resource manager the TPM's own object slots are all there is
  // (3 on most TPMs): keep one free for loading and creating.
  CC_TRY_ASSIGN(raw, capability(TPM2_CAP_TPM_PROPERTIES, TPM2_PT_HR_TRANSIENT_MIN, 1));
  cap.reset(raw);
  std::uint32_t slots = 3;
  if (cap->data.tpmProperties.count == 1 && cap->data.tpmProperties.tpmProperty[0].property == TPM2_PT_HR_TRANSIENT_MIN)
    slots = cap->data.tpmProperties.tpmProperty[0].value;
  capacity = slots > 1 ? slots - 1 : 1;
  return {};
}

Status Tpm2Custody::Impl::open_srk() {
  TSS2_RC rc = Esys_TR_FromTPMPublic(esys, cfg.srk_handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &srk);
  if (rc == TSS2_RC_SUCCESS) return check_srk();
  srk = ESYS_TR_NONE;
  if (tpm_base_rc(rc) != TPM2_RC_HANDLE) return tpm_error(rc, context("reading the storage key", tpm_handle_hex(cfg.srk_handle)));
  CC_TRY(create_srk());
  return check_srk();
}

// No SRK yet: one from the TCG template of srk_type, kept at its handle.
Status Tpm2Custody::Impl::create_srk() {
  CC_TRY_ASSIGN(KeyType type, parse_key_type(cfg.srk_type.empty() ? "rsa2048" : cfg.srk_type));
  CC_TRY_ASSIGN(TPM2B_PUBLIC tmpl, srk_template(type));
  TPM2B_SENSITIVE_CREATE sensitive{};
  TPM2B_DATA outside{};
  TPML_PCR_SELECTION pcrs{};
  ESYS_TR primary = ESYS_TR_NONE;
  TSS2_RC rc = Esys_CreatePrimary(esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive,
                                  &tmpl, &outside, &pcrs, &primary, nullptr, nullptr, nullptr, nullptr);
  if (rc == TSS2_RC_SUCCESS)
    rc = Esys_EvictControl(esys, ESYS_TR_RH_OWNER, primary, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                           cfg.srk_handle, &srk);
  if (primary != ESYS_TR_NONE) Esys_FlushContext(esys, primary);
  if (rc == TSS2_RC_SUCCESS) return {};
  srk = ESYS_TR_NONE;
  Error e = tpm_error(rc, context("creating the storage key (SRK) at " + tpm_handle_hex(cfg.srk_handle)));
  if (tpm_is_auth_failure(rc)) {
    e.code = "custody.tpm_owner_auth";
    e.what = "the TPM has no storage key at " + tpm_handle_hex(cfg.srk_handle) + " and creating one needs the owner's auth value";
    e.remedy = "the TPM owner creates it once: `" + srk_create_command(type, "<owner auth>") +
               " && tpm2_evictcontrol -C o -P <owner auth> -c srk.ctx " + tpm_handle_hex(cfg.srk_handle) + "`";
  }
  return e;
}

namespace {

// The storage key's public area and name as ESYS holds them: its salt for
// sessions is encrypted to that public area. Read from ESYS's own record
// (the ESYS_TR serialization tpm2-tools also writes to disk: handle, name,
// resource type, TPM2B_PUBLIC), so that what is checked is what is used.
bool esys_public(ESYS_CONTEXT* esys, ESYS_TR tr, TPM2_HANDLE handle, TPM2B_PUBLIC& pub, TPM2B_NAME& name) {
  std::uint8_t* raw = nullptr;
  std::size_t size = 0;
  if (Esys_TR_Serialize(esys, tr, &raw, &size) != TSS2_RC_SUCCESS) return false;
  std::unique_ptr<std::uint8_t, decltype(&std::free)> buf(raw, &std::free);
  std::size_t off = 0;
  UINT32 serialized_handle = 0, type = 0;
  constexpr UINT32 kKeyResource = 1;  // IESYSC_KEY_RSRC
  return Tss2_MU_UINT32_Unmarshal(raw, size, &off, &serialized_handle) == TSS2_RC_SUCCESS &&
         Tss2_MU_TPM2B_NAME_Unmarshal(raw, size, &off, &name) == TSS2_RC_SUCCESS &&
         Tss2_MU_UINT32_Unmarshal(raw, size, &off, &type) == TSS2_RC_SUCCESS &&
         Tss2_MU_TPM2B_PUBLIC_Unmarshal(raw, size, &off, &pub) == TSS2_RC_SUCCESS && off == size &&
         serialized_handle == handle && type == kKeyResource;
}

// "rsa2048", "ec-p256", ... as srk_type names storage keys.
std::string srk_kind(const TPMT_PUBLIC& p) {
  if (p.type == TPM2_ALG_RSA) return "rsa" + std::to_string(p.parameters.rsaDetail.keyBits);
  if (p.type != TPM2_ALG_ECC) return "a key of TPM type " + std::to_string(p.type);
  switch (p.parameters.eccDetail.curveID) {
    case TPM2_ECC_NIST_P256: return "ec-p256";
    case TPM2_ECC_NIST_P384: return "ec-p384";
    case TPM2_ECC_NIST_P521: return "ec-p521";
    default: return "an ECC key on TPM curve " + std::to_string(p.parameters.eccDetail.curveID);
  }
}

}  // namespace

Status Tpm2Custody::Impl::check_srk() {
  const std::string at = tpm_handle_hex(cfg.srk_handle);
  TPM2B_PUBLIC pub{};
  TPM2B_NAME tpm_name{};
  if (!esys_public(esys, srk, cfg.srk_handle, pub, tpm_name))
    return Error{"custody.tpm_error", "the storage key at " + at + " could not be read back from tpm2-tss",
                 "report this with the tpm2-tss version (`dpkg -l libtss2-esys*`)"};
  srk_public = pub.publicArea;
  srk_name = public_area_name(srk_public);
  const std::string name = to_hex_lower(srk_name);
  if (srk_name.empty() || srk_name != Bytes(tpm_name.name, tpm_name.name + tpm_name.size))
    return Error{"custody.tpm_srk_name_mismatch",
                 "the TPM's answer about the storage key at " + at + " is inconsistent: its name " +
                     to_hex_lower({tpm_name.name, tpm_name.size}) + " is not that of its public area (" + name +
                     "); it was altered between the TPM and certcustody. No session was started, nothing was sent",
                 "check the path to the TPM (resource manager, bus interposers, a simulator in between)"};
  if (!cfg.srk_name.empty() && name != cfg.srk_name)
    return Error{"custody.tpm_srk_name_mismatch",
                 "the storage key at " + at + " has the name " + name + ", not the one pinned in [custody] srk_name (" +
                     cfg.srk_name + "): another key was put in its place, or its public area was substituted on the "
                     "way from the TPM. No session was started, nothing was sent",
                 "check the path to the TPM (resource manager, bus, a simulator in between); if the TPM was cleared "
                 "or the SRK made again on purpose, check its name on a trusted path (`tpm2_readpublic -c " + at +
                     "`) and set srk_name to it (keys made under the old SRK cannot be used)"};
  if (!is_restricted_storage_key(srk_public))
    return Error{"custody.tpm_srk_invalid",
                 "the object at " + at + " is not a storage key (restricted, decrypt)",
                 "point [custody] srk_handle at the SRK, or free the handle (`tpm2_evictcontrol -C o -c " + at +
                     "`) so that certcustody creates it"};
  if (!cfg.srk_type.empty() && srk_kind(srk_public) != cfg.srk_type)
    return Error{"custody.tpm_srk_invalid",
                 "the storage key at " + at + " is " + srk_kind(srk_public) + ", not the " + cfg.srk_type +
                     " key [custody] srk_type asks for",
                 "set srk_type = \"" + srk_kind(srk_public) + "\" to keep this SRK (and the keys made under it), or "
                 "point srk_handle at a free persistent handle so that certcustody creates a " + cfg.srk_type + " SRK there"};
  if (auto why = session_salt_unsupported(srk_public))
    return Error{"custody.tpm_srk_unsupported",
                 "sessions cannot be salted to the storage key at " + at + ": " + *why,
                 "use an RSA 2048 or ECC NIST P-256 / P-384 storage key: set srk_type and point srk_handle at a free "
                 "persistent handle (or free this one: `tpm2_evictcontrol -C o -c " + at + "`) so that certcustody "
                 "creates it"};
  return {};
}

bool Tpm2Custody::Impl::behind_resource_manager() const {
  return cfg.tcti.rfind("device:/dev/tpmrm", 0) == 0 || cfg.tcti.rfind("tabrmd", 0) == 0;
}

std::size_t Tpm2Custody::Impl::flush_leftovers(TPM2_HANDLE first) {
  if (behind_resource_manager()) return 0;
  std::set<TPM2_HANDLE> ours;
  auto add = [&](ESYS_TR tr) {
    TPM2_HANDLE h = 0;
    if (tr != ESYS_TR_NONE && Esys_TR_GetTpmHandle(esys, tr, &h) == TSS2_RC_SUCCESS) ours.insert(h);
  };
  for (const auto& [name, k] : keys) add(k.tr);
  add(session);
  if (sign_session->started()) ours.insert(sign_session->handle());
  auto raw = capability(TPM2_CAP_HANDLES, first, TPM2_MAX_CAP_HANDLES);
  TSS2_SYS_CONTEXT* sys = nullptr;
  if (!raw || Esys_GetSysContext(esys, &sys) != TSS2_RC_SUCCESS) return 0;
  EsysPtr<TPMS_CAPABILITY_DATA> cap(*raw);
  std::size_t flushed = 0;
  for (UINT32 i = 0; i < cap->data.handles.count; ++i) {
    const TPM2_HANDLE h = cap->data.handles.handle[i];
    if ((h >> 24) != (first >> 24) || ours.count(h) != 0) continue;
    if (Tss2_Sys_FlushContext(sys, h) == TSS2_RC_SUCCESS) ++flushed;
  }
  if (flushed > 0)
    std::fprintf(stderr,
                 "certcustody: flushed %zu %s left loaded in the TPM at %s by an earlier process (no resource "
                 "manager: prefer device:/dev/tpmrm0)\n",
                 flushed, first == TPM2_TRANSIENT_FIRST ? "objects" : "sessions", cfg.tcti.c_str());
  return flushed;
}

Status Tpm2Custody::Impl::start_session() {
  // Salted with the SRK: the session key never crosses the bus, so neither
  // the key auth value nor encrypted parameters can be read off it.
  TPMT_SYM_DEF sym{};
  sym.algorithm = TPM2_ALG_AES;
  sym.keyBits.aes = 128;
  sym.mode.aes = TPM2_ALG_CFB;
  TSS2_RC rc = Esys_StartAuthSession(esys, srk, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, nullptr,
                                     TPM2_SE_HMAC, &sym, TPM2_ALG_SHA256, &session);
  if (tpm_base_rc(rc) == TPM2_RC_SESSION_MEMORY && flush_leftovers(TPM2_LOADED_SESSION_FIRST) > 0)
    rc = Esys_StartAuthSession(esys, srk, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, nullptr, TPM2_SE_HMAC,
                               &sym, TPM2_ALG_SHA256, &session);
  if (rc != TSS2_RC_SUCCESS) {
    session = ESYS_TR_NONE;
    return tpm_error(rc, context("TPM2_StartAuthSession"));
  }
  return {};
}

Status Tpm2Custody::Impl::verify_auth() {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(cfg.key_dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n.size() > 5 && n.compare(n.size() - 5, 5, ".tss2") == 0) names.push_back(n.substr(0, n.size() - 5));
    }
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    auto loc = locate_tpm_key(name, cfg.key_dir);
    auto blob = loc ? read_tss2_file(loc->path) : Result<TpmKeyBlob>(loc.error());
    if (!blob || blob->empty_auth || (blob->parent != cfg.srk_handle && blob->parent != TPM2_RH_OWNER)) continue;
    CC_TRY_ASSIGN(LoadedKey * k, load(*loc));
    TPMT_SYM_DEF none{};
    none.algorithm = TPM2_ALG_NULL;
    ESYS_TR policy = ESYS_TR_NONE;
    TSS2_RC rc = Esys_StartAuthSession(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                       nullptr, TPM2_SE_POLICY, &none, TPM2_ALG_SHA256, &policy);
    if (rc != TSS2_RC_SUCCESS) return failed(rc, context("TPM2_StartAuthSession (policy)"));
    TPM2B_NONCE nonce{};
    TPM2B_DIGEST cp_hash{};
    TPM2B_NONCE policy_ref{};
    TPM2B_TIMEOUT* timeout = nullptr;
    TPMT_TK_AUTH* ticket = nullptr;
    rc = Esys_PolicySecret(esys, k->tr, policy, auth_session(0), ESYS_TR_NONE, ESYS_TR_NONE, &nonce, &cp_hash,
                           &policy_ref, 0, &timeout, &ticket);
    Esys_Free(timeout);
    Esys_Free(ticket);
    Esys_FlushContext(esys, policy);
    if (rc != TSS2_RC_SUCCESS) return failed(rc, context("checking the auth value (TPM2_PolicySecret)", loc->describe()));
    return {};
  }
  return {};  // no key made with the auth value yet: nothing to check it against
}

ESYS_TR Tpm2Custody::Impl::auth_session(TPMA_SESSION encryption) {
  Esys_TRSess_SetAttributes(esys, session, TPMA_SESSION_CONTINUESESSION | encryption, 0xff);
  return session;
}

void Tpm2Custody::Impl::disconnect() noexcept {
  if (esys != nullptr) {
    for (auto& [name, k] : keys) {
      if (k.transient) Esys_FlushContext(esys, k.tr);
      else Esys_TR_Close(esys, &k.tr);
    }
    for (auto& [index, tr] : counters) Esys_TR_Close(esys, &tr);
    TSS2_SYS_CONTEXT* sys = nullptr;
    if (Esys_GetSysContext(esys, &sys) == TSS2_RC_SUCCESS) sign_session->close(sys);
    if (session != ESYS_TR_NONE) Esys_FlushContext(esys, session);
    if (srk != ESYS_TR_NONE) Esys_TR_Close(esys, &srk);
    Esys_Finalize(&esys);
  }
  sign_session->forget();
  keys.clear();
  counters.clear();
  session = ESYS_TR_NONE;
  srk = ESYS_TR_NONE;
  esys = nullptr;
  if (tcti != nullptr) Tss2_TctiLdr_Finalize(&tcti);
  tcti = nullptr;
}

Error Tpm2Custody::Impl::failed(TSS2_RC rc, const TpmContext& ctx) {
  Error e = tpm_error(rc, ctx);
  if (tpm_is_auth_failure(rc)) refused = Refusal{auth_fingerprint, auth};
  if (e.code == "custody.tpm_lockout") {
    if (auto info = device_info()) {
      const std::uint32_t interval = info->lockout_interval_s;
      e.what += " (" + std::to_string(info->lockout_counter) + " failures recorded, lockout at " +
                std::to_string(info->max_auth_fail) + "; one failure is forgotten every " + std::to_string(interval) +
                " s, so the next attempt is allowed in about " + std::to_string(interval) + " s)";
    }
  }
  const TSS2_RC base = tpm_base_rc(rc);
  const bool session_lost = base == TPM2_RC_REFERENCE_S0 || base == (TPM2_RC_FMT1 | 0x00B);  // not loaded / handle
  if (tpm_is_tcti_failure(rc) || base == TPM2_RC_INITIALIZE || base == TPM2_RC_FAILURE || session_lost) disconnect();
  return e;
}

Result<TPMT_SIGNATURE> Tpm2Custody::Impl::sign(const LoadedKey& k, const TpmKeyLocation& loc, const TPM2B_DIGEST& digest,
                                               const TPMT_SIG_SCHEME& scheme) {
  TSS2_SYS_CONTEXT* sys = nullptr;
  TPM2_HANDLE key = 0;
  TSS2_RC rc = Esys_GetSysContext(esys, &sys);
  if (rc == TSS2_RC_SUCCESS) rc = Esys_TR_GetTpmHandle(esys, k.tr, &key);
  if (rc == TSS2_RC_SUCCESS && !sign_session->started()) {
    rc = sign_session->start(sys, cfg.srk_handle, srk_public);
    if (tpm_base_rc(rc) == TPM2_RC_SESSION_MEMORY && flush_leftovers(TPM2_LOADED_SESSION_FIRST) > 0)
      rc = sign_session->start(sys, cfg.srk_handle, srk_public);
    if (rc != TSS2_RC_SUCCESS) return failed(rc, context("TPM2_StartAuthSession (signing)"));
  }
  TPMT_SIGNATURE sig{};
  if (rc == TSS2_RC_SUCCESS) rc = sign_session->sign(sys, key, k.name, k.empty_auth ? SecureBytes{} : auth, digest, scheme, sig);
  if (rc != TSS2_RC_SUCCESS) return failed(rc, context("TPM2_Sign", loc.describe()));
  return sig;
}

Result<TPMS_CAPABILITY_DATA*> Tpm2Custody::Impl::capability(TPM2_CAP cap, std::uint32_t property, std::uint32_t count) {
  TPMI_YES_NO more = TPM2_NO;
  TPMS_CAPABILITY_DATA* data = nullptr;
  TSS2_RC rc = Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, cap, property, count, &more, &data);
  if (rc != TSS2_RC_SUCCESS) return tpm_error(rc, context("TPM2_GetCapability"));
  return data;
}

void Tpm2Custody::Impl::evict_lru() {
  auto victim = keys.end();
  for (auto it = keys.begin(); it != keys.end(); ++it)
    if (it->second.transient && (victim == keys.end() || it->second.last_use < victim->second.last_use)) victim = it;
  if (victim == keys.end()) return;
  Esys_FlushContext(esys, victim->second.tr);
  keys.erase(victim);
}

Result<LoadedKey*> Tpm2Custody::Impl::load(const TpmKeyLocation& loc) {
  const std::string id = loc.kind == TpmKeyLocation::Kind::file ? "file:" + loc.path : "handle:" + tpm_handle_hex(loc.handle);
  if (auto it = keys.find(id); it != keys.end()) {
    it->second.last_use = ++tick;
    return &it->second;
  }
  LoadedKey k;
  TPM2B_AUTH key_auth = to_tpm_auth(auth);
  struct Wipe {
    TPM2B_AUTH& a;
    ~Wipe() { secure_wipe(&a, sizeof a); }
  } wipe{key_auth};
  if (loc.kind == TpmKeyLocation::Kind::handle) {
    k.transient = false;
    TSS2_RC rc = Esys_TR_FromTPMPublic(esys, loc.handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &k.tr);
    if (rc != TSS2_RC_SUCCESS) return failed(rc, context("opening the persistent key", loc.describe()));
    TPM2B_PUBLIC* raw = nullptr;
    rc = Esys_ReadPublic(esys, k.tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &raw, nullptr, nullptr);
    if (rc != TSS2_RC_SUCCESS) {
      Esys_TR_Close(esys, &k.tr);
      return failed(rc, context("TPM2_ReadPublic", loc.describe()));
    }
    k.pub = *raw;
    Esys_Free(raw);
  } else {
    CC_TRY_ASSIGN(TpmKeyBlob blob, read_tss2_file(loc.path));
    if (blob.parent != cfg.srk_handle && blob.parent != TPM2_RH_OWNER)
      return Error{"custody.tpm_key_foreign",
                   loc.describe() + " was made under the parent " + tpm_handle_hex(blob.parent) + ", not under the storage key " +
                       tpm_handle_hex(cfg.srk_handle),
                   "set [custody] srk_handle to " + tpm_handle_hex(blob.parent) + " if that is this TPM's SRK, or generate the key again"};
    if (blob.empty_auth) key_auth = TPM2B_AUTH{};
    for (std::size_t n = 0; n < keys.size() && n < 8; ++n) {
      std::size_t loaded = 0;
      for (const auto& [name, other] : keys) loaded += other.transient ? 1 : 0;
      if (loaded < capacity) break;
      evict_lru();
    }
    TSS2_RC rc = Esys_Load(esys, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &blob.priv, &blob.pub, &k.tr);
    // Slots taken by someone else: leftovers of a killed process are flushed
    // (bare TPM only), else ours are given back; then the load is retried.
    for (int retry = 0; tpm_base_rc(rc) == TPM2_RC_OBJECT_MEMORY && retry < 2; ++retry) {
      if (flush_leftovers(TPM2_TRANSIENT_FIRST) == 0)
        while (std::any_of(keys.begin(), keys.end(), [](auto& e) { return e.second.transient; })) evict_lru();
      rc = Esys_Load(esys, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &blob.priv, &blob.pub, &k.tr);
    }
    if (rc != TSS2_RC_SUCCESS) return failed(rc, context("TPM2_Load", loc.describe()));
    k.pub = blob.pub;
    k.empty_auth = blob.empty_auth;
  }
  k.name = public_area_name(k.pub.publicArea);
  if (TSS2_RC rc = Esys_TR_SetAuth(esys, k.tr, &key_auth); rc != TSS2_RC_SUCCESS) {
    if (k.transient) Esys_FlushContext(esys, k.tr);
    else Esys_TR_Close(esys, &k.tr);
    return failed(rc, context("Esys_TR_SetAuth", loc.describe()));
  }
  k.last_use = ++tick;
  return &(keys[id] = k);
}

Result<TpmDeviceInfo> Tpm2Custody::Impl::device_info() {
  TpmDeviceInfo info;
  info.encrypt_decrypt = encrypt_decrypt2 || encrypt_decrypt;
  info.srk_type = srk_kind(srk_public);
  info.srk_name = to_hex_lower(srk_name);
  info.srk_pinned = !cfg.srk_name.empty();
  CC_TRY_ASSIGN(TPMS_CAPABILITY_DATA * raw, capability(TPM2_CAP_TPM_PROPERTIES, TPM2_PT_FIXED, TPM2_MAX_TPM_PROPERTIES));
  EsysPtr<TPMS_CAPABILITY_DATA> cap(raw);
  std::uint32_t fw1 = 0, fw2 = 0, level = 0, revision = 0;
  auto text4 = [](std::uint32_t v) {
    std::string s;
    for (int shift = 24; shift >= 0; shift -= 8)
      if (char c = static_cast<char>((v >> shift) & 0xFF); c >= 0x20 && c < 0x7F) s += c;
    return s;
  };
  for (UINT32 i = 0; i < cap->data.tpmProperties.count; ++i) {
    const auto& p = cap->data.tpmProperties.tpmProperty[i];
    if (p.property == TPM2_PT_MANUFACTURER) info.manufacturer = text4(p.value);
    if (p.property == TPM2_PT_FIRMWARE_VERSION_1) fw1 = p.value;
    if (p.property == TPM2_PT_FIRMWARE_VERSION_2) fw2 = p.value;
    if (p.property == TPM2_PT_LEVEL) level = p.value;
    if (p.property == TPM2_PT_REVISION) revision = p.value;
  }
  info.firmware = std::to_string(fw1 >> 16) + "." + std::to_string(fw1 & 0xFFFF) + "." + std::to_string(fw2 >> 16) +
                  "." + std::to_string(fw2 & 0xFFFF);
  info.spec = "2.0 level " + std::to_string(level) + " revision " + std::to_string(revision / 100) + "." +
              std::to_string(revision % 100);
  CC_TRY_ASSIGN(raw, capability(TPM2_CAP_TPM_PROPERTIES, TPM2_PT_VAR, TPM2_MAX_TPM_PROPERTIES));
  cap.reset(raw);
  for (UINT32 i = 0; i < cap->data.tpmProperties.count; ++i) {
    const auto& p = cap->data.tpmProperties.tpmProperty[i];
    if (p.property == TPM2_PT_LOCKOUT_COUNTER) info.lockout_counter = p.value;
    if (p.property == TPM2_PT_MAX_AUTH_FAIL) info.max_auth_fail = p.value;
    if (p.property == TPM2_PT_LOCKOUT_INTERVAL) info.lockout_interval_s = p.value;
    if (p.property == TPM2_PT_LOCKOUT_RECOVERY) info.lockout_recovery_s = p.value;
    if (p.property == TPM2_PT_PERMANENT) info.in_lockout = (p.value & TPMA_PERMANENT_INLOCKOUT) != 0;
  }
  for (auto [first, out] : {std::pair{TPM2_PERSISTENT_FIRST, &info.persistent}, std::pair{TPM2_TRANSIENT_FIRST, &info.transient}}) {
    CC_TRY_ASSIGN(raw, capability(TPM2_CAP_HANDLES, first, TPM2_MAX_CAP_HANDLES));
    cap.reset(raw);
    for (UINT32 i = 0; i < cap->data.handles.count; ++i) out->push_back(cap->data.handles.handle[i]);
  }
  return info;
}

}  // namespace certcustody
