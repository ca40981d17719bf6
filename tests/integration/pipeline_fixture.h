// The issuance pipeline as an operator runs it: the certcustody executable
// (submit, serve, status, redeliver, revoke) on a SoftHSM token (or a swtpm),
// the CA simulator as the CA, and the openssl CLI alone opening the output.
// Shared by the pipeline suites.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ra_fixture.h"
#include "support/ca_simulator.h"
#include "support/temp_dir.h"

namespace certcustody::testing {

constexpr const char* kDigicertProfile = "2.16.840.1.113733.1.16.1.2.3.1.1.61904612";
constexpr const char* kMsTemplate = "CertcustodyUser";

class Pipeline : public RaFixture {
 protected:
  void SetUp() override {
    RaFixture::SetUp();
    make_ra("ra", "ec-p256");
    auto kek = cc({"kek", "create", "--label", "pfx-kek"});
    ASSERT_EQ(kek.exit_code, 0) << kek.output;
    // The device-management service's encryption certificate: the recipient.
    ASSERT_EQ(openssl({"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", path("mdm.key"), "-out",
                       path("mdm.pem"), "-subj", "/CN=MDM service", "-days", "2", "-addext",
                       "keyUsage=keyEncipherment"})
                  .exit_code,
              0);
    auto fp = openssl({"x509", "-in", path("mdm.pem"), "-noout", "-fingerprint", "-sha256"});
    std::string hex = fp.output.substr(fp.output.find('=') + 1);
    std::erase(hex, ':');
    std::erase(hex, '\n');
    recipient_ = "sha256:" + hex;
    sim_ = std::make_unique<CaSimulator>(sim_options());
    sim_->add_template(kDigicertProfile, SimTemplate{.supported = {"common_name", "mail"}, .min_key_bits = 256});
    sim_->add_template(kMsTemplate, SimTemplate{.min_key_bits = 256});
    append_config(base_config());
  }
  void TearDown() override {
    sim_.reset();
    RaFixture::TearDown();
  }
  virtual CaSimulator::Options sim_options() const { return {path("sim"), path("ca.pem")}; }

  std::string base_config() const {
    return std::string("[ra]\nkey = \"") + (tpm_ ? "tpm2:object=ra" : "pkcs11:token=certcustody-test;object=ra") +
           "\"\n\n"
           "[ca.digicert]\ntype = \"digicert\"\nfqdn = \"" + sim_->digicert_fqdn() +
           "\"\nca_name = \"Symantec\"\ntrust_anchor = \"" + sim_->trust_anchor() +
           "\"\nretries = 1\nretry_base_ms = 20\n\n"
           "[ca.msca]\ntype = \"mscep\"\nurl = \"" + sim_->ces_url() + "\"\npolicy_url = \"" + sim_->cep_url() +
           "\"\ntrust_anchor = \"" + sim_->trust_anchor() + "\"\nretries = 1\nretry_base_ms = 20\n\n"
           "[pipeline]\nkek = \"pfx-kek\"\nrecipients = [\"" + path("mdm.pem") +
           "\"]\nscan_interval_ms = 50\nretry_interval_ms = 200\npoll_interval_ms = 200\n\n"
           "[profile.users]\nca = \"digicert\"\ntemplate = \"" + kDigicertProfile +
           "\"\nsubject = \"cn\"\nsan = [\"email\"]\nkey_type = \"ec-p256\"\nekus = [\"clientAuth\"]\n\n"
           "[profile.legacy]\nca = \"digicert\"\ntemplate = \"" + kDigicertProfile +
           "\"\nsubject = \"cn\"\nsan = [\"email\"]\nkey_type = \"rsa2048\"\npfx_format = \"3des-sha1\"\n\n"
           "[profile.ms]\nca = \"msca\"\ntemplate = \"" + std::string(kMsTemplate) +
           "\"\nsubject = \"cn\"\nsan = [\"email\", \"upn\"]\nkey_type = \"ec-p256\"\n";
  }
  void append_config(const std::string& text) const {
    std::ofstream(config_, std::ios::app) << "\n" << text;
  }

  std::string state() const { return path("state"); }
  std::string outgoing() const { return state() + "/requests/outgoing"; }
  std::string incoming() const { return state() + "/requests/incoming"; }

  std::string request(const std::string& id, const std::string& profile, const std::string& cn = "IWUser0") const {
    nlohmann::json j = {{"version", 2},
                        {"id", id},
                        {"profile", profile},
                        {"recipient", recipient_},
                        {"attributes",
                         {{"common_name", cn},
                          {"email", cn + "@contoso.example"},
                          {"upn", cn + "@contoso.example"}}}};
    return j.dump();
  }
  void submit(const std::string& id, const std::string& profile, const std::string& cn = "IWUser0") {
    write_file(path(id + ".req.json"), request(id, profile, cn));
    auto r = cc({"submit", path(id + ".req.json")});
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  // A file dropped straight into the spool, as the device-management service does.
  void drop(const std::string& name, const std::string& text) const {
    ASSERT_EQ(run({"mkdir", "-p", incoming()}, {}).exit_code, 0);
    write_file(path("drop.tmp"), text);
    ASSERT_EQ(std::rename(path("drop.tmp").c_str(), (incoming() + "/" + name).c_str()), 0);
  }
  RunResult serve(std::vector<std::string> extra_env = {}) const {
    std::vector<std::string> e = env();
    e.insert(e.end(), extra_env.begin(), extra_env.end());
    return run({CERTCUSTODY_BINARY, "--config", config_, "serve", "--until-idle"}, e);
  }
  nlohmann::json status(const std::string& id) const {
    auto r = cc({"status", id, "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')), nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.output;
    return j;
  }

  struct Opened {
    std::string info, cert_text, key_text;
  };
  // What the recipient does with the output: openssl cms -decrypt, openssl pkcs12.
  Opened open_output(const std::string& id) const {
    Opened o;
    for (const char* part : {"password", "pfx"}) {
      auto d = openssl({"cms", "-decrypt", "-inform", "DER", "-in", outgoing() + "/" + id + "." + part + ".p7m",
                        "-recip", path("mdm.pem"), "-inkey", path("mdm.key"), "-out", path(id + "." + part)});
      EXPECT_EQ(d.exit_code, 0) << d.output;
    }
    const std::string pass = "file:" + path(id + ".password");
    o.info = openssl({"pkcs12", "-in", path(id + ".pfx"), "-passin", pass, "-info", "-noout"}).output;
    auto certs = openssl({"pkcs12", "-in", path(id + ".pfx"), "-passin", pass, "-nokeys", "-clcerts", "-out",
                          path(id + ".cert.pem")});
    EXPECT_EQ(certs.exit_code, 0) << certs.output;
    o.cert_text = openssl({"x509", "-in", path(id + ".cert.pem"), "-noout", "-subject", "-serial", "-ext",
                           "subjectAltName"})
                      .output;
    o.key_text = openssl({"pkcs12", "-in", path(id + ".pfx"), "-passin", pass, "-nocerts", "-nodes"}).output;
    return o;
  }

  std::string recipient_;
  std::unique_ptr<CaSimulator> sim_;
};

}  // namespace certcustody::testing
