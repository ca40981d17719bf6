// The token goes away under a running daemon and a steady stream of
// requests, the way a network HSM or a remote p11-kit module fails (no
// CKR_TOKEN_NOT_PRESENT: SoftHSM's token directory simply disappears), and
// comes back. Nothing is restarted by hand: every request is delivered in the
// end, none fails, the daemon names the loss while it lasts and records the
// loss and the recovery in the audit log, which verifies, signed to its end.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <functional>
#include <map>
#include <sstream>
#include <thread>

#include "pipeline_fixture.h"

namespace certcustody::testing {
namespace {

class KeysAwayUnderLoad : public Pipeline {
 protected:
  void run_away(const std::function<void()>& take_away, const std::function<void()>& bring_back, int away_s);
  std::vector<nlohmann::json> audit_records() const {
    std::vector<nlohmann::json> out;
    std::istringstream in(read_file(state() + "/audit.log"));
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
    return out;
  }
  // id -> state, from `certcustody status`, which needs no token.
  std::map<std::string, std::string> states() const {
    std::map<std::string, std::string> out;
    std::istringstream in(cc({"status"}).output);
    for (std::string id, state, rest; in >> id >> state && std::getline(in, rest);)
      if (id != "daemon") out[id] = state;
    return out;
  }
};

class TokenAwayUnderLoad : public KeysAwayUnderLoad, public ::testing::WithParamInterface<int> {};

// The TPM (swtpm without a resource manager) stops answering and comes back.
class TpmAwayUnderLoad : public KeysAwayUnderLoad {
 protected:
  TpmAwayUnderLoad() { tpm_backend_ = true; }
};

// The daemon under a stream of requests; the keys taken away for `away_s`
// seconds and brought back.
void KeysAwayUnderLoad::run_away(const std::function<void()>& take_away, const std::function<void()>& bring_back,
                                 int away_s) {
  const auto every = std::chrono::milliseconds(away_s > 10 ? 500 : 200);
  ASSERT_EQ(cc({"audit", "keygen", "--pubkey-out", path("audit.pub.pem")}).exit_code, 0);
  append_config("[audit]\ncheckpoint_interval_ms = 300\n");
  Process daemon({CERTCUSTODY_BINARY, "--config", config_, "serve", "--workers", "2"}, env(), path("serve.log"));
  ASSERT_TRUE(daemon.wait_for_output("started with", 20000)) << daemon.log();

  std::atomic<bool> stop{false};
  std::atomic<int> sent{0};
  std::thread stream([&] {
    while (!stop) {
      const std::string id = "s" + std::to_string(sent.load());
      drop(id + ".json", request(id, "users", "User" + std::to_string(sent.load())));
      ++sent;
      std::this_thread::sleep_for(every);
    }
  });
  std::this_thread::sleep_for(std::chrono::seconds(2));

  take_away();
  ASSERT_TRUE(daemon.wait_for_output("are out of reach", 15000)) << daemon.log();
  auto shown = cc({"status"});
  EXPECT_NE(shown.output.find("OUT OF REACH"), std::string::npos) << shown.output;
  EXPECT_NE(shown.output.find("error custody."), std::string::npos) << shown.output;
  std::this_thread::sleep_for(std::chrono::seconds(away_s));
  bring_back();
  ASSERT_TRUE(daemon.wait_for_output("are back after", 30000)) << daemon.log();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  stop = true;
  stream.join();

  std::map<std::string, std::string> st;
  for (int i = 0; i < 600; ++i) {  // up to 2 minutes (the sanitizer build is slow)
    st = states();
    if (st.size() == static_cast<std::size_t>(sent.load()) &&
        std::all_of(st.begin(), st.end(), [](const auto& kv) { return kv.second == "delivered"; }))
      break;
    ASSERT_TRUE(daemon.running()) << daemon.log();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(st.size(), static_cast<std::size_t>(sent.load()));
  for (const auto& [id, state] : st) EXPECT_EQ(state, "delivered") << id << "\n" << cc({"status", id}).output;
  EXPECT_EQ(sim_->issued_total(), sent.load());
  EXPECT_TRUE(daemon.running()) << "no restart";
  EXPECT_NE(cc({"status"}).output.find(": reachable"), std::string::npos);

  daemon.signal(SIGTERM);
  ASSERT_EQ(daemon.wait(60000), 0) << daemon.log();
  std::map<std::string, int> received;
  int lost = 0, recovered = 0;
  for (const auto& r : audit_records()) {
    if (r["event"] == "request.received") ++received[r["request"].get<std::string>()];
    if (r["event"] == "custody.unavailable") ++lost;
    if (r["event"] == "custody.recovered") ++recovered;
  }
  EXPECT_GE(lost, 1);
  EXPECT_EQ(lost, recovered);
  EXPECT_EQ(received.size(), static_cast<std::size_t>(sent.load()));
  for (const auto& [id, n] : received) EXPECT_EQ(n, 1) << id << " recorded " << n << " times";
  auto v = run({CERTCUSTODY_BINARY, "audit", "verify", "--log", state() + "/audit.log", "--pubkey",
                path("audit.pub.pem"), "--require-signed-tail"},
               env());
  EXPECT_EQ(v.exit_code, 0) << v.output;
}

TEST_P(TokenAwayUnderLoad, EveryRequestIsDeliveredAndNoneFails) {
  const std::string tokens = token_->token_dir(), away = path("tokens.away");
  run_away([&] { std::filesystem::rename(tokens, away); }, [&] { std::filesystem::rename(away, tokens); },
           GetParam());
}

INSTANTIATE_TEST_SUITE_P(Seconds, TokenAwayUnderLoad, ::testing::Values(5, 60),
                         [](const auto& p) { return "away_" + std::to_string(p.param) + "s"; });

}  // namespace
}  // namespace certcustody::testing

namespace certcustody::testing {
namespace {

TEST_F(TpmAwayUnderLoad, EveryRequestIsDeliveredAndNoneFails) {
  run_away([&] { tpm_->stop(); }, [&] { tpm_->start(); }, 5);
}

}  // namespace
}  // namespace certcustody::testing
