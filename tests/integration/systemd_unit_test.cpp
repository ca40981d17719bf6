// The systemd unit docs/admin-guide.md documents, taken from the guide
// between its markers, checked by systemd's own analyser so the documented
// unit cannot rot: it loads without a single warning (a trailing comment
// after a value is a warning, and systemd drops the value), and its exposure
// stays at the score the guide states, with and without the TPM drop-in.
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <sstream>

#include "support/temp_dir.h"

namespace certcustody::testing {
namespace {

std::string guide() { return read_file(std::string(CERTCUSTODY_SOURCE_DIR) + "/docs/admin-guide.md"); }

// The ```ini block after `marker`; empty when the guide has none.
std::string block_after(const std::string& doc, const std::string& marker) {
  const auto at = doc.find(marker);
  if (at == std::string::npos) return "";
  const auto open = doc.find("```ini\n", at);
  if (open == std::string::npos) return "";
  const auto body = open + 7;
  const auto close = doc.find("```", body);
  return close == std::string::npos ? "" : doc.substr(body, close - body);
}

std::string on_path(const std::string& program) {
  std::istringstream path(std::getenv("PATH") != nullptr ? std::getenv("PATH") : "/usr/bin:/bin");
  for (std::string dir; std::getline(path, dir, ':');)
    if (::access((dir + "/" + program).c_str(), X_OK) == 0) return dir + "/" + program;
  return "";
}

// The unit as a file; ExecStart= names the executable this build made, for
// verify checks that it exists.
std::string unit_file(const TempDir& dir, const std::string& text) {
  std::string unit = text;
  const std::string installed = "/usr/bin/certcustody";
  for (auto at = unit.find(installed); at != std::string::npos; at = unit.find(installed, at))
    unit.replace(at, installed.size(), CERTCUSTODY_BINARY), at += std::string(CERTCUSTODY_BINARY).size();
  const std::string path = dir / "certcustody.service";
  write_file(path, unit, 0644);
  return path;
}

// "1.1" from "→ Overall exposure level for certcustody.service: 1.1 OK".
std::string exposure(const std::string& output) {
  const std::string key = "Overall exposure level for certcustody.service: ";
  const auto at = output.find(key);
  return at == std::string::npos ? "" : output.substr(at + key.size(), output.find(' ', at + key.size()) - at - key.size());
}

class SystemdUnit : public ::testing::Test {
 protected:
  void SetUp() override {
    analyze_ = on_path("systemd-analyze");
    if (analyze_.empty()) GTEST_SKIP() << "systemd-analyze is not installed (package systemd): the unit is not checked";
    doc_ = guide();
    unit_ = block_after(doc_, "<!-- systemd unit: certcustody.service -->");
    ASSERT_NE(unit_.find("ExecStart=/usr/bin/certcustody"), std::string::npos)
        << "docs/admin-guide.md has no unit between its markers";
  }
  // Loads without a word from systemd, scores at most `most` (tenths), and
  // the guide states the score it got.
  void check(const std::string& text, int most) {
    const std::string path = unit_file(dir_, text);
    auto verify = run({analyze_, "verify", path});
    EXPECT_EQ(verify.exit_code, 0) << verify.output;
    EXPECT_EQ(verify.output, "") << "systemd warns about the documented unit";
    auto security = run({analyze_, "security", "--offline=yes", "--threshold=" + std::to_string(most), path});
    EXPECT_EQ(security.exit_code, 0) << security.output;
    const std::string score = exposure(security.output);
    ASSERT_FALSE(score.empty()) << security.output;
    EXPECT_NE(doc_.find("**" + score + " ("), std::string::npos)
        << "the guide does not state the score " << score << "\n" << security.output;
  }
  std::string analyze_, doc_, unit_;
  TempDir dir_;
};

TEST_F(SystemdUnit, TheDocumentedUnitLoadsCleanlyAndScoresBelow2) { check(unit_, 11); }

TEST_F(SystemdUnit, WithTheTpmDropInItStillScoresBelow2) {
  const std::string drop_in = block_after(doc_, "<!-- systemd drop-in: tpm.conf -->");
  ASSERT_NE(drop_in.find("DeviceAllow=/dev/tpmrm0"), std::string::npos) << "no TPM drop-in between its markers";
  check(unit_ + "\n" + drop_in, 15);  // a later [Service] section adds to the unit, as a drop-in does
}

}  // namespace
}  // namespace certcustody::testing
