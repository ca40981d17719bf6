// Retries, backoff and the circuit breaker, around a scripted CaClient.
#include <gtest/gtest.h>

#include <deque>

#include "ca/resilience.h"

namespace certcustody::ca {
namespace {

using namespace std::chrono_literals;

// Answers each call with the next scripted error, then with success.
class ScriptedClient final : public CaClient {
 public:
  ScriptedClient(std::deque<std::string> errors, bool idempotent) : errors_(std::move(errors)), idem_(idempotent) {}
  std::string_view dialect() const override { return "scripted"; }
  bool submit_is_idempotent() const override { return idem_; }
  Result<policy::TemplatePolicy> fetch_policy(const std::string&) override {
    ++calls;
    CC_TRY(next());
    return policy::TemplatePolicy{};
  }
  Result<Enrollment> submit(const SubmitRequest&) override {
    ++calls;
    CC_TRY(next());
    Enrollment e;
    e.status = Enrollment::Status::issued;
    return e;
  }
  Result<Enrollment> poll(const PendingTicket& t) override { return submit(SubmitRequest{t.request_id, {}, {}, {}}); }
  Status revoke(const RevokeRequest&) override {
    ++calls;
    return next();
  }
  int calls = 0;

 private:
  Status next() {
    if (errors_.empty()) return {};
    std::string code = errors_.front();
    errors_.pop_front();
    return Error{code, "scripted " + code, "remedy", 0};
  }
  std::deque<std::string> errors_;
  bool idem_;
};

struct Harness {
  Harness(std::deque<std::string> errors, bool idempotent, unsigned retries = 3, unsigned breaker = 100) {
    auto inner = std::make_unique<ScriptedClient>(std::move(errors), idempotent);
    scripted = inner.get();
    client = std::make_unique<ResilientCaClient>("test-ca", std::move(inner), RetryPolicy{retries, 100ms, 1000ms},
                                                 BreakerPolicy{breaker, 60s},
                                                 [this](std::chrono::milliseconds d) { sleeps.push_back(d); });
  }
  ScriptedClient* scripted;
  std::unique_ptr<ResilientCaClient> client;
  std::vector<std::chrono::milliseconds> sleeps;
};

TEST(Resilience, TransientFailuresAreRetriedWithGrowingBackoff) {
  Harness h({"net.ca_unreachable", "ca.service_unavailable", "net.ca_connect_timeout"}, false);
  auto r = h.client->submit(SubmitRequest{});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(h.scripted->calls, 4);
  ASSERT_EQ(h.sleeps.size(), 3u);
  // equal jitter: attempt n waits in [d/2, d] with d = 100 ms · 2^n
  for (unsigned i = 0; i < 3; ++i) {
    const auto d = 100ms * (1 << i);
    EXPECT_GE(h.sleeps[i], d / 2) << i;
    EXPECT_LE(h.sleeps[i], d) << i;
  }
}

TEST(Resilience, DefinitiveRejectionIsNeverRetried) {
  for (const char* code : {"ca.rejected", "ca.denied_by_policy", "ca.template_not_supported", "ca.parameter_incorrect",
                           "ca.template_not_found", "ca.template_missing", "ca.issued_key_mismatch",
                           "ca.policy_no_ca", "net.ca_untrusted"}) {
    Harness h({code}, true);
    auto r = h.client->submit(SubmitRequest{});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, code);
    EXPECT_EQ(h.scripted->calls, 1) << code;
    EXPECT_TRUE(h.sleeps.empty());
  }
}

TEST(Resilience, GivesUpAfterTheConfiguredRetries) {
  Harness h({"ca.server_error", "ca.server_error", "ca.server_error", "ca.server_error", "ca.server_error"}, true, 2);
  auto r = h.client->poll(PendingTicket{"1", {}, {}, {}, {}, {}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "ca.server_error");
  EXPECT_NE(r.error().what.find("3 attempts"), std::string::npos);
  EXPECT_EQ(h.scripted->calls, 3);
}

TEST(Resilience, NonIdempotentSubmissionIsNotResentAfterItMayHaveArrived) {
  for (const char* code : {"net.ca_timeout", "ca.server_error", "ca.internal_error", "net.connection_lost"}) {
    Harness h({code}, false);
    auto r = h.client->submit(SubmitRequest{"t", {}, "req-1", {}});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, "ca.outcome_unknown") << code;
    EXPECT_NE(r.error().what.find(code), std::string::npos);
    EXPECT_EQ(h.scripted->calls, 1);
  }
}

// Issue 16 item 5: an answer that came back but cannot be read is as good as
// lost — for a CA without idempotency the outcome is unknown and the request
// is not re-sent; where re-sending is safe it is re-sent.
TEST(Resilience, UnreadableAnswerIsAnUnknownOutcomeNotARejection) {
  for (const char* code :
       {"ca.response_unreadable", "ca.xml_malformed", "ca.xml_hostile", "ca.xml_too_large", "net.response_too_large"}) {
    const Error e{code, "x", "y", 0};
    EXPECT_TRUE(answer_unreadable(e)) << code;
    EXPECT_TRUE(may_have_reached_ca(e)) << code;
    EXPECT_TRUE(leaves_outcome_unknown(e)) << code;
    Harness once({code}, false);
    auto r = once.client->submit(SubmitRequest{"t", {}, "req-1", {}});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, "ca.outcome_unknown") << code;
    EXPECT_NE(r.error().what.find(code), std::string::npos);
    EXPECT_NE(r.error().remedy.find("y"), std::string::npos);  // the cause's own remedy kept
    EXPECT_EQ(once.scripted->calls, 1) << code;
    Harness again({code}, true);
    EXPECT_TRUE(again.client->submit(SubmitRequest{"t", {}, "req-1", {}})) << code;
    EXPECT_EQ(again.scripted->calls, 2) << code;
  }
  // CMP: an answer whose protection does not verify, a certConf not delivered.
  for (const char* code : {"ca.response_untrusted", "ca.transaction_failed"}) {
    Harness h({code}, false);
    auto r = h.client->submit(SubmitRequest{"t", {}, "req-1", {}});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, "ca.outcome_unknown") << code;
    EXPECT_EQ(h.scripted->calls, 1);
  }
  for (const char* code : {"ca.rejected", "ca.issued_key_mismatch", "net.ca_unreachable", "ca.circuit_open"})
    EXPECT_FALSE(leaves_outcome_unknown(Error{code, "", "", 0})) << code;
}

TEST(Resilience, IdempotentSubmissionIsResentAfterATimeout) {
  Harness h({"net.ca_timeout", "ca.server_error"}, true);
  auto r = h.client->submit(SubmitRequest{"t", {}, "req-1", {}});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(h.scripted->calls, 3);
}

TEST(Resilience, ReadsAreRetriedAfterATimeout) {
  Harness h({"net.ca_timeout"}, false);
  EXPECT_TRUE(h.client->fetch_policy("x"));
  EXPECT_EQ(h.scripted->calls, 2);
}

TEST(Resilience, BackoffIsCappedAtTheMaximum) {
  Harness h({}, true);
  for (unsigned a = 0; a < 40; ++a) EXPECT_LE(h.client->backoff(a), 1000ms);
  EXPECT_GE(h.client->backoff(39), 500ms);
}

TEST(CircuitBreaker, OpensAfterConsecutiveFailuresAndLetsOneTrialThrough) {
  auto now = std::chrono::steady_clock::time_point{};
  CircuitBreaker b("ca1", BreakerPolicy{3, 10s}, [&] { return now; });
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(b.admit());
    b.record(true);
  }
  EXPECT_EQ(b.state(), CircuitBreaker::State::open);
  auto refused = b.admit();
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, "ca.circuit_open");
  EXPECT_NE(refused.error().what.find("10000 ms"), std::string::npos);
  now += 10s;
  EXPECT_TRUE(b.admit());  // the trial
  EXPECT_EQ(b.state(), CircuitBreaker::State::half_open);
  EXPECT_FALSE(b.admit());  // only one
  b.record(true);           // trial failed: open again
  EXPECT_EQ(b.state(), CircuitBreaker::State::open);
  now += 10s;
  ASSERT_TRUE(b.admit());
  b.record(false);  // trial answered
  EXPECT_EQ(b.state(), CircuitBreaker::State::closed);
  EXPECT_TRUE(b.admit());
}

TEST(CircuitBreaker, DefinitiveAnswersKeepItClosed) {
  CircuitBreaker b("ca1", BreakerPolicy{2, 10s});
  b.record(true);
  b.record(false);  // a rejection is an answer: the CA is alive
  b.record(true);
  EXPECT_EQ(b.state(), CircuitBreaker::State::closed);
}

TEST(Resilience, OpenCircuitStopsCallsToADeadCa) {
  std::deque<std::string> dead(50, "net.ca_unreachable");
  Harness h(dead, false, 0, 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(h.client->submit(SubmitRequest{}).error().code, "net.ca_unreachable");
  for (int i = 0; i < 10; ++i) EXPECT_EQ(h.client->submit(SubmitRequest{}).error().code, "ca.circuit_open");
  EXPECT_EQ(h.scripted->calls, 3);
}

}  // namespace
}  // namespace certcustody::ca
