// The TPM backend's pieces that need no TPM: config, key names, the key file
// format, counter indices and the response-code mapping.
#include <gtest/gtest.h>
#include <tss2/tss2_tpm2_types.h>

#include <cstring>
#include <fstream>
#include <tuple>

#include "config/config.h"
#include "custody/tpm2_custody.h"
#include "custody/tpm2_error.h"
#include "custody/tpm2_key_file.h"
#include "support/temp_dir.h"

namespace certcustody {
namespace {

const char* kTpmConfig = R"([custody]
backend   = "tpm2"
tcti      = "device:/dev/tpmrm0"
auth_file = "tpm.auth"

[state]
dir = "/var/lib/certcustody"
)";

TEST(TpmConfig, ParsesTheContractKeysWithDefaults) {
  auto c = parse_config(kTpmConfig, "/etc/certcustody/certcustody.toml");
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->custody.backend, "tpm2");
  EXPECT_EQ(c->custody.tcti, "device:/dev/tpmrm0");
  EXPECT_EQ(c->custody.auth_file, "tpm.auth");  // no '/': a systemd credential name
  EXPECT_EQ(c->custody.key_dir, "/var/lib/certcustody/tpm");
  EXPECT_EQ(c->custody.srk_handle, 0x81000001u);
}

TEST(TpmConfig, KeyDirAndSrkHandleAndRelativeAuthFile) {
  std::string text = kTpmConfig;
  text.replace(text.find("\"tpm.auth\""), 10,
               "\"./tpm.auth\"\nkey_dir = \"keys\"\nsrk_handle = \"0x81000005\"\nreconnect_interval_ms = 250");
  auto c = parse_config(text, "/etc/certcustody/certcustody.toml");
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->custody.auth_file, "/etc/certcustody/tpm.auth");
  EXPECT_EQ(c->custody.key_dir, "/etc/certcustody/keys");
  EXPECT_EQ(c->custody.srk_handle, 0x81000005u);
  EXPECT_EQ(c->custody.reconnect_interval_ms, 250u);
}

TEST(TpmConfig, SrkTypeAndPinnedName) {
  auto plain = parse_config(kTpmConfig, "cc.toml");
  ASSERT_TRUE(plain) << plain.error().to_string();
  EXPECT_EQ(plain->custody.srk_type, "");
  EXPECT_EQ(plain->custody.srk_name, "");
  const std::string name = "000B48AB1239BEA01EAF82DE4D5D7D754B5A0E2740419F875B85B25FEF82381B60E0";
  std::string text = kTpmConfig;
  text.replace(text.find("\"tpm.auth\""), 10, "\"tpm.auth\"\nsrk_type = \"ec-p384\"\nsrk_name = \"" + name + "\"");
  auto c = parse_config(text, "cc.toml");
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->custody.srk_type, "ec-p384");
  EXPECT_EQ(c->custody.srk_name, "000b48ab1239bea01eaf82de4d5d7d754b5a0e2740419f875b85b25fef82381b60e0");
  const std::string sha384_name = "000c" + std::string(96, 'a');
  for (const std::string& good : {sha384_name, "0004" + std::string(40, '1')}) {
    std::string t = kTpmConfig;
    t.replace(t.find("\"tpm.auth\""), 10, "\"tpm.auth\"\nsrk_name = \"" + good + "\"");
    EXPECT_TRUE(parse_config(t, "cc.toml")) << good;
  }
  for (const std::string& bad : {std::string("srk_type = \"rsa3072\""), std::string("srk_type = \"ecc256\""),
                                 "srk_name = \"" + name.substr(0, 66) + "\"",          // short
                                 "srk_name = \"000c" + name.substr(4) + "\"",           // SHA-384 id, SHA-256 length
                                 "srk_name = \"0012" + name.substr(4) + "\"",           // SM3 / unknown id
                                 "srk_name = \"0x" + name + "\"", std::string("srk_name = 11")}) {
    std::string t = kTpmConfig;
    t.replace(t.find("\"tpm.auth\""), 10, "\"tpm.auth\"\n" + bad);
    auto r = parse_config(t, "cc.toml");
    ASSERT_FALSE(r) << bad;
    EXPECT_TRUE(r.error().code == "config.invalid_value" || r.error().code == "config.wrong_type") << r.error().to_string();
  }
}

TEST(TpmConfig, RejectsPkcs11KeysAndBadHandles) {
  for (auto [from, to, code] : {std::tuple{"auth_file", "pin_file", "config.unknown_key"},
                                std::tuple{"\"tpm.auth\"", "\"tpm.auth\"\nsrk_handle = \"0x40000001\"", "config.invalid_value"},
                                std::tuple{"\"tpm.auth\"", "\"tpm.auth\"\nsrk_handle = \"81000001\"", "config.invalid_value"},
                                std::tuple{"tcti      = \"device:/dev/tpmrm0\"\n", "", "config.missing_key"}}) {
    std::string text = kTpmConfig;
    text.replace(text.find(from), std::string(from).size(), to);
    auto c = parse_config(text, "cc.toml");
    ASSERT_FALSE(c) << from << " -> " << to;
    EXPECT_EQ(c.error().code, code) << c.error().to_string();
  }
}

TEST(TpmKeyNames, LabelsAndUris) {
  auto plain = locate_tpm_key("ra", "/k");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->kind, TpmKeyLocation::Kind::file);
  EXPECT_EQ(plain->path, "/k/ra.tss2");
  EXPECT_EQ(plain->cert_path, "/k/ra.crt.pem");
  auto object = locate_tpm_key("tpm2:object=ra", "/k");
  ASSERT_TRUE(object);
  EXPECT_EQ(object->path, "/k/ra.tss2");
  auto file = locate_tpm_key("tpm2:file=/srv/x/ra.tss2", "/k");
  ASSERT_TRUE(file);
  EXPECT_EQ(file->path, "/srv/x/ra.tss2");
  EXPECT_EQ(file->cert_path, "/srv/x/ra.crt.pem");
  auto handle = locate_tpm_key("tpm2:handle=0x81000002", "/k");
  ASSERT_TRUE(handle);
  EXPECT_EQ(handle->kind, TpmKeyLocation::Kind::handle);
  EXPECT_EQ(handle->handle, 0x81000002u);
  EXPECT_EQ(handle->cert_path, "/k/handle-0x81000002.crt.pem");
}

TEST(TpmKeyNames, RefusesPathsOutsideTheKeyDirAndBadUris) {
  for (const char* bad : {"../etc/passwd", "a/b", ".hidden", "", "tpm2:object=../x", "tpm2:file=relative.tss2",
                          "tpm2:handle=0x40000001", "tpm2:handle=81000001", "tpm2:slot=1"}) {
    auto r = locate_tpm_key(bad, "/k");
    ASSERT_FALSE(r) << bad;
    EXPECT_TRUE(r.error().code == "custody.label_invalid" || r.error().code == "provider.uri_invalid") << bad;
  }
}

TEST(TpmCounter, IndexIsStablePerLabelInTheOwnerRange) {
  auto a = tpm_counter_index("audit-counter");
  auto b = tpm_counter_index("audit-counter");
  auto c = tpm_counter_index("other-counter");
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(*a, *b);
  EXPECT_NE(*a, *c);
  EXPECT_EQ(*a & 0xFFFF0000u, 0x01300000u);
  auto explicit_index = tpm_counter_index("tpm2:nv=0x01500010");
  ASSERT_TRUE(explicit_index);
  EXPECT_EQ(*explicit_index, 0x01500010u);
  EXPECT_FALSE(tpm_counter_index("tpm2:nv=0x81000001"));
}

TpmKeyBlob sample_blob(bool empty_auth) {
  TpmKeyBlob b;
  auto t = key_pair_template(KeyType::ec_p256, KeyPurpose::sign);
  b.pub = t.value();
  b.pub.publicArea.unique.ecc.x.size = 32;
  b.pub.publicArea.unique.ecc.y.size = 32;
  for (int i = 0; i < 32; ++i) b.pub.publicArea.unique.ecc.x.buffer[i] = static_cast<std::uint8_t>(i);
  b.priv.size = 100;
  for (int i = 0; i < 100; ++i) b.priv.buffer[i] = static_cast<std::uint8_t>(255 - i);
  b.parent = 0x81000001;
  b.empty_auth = empty_auth;
  return b;
}

TEST(TpmKeyFile, RoundTripsThroughPem) {
  testing::TempDir dir;
  for (bool empty : {true, false}) {
    TpmKeyBlob in = sample_blob(empty);
    auto pem = encode_tss2_pem(in);
    ASSERT_TRUE(pem) << pem.error().to_string();
    EXPECT_EQ(pem->rfind("-----BEGIN TSS2 PRIVATE KEY-----", 0), 0u);
    const std::string path = dir / "k.tss2";
    std::ofstream(path) << *pem;
    auto out = read_tss2_file(path);
    ASSERT_TRUE(out) << out.error().to_string();
    EXPECT_EQ(out->parent, 0x81000001u);
    EXPECT_EQ(out->empty_auth, empty);
    EXPECT_EQ(out->priv.size, 100);
    EXPECT_EQ(0, std::memcmp(out->priv.buffer, in.priv.buffer, 100));
    EXPECT_EQ(out->pub.publicArea.objectAttributes, in.pub.publicArea.objectAttributes);
    EXPECT_EQ(public_area_name(out->pub.publicArea), public_area_name(in.pub.publicArea));
  }
}

TEST(TpmKeyFile, DamagedFilesAreNamed) {
  testing::TempDir dir;
  auto pem = encode_tss2_pem(sample_blob(false));
  ASSERT_TRUE(pem);
  const std::string path = dir / "bad.tss2";
  std::string other = *pem;
  other.replace(other.find("TSS2 PRIVATE KEY"), 16, "PRIVATE KEY");
  other.replace(other.rfind("TSS2 PRIVATE KEY"), 16, "PRIVATE KEY");
  std::string truncated = pem->substr(0, pem->size() / 2);
  for (const std::string& text : {other, truncated, std::string("garbage")}) {
    std::ofstream(path, std::ios::trunc) << text;
    auto r = read_tss2_file(path);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, "custody.key_file_invalid") << r.error().to_string();
    EXPECT_NE(r.error().what.find(path), std::string::npos);
  }
  auto missing = read_tss2_file(dir / "none.tss2");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, "custody.key_not_found");
}

TEST(TpmKeyTemplates, SignKeysCannotLeaveTheTpmNorDecrypt) {
  for (KeyType t : {KeyType::rsa2048, KeyType::rsa3072, KeyType::ec_p256, KeyType::ec_p384}) {
    auto tmpl = key_pair_template(t, KeyPurpose::sign);
    ASSERT_TRUE(tmpl);
    const TPMA_OBJECT a = tmpl->publicArea.objectAttributes;
    EXPECT_TRUE(a & TPMA_OBJECT_FIXEDTPM);
    EXPECT_TRUE(a & TPMA_OBJECT_FIXEDPARENT);
    EXPECT_TRUE(a & TPMA_OBJECT_SENSITIVEDATAORIGIN);
    EXPECT_TRUE(a & TPMA_OBJECT_USERWITHAUTH);
    EXPECT_TRUE(a & TPMA_OBJECT_SIGN_ENCRYPT);
    EXPECT_FALSE(a & TPMA_OBJECT_DECRYPT);
    EXPECT_FALSE(a & TPMA_OBJECT_NODA);  // a wrong auth value counts towards lockout
  }
  auto dec = key_pair_template(KeyType::rsa2048, KeyPurpose::decrypt);
  ASSERT_TRUE(dec);
  EXPECT_TRUE(dec->publicArea.objectAttributes & TPMA_OBJECT_DECRYPT);
  EXPECT_FALSE(dec->publicArea.objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT);
  EXPECT_FALSE(key_pair_template(KeyType::ec_p256, KeyPurpose::decrypt));
}

TEST(TpmError, NamesWhatTheOperatorMustDo) {
  const TpmContext ctx{"TPM2_Sign", "swtpm:host=127.0.0.1,port=2321", "TPM key 'ra'"};
  // As the TPM returns them: with the session/parameter number.
  const Error auth = tpm_error(TPM2_RC_AUTH_FAIL | TPM2_RC_S | TPM2_RC_1, ctx);
  EXPECT_EQ(auth.code, "custody.tpm_auth_failed");
  EXPECT_NE(auth.remedy.find("auth_file"), std::string::npos);
  EXPECT_NE(auth.remedy.find("lockout"), std::string::npos);
  EXPECT_TRUE(tpm_is_auth_failure(TPM2_RC_BAD_AUTH | TPM2_RC_S | TPM2_RC_1));
  const Error lockout = tpm_error(TPM2_RC_LOCKOUT, ctx);
  EXPECT_EQ(lockout.code, "custody.tpm_lockout");
  EXPECT_NE(lockout.remedy.find("tpm2_dictionarylockout"), std::string::npos);
  EXPECT_EQ(tpm_error(TPM2_RC_INTEGRITY | TPM2_RC_P | TPM2_RC_1, ctx).code, "custody.tpm_key_foreign");
  EXPECT_EQ(tpm_error(TPM2_RC_OBJECT_MEMORY, ctx).code, "custody.tpm_slots_full");
  EXPECT_EQ(tpm_error(TPM2_RC_HANDLE | TPM2_RC_H | TPM2_RC_1, ctx).code, "custody.key_not_found");
  const Error tcti = tpm_error(TSS2_TCTI_RC_IO_ERROR, ctx);
  EXPECT_EQ(tcti.code, "custody.tpm_unreachable");
  EXPECT_NE(tcti.what.find("swtpm:host=127.0.0.1,port=2321"), std::string::npos);
  EXPECT_TRUE(tpm_is_tcti_failure(TSS2_TCTI_RC_IO_ERROR));
  const Error other = tpm_error(0x9999, ctx);
  EXPECT_EQ(other.code, "custody.tpm_error");
  EXPECT_EQ(other.native, 0x9999u);
  EXPECT_NE(other.what.find("TPM2_Sign"), std::string::npos);
}

}  // namespace
}  // namespace certcustody
