// The TPM 2.0 custody backend against a real software TPM (swtpm), checked
// with the peers an operator has: tpm2-tools, tpm2-openssl and the openssl
// command line. Each test starts its own swtpm (tests/support/swtpm.h).
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "custody/tpm2_custody.h"
#include "custody/tpm2_key_file.h"
#include "custody/tpm2_session_crypto.h"
#include "support/swtpm.h"

namespace certcustody::testing {
namespace {

const std::vector<std::string> kRequired = {"fixedtpm", "fixedparent", "sensitivedataorigin", "userwithauth", "sign"};

// tpm2_createprimary's -g/-G for an ECC storage key as the TCG templates
// have them: P-256 with SHA-256 and AES-128, P-384 with SHA-384 and AES-256.
std::vector<std::string> tools_srk(const std::string& curve) {
  if (curve == "ecc384") return {"-g", "sha384", "-G", "ecc384:null:aes256cfb"};
  if (curve == "ecc521") return {"-g", "sha512", "-G", "ecc521:null:aes256cfb"};
  if (curve == "sm2") return {"-g", "sha256", "-G", "ecc_sm2:null:aes128cfb"};
  return {"-g", "sha256", "-G", curve + ":null:aes128cfb"};
}

// "attributes:\n  value: a|b|c" of tpm2_readpublic, as a set.
std::set<std::string> attributes_of(const std::string& readpublic) {
  std::set<std::string> out;
  auto at = readpublic.find("attributes:");
  if (at == std::string::npos) return out;
  auto v = readpublic.find("value:", at);
  if (v == std::string::npos) return out;
  v += 6;
  auto end = readpublic.find('\n', v);
  std::string list = readpublic.substr(v, end - v);
  std::erase(list, ' ');
  std::stringstream ss(list);
  for (std::string a; std::getline(ss, a, '|');) out.insert(a);
  return out;
}

std::string join(const std::set<std::string>& s) {
  std::string out;
  for (const auto& a : s) out += (out.empty() ? "" : "|") + a;
  return out;
}

class TpmBase : public ::testing::Test {
 protected:
  void SetUp() override {
    tpm_ = std::make_unique<Swtpm>();
    config_ = tpm_->write_config_file(path("state"));
  }
  void TearDown() override { tpm_.reset(); }

  std::string path(const std::string& name) const { return tpm_->path(name); }
  // The TCTI variables and the configuration; no OPENSSL_MODULES, so that
  // -provider tpm2 finds tpm2-openssl where Debian installs it (our provider
  // is named with -provider-path, ours()).
  std::vector<std::string> env() const {
    std::vector<std::string> e = tpm_->env();
    e.push_back("CERTCUSTODY_CONFIG=" + config_);
#ifdef CERTCUSTODY_ASAN_RUNTIME
    e.push_back("LD_PRELOAD=" CERTCUSTODY_ASAN_RUNTIME);
    e.push_back("ASAN_OPTIONS=detect_leaks=0");
#endif
    return e;
  }
  RunResult cc(std::vector<std::string> args) const { return cc_with(config_, std::move(args)); }
  RunResult cc_with(const std::string& config, std::vector<std::string> args) const {
    args.insert(args.begin(), {CERTCUSTODY_BINARY, "--config", config});
    return run(args, env());
  }
  RunResult openssl(std::vector<std::string> args) const {
    args.insert(args.begin(), "openssl");
    return run(args, env());
  }
  // openssl <command> with our provider (keys named tpm2:…) before default.
  RunResult ours(std::vector<std::string> args) const {
    args.insert(args.begin() + 1, {"-provider-path", CERTCUSTODY_PROVIDER_DIR, "-provider", "certcustody",
                                   "-provider", "default"});
    return openssl(std::move(args));
  }
  RunResult tool(std::vector<std::string> argv) const { return tpm_->tool(std::move(argv)); }

  // What certcustody leaves in the TPM between commands: nothing loaded.
  void expect_nothing_loaded(const std::string& after) const {
    EXPECT_EQ(tpm_->transient_handles(), "") << "transient objects left after " << after;
    auto s = tool({"tpm2_getcap", "handles-loaded-session"});
    EXPECT_EQ(s.exit_code, 0) << s.output;
    EXPECT_EQ(s.output, "") << "sessions left after " << after;
  }
  void expect_no_auth(const RunResult& r) const {
    EXPECT_EQ(r.output.find(tpm_->auth_value()), std::string::npos) << "the auth value was printed";
  }

  void make_ca() {
    ASSERT_EQ(openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                       path("ca.key"), "-out", path("ca.pem"), "-subj", "/CN=Test RA CA", "-days", "2"})
                  .exit_code,
              0);
  }
  // keygen, CSR (checked with openssl req -verify), issued by the test CA,
  // imported: the RA certificate's path.
  std::string make_ra(const std::string& label, const std::string& key_type) {
    auto k = cc({"ra", "keygen", "--label", label, "--key-type", key_type});
    EXPECT_EQ(k.exit_code, 0) << k.output;
    auto c = cc({"ra", "csr", "--label", label, "--subject", "CN=RA " + label, "--out", path(label + ".csr")});
    EXPECT_EQ(c.exit_code, 0) << c.output;
    auto v = openssl({"req", "-in", path(label + ".csr"), "-verify", "-noout"});
    EXPECT_EQ(v.exit_code, 0) << v.output;
    EXPECT_NE(v.output.find("verify OK"), std::string::npos) << v.output;
    auto i = openssl({"x509", "-req", "-in", path(label + ".csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"),
                      "-CAcreateserial", "-copy_extensions", "copy", "-days", "2", "-out", path(label + ".pem")});
    EXPECT_EQ(i.exit_code, 0) << i.output;
    auto imp = cc({"ra", "import", "--label", label, "--cert", path(label + ".pem")});
    EXPECT_EQ(imp.exit_code, 0) << imp.output;
    for (const auto* r : {&k, &c, &imp}) expect_no_auth(*r);
    return path(label + ".pem");
  }
  // The public key of a CSR certcustody made (PEM SubjectPublicKeyInfo).
  std::string csr_public_key(const std::string& csr, const std::string& out) {
    auto r = openssl({"req", "-in", csr, "-noout", "-pubkey", "-out", out});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return read_file(out);
  }

  std::unique_ptr<Swtpm> tpm_;
  std::string config_;
};

// The fixture itself, with tpm2-tools and tpm2-openssl only (no certcustody).
class TpmFixture : public TpmBase {};

TEST_F(TpmFixture, SwtpmAnswersTpm2ToolsAndStopsWithTheFixture) {
  EXPECT_EQ(tpm_->tcti(), "swtpm:host=127.0.0.1,port=" + std::to_string(tpm_->port()));
  auto fixed = tool({"tpm2_getcap", "properties-fixed"});
  ASSERT_EQ(fixed.exit_code, 0) << fixed.output;
  EXPECT_NE(fixed.output.find("TPM2_PT_FAMILY_INDICATOR:"), std::string::npos) << fixed.output;
  EXPECT_NE(fixed.output.find("value: \"2.0\""), std::string::npos) << fixed.output;
  EXPECT_EQ(tpm_->lockout_counter(), 0);
  EXPECT_EQ(tpm_->transient_handles(), "");

  struct stat st {};
  ASSERT_EQ(::stat(tpm_->auth_file().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(read_file(tpm_->auth_file()), tpm_->auth_value() + "\n");
  EXPECT_EQ(tpm_->auth_value().size(), 32u);
  std::string other;
  const std::string b = tpm_->make_auth_file("b.auth", &other);
  EXPECT_NE(other, tpm_->auth_value());
  EXPECT_EQ(read_file(b), other + "\n");

  const std::string cfg = read_file(config_);
  EXPECT_NE(cfg.find("backend = \"tpm2\"\ntcti = \"" + tpm_->tcti() + "\""), std::string::npos) << cfg;
  EXPECT_NE(cfg.find("key_dir = \"" + tpm_->key_dir() + "\""), std::string::npos) << cfg;

  // State survives a restart on the same port; a stopped TPM answers nothing.
  ASSERT_TRUE(tpm_->create_srk_with_tools());
  EXPECT_NE(tpm_->persistent_handles().find("0x81000001"), std::string::npos);
  tpm_->stop();
  EXPECT_NE(tool({"tpm2_getcap", "handles-persistent"}).exit_code, 0);
  tpm_->start();
  EXPECT_NE(tpm_->persistent_handles().find("0x81000001"), std::string::npos);
  EXPECT_EQ(tpm_->transient_handles(), "");
}

// The peers' way with a TSS2 PEM key, as the later tests use them:
// tpm2_create + tpm2_encodeobject make it, tpm2_load -r reads it (without
// -C: tpm2-tools 5.4 takes the parent from the PEM and refuses -C with it),
// tpm2-openssl signs with it taking the auth value by -passin file:.
TEST_F(TpmFixture, Tpm2ToolsAndTpm2OpensslAgreeOnATss2PemKey) {
  ASSERT_TRUE(tpm_->create_srk_with_tools());
  // tpm2-tools' file: auth would keep the file's newline: give the value.
  auto c = tool({"tpm2_create", "-C", kSrkHandle, "-G", "ecc256", "-g", "sha256", "-a",
                 "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign", "-p", "str:" + tpm_->auth_value(),
                 "-u", path("k.pub"), "-r", path("k.priv")});
  ASSERT_EQ(c.exit_code, 0) << c.output;
  auto enc = tool({"tpm2_encodeobject", "-C", kSrkHandle, "-u", path("k.pub"), "-r", path("k.priv"), "-o",
                   path("k.tss2")});
  ASSERT_EQ(enc.exit_code, 0) << enc.output;
  auto l = tool({"tpm2_load", "-r", path("k.tss2"), "-c", path("k.ctx")});
  ASSERT_EQ(l.exit_code, 0) << l.output;
  auto pub = tool({"tpm2_readpublic", "-c", path("k.ctx"), "-f", "pem", "-o", path("k.pub.pem")});
  ASSERT_EQ(pub.exit_code, 0) << pub.output;
  auto attrs = attributes_of(pub.output);
  for (const auto& a : kRequired) EXPECT_TRUE(attrs.count(a)) << a << " in " << join(attrs);
  EXPECT_FALSE(attrs.count("decrypt")) << join(attrs);
  ASSERT_EQ(tool({"tpm2_flushcontext", "-t"}).exit_code, 0);
  EXPECT_EQ(tpm_->transient_handles(), "");

  write_file(path("msg"), "signed through tpm2-openssl\n");
  auto s = openssl({"pkeyutl", "-provider", "tpm2", "-provider", "default", "-propquery", "?provider=tpm2", "-sign",
                    "-inkey", path("k.tss2"), "-passin", "file:" + tpm_->auth_file(), "-rawin", "-digest", "sha256",
                    "-in", path("msg"), "-out", path("sig")});
  ASSERT_EQ(s.exit_code, 0) << s.output;
  auto v = openssl({"pkeyutl", "-verify", "-pubin", "-inkey", path("k.pub.pem"), "-rawin", "-digest", "sha256", "-in",
                    path("msg"), "-sigfile", path("sig")});
  EXPECT_EQ(v.exit_code, 0) << v.output;
  EXPECT_NE(v.output.find("Signature Verified Successfully"), std::string::npos) << v.output;
}

class TpmKeys : public TpmBase {};

TEST_F(TpmKeys, AttributesReadBack) {
  struct Case {
    std::string label, key_type, type_line, size_line;
  };
  for (const Case& k : {Case{"ra-rsa", "rsa2048", "value: rsa", "bits: 2048"},
                        Case{"ra-ec", "ec-p256", "value: ecc", "value: NIST p256"}}) {
    SCOPED_TRACE(k.label);
    auto gen = cc({"ra", "keygen", "--label", k.label, "--key-type", k.key_type});
    ASSERT_EQ(gen.exit_code, 0) << gen.output;
    expect_no_auth(gen);
    expect_nothing_loaded("ra keygen");
    const std::string blob = tpm_->blob(k.label);
    struct stat st {};
    ASSERT_EQ(::stat(blob.c_str(), &st), 0) << blob;
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_EQ(read_file(blob).rfind("-----BEGIN TSS2 PRIVATE KEY-----", 0), 0u) << read_file(blob);
    // A loadable key (2.23.133.10.1.3) under the SRK's persistent handle.
    auto asn = openssl({"asn1parse", "-in", blob});
    ASSERT_EQ(asn.exit_code, 0) << asn.output;
    EXPECT_NE(asn.output.find(":2.23.133.10.1.3"), std::string::npos) << asn.output;
    EXPECT_NE(asn.output.find("INTEGER           :81000001"), std::string::npos) << asn.output;
    EXPECT_NE(tpm_->persistent_handles().find("0x81000001"), std::string::npos);

    auto load = tool({"tpm2_load", "-r", blob, "-c", path("k.ctx")});
    ASSERT_EQ(load.exit_code, 0) << load.output;
    auto pub = tool({"tpm2_readpublic", "-c", path("k.ctx")});
    ASSERT_EQ(pub.exit_code, 0) << pub.output;
    auto attrs = attributes_of(pub.output);
    for (const auto& a : kRequired) EXPECT_TRUE(attrs.count(a)) << a << " missing from " << join(attrs);
    EXPECT_FALSE(attrs.count("decrypt")) << join(attrs);
    // A restricted signing key cannot sign a digest it did not hash (TLS).
    EXPECT_FALSE(attrs.count("restricted")) << join(attrs);
    EXPECT_NE(pub.output.find(k.type_line), std::string::npos) << pub.output;
    EXPECT_NE(pub.output.find(k.size_line), std::string::npos) << pub.output;
    ASSERT_EQ(tool({"tpm2_flushcontext", "-t"}).exit_code, 0);
  }
  // Both keys are listed, and a label is taken once.
  auto info = cc({"token", "info"});
  EXPECT_EQ(info.exit_code, 0) << info.output;
  EXPECT_NE(info.output.find("ra-rsa"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("ra-ec"), std::string::npos) << info.output;
  auto again = cc({"ra", "keygen", "--label", "ra-ec", "--key-type", "ec-p256"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.output.find("error custody.label_exists"), std::string::npos) << again.output;
  expect_nothing_loaded("token info and a refused keygen");
}

TEST_F(TpmKeys, ErrorsAreNamed) {
  auto missing = cc({"ra", "csr", "--label", "nope", "--subject", "CN=x"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("error custody.key_not_found"), std::string::npos) << missing.output;
  auto missing_file = cc({"ra", "csr", "--label", "tpm2:file=" + path("nope.tss2"), "--subject", "CN=x"});
  EXPECT_EQ(missing_file.exit_code, 1);
  EXPECT_NE(missing_file.output.find("error custody.key_not_found"), std::string::npos) << missing_file.output;
  auto missing_handle = cc({"ra", "csr", "--label", "tpm2:handle=0x81000009", "--subject", "CN=x"});
  EXPECT_EQ(missing_handle.exit_code, 1);
  EXPECT_NE(missing_handle.output.find("error custody.key_not_found"), std::string::npos) << missing_handle.output;

  tpm_->stop();
  auto down = cc({"ra", "keygen", "--label", "ra", "--key-type", "ec-p256"});
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_NE(down.output.find("error custody.tpm_unreachable"), std::string::npos) << down.output;
  EXPECT_NE(down.output.find(" — "), std::string::npos) << "a remedy: " << down.output;
}

// The same key through tpm2:object=<label>, tpm2:file=<path> and a plain label.
TEST_F(TpmKeys, UriFormsNameTheSameKey) {
  ASSERT_EQ(cc({"ra", "keygen", "--label", "tpm2:object=ra", "--key-type", "ec-p256"}).exit_code, 0);
  ASSERT_TRUE(std::filesystem::exists(tpm_->blob("ra")));
  std::string first;
  for (const std::string& label : {std::string("ra"), std::string("tpm2:object=ra"), "tpm2:file=" + tpm_->blob("ra")}) {
    SCOPED_TRACE(label);
    auto c = cc({"ra", "csr", "--label", label, "--subject", "CN=uri", "--out", path("u.csr")});
    ASSERT_EQ(c.exit_code, 0) << c.output;
    EXPECT_EQ(openssl({"req", "-in", path("u.csr"), "-verify", "-noout"}).exit_code, 0);
    const std::string pub = csr_public_key(path("u.csr"), path("u.pub"));
    if (first.empty()) first = pub;
    EXPECT_EQ(pub, first);
  }
  expect_nothing_loaded("ra csr");
}

// The provider's semantics hold for TPM keys: a digest signs, in every form
// OpenSSL offers; what TPM2_Sign cannot make (an input that is no digest, a
// PSS salt other than the digest length) is refused by name; `pkey -text`
// prints the public part.
TEST_F(TpmKeys, ProviderSignsDigestsAndRefusesWhatTheTpmCannotByName) {
  ASSERT_EQ(cc({"ra", "keygen", "--label", "ra", "--key-type", "rsa2048"}).exit_code, 0);
  ASSERT_EQ(ours({"pkey", "-in", "tpm2:object=ra", "-pubout", "-out", path("ra.pub")}).exit_code, 0);
  write_file(path("msg"), "signed in the TPM through the provider\n");
  ASSERT_EQ(openssl({"dgst", "-sha256", "-binary", "-out", path("dg"), path("msg")}).exit_code, 0);
  auto sign = [&](const std::vector<std::string>& opts) {
    std::vector<std::string> a = {"pkeyutl", "-sign", "-inkey", "tpm2:object=ra", "-in", path("dg"), "-out",
                                  path("sig")};
    a.insert(a.end(), opts.begin(), opts.end());
    return ours(a);
  };
  const std::vector<std::string> pss = {"-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "digest:sha256"};
  for (std::vector<std::string> opts : {std::vector<std::string>{"-pkeyopt", "digest:sha256"}, pss}) {
    if (opts.size() > 2) opts.insert(opts.end(), {"-pkeyopt", "rsa_pss_saltlen:digest"});
    auto s = sign(opts);
    ASSERT_EQ(s.exit_code, 0) << s.output;
    std::vector<std::string> verify = {"pkeyutl", "-verify", "-pubin", "-inkey", path("ra.pub"), "-in", path("dg"),
                                       "-sigfile", path("sig")};
    verify.insert(verify.end(), opts.begin(), opts.end());
    EXPECT_EQ(openssl(verify).exit_code, 0);
  }
  std::vector<std::string> max_salt = pss;
  max_salt.insert(max_salt.end(), {"-pkeyopt", "rsa_pss_saltlen:max"});
  for (const std::vector<std::string>& opts : {std::vector<std::string>{}, max_salt}) {
    auto r = sign(opts);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.output.find("error custody.mechanism_unsupported"), std::string::npos) << r.output;
  }
  auto text = ours({"pkey", "-in", "tpm2:object=ra", "-text", "-noout"});
  EXPECT_EQ(text.exit_code, 0) << text.output;
  EXPECT_NE(text.output.find("Public-Key: (2048 bit)"), std::string::npos) << text.output;
  expect_nothing_loaded("provider signatures");
}

// Mutual TLS, the client key in the TPM: through our provider in openssl
// s_client, and through the executable (ca ping), against openssl s_server
// requiring a client certificate from the test CA.
struct TpmTlsCase {
  const char* key_type;
  const char* version;
  bool ours_first;  // -provider certcustody -provider default, or the other order
  const char* name;
  const char* srk = "";  // an ECC storage key made with tpm2-tools first ("ecc256", "ecc384"); else certcustody's RSA one
};
void PrintTo(const TpmTlsCase& c, std::ostream* os) { *os << c.name; }

class TpmTls : public TpmBase, public ::testing::WithParamInterface<TpmTlsCase> {};

TEST_P(TpmTls, MutualTlsHandshakeSignedInTheTpm) {
  const TpmTlsCase& c = GetParam();
  if (*c.srk) {
    ASSERT_TRUE(tpm_->create_srk_with_tools(tools_srk(c.srk)));
  }
  make_ca();
  const std::string cert = make_ra("ra", c.key_type);
  ASSERT_EQ(openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                     path("srv.key"), "-out", path("srv.pem"), "-subj", "/CN=localhost", "-addext",
                     "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "2"})
                .exit_code,
            0);
  const int port = free_loopback_port();
  Process server({"openssl", "s_server", "-accept", "127.0.0.1:" + std::to_string(port), "-cert", path("srv.pem"),
                  "-key", path("srv.key"), "-CAfile", path("ca.pem"), "-Verify", "1", "-verify_return_error",
                  std::string("-") + c.version, "-naccept", "2", "-www"},
                 {}, path("s_server.log"));
  ASSERT_TRUE(server.wait_for_output("ACCEPT", 5000)) << server.log();

  // 1. openssl s_client with our provider, the key named by its URI, sends
  // a GET: the server's answer shows it accepted the client's signature
  // (under TLS 1.3 the client reports the session before that).
  std::vector<std::string> providers = {"-provider", "certcustody", "-provider", "default"};
  if (!c.ours_first) std::swap(providers[1], providers[3]);
  std::vector<std::string> a = {"sh", "-c", "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | exec \"$@\"", "sh",
                                "openssl", "s_client", "-provider-path", CERTCUSTODY_PROVIDER_DIR};
  a.insert(a.end(), providers.begin(), providers.end());
  a.insert(a.end(), {"-connect", "127.0.0.1:" + std::to_string(port), std::string("-") + c.version, "-key",
                     "tpm2:object=ra", "-cert", cert, "-CAfile", path("srv.pem"), "-verify_return_error", "-ign_eof"});
  auto client = run(a, env());
  EXPECT_EQ(client.exit_code, 0) << client.output;
  const std::string expected = std::string("New, ") + (c.version == std::string("tls1_3") ? "TLSv1.3" : "TLSv1.2");
  EXPECT_NE(client.output.find(expected), std::string::npos) << client.output;
  EXPECT_NE(client.output.find("HTTP/1.0 200 ok"), std::string::npos) << client.output;
  expect_no_auth(client);

  // 2. The executable: ca ping, an HTTPS GET over mutual TLS.
  write_file(config_, read_file(config_) + "\n[ra]\nkey = \"tpm2:object=ra\"\n\n[ca.test]\nurl = \"https://localhost:" +
                          std::to_string(port) + "/\"\ntrust_anchor = \"" + path("srv.pem") + "\"\n");
  auto ping = cc({"ca", "ping", "--ca", "test"});
  EXPECT_EQ(ping.exit_code, 0) << ping.output << server.log();
  EXPECT_NE(ping.output.find("HTTP 200 over mutual TLS as \"CN=RA ra\""), std::string::npos) << ping.output;

  server.wait(5000);
  const std::string log = server.log();
  auto first = log.find("depth=0 CN = RA ra");
  ASSERT_NE(first, std::string::npos) << log;
  EXPECT_NE(log.find("depth=0 CN = RA ra", first + 1), std::string::npos) << "two verified clients:\n" << log;
  expect_nothing_loaded("the handshakes");
}

INSTANTIATE_TEST_SUITE_P(Tpm, TpmTls,
                         ::testing::Values(TpmTlsCase{"rsa2048", "tls1_3", true, "rsa_tls13"},
                                           TpmTlsCase{"rsa2048", "tls1_2", true, "rsa_tls12"},
                                           TpmTlsCase{"ec-p256", "tls1_3", true, "ec_tls13"},
                                           TpmTlsCase{"ec-p256", "tls1_2", true, "ec_tls12"},
                                           TpmTlsCase{"rsa2048", "tls1_3", false, "rsa_tls13_default_first"},
                                           TpmTlsCase{"ec-p256", "tls1_2", false, "ec_tls12_default_first"},
                                           TpmTlsCase{"ec-p256", "tls1_3", true, "ec_tls13_ecc256_srk", "ecc256"},
                                           TpmTlsCase{"rsa2048", "tls1_2", true, "rsa_tls12_ecc384_srk", "ecc384"}),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

// An ECC storage key, made by the officer with tpm2-tools or by certcustody
// from [custody] srk_type: every session (ours for TPM2_Sign, tpm2-tss's for
// the rest) is salted to it by ECDH, so keys, CSRs, the KEK and the audit
// counter work as under the RSA SRK, and tpm2-openssl uses the blobs.
struct EccSrkCase {
  const char* name;
  const char* curve;     // tools_srk()
  bool by_tools;         // else certcustody makes it from srk_type
  const char* srk_type;  // also what `token info` calls it
};
void PrintTo(const EccSrkCase& c, std::ostream* os) { *os << c.name; }

class TpmEccSrk : public TpmBase, public ::testing::WithParamInterface<EccSrkCase> {};

TEST_P(TpmEccSrk, KeysCsrsKekAndCounterWork) {
  const EccSrkCase& c = GetParam();
  if (c.by_tools) {
    ASSERT_TRUE(tpm_->create_srk_with_tools(tools_srk(c.curve)));
  } else {
    config_ = tpm_->write_config_file(path("state"), "", "certcustody.toml", "",
                                      "srk_type = \"" + std::string(c.srk_type) + "\"\n");
  }
  auto info = cc({"token", "info"});
  ASSERT_EQ(info.exit_code, 0) << info.output;
  const std::string name = tpm_->name_with_tools();
  ASSERT_FALSE(name.empty());
  EXPECT_NE(info.output.find("storage key (SRK): 0x81000001, " + std::string(c.srk_type) + ", name " + name),
            std::string::npos)
      << info.output;
  if (!c.by_tools) {  // the key the documented tpm2_createprimary command makes
    std::vector<std::string> argv = {"tpm2_createprimary", "-C", "o"};
    for (const auto& a : tools_srk(c.curve)) argv.push_back(a);
    argv.insert(argv.end(), {"-a", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt",
                             "-c", path("same.ctx")});
    ASSERT_EQ(tool(argv).exit_code, 0);
    auto same = tool({"tpm2_readpublic", "-c", path("same.ctx")});
    tool({"tpm2_flushcontext", "-t"});
    EXPECT_EQ(same.output.rfind("name: " + name + "\n", 0), 0u) << same.output;
  }
  write_file(path("msg"), "signed under an ECC storage key\n");
  for (auto [label, type] : {std::pair{"ra-ec", "ec-p256"}, std::pair{"ra-rsa", "rsa2048"}}) {
    SCOPED_TRACE(label);
    auto k = cc({"ra", "keygen", "--label", label, "--key-type", type});
    ASSERT_EQ(k.exit_code, 0) << k.output;
    auto csr = cc({"ra", "csr", "--label", label, "--subject", "CN=ecc srk", "--out", path("e.csr")});
    ASSERT_EQ(csr.exit_code, 0) << csr.output;
    auto v = openssl({"req", "-in", path("e.csr"), "-verify", "-noout"});
    EXPECT_NE(v.output.find("verify OK"), std::string::npos) << v.output;
    csr_public_key(path("e.csr"), path("e.pub"));
    auto s = openssl({"pkeyutl", "-provider", "tpm2", "-provider", "default", "-propquery", "?provider=tpm2", "-sign",
                      "-inkey", tpm_->blob(label), "-passin", "file:" + tpm_->auth_file(), "-rawin", "-digest",
                      "sha256", "-in", path("msg"), "-out", path("sig")});
    ASSERT_EQ(s.exit_code, 0) << s.output;
    auto sv = openssl({"pkeyutl", "-verify", "-pubin", "-inkey", path("e.pub"), "-rawin", "-digest", "sha256", "-in",
                       path("msg"), "-sigfile", path("sig")});
    EXPECT_NE(sv.output.find("Signature Verified Successfully"), std::string::npos) << sv.output;
  }
  ASSERT_EQ(cc({"kek", "create", "--label", "kek"}).exit_code, 0);
  CustodyConfig cfg = tpm_->custody_config();
  cfg.srk_type = c.by_tools ? "" : c.srk_type;
  auto opened = Tpm2Custody::open(cfg);
  ASSERT_TRUE(opened) << opened.error().to_string();
  auto& custody = *opened.value();
  const Bytes plain = {'p', 'f', 'x'};
  auto sealed = custody.aes_gcm_encrypt("kek", plain, {});
  ASSERT_TRUE(sealed) << sealed.error().to_string();
  auto opened_again = custody.aes_gcm_decrypt("kek", *sealed, {});
  ASSERT_TRUE(opened_again) << opened_again.error().to_string();
  EXPECT_EQ(Bytes(opened_again->begin(), opened_again->end()), plain);
  auto first = custody.advance_counter("audit-counter");
  ASSERT_TRUE(first) << first.error().to_string();
  auto second = custody.advance_counter("audit-counter");
  ASSERT_TRUE(second) << second.error().to_string();
  EXPECT_GT(*second, *first);
  custody.abandon();
  expect_nothing_loaded("work under an ECC storage key");
}

INSTANTIATE_TEST_SUITE_P(Tpm, TpmEccSrk,
                         ::testing::Values(EccSrkCase{"tools_p256", "ecc256", true, "ec-p256"},
                                           EccSrkCase{"tools_p384", "ecc384", true, "ec-p384"},
                                           EccSrkCase{"tools_p521", "ecc521", true, "ec-p521"},
                                           EccSrkCase{"ours_p256", "ecc256", false, "ec-p256"},
                                           EccSrkCase{"ours_p384", "ecc384", false, "ec-p384"}),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

// A storage key sessions cannot be salted to (SM2, which OpenSSL's ECDH
// here does not offer for it) is refused when certcustody connects, by name,
// before any key is made; a storage key of another type than srk_type too.
TEST_F(TpmKeys, StorageKeysItCannotUseAreRefusedAtConnect) {
  ASSERT_TRUE(tpm_->create_srk_with_tools(tools_srk("sm2")));
  auto sm2 = cc({"ra", "keygen", "--label", "ra", "--key-type", "ec-p256"});
  EXPECT_EQ(sm2.exit_code, 1);
  EXPECT_NE(sm2.output.find("error custody.tpm_srk_unsupported"), std::string::npos) << sm2.output;
  EXPECT_NE(sm2.output.find("curve"), std::string::npos) << sm2.output;
  EXPECT_FALSE(std::filesystem::exists(tpm_->blob("ra")));
  ASSERT_EQ(tool({"tpm2_evictcontrol", "-C", "o", "-c", kSrkHandle}).exit_code, 0);

  ASSERT_TRUE(tpm_->create_srk_with_tools());  // RSA 2048
  const std::string wants_ecc =
      tpm_->write_config_file(path("state"), "", "ecc.toml", "", "srk_type = \"ec-p256\"\n");
  auto mismatch = cc_with(wants_ecc, {"ra", "keygen", "--label", "ra", "--key-type", "ec-p256"});
  EXPECT_EQ(mismatch.exit_code, 1);
  EXPECT_NE(mismatch.output.find("error custody.tpm_srk_invalid"), std::string::npos) << mismatch.output;
  EXPECT_NE(mismatch.output.find("rsa2048"), std::string::npos) << mismatch.output;
  EXPECT_EQ(cc({"ra", "keygen", "--label", "ra", "--key-type", "ec-p256"}).exit_code, 0) << "without srk_type it is used";
  expect_nothing_loaded("refused storage keys");
}

class TpmInterop : public TpmBase {};

// tpm2-openssl asks for a TSS2 key's auth value through OpenSSL's passphrase
// callback when the PEM says emptyAuth FALSE; -passin file: reads the first
// line of our auth file.
TEST_F(TpmInterop, OurBlobUsedByTpm2Openssl) {
  write_file(path("msg"), "signed by tpm2-openssl with a key certcustody made\n");
  for (auto [label, type] : {std::pair{"ra-ec", "ec-p256"}, std::pair{"ra-rsa", "rsa2048"}}) {
    SCOPED_TRACE(label);
    ASSERT_EQ(cc({"ra", "keygen", "--label", label, "--key-type", type}).exit_code, 0);
    auto csr = cc({"ra", "csr", "--label", label, "--subject", "CN=interop", "--out", path("i.csr")});
    ASSERT_EQ(csr.exit_code, 0) << csr.output;
    csr_public_key(path("i.csr"), path(std::string(label) + ".pub"));
    // Our provider exports the same public key.
    auto exported = ours({"pkey", "-in", std::string("tpm2:object=") + label, "-pubout"});
    EXPECT_EQ(exported.exit_code, 0) << exported.output;
    EXPECT_EQ(exported.output, read_file(path(std::string(label) + ".pub")));

    auto s = openssl({"pkeyutl", "-provider", "tpm2", "-provider", "default", "-propquery", "?provider=tpm2", "-sign",
                      "-inkey", tpm_->blob(label), "-passin", "file:" + tpm_->auth_file(), "-rawin", "-digest",
                      "sha256", "-in", path("msg"), "-out", path("sig")});
    ASSERT_EQ(s.exit_code, 0) << s.output;
    auto v = openssl({"pkeyutl", "-verify", "-pubin", "-inkey", path(std::string(label) + ".pub"), "-rawin",
                      "-digest", "sha256", "-in", path("msg"), "-sigfile", path("sig")});
    EXPECT_EQ(v.exit_code, 0) << v.output;
    EXPECT_NE(v.output.find("Signature Verified Successfully"), std::string::npos) << v.output;
  }
}

TEST_F(TpmInterop, Tpm2ToolsPersistentKeyUsedByUs) {
  // certcustody makes the SRK (TCG template) at 0x81000001 on first use.
  ASSERT_EQ(cc({"ra", "keygen", "--label", "first", "--key-type", "ec-p256"}).exit_code, 0);
  ASSERT_NE(tpm_->persistent_handles().find("0x81000001"), std::string::npos) << tpm_->persistent_handles();
  auto c = tool({"tpm2_create", "-C", kSrkHandle, "-G", "ecc256", "-g", "sha256", "-a",
                 "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign", "-p", "str:" + tpm_->auth_value(),
                 "-u", path("t.pub"), "-r", path("t.priv")});
  ASSERT_EQ(c.exit_code, 0) << c.output;
  auto l = tool({"tpm2_load", "-C", kSrkHandle, "-u", path("t.pub"), "-r", path("t.priv"), "-c", path("t.ctx")});
  ASSERT_EQ(l.exit_code, 0) << l.output;
  auto e = tool({"tpm2_evictcontrol", "-C", "o", "-c", path("t.ctx"), "0x81000002"});
  ASSERT_EQ(e.exit_code, 0) << e.output;
  ASSERT_EQ(tool({"tpm2_flushcontext", "-t"}).exit_code, 0);
  auto rp = tool({"tpm2_readpublic", "-c", "0x81000002", "-f", "pem", "-o", path("t.pub.pem")});
  ASSERT_EQ(rp.exit_code, 0) << rp.output;

  auto csr = cc({"ra", "csr", "--label", "tpm2:handle=0x81000002", "--subject", "CN=x", "--out", path("t.csr")});
  ASSERT_EQ(csr.exit_code, 0) << csr.output;
  auto v = openssl({"req", "-in", path("t.csr"), "-verify", "-noout", "-subject"});
  ASSERT_EQ(v.exit_code, 0) << v.output;
  EXPECT_NE(v.output.find("verify OK"), std::string::npos) << v.output;
  EXPECT_NE(v.output.find("subject=CN = x"), std::string::npos) << v.output;
  // It is that key, not a new one.
  EXPECT_EQ(csr_public_key(path("t.csr"), path("t.csr.pub")), read_file(path("t.pub.pem")));
  expect_nothing_loaded("ra csr with a persistent key");
  EXPECT_NE(tpm_->persistent_handles().find("0x81000002"), std::string::npos) << "the key is still there";
}

class TpmKek : public TpmBase {};

TEST_F(TpmKek, CreateAndABlobFromAnotherTpmIsForeign) {
  auto kek = cc({"kek", "create", "--label", "kek"});
  ASSERT_EQ(kek.exit_code, 0) << kek.output;
  expect_no_auth(kek);
  struct stat st {};
  ASSERT_EQ(::stat(tpm_->blob("kek").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto again = cc({"kek", "create", "--label", "kek"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.output.find("error custody.label_exists"), std::string::npos) << again.output;
  ASSERT_EQ(cc({"ra", "keygen", "--label", "ra", "--key-type", "ec-p256"}).exit_code, 0);
  expect_nothing_loaded("kek create and ra keygen");

  // Another TPM, the same blobs and the same auth value: the blobs are
  // bound to the first TPM's SRK.
  Swtpm other;
  write_file(other.auth_file(), read_file(tpm_->auth_file()));
  for (const char* label : {"ra", "kek"})
    std::filesystem::copy_file(tpm_->blob(label), other.blob(label));
  const std::string other_config = other.write_config_file(other.path("state"));
  std::vector<std::string> e = other.env();
  e.push_back("CERTCUSTODY_CONFIG=" + other_config);
  auto csr = run({CERTCUSTODY_BINARY, "--config", other_config, "ra", "csr", "--label", "ra", "--subject", "CN=x"}, e);
  EXPECT_EQ(csr.exit_code, 1) << csr.output;
  EXPECT_NE(csr.output.find("error custody.tpm_key_foreign"), std::string::npos) << csr.output;
  EXPECT_EQ(csr.output.find("BEGIN CERTIFICATE REQUEST"), std::string::npos) << csr.output;
  auto custody = Tpm2Custody::open(other.custody_config());
  ASSERT_TRUE(custody) << custody.error().to_string();
  const Bytes plain = {1, 2, 3, 4};
  auto sealed = custody.value()->aes_gcm_encrypt("kek", plain, {});
  ASSERT_FALSE(sealed);
  EXPECT_EQ(sealed.error().code, "custody.tpm_key_foreign") << sealed.error().to_string();
  // The first TPM still uses them.
  EXPECT_EQ(cc({"ra", "csr", "--label", "ra", "--subject", "CN=x"}).exit_code, 0);
}

TEST_F(TpmKek, AesGcmRoundTripInTheTpm) {
  ASSERT_EQ(cc({"kek", "create", "--label", "kek"}).exit_code, 0);
  auto opened = Tpm2Custody::open(tpm_->custody_config());
  ASSERT_TRUE(opened) << opened.error().to_string();
  auto& custody = *opened.value();
  const Bytes plain = {'a', ' ', 'P', 'F', 'X', ' ', 'p', 'a', 's', 's', 'w', 'o', 'r', 'd'};
  const Bytes aad = {'i', 'd', '-', '1'};
  auto ct = custody.aes_gcm_encrypt("kek", plain, aad);
  ASSERT_TRUE(ct) << ct.error().to_string();
  EXPECT_EQ(ct->ciphertext_and_tag.size(), plain.size() + 16);
  EXPECT_EQ(std::search(ct->ciphertext_and_tag.begin(), ct->ciphertext_and_tag.end(), plain.begin(), plain.end()),
            ct->ciphertext_and_tag.end());
  auto pt = custody.aes_gcm_decrypt("kek", *ct, aad);
  ASSERT_TRUE(pt) << pt.error().to_string();
  EXPECT_EQ(Bytes(pt->begin(), pt->end()), plain);
  GcmCiphertext bad = *ct;
  bad.ciphertext_and_tag.back() ^= 1;
  EXPECT_FALSE(custody.aes_gcm_decrypt("kek", bad, aad));
  const Bytes other_aad = {'i', 'd', '-', '2'};
  EXPECT_FALSE(custody.aes_gcm_decrypt("kek", *ct, other_aad));
  auto again = custody.aes_gcm_encrypt("kek", plain, aad);
  ASSERT_TRUE(again);
  EXPECT_NE(again->iv, ct->iv);
}

class TpmAuth : public TpmBase {};

TEST_F(TpmAuth, WrongAuthNamedAndLockoutRoseAtMostOnce) {
  ASSERT_EQ(cc({"ra", "keygen", "--label", "ra", "--key-type", "ec-p256"}).exit_code, 0);
  std::string wrong_value;
  const std::string wrong = tpm_->make_auth_file("b.auth", &wrong_value);
  const std::string wrong_config = tpm_->write_config_file(path("state"), wrong, "wrong.toml");
  const long before = tpm_->lockout_counter();
  ASSERT_GE(before, 0);
  auto r = cc_with(wrong_config, {"ra", "csr", "--label", "ra", "--subject", "CN=x", "--out", path("x.csr")});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("error custody.tpm_auth_failed"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find(wrong_value), std::string::npos) << "the auth value was printed";
  EXPECT_EQ(r.output.find(tpm_->auth_value()), std::string::npos);
  const long after = tpm_->lockout_counter();
  EXPECT_LE(after - before, 1) << "one command, at most one failed authorisation (never retried)";
  EXPECT_GE(after, before);
  expect_nothing_loaded("a failed authorisation");
  // The right value still works.
  auto ok = cc({"ra", "csr", "--label", "ra", "--subject", "CN=x", "--out", path("x.csr")});
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
}

// swtpm allows 3 failed authorisations (TPM2_PT_MAX_AUTH_FAIL) before lockout.
TEST_F(TpmAuth, LockoutIsNamed) {
  ASSERT_EQ(cc({"ra", "keygen", "--label", "ra", "--key-type", "ec-p256"}).exit_code, 0);
  const std::string wrong_config = tpm_->write_config_file(path("state"), tpm_->make_auth_file("b.auth"), "wrong.toml");
  auto max = tool({"tpm2_getcap", "properties-variable"});
  ASSERT_NE(max.output.find("TPM2_PT_MAX_AUTH_FAIL: 0x3"), std::string::npos) << max.output;
  for (int i = 0; i < 3 && tpm_->lockout_counter() < 3; ++i)
    cc_with(wrong_config, {"ra", "csr", "--label", "ra", "--subject", "CN=x"});
  ASSERT_EQ(tpm_->lockout_counter(), 3);
  auto r = cc({"ra", "csr", "--label", "ra", "--subject", "CN=x"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("error custody.tpm_lockout"), std::string::npos) << r.output;
}

class TpmSessions : public TpmBase {};

TEST_F(TpmSessions, ThousandSignaturesLeaveNoTransient) {
  EvpPkeyPtr pub;
  Bytes sig;
  unsigned char digest[SHA256_DIGEST_LENGTH];
  const std::string msg = "the message";
  SHA256(reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), digest);
  {
    auto opened = Tpm2Custody::open(tpm_->custody_config());
    ASSERT_TRUE(opened) << opened.error().to_string();
    auto& custody = *opened.value();
    ASSERT_TRUE(custody.generate_key_pair("ra", KeyType::ec_p256, KeyPurpose::sign));
    for (int i = 0; i < 1000; ++i) {
      auto s = custody.sign_digest("ra", SignScheme::ecdsa, HashAlg::sha256, std::span(digest, sizeof digest));
      ASSERT_TRUE(s) << i << ": " << s.error().to_string();
      if (i == 999) sig = *s;
    }
    auto p = custody.public_key("ra");
    ASSERT_TRUE(p) << p.error().to_string();
    pub = std::move(p.value());
  }
  EXPECT_EQ(tpm_->transient_handles(), "");
  auto s = tool({"tpm2_getcap", "handles-loaded-session"});
  EXPECT_EQ(s.output, "");
  // And the last signature is a good one.
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(pub.get(), nullptr));
  ASSERT_TRUE(ctx);
  ASSERT_EQ(EVP_PKEY_verify_init(ctx.get()), 1);
  EXPECT_EQ(EVP_PKEY_verify(ctx.get(), sig.data(), sig.size(), digest, sizeof digest), 1);
}


// A TPM without symmetric encryption gets an HMAC KEK; the sealed format is the
// same. swtpm has EncryptDecrypt2, so the HMAC key is made with tpm2-tools as
// such a TPM's officer would, and encoded as a TSS2 PRIVATE KEY.
TEST_F(TpmKek, HmacKekSealsInTheSameFormat) {
  ASSERT_EQ(cc({"kek", "create", "--label", "aes-kek"}).exit_code, 0);  // also creates the SRK
  const std::string auth = "str:" + tpm_->auth_value();
  auto created = tool({"tpm2_create", "-C", kSrkHandle, "-G", "hmac", "-a",
                       "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign", "-p", auth, "-u", path("hk.pub"),
                       "-r", path("hk.priv")});
  ASSERT_EQ(created.exit_code, 0) << created.output;
  auto encoded = tool({"tpm2_encodeobject", "-C", kSrkHandle, "-u", path("hk.pub"), "-r", path("hk.priv"), "-o",
                       tpm_->blob("hmac-kek")});
  ASSERT_EQ(encoded.exit_code, 0) << encoded.output;
  tool({"tpm2_flushcontext", "-t"});
  auto opened = Tpm2Custody::open(tpm_->custody_config());
  ASSERT_TRUE(opened) << opened.error().to_string();
  auto& custody = *opened.value();
  auto info = custody.find_key("hmac-kek");
  ASSERT_TRUE(info) << info.error().to_string();
  EXPECT_EQ(info->algorithm, "HMAC");
  const Bytes plain = {'s', 'e', 'c', 'r', 'e', 't'};
  auto hm = custody.aes_gcm_encrypt("hmac-kek", plain, {});
  auto aes = custody.aes_gcm_encrypt("aes-kek", plain, {});
  ASSERT_TRUE(hm) << hm.error().to_string();
  ASSERT_TRUE(aes) << aes.error().to_string();
  EXPECT_EQ(hm->iv.size(), aes->iv.size());
  EXPECT_EQ(hm->ciphertext_and_tag.size(), aes->ciphertext_and_tag.size());
  auto back = custody.aes_gcm_decrypt("hmac-kek", *hm, {});
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(Bytes(back->begin(), back->end()), plain);
  // Each KEK opens only what it sealed.
  EXPECT_FALSE(custody.aes_gcm_decrypt("aes-kek", *hm, {}));
  EXPECT_FALSE(custody.aes_gcm_decrypt("hmac-kek", *aes, {}));
}

class TpmRecovery : public TpmBase {};

// The TPM (or its resource manager) restarts: the operation that meets the
// loss fails with a named error, and a later one reconnects by itself.
TEST_F(TpmRecovery, ATpmThatComesBackIsUsedAgain) {
  auto opened = Tpm2Custody::open(tpm_->custody_config());
  ASSERT_TRUE(opened) << opened.error().to_string();
  auto& custody = *opened.value();
  ASSERT_TRUE(custody.generate_key_pair("ra", KeyType::ec_p256, KeyPurpose::sign));
  const Bytes digest(32, 7);
  ASSERT_TRUE(custody.sign_digest("ra", SignScheme::ecdsa, HashAlg::sha256, digest));
  EXPECT_EQ(custody.loaded_objects(), 1u) << "the key stays loaded between signatures";
  tpm_->stop();
  auto lost = custody.sign_digest("ra", SignScheme::ecdsa, HashAlg::sha256, digest);
  ASSERT_FALSE(lost);
  EXPECT_EQ(lost.error().code, "custody.tpm_unreachable") << lost.error().to_string();
  EXPECT_NE(lost.error().what.find(tpm_->tcti()), std::string::npos) << lost.error().to_string();
  tpm_->start();
  Result<Bytes> back = Error{};
  for (int i = 0; i < 40; ++i) {  // at most one reconnect attempt a second
    back = custody.sign_digest("ra", SignScheme::ecdsa, HashAlg::sha256, digest);
    if (back) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(back) << back.error().to_string();
  auto pub = custody.public_key("ra");
  ASSERT_TRUE(pub);
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(pub->get(), nullptr));
  ASSERT_EQ(EVP_PKEY_verify_init(ctx.get()), 1);
  EXPECT_EQ(EVP_PKEY_verify(ctx.get(), back->data(), back->size(), digest.data(), digest.size()), 1);
}

// More keys in use than the TPM has object slots: least recently used keys
// are flushed and loaded again, never more than the slots allow.
TEST_F(TpmRecovery, MoreKeysThanSlotsTakeTurns) {
  auto opened = Tpm2Custody::open(tpm_->custody_config());
  ASSERT_TRUE(opened) << opened.error().to_string();
  auto& custody = *opened.value();
  const Bytes digest(32, 1);
  for (const char* label : {"k1", "k2", "k3", "k4"})
    ASSERT_TRUE(custody.generate_key_pair(label, KeyType::ec_p256, KeyPurpose::sign));
  for (int round = 0; round < 5; ++round) {
    for (const char* label : {"k1", "k2", "k3", "k4"}) {
      auto s = custody.sign_digest(label, SignScheme::ecdsa, HashAlg::sha256, digest);
      ASSERT_TRUE(s) << label << ": " << s.error().to_string();
      EXPECT_LE(custody.loaded_objects(), 2u);
    }
  }
  std::istringstream handles(tpm_->transient_handles());
  int loaded = 0;
  for (std::string line; std::getline(handles, line);) loaded += line.empty() ? 0 : 1;
  EXPECT_EQ(loaded, 2) << tpm_->transient_handles();
}

// In one process a refused auth value is never sent again: the TPM's lockout
// counter rises once, however many operations follow, until the file changes.
TEST_F(TpmAuth, ARefusedValueIsNotSentAgainUntilTheFileChanges) {
  ASSERT_EQ(cc({"ra", "keygen", "--label", "ra", "--key-type", "ec-p256"}).exit_code, 0);
  const std::string good = read_file(tpm_->auth_file());
  write_file(tpm_->auth_file(), "not-the-value\n");
  const long before = tpm_->lockout_counter();
  auto opened = Tpm2Custody::open(tpm_->custody_config());
  ASSERT_TRUE(opened) << opened.error().to_string();
  auto& custody = *opened.value();
  const Bytes digest(32, 3);
  for (int i = 0; i < 5; ++i) {
    auto s = custody.sign_digest("ra", SignScheme::ecdsa, HashAlg::sha256, digest);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, "custody.tpm_auth_failed") << s.error().to_string();
  }
  EXPECT_EQ(tpm_->lockout_counter() - before, 1);
  // Trailing zero bytes do not make another value: the TPM drops them, so
  // this is the refused value again and is not sent.
  write_file(tpm_->auth_file(), std::string("not-the-value") + '\0' + '\0' + "\n");
  auto same = custody.sign_digest("ra", SignScheme::ecdsa, HashAlg::sha256, digest);
  ASSERT_FALSE(same);
  EXPECT_EQ(same.error().code, "custody.tpm_auth_failed") << same.error().to_string();
  EXPECT_EQ(tpm_->lockout_counter() - before, 1);
  write_file(tpm_->auth_file(), good);  // the operator fixes the file
  auto s = custody.sign_digest("ra", SignScheme::ecdsa, HashAlg::sha256, digest);
  EXPECT_TRUE(s) << s.error().to_string();
  EXPECT_EQ(tpm_->lockout_counter() - before, 1);
}

// An auth value ending in zero bytes: "trailing octets of zero are to be
// removed" (TPM 2.0 Part 1 §19.6.4.3), so 32 bytes and two zero bytes are the
// 32-byte value, which certcustody refused as too long. It is now used as
// the TPM uses it on every path: key creation, TPM2_PolicySecret at login,
// the signing session, the NV counter and the KEK through tpm2-tss (3.2
// would hash the 34 bytes instead, tpm2-software/tpm2-tss#2664). tpm2-openssl
// reads the same file; tpm2-tools is given the 32 bytes (with the zeros,
// tpm2-tss 3.2 under it hashes them).
TEST_F(TpmAuth, TrailingZeroBytesOfTheAuthValueAreDroppedAsTheTpmDoes) {
  const std::string value = tpm_->auth_value();  // 32 characters
  write_file(tpm_->auth_file(), value + std::string(2, '\0') + "\n");
  ASSERT_TRUE(tpm_->create_srk_with_tools());

  // certcustody's own keys: login (PolicySecret), CSR (our session), KEK and counter (tpm2-tss sessions).
  auto k = cc({"ra", "keygen", "--label", "ra", "--key-type", "rsa2048"});
  ASSERT_EQ(k.exit_code, 0) << k.output;
  auto csr = cc({"ra", "csr", "--label", "ra", "--subject", "CN=zeros", "--out", path("z.csr")});
  ASSERT_EQ(csr.exit_code, 0) << csr.output;
  EXPECT_NE(openssl({"req", "-in", path("z.csr"), "-verify", "-noout"}).output.find("verify OK"), std::string::npos);
  csr_public_key(path("z.csr"), path("z.pub"));
  ASSERT_EQ(cc({"kek", "create", "--label", "kek"}).exit_code, 0);
  auto opened = Tpm2Custody::open(tpm_->custody_config());
  ASSERT_TRUE(opened) << opened.error().to_string();
  auto& custody = *opened.value();
  auto sealed = custody.aes_gcm_encrypt("kek", Bytes{1, 2, 3}, {});
  ASSERT_TRUE(sealed) << sealed.error().to_string();
  ASSERT_TRUE(custody.aes_gcm_decrypt("kek", *sealed, {}));
  auto counted = custody.advance_counter("audit-counter");
  ASSERT_TRUE(counted) << counted.error().to_string();
  custody.abandon();

  // tpm2-openssl reads the file's first line up to its first zero byte.
  write_file(path("msg"), "auth value with trailing zero bytes\n");
  auto s = openssl({"pkeyutl", "-provider", "tpm2", "-provider", "default", "-propquery", "?provider=tpm2", "-sign",
                    "-inkey", tpm_->blob("ra"), "-passin", "file:" + tpm_->auth_file(), "-rawin", "-digest", "sha256",
                    "-in", path("msg"), "-out", path("sig")});
  ASSERT_EQ(s.exit_code, 0) << s.output;
  auto v = openssl({"pkeyutl", "-verify", "-pubin", "-inkey", path("z.pub"), "-rawin", "-digest", "sha256", "-in",
                    path("msg"), "-sigfile", path("sig")});
  EXPECT_NE(v.output.find("Signature Verified Successfully"), std::string::npos) << v.output;
  ASSERT_EQ(tool({"tpm2_load", "-r", tpm_->blob("ra"), "-c", path("ra.ctx")}).exit_code, 0);
  auto ts = tool({"tpm2_sign", "-c", path("ra.ctx"), "-p", "str:" + value, "-g", "sha256", "-s", "rsassa", "-f", "plain",
                  "-o", path("tsig"), path("msg")});
  tool({"tpm2_flushcontext", "-t"});
  tool({"tpm2_flushcontext", "-l"});  // tpm2_load -r leaves a session of its own
  ASSERT_EQ(ts.exit_code, 0) << ts.output;
  auto tv = openssl({"pkeyutl", "-verify", "-pubin", "-inkey", path("z.pub"), "-rawin", "-digest", "sha256", "-in",
                     path("msg"), "-sigfile", path("tsig")});
  EXPECT_NE(tv.output.find("Signature Verified Successfully"), std::string::npos) << tv.output;
  auto index = tpm_counter_index("audit-counter");
  ASSERT_TRUE(index);
  const std::string nv = tpm_handle_hex(*index);
  auto nvread = tool({"tpm2_nvread", "-C", nv, "-P", "str:" + value, "-s", "8", "-o", path("counter"), nv});
  EXPECT_EQ(nvread.exit_code, 0) << nvread.output;
  EXPECT_EQ(read_file(path("counter")).size(), 8u);

  // A key tpm2-tools made, used by certcustody with the file.
  auto c = tool({"tpm2_create", "-C", kSrkHandle, "-G", "ecc256", "-g", "sha256", "-a",
                 "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign", "-p", "str:" + value, "-u", path("t.pub"),
                 "-r", path("t.priv")});
  ASSERT_EQ(c.exit_code, 0) << c.output;
  // (tpm2-tools 5.4's encodeobject -p writes emptyAuth TRUE: without it the blob says the key has an auth value.)
  ASSERT_EQ(tool({"tpm2_encodeobject", "-C", kSrkHandle, "-u", path("t.pub"), "-r", path("t.priv"), "-o",
                  tpm_->blob("tools")})
                .exit_code,
            0);
  tool({"tpm2_flushcontext", "-l"});  // as does tpm2_encodeobject
  auto tools_csr = cc({"ra", "csr", "--label", "tools", "--subject", "CN=tools", "--out", path("t.csr")});
  ASSERT_EQ(tools_csr.exit_code, 0) << tools_csr.output;
  EXPECT_NE(openssl({"req", "-in", path("t.csr"), "-verify", "-noout"}).output.find("verify OK"), std::string::npos);
  EXPECT_EQ(tpm_->lockout_counter(), 0) << "no authorisation failed on the way";
  expect_nothing_loaded("keys with an auth value ending in zero bytes");
}

// Commands check the auth value when they start (TPM2_PolicySecret, no side
// effect): a wrong one stops them before anything is created.
TEST_F(TpmAuth, AWrongValueStopsACommandAtLogin) {
  ASSERT_EQ(cc({"ra", "keygen", "--label", "ra", "--key-type", "ec-p256"}).exit_code, 0);
  const std::string wrong_config = tpm_->write_config_file(path("state"), tpm_->make_auth_file("b.auth"), "wrong.toml");
  const long before = tpm_->lockout_counter();
  auto r = cc_with(wrong_config, {"kek", "create", "--label", "kek"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("error custody.tpm_auth_failed"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("TPM2_PolicySecret"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(tpm_->blob("kek"))) << "no key made with the wrong auth value";
  EXPECT_EQ(tpm_->lockout_counter() - before, 1);
  const std::string log = read_file(path("state") + "/audit.log");
  EXPECT_NE(log.find("\"event\":\"token.login\",\"outcome\":\"failed\",\"error\":\"custody.tpm_auth_failed\""),
            std::string::npos);
  expect_nothing_loaded("a refused login");
}


// Without a resource manager, a process killed while it held keys leaves them
// (and its session) in the TPM's few slots. Later processes flush those
// leftovers when the slots are full instead of failing with 0x902 / 0x903.
TEST_F(TpmRecovery, LeftoversOfKilledProcessesAreFlushedOnABareTpm) {
  {
    auto opened = Tpm2Custody::open(tpm_->custody_config());
    ASSERT_TRUE(opened) << opened.error().to_string();
    for (const char* label : {"k1", "k2"})
      ASSERT_TRUE(opened.value()->generate_key_pair(label, KeyType::ec_p256, KeyPurpose::sign));
  }
  const Bytes digest(32, 9);
  for (int run = 0; run < 5; ++run) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {  // signs with both keys, then dies without closing anything
      auto opened = Tpm2Custody::open(tpm_->custody_config());
      bool ok = opened.ok();
      for (const char* label : {"k1", "k2"})
        ok = ok && opened.value()->sign_digest(label, SignScheme::ecdsa, HashAlg::sha256, digest).ok();
      ::_exit(ok ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "run " << run << " could not sign";
  }
  EXPECT_NE(tpm_->transient_handles(), "") << "the last run's keys are still loaded, as after a crash";
  tool({"tpm2_flushcontext", "-t"});
  tool({"tpm2_flushcontext", "-l"});
}


// A man in the middle on the TPM's command port: relays swtpm's two ports,
// one whole command and one whole response at a time, records what it relays
// (as the client sent and received it) and lets a test alter either.
class TpmProxy {
 public:
  using Message = std::vector<std::uint8_t>;
  using CommandHook = std::function<void(Message& command)>;
  using ResponseHook = std::function<void(const Message& command, Message& response)>;

  explicit TpmProxy(int upstream_port) : upstream_(upstream_port) {
    for (int attempt = 0; attempt < 50 && port_ == 0; ++attempt) {
      const int p = 20000 + static_cast<int>(std::random_device{}() % 12000);
      int a = listen_on(p), b = a >= 0 ? listen_on(p + 1) : -1;
      if (a >= 0 && b >= 0) {
        listeners_[0] = a;
        listeners_[1] = b;
        port_ = p;
      } else {
        if (a >= 0) ::close(a);
      }
    }
    if (port_ == 0) throw std::runtime_error("no free port pair for the proxy");
    thread_ = std::thread([this] { serve(); });
  }
  ~TpmProxy() {
    stop_ = true;
    thread_.join();
    for (int fd : listeners_) ::close(fd);
  }
  std::string tcti() const { return "swtpm:host=127.0.0.1,port=" + std::to_string(port_); }
  void on_command(CommandHook f) {
    std::lock_guard lock(mu_);
    on_command_ = std::move(f);
  }
  void on_response(ResponseHook f) {
    std::lock_guard lock(mu_);
    on_response_ = std::move(f);
  }
  std::vector<std::pair<Message, Message>> exchanges() const {
    std::lock_guard lock(mu_);
    return exchanges_;
  }

  static std::uint32_t be32_at(const Message& m, std::size_t at) {
    return static_cast<std::uint32_t>(m[at]) << 24 | m[at + 1] << 16 | m[at + 2] << 8 | m[at + 3];
  }
  static std::uint32_t command_code(const Message& m) { return m.size() >= 10 ? be32_at(m, 6) : 0; }

 private:
  // Sockets are close-on-exec: a tpm2-tools child must not keep a relayed
  // connection to swtpm (which serves one client at a time) open.
  static int listen_on(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 8) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }
  static int connect_to(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }
  static bool whole(const Message& m) { return m.size() >= 10 && m.size() >= be32_at(m, 2); }
  static bool write_all(int fd, const Message& m) {
    return ::write(fd, m.data(), m.size()) == static_cast<ssize_t>(m.size());
  }
  // One client connection relayed to its upstream until either side closes.
  void relay(int client, int server, bool command_port) {
    Message command, response, sent;
    pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
    std::uint8_t buf[8192];
    while (!stop_ && ::poll(fds, 2, 50) >= 0) {
      if (fds[0].revents & (POLLIN | POLLHUP)) {
        const ssize_t n = ::read(client, buf, sizeof buf);
        if (n <= 0) break;
        if (!command_port) {
          if (!write_all(server, Message(buf, buf + n))) break;
          continue;
        }
        command.insert(command.end(), buf, buf + n);
        if (!whole(command)) continue;
        sent = command;
        {
          std::lock_guard lock(mu_);
          if (on_command_) on_command_(sent);
        }
        if (!write_all(server, sent)) break;
      }
      if (fds[1].revents & (POLLIN | POLLHUP)) {
        const ssize_t n = ::read(server, buf, sizeof buf);
        if (n <= 0) break;
        if (!command_port) {
          if (!write_all(client, Message(buf, buf + n))) break;
          continue;
        }
        response.insert(response.end(), buf, buf + n);
        if (!whole(response)) continue;
        {
          std::lock_guard lock(mu_);
          if (on_response_) on_response_(command, response);
          exchanges_.emplace_back(command, response);
        }
        if (!write_all(client, response)) break;
        response.clear();
        command.clear();
      }
    }
    ::close(client);
    ::close(server);
  }
  void serve() {
    std::vector<std::thread> relays;
    pollfd fds[2] = {{listeners_[0], POLLIN, 0}, {listeners_[1], POLLIN, 0}};
    while (!stop_) {
      if (::poll(fds, 2, 50) <= 0) continue;
      for (int i = 0; i < 2; ++i) {
        if (!(fds[i].revents & POLLIN)) continue;
        int c = ::accept4(listeners_[i], nullptr, nullptr, SOCK_CLOEXEC);
        int u = c >= 0 ? connect_to(upstream_ + i) : -1;
        if (u < 0) {
          if (c >= 0) ::close(c);
          continue;
        }
        relays.emplace_back([this, c, u, i] { relay(c, u, i == 0); });
      }
    }
    for (auto& t : relays) t.join();
  }

  int upstream_;
  int port_ = 0;
  int listeners_[2] = {-1, -1};
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  CommandHook on_command_;
  ResponseHook on_response_;
  std::vector<std::pair<Message, Message>> exchanges_;
};

// The signing session checks the TPM's response HMAC: an answer altered on
// the way is refused with a named error and never returned as a signature;
// the next operation starts a new session and signs again.
TEST_F(TpmSessions, AnAlteredSignatureResponseIsRefused) {
  TpmProxy proxy(tpm_->port());
  CustodyConfig cfg = tpm_->custody_config();
  cfg.tcti = proxy.tcti();
  auto opened = Tpm2Custody::open(cfg);
  ASSERT_TRUE(opened) << opened.error().to_string();
  auto& custody = *opened.value();
  ASSERT_TRUE(custody.generate_key_pair("ra", KeyType::ec_p256, KeyPurpose::sign));
  const Bytes digest(32, 5);
  ASSERT_TRUE(custody.sign_digest("ra", SignScheme::ecdsa, HashAlg::sha256, digest)) << "through the proxy, untouched";
  // The last byte of a successful TPM2_Sign answer: in the signature or the response HMAC.
  std::atomic<int> tampered{0};
  proxy.on_response([&](const TpmProxy::Message& command, TpmProxy::Message& response) {
    if (TpmProxy::command_code(command) == TPM2_CC_Sign && TpmProxy::be32_at(response, 6) == TPM2_RC_SUCCESS) {
      response.back() ^= 0x01;
      ++tampered;
    }
  });
  auto forged = custody.sign_digest("ra", SignScheme::ecdsa, HashAlg::sha256, digest);
  ASSERT_FALSE(forged);
  EXPECT_EQ(forged.error().code, "custody.tpm_response_forged") << forged.error().to_string();
  EXPECT_GE(tampered.load(), 1);
  proxy.on_response(nullptr);
  auto good = custody.sign_digest("ra", SignScheme::ecdsa, HashAlg::sha256, digest);
  ASSERT_TRUE(good) << good.error().to_string();
  auto pub = custody.public_key("ra");
  ASSERT_TRUE(pub);
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(pub->get(), nullptr));
  ASSERT_EQ(EVP_PKEY_verify_init(ctx.get()), 1);
  EXPECT_EQ(EVP_PKEY_verify(ctx.get(), good->data(), good->size(), digest.data(), digest.size()), 1);
}


// Our signing session's arithmetic (KDFa session key, cpHash, rpHash, the
// command and response HMACs) has no published vectors for the HMAC parts
// (tests/custody/tpm2_session_crypto_test.cpp has the KDFa/KDFe ones); it is
// checked here against tpm2-tss and swtpm on the wire. tpm2-tss runs an
// unsalted session bound to key A, whose session key is therefore
// KDFa(SHA-256, authA, "ATH", nonceTPM, nonceCaller) of values the proxy
// sees, and signs with key B (HMAC key: session key || authB). Our functions
// must give the HMAC tpm2-tss sent and the one swtpm answered.
TEST_F(TpmSessions, OurSessionArithmeticAgreesWithTpm2TssAndTheTpm) {
  {
    auto opened = Tpm2Custody::open(tpm_->custody_config());
    ASSERT_TRUE(opened) << opened.error().to_string();
    for (const char* label : {"a", "b"})
      ASSERT_TRUE(opened.value()->generate_key_pair(label, KeyType::ec_p256, KeyPurpose::sign));
  }
  auto a = read_tss2_file(tpm_->blob("a"));
  auto b = read_tss2_file(tpm_->blob("b"));
  ASSERT_TRUE(a && b);
  TPM2B_AUTH auth{};
  auth.size = static_cast<UINT16>(tpm_->auth_value().size());
  std::memcpy(auth.buffer, tpm_->auth_value().data(), auth.size);

  TpmProxy proxy(tpm_->port());
  TSS2_TCTI_CONTEXT* tcti = nullptr;
  ESYS_CONTEXT* esys = nullptr;
  ASSERT_EQ(Tss2_TctiLdr_Initialize(proxy.tcti().c_str(), &tcti), TSS2_RC_SUCCESS);
  ASSERT_EQ(Esys_Initialize(&esys, tcti, nullptr), TSS2_RC_SUCCESS);
  ESYS_TR srk = ESYS_TR_NONE, key_a = ESYS_TR_NONE, key_b = ESYS_TR_NONE, session = ESYS_TR_NONE;
  TPMT_SYM_DEF none{};
  none.algorithm = TPM2_ALG_NULL;
  TPM2B_DIGEST digest{};
  digest.size = 32;
  TPMT_SIG_SCHEME scheme{};
  scheme.scheme = TPM2_ALG_ECDSA;
  scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
  TPMT_TK_HASHCHECK validation{};
  validation.tag = TPM2_ST_HASHCHECK;
  validation.hierarchy = TPM2_RH_NULL;
  TPMT_SIGNATURE* signature = nullptr;
  TSS2_RC rc = Esys_TR_FromTPMPublic(esys, 0x81000001, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &srk);
  if (rc == TSS2_RC_SUCCESS)
    rc = Esys_Load(esys, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &a->priv, &a->pub, &key_a);
  if (rc == TSS2_RC_SUCCESS)
    rc = Esys_Load(esys, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &b->priv, &b->pub, &key_b);
  if (rc == TSS2_RC_SUCCESS) rc = Esys_TR_SetAuth(esys, key_a, &auth);
  if (rc == TSS2_RC_SUCCESS) rc = Esys_TR_SetAuth(esys, key_b, &auth);
  if (rc == TSS2_RC_SUCCESS)
    rc = Esys_StartAuthSession(esys, ESYS_TR_NONE, key_a, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, nullptr,
                               TPM2_SE_HMAC, &none, TPM2_ALG_SHA256, &session);
  if (rc == TSS2_RC_SUCCESS) rc = Esys_TRSess_SetAttributes(esys, session, TPMA_SESSION_CONTINUESESSION, 0xff);
  if (rc == TSS2_RC_SUCCESS)
    rc = Esys_Sign(esys, key_b, session, ESYS_TR_NONE, ESYS_TR_NONE, &digest, &scheme, &validation, &signature);
  Esys_Free(signature);
  for (ESYS_TR tr : {session, key_a, key_b})
    if (tr != ESYS_TR_NONE) Esys_FlushContext(esys, tr);
  Esys_Finalize(&esys);
  Tss2_TctiLdr_Finalize(&tcti);
  ASSERT_EQ(rc, TSS2_RC_SUCCESS) << Tss2_RC_Decode(rc);

  TpmProxy::Message start_cmd, start_rsp, sign_cmd, sign_rsp;
  for (const auto& [command, response] : proxy.exchanges()) {
    if (TpmProxy::command_code(command) == TPM2_CC_StartAuthSession) std::tie(start_cmd, start_rsp) = std::tie(command, response);
    if (TpmProxy::command_code(command) == TPM2_CC_Sign) std::tie(sign_cmd, sign_rsp) = std::tie(command, response);
  }
  ASSERT_FALSE(start_cmd.empty() || sign_cmd.empty());
  // StartAuthSession: header, tpmKey, bind, nonceCaller ... -> header, session handle, nonceTPM.
  TPM2B_NONCE nonce_caller{}, nonce_tpm{};
  std::size_t off = 18;
  ASSERT_EQ(Tss2_MU_TPM2B_NONCE_Unmarshal(start_cmd.data(), start_cmd.size(), &off, &nonce_caller), TSS2_RC_SUCCESS);
  off = 14;
  ASSERT_EQ(Tss2_MU_TPM2B_NONCE_Unmarshal(start_rsp.data(), start_rsp.size(), &off, &nonce_tpm), TSS2_RC_SUCCESS);
  // Sign: header, keyHandle, authorizationSize, the session's auth, parameters.
  const std::size_t auth_end = 18 + TpmProxy::be32_at(sign_cmd, 14);
  TPMS_AUTH_COMMAND sent{};
  off = 18;
  ASSERT_EQ(Tss2_MU_TPMS_AUTH_COMMAND_Unmarshal(sign_cmd.data(), auth_end, &off, &sent), TSS2_RC_SUCCESS);
  const ByteSpan parameters(sign_cmd.data() + auth_end, sign_cmd.size() - auth_end);
  // The answer: header, parameterSize, parameters, the session's auth.
  const std::size_t rp_end = 14 + TpmProxy::be32_at(sign_rsp, 10);
  TPMS_AUTH_RESPONSE answered{};
  off = rp_end;
  ASSERT_EQ(Tss2_MU_TPMS_AUTH_RESPONSE_Unmarshal(sign_rsp.data(), sign_rsp.size(), &off, &answered), TSS2_RC_SUCCESS);
  const ByteSpan response_parameters(sign_rsp.data() + 14, rp_end - 14);

  SessionDigests digests({});
  SecureBytes session_key(32);
  ASSERT_TRUE(tpm_kdfa({}, TPM2_ALG_SHA256, {auth.buffer, auth.size}, "ATH", {nonce_tpm.buffer, nonce_tpm.size},
                       {nonce_caller.buffer, nonce_caller.size}, session_key));
  Bytes hmac_key(session_key.begin(), session_key.end());
  hmac_key.insert(hmac_key.end(), auth.buffer, auth.buffer + auth.size);
  Bytes cp_hash, command_hmac, rp_hash, response_hmac;
  ASSERT_TRUE(digests.cp_hash(TPM2_CC_Sign, {public_area_name(b->pub.publicArea)}, parameters, cp_hash));
  ASSERT_TRUE(digests.session_hmac(hmac_key, cp_hash, {sent.nonce.buffer, sent.nonce.size},
                                   {nonce_tpm.buffer, nonce_tpm.size}, sent.sessionAttributes, command_hmac));
  EXPECT_EQ(command_hmac, Bytes(sent.hmac.buffer, sent.hmac.buffer + sent.hmac.size)) << "tpm2-tss's command HMAC";
  ASSERT_TRUE(digests.rp_hash(TPM2_RC_SUCCESS, TPM2_CC_Sign, response_parameters, rp_hash));
  ASSERT_TRUE(digests.session_hmac(hmac_key, rp_hash, {answered.nonce.buffer, answered.nonce.size},
                                   {sent.nonce.buffer, sent.nonce.size}, answered.sessionAttributes, response_hmac));
  EXPECT_EQ(response_hmac, Bytes(answered.hmac.buffer, answered.hmac.buffer + answered.hmac.size)) << "swtpm's response HMAC";
  expect_nothing_loaded("the tpm2-tss session");
}

class TpmSrk : public TpmBase {
 protected:
  // srk_name = "<name>" in a configuration of its own; its path.
  std::string pinned_config(const std::string& name, const std::string& file) {
    return tpm_->write_config_file(path("state"), "", file, "", "srk_name = \"" + name + "\"\n");
  }
};

// [custody] srk_name pins the storage key: the name computed from the public
// area the TPM returns must be it, or nothing is sent to that key.
TEST_F(TpmSrk, APinnedNameIsCheckedAtConnect) {
  ASSERT_TRUE(tpm_->create_srk_with_tools());
  const std::string name = tpm_->name_with_tools();
  ASSERT_EQ(name.size(), 68u) << name;
  auto unpinned = cc({"token", "info"});
  ASSERT_EQ(unpinned.exit_code, 0) << unpinned.output;
  EXPECT_NE(unpinned.output.find("NOT pinned"), std::string::npos) << unpinned.output;
  EXPECT_NE(unpinned.output.find("srk_name = \"" + name + "\""), std::string::npos) << unpinned.output;

  const std::string right = pinned_config(name, "right.toml");
  auto k = cc_with(right, {"ra", "keygen", "--label", "ra", "--key-type", "ec-p256"});
  ASSERT_EQ(k.exit_code, 0) << k.output;
  auto csr = cc_with(right, {"ra", "csr", "--label", "ra", "--subject", "CN=pinned", "--out", path("p.csr")});
  ASSERT_EQ(csr.exit_code, 0) << csr.output;
  auto info = cc_with(right, {"token", "info"});
  EXPECT_NE(info.output.find("pinned by [custody] srk_name"), std::string::npos) << info.output;

  std::string other = name;
  other.back() = other.back() == '0' ? '1' : '0';
  const std::string wrong = pinned_config(other, "wrong.toml");
  auto refused = cc_with(wrong, {"ra", "keygen", "--label", "ra2", "--key-type", "ec-p256"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.output.find("error custody.tpm_srk_name_mismatch"), std::string::npos) << refused.output;
  EXPECT_NE(refused.output.find(name), std::string::npos) << "the name found: " << refused.output;
  EXPECT_NE(refused.output.find(other), std::string::npos) << "the name pinned: " << refused.output;
  EXPECT_FALSE(std::filesystem::exists(tpm_->blob("ra2")));
  EXPECT_NE(cc_with(wrong, {"ra", "csr", "--label", "ra", "--subject", "CN=x"}).exit_code, 0);
  expect_nothing_loaded("a refused storage key");
}

// The man in the middle on swtpm's port answers TPM2_ReadPublic for the SRK
// with another storage key (asks the TPM about 0x81000002 instead): with the
// name pinned, certcustody stops before it starts a session salted to the
// substitute. An answer whose name is not the hash of its public area is
// refused even without a pin.
TEST_F(TpmSrk, ASubstitutedStorageKeyIsCaught) {
  ASSERT_TRUE(tpm_->create_srk_with_tools());
  ASSERT_TRUE(tpm_->create_srk_with_tools(tools_srk("ecc256"), "0x81000002"));  // the substitute
  const std::string name = tpm_->name_with_tools();
  TpmProxy proxy(tpm_->port());
  CustodyConfig cfg = tpm_->custody_config();
  cfg.tcti = proxy.tcti();
  cfg.srk_name = name;
  proxy.on_command([](TpmProxy::Message& command) {
    if (TpmProxy::command_code(command) == TPM2_CC_ReadPublic && TpmProxy::be32_at(command, 10) == 0x81000001)
      command[13] = 0x02;
  });
  {
    auto opened = Tpm2Custody::open(cfg);
    ASSERT_TRUE(opened) << opened.error().to_string();
    Status s = opened.value()->connect();
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, "custody.tpm_srk_name_mismatch") << s.error().to_string();
    EXPECT_NE(s.error().what.find(tpm_->name_with_tools("0x81000002")), std::string::npos) << s.error().to_string();
  }
  for (const auto& [command, response] : proxy.exchanges())
    EXPECT_NE(TpmProxy::command_code(command), TPM2_CC_StartAuthSession) << "a session was started";

  // The name in the answer altered (its last byte), the public area left.
  proxy.on_command(nullptr);
  proxy.on_response([](const TpmProxy::Message& command, TpmProxy::Message& response) {
    if (TpmProxy::command_code(command) != TPM2_CC_ReadPublic || TpmProxy::be32_at(response, 6) != TPM2_RC_SUCCESS) return;
    const std::size_t name_at = 12 + (response[10] << 8 | response[11]);  // after TPM2B_PUBLIC
    const std::size_t name_size = response[name_at] << 8 | response[name_at + 1];
    response[name_at + 1 + name_size] ^= 0x01;
  });
  cfg.srk_name.clear();
  {
    auto opened = Tpm2Custody::open(cfg);
    ASSERT_TRUE(opened);
    Status s = opened.value()->connect();
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, "custody.tpm_srk_name_mismatch") << s.error().to_string();
    EXPECT_NE(s.error().what.find("inconsistent"), std::string::npos) << s.error().to_string();
  }
  proxy.on_response(nullptr);
  cfg.srk_name = name;
  auto opened = Tpm2Custody::open(cfg);
  ASSERT_TRUE(opened);
  Status s = opened.value()->connect();
  EXPECT_TRUE(s) << s.error().to_string();
  EXPECT_TRUE(opened.value()->generate_key_pair("ra", KeyType::ec_p256, KeyPurpose::sign));
  EXPECT_TRUE(opened.value()->sign_digest("ra", SignScheme::ecdsa, HashAlg::sha256, Bytes(32, 1)));
}

// hsm-config/provision-tpm.sh pins the storage key it makes: the name
// tpm2-tools reads is written as srk_name (with the srk_type asked for), a
// second run keeps the configuration as it is, and certcustody checks it.
TEST_F(TpmSrk, ProvisioningPinsTheStorageKey) {
  const std::string dir = path("provisioned");
  const std::vector<std::string> provision = {"bash", std::string(CERTCUSTODY_SOURCE_DIR) + "/hsm-config/provision-tpm.sh",
                                              "--dir", dir, "--tcti", tpm_->tcti(), "--srk-type", "ec-p256",
                                              "--certcustody", CERTCUSTODY_BINARY};
  auto first = run(provision, env());
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const std::string name = tpm_->name_with_tools();
  ASSERT_EQ(name.rfind("000b", 0), 0u) << name;
  const std::string cfg = read_file(dir + "/certcustody.toml");
  EXPECT_NE(cfg.find("srk_name  = \"" + name + "\""), std::string::npos) << cfg;
  EXPECT_NE(cfg.find("srk_type  = \"ec-p256\""), std::string::npos) << cfg;
  auto again = run(provision, env());
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(read_file(dir + "/certcustody.toml"), cfg);
  auto info = cc_with(dir + "/certcustody.toml", {"token", "info"});
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_NE(info.output.find("storage key (SRK): 0x81000001, ec-p256, name " + name), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("pinned by [custody] srk_name"), std::string::npos) << info.output;
}

// `ra keygen --label tpm2:handle=…` keeps the key at that persistent handle
// (owner authorisation, empty here) instead of writing a blob.
TEST_F(TpmKeys, KeyMadeAtAPersistentHandle) {
  auto k = cc({"ra", "keygen", "--label", "tpm2:handle=0x81000010", "--key-type", "rsa2048"});
  ASSERT_EQ(k.exit_code, 0) << k.output;
  auto pub = tool({"tpm2_readpublic", "-c", "0x81000010"});
  ASSERT_EQ(pub.exit_code, 0) << pub.output;
  const auto attrs = attributes_of(pub.output);
  for (const auto& a : kRequired) EXPECT_TRUE(attrs.count(a)) << a << " missing: " << join(attrs);
  EXPECT_FALSE(attrs.count("decrypt")) << join(attrs);
  std::error_code ec;
  EXPECT_TRUE(std::filesystem::is_empty(tpm_->key_dir(), ec) || !std::filesystem::exists(tpm_->key_dir()))
      << "no blob for a persistent key";
  auto again = cc({"ra", "keygen", "--label", "tpm2:handle=0x81000010", "--key-type", "ec-p256"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.output.find("error custody.label_exists"), std::string::npos) << again.output;
  auto csr = cc({"ra", "csr", "--label", "tpm2:handle=0x81000010", "--subject", "CN=persistent", "--out", path("p.csr")});
  ASSERT_EQ(csr.exit_code, 0) << csr.output;
  auto v = openssl({"req", "-in", path("p.csr"), "-verify", "-noout"});
  EXPECT_NE(v.output.find("verify OK"), std::string::npos) << v.output;
  expect_nothing_loaded("a key made at a persistent handle");
}

}  // namespace
}  // namespace certcustody::testing
