#include <cstdio>

#include "cli/commands.h"
#include "cli/context.h"
#include "custody/pkcs11_custody.h"
#include "custody/tpm2_custody.h"
#include "custody/tpm2_key_file.h"
#include "ra/distinguished_name.h"
#include "ra/ra_credential.h"

namespace certcustody::cli {
namespace {

const char* kind_name(ObjectKind k) {
  switch (k) {
    case ObjectKind::private_key: return "private-key";
    case ObjectKind::public_key: return "public-key";
    case ObjectKind::secret_key: return "secret-key";
    case ObjectKind::certificate: return "certificate";
    default: return "other";
  }
}

std::string token_flags(CK_FLAGS f) {
  std::string s;
  auto add = [&](CK_FLAGS bit, const char* name) {
    if (f & bit) s += std::string(s.empty() ? "" : ", ") + name;
  };
  add(CKF_TOKEN_INITIALIZED, "initialised");
  add(CKF_LOGIN_REQUIRED, "login required");
  add(CKF_USER_PIN_INITIALIZED, "user PIN set");
  add(CKF_USER_PIN_COUNT_LOW, "USER PIN COUNT LOW");
  add(CKF_USER_PIN_FINAL_TRY, "USER PIN FINAL TRY");
  add(CKF_USER_PIN_LOCKED, "USER PIN LOCKED");
  add(CKF_WRITE_PROTECTED, "write-protected");
  return s;
}

void print_object(const ObjectInfo& o, KeyCustody& custody) {
  std::printf("  %-12s label=%-20s id=%s", kind_name(o.kind), o.label.c_str(), to_hex_lower(o.id).c_str());
  if (o.kind == ObjectKind::certificate) {
    auto der = custody.find_certificate(o.label);
    if (der && der.value()) {
      const unsigned char* p = der.value()->data();
      X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.value()->size())));
      if (cert)
        std::printf("\n               subject=%s\n               sha1=%s",
                    name_to_string(X509_get_subject_name(cert.get())).c_str(),
                    thumbprint(cert.get(), "SHA1").c_str());
    }
  } else {
    std::printf(" %s", o.algorithm.c_str());
    if (!o.curve.empty()) std::printf(" %s", o.curve.c_str());
    else if (o.bits) std::printf(" %u", o.bits);
    if (o.kind != ObjectKind::public_key)
      std::printf(" [%s%s%s]", o.sensitive ? "sensitive" : "NOT SENSITIVE",
                  o.extractable ? ", EXTRACTABLE" : ", never extractable", o.local ? ", generated on token" : "");
  }
  std::printf("\n");
}

Status tpm_info(const Config& cfg) {
  CC_TRY_ASSIGN(auto custody, Tpm2Custody::open(cfg.custody));
  CC_TRY_ASSIGN(TpmDeviceInfo d, custody->device_info());
  std::printf("TPM: %s (manufacturer \"%s\", firmware %s, TPM %s)\n", cfg.custody.tcti.c_str(),
              d.manufacturer.c_str(), d.firmware.c_str(), d.spec.c_str());
  std::printf("storage key (SRK): %s, %s, name %s\n", tpm_handle_hex(cfg.custody.srk_handle).c_str(),
              d.srk_type.c_str(), d.srk_name.c_str());
  if (d.srk_pinned)
    std::printf("  pinned by [custody] srk_name: the TPM's answer matched it\n");
  else
    std::printf("  NOT pinned: its public part is taken from the TPM unauthenticated; after checking the name on a "
                "trusted path, pin it with\n  srk_name = \"%s\"\n", d.srk_name.c_str());
  std::printf("key directory: %s\n", cfg.custody.key_dir.c_str());
  std::printf("dictionary-attack protection: %u of %u failures recorded, one forgotten every %u s%s\n",
              d.lockout_counter, d.max_auth_fail, d.lockout_interval_s, d.in_lockout ? "  LOCKED OUT" : "");
  std::printf("KEKs: %s\n", d.encrypt_decrypt ? "AES (TPM2_EncryptDecrypt2)" : "HMAC-SHA-256 (this TPM has no EncryptDecrypt)");
  std::printf("persistent handles:");
  for (std::uint32_t h : d.persistent) std::printf(" %s", tpm_handle_hex(h).c_str());
  std::printf("\ntransient objects loaded: %zu\n", d.transient.size());
  CC_TRY_ASSIGN(auto objects, custody->list_objects());
  std::printf("objects (%zu):\n", objects.size());
  for (const ObjectInfo& o : objects) print_object(o, *custody);
  return {};
}

Status token_info(const Globals& g) {
  CC_TRY_ASSIGN(Config cfg, load(g));
  if (cfg.custody.backend == "tpm2") return tpm_info(cfg);
  CC_TRY_ASSIGN(auto custody, Pkcs11Custody::open(cfg.custody));
  CK_INFO mi{};
  if (P11_CALL(custody->pool().module(), C_GetInfo, &mi) == CKR_OK)
    std::printf("module: %s (%s, %s %u.%u, Cryptoki %u.%u)\n", cfg.custody.module.c_str(),
                p11_text(mi.manufacturerID, sizeof mi.manufacturerID).c_str(),
                p11_text(mi.libraryDescription, sizeof mi.libraryDescription).c_str(), mi.libraryVersion.major,
                mi.libraryVersion.minor, mi.cryptokiVersion.major, mi.cryptokiVersion.minor);
  std::printf("token URI: %s\nslots:\n", cfg.custody.token.c_str());
  CC_TRY_ASSIGN(auto slots, custody->pool().slots());
  for (const SlotDescription& s : slots) {
    std::printf("  slot %lu: %s\n", static_cast<unsigned long>(s.id), s.description.c_str());
    if (!s.token_present) continue;
    std::printf("    token label=\"%s\" model=\"%s\" serial=%s manufacturer=\"%s\"%s\n", s.token_label.c_str(),
                s.token_model.c_str(), s.token_serial.c_str(), s.token_manufacturer.c_str(),
                s.selected ? "  <- selected" : "");
    std::printf("    flags: %s\n", token_flags(s.token_flags).c_str());
  }
  CC_TRY_ASSIGN(auto objects, custody->list_objects());
  std::printf("objects (%zu):\n", objects.size());
  for (const ObjectInfo& o : objects) print_object(o, *custody);
  return {};
}

Status token_init(const Globals& g, const std::string& label, const std::string& so_pin_file,
                  const std::string& pin_file) {
  CC_TRY_ASSIGN(Config cfg, load(g));
  CC_TRY_ASSIGN(PinSource so_src, PinSource::from_config(so_pin_file));
  CC_TRY_ASSIGN(PinSource user_src, PinSource::from_config(pin_file.empty() ? cfg.custody.pin_file : pin_file));
  CC_TRY_ASSIGN(SecureBytes so_pin, so_src.read());
  CC_TRY_ASSIGN(SecureBytes user_pin, user_src.read());
  if (cfg.custody.backend != "pkcs11")
    return Error{"cli.wrong_backend", "`token init` initialises a PKCS#11 token; [custody] backend is " + cfg.custody.backend,
                 "a TPM needs no initialisation: keys are created under its storage key (docs/tpm.md)"};
  CC_TRY_ASSIGN(auto module, Pkcs11Module::load(cfg.custody.module));
  Status s = init_token(*module, label, so_pin, user_pin);
  module->finalize();
  CC_TRY(s);
  std::printf("token '%s' initialised; user PIN set from %s\n", label.c_str(), user_src.describe().c_str());
  return {};
}

}  // namespace

void add_token_commands(CLI::App& app, const Globals& g, Action& action) {
  CLI::App* token = app.add_subcommand("token", "inspect or initialise the token");
  token->require_subcommand(1);
  token->add_subcommand("info", "module, slots, token, keys and certificates (no secrets)")
      ->callback([&g, &action] { action = [&g] { return token_info(g); }; });

  CLI::App* init = token->add_subcommand("init", "Security Officer: initialise a free token and set the user PIN");
  static struct {
    std::string label, so_pin_file, pin_file;
  } o;
  init->add_option("--label", o.label, "token label")->required();
  init->add_option("--so-pin-file", o.so_pin_file, "file (mode 0600) holding the Security Officer PIN")->required();
  init->add_option("--pin-file", o.pin_file, "file (mode 0600) holding the user PIN (default: [custody] pin_file)");
  init->callback([&g, &action] { action = [&g] { return token_init(g, o.label, o.so_pin_file, o.pin_file); }; });
}

}  // namespace certcustody::cli
