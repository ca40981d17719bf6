// Retries and a circuit breaker around any CaClient.
//
// Only transient failures are retried (connection refused, timeouts, 5xx,
// the CA's own "internal error", an answer lost or unreadable), with
// exponential backoff and jitter; a definitive answer (rejected, denied,
// template unknown, a certificate for another key) never is. A submission is
// re-sent only when the dialect makes it idempotent (DigiCert's
// clientTransactionID) or when the failure proves the CA never saw it
// (connection refused, connect timeout, 503): otherwise the result is
// ca.outcome_unknown and the caller decides — never a second certificate.
// The breaker opens after N consecutive transient failures so that a dead CA
// does not tie up every worker, and lets one trial through after a pause.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>

#include "ca/ca_client.h"

namespace certcustody::ca {

// What each error code says about a request, by code alone (docs/ca-protocols.md,
// "What a failure says about the request"):
// Trying again may succeed (the CA has not stated a decision).
bool is_transient(const Error& e);
// False only when the failure shows the request never reached the CA.
bool may_have_reached_ca(const Error& e);
// An answer came back after the request was sent but cannot be read (bad
// XML, a SOAP body without the expected elements, a PKCS#7 or CMP message
// that does not decode, an HTML page, a cut-off body): as good as lost.
bool answer_unreadable(const Error& e);
// The request may have reached the CA and what the CA decided is not known:
// a lost answer (timeout, dropped connection, 5xx), an unreadable or
// untrusted one. For a CA that cannot tell a re-sent request from a new one
// this is ca.outcome_unknown; it is never a definitive rejection.
bool leaves_outcome_unknown(const Error& e);

struct RetryPolicy {
  unsigned retries = 3;  // attempts after the first
  std::chrono::milliseconds base{500};
  std::chrono::milliseconds max{30000};
};

struct BreakerPolicy {
  unsigned failures = 5;  // 0: never opens
  std::chrono::milliseconds open_for{30000};
};

class CircuitBreaker {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  enum class State { closed, open, half_open };

  CircuitBreaker(std::string ca_name, BreakerPolicy policy, Clock clock = std::chrono::steady_clock::now);
  // ca.circuit_open while open; after open_for, one caller passes (half-open).
  Status admit();
  void record(bool transient_failure);
  State state() const;

 private:
  std::string ca_;
  BreakerPolicy policy_;
  Clock clock_;
  mutable std::mutex mu_;
  State state_ = State::closed;
  unsigned consecutive_ = 0;
  std::chrono::steady_clock::time_point opened_at_{};
};

class ResilientCaClient final : public CaClient {
 public:
  using Sleeper = std::function<void(std::chrono::milliseconds)>;
  ResilientCaClient(std::string ca_name, std::unique_ptr<CaClient> inner, RetryPolicy retry, BreakerPolicy breaker,
                    Sleeper sleep = nullptr);

  std::string_view dialect() const override { return inner_->dialect(); }
  bool submit_is_idempotent() const override { return inner_->submit_is_idempotent(); }
  Result<policy::TemplatePolicy> fetch_policy(const std::string& template_id) override;
  Result<Enrollment> submit(const SubmitRequest& request) override;
  Result<Enrollment> poll(const PendingTicket& ticket) override;
  Status revoke(const RevokeRequest& request) override;

  const CircuitBreaker& breaker() const { return breaker_; }
  // The backoff before retry number `attempt` (0-based): base·2^attempt
  // capped at max, half of it fixed and half random (equal jitter).
  std::chrono::milliseconds backoff(unsigned attempt);

 private:
  template <class F>
  auto call(const std::string& operation, bool idempotent, F&& f) -> decltype(f());

  std::string ca_;
  std::unique_ptr<CaClient> inner_;
  RetryPolicy retry_;
  CircuitBreaker breaker_;
  Sleeper sleep_;
  std::mutex rng_mu_;
  std::mt19937_64 rng_;
};

}  // namespace certcustody::ca
