#include "ca/resilience.h"

#include <algorithm>
#include <array>
#include <thread>

namespace certcustody::ca {
namespace {

bool one_of(const std::string& code, std::initializer_list<std::string_view> codes) {
  return std::find(codes.begin(), codes.end(), code) != codes.end();
}

}  // namespace

bool answer_unreadable(const Error& e) {
  return one_of(e.code, {"ca.response_unreadable", "ca.xml_malformed", "ca.xml_too_large", "ca.xml_hostile",
                         "net.response_too_large"});
}

bool is_transient(const Error& e) {
  return answer_unreadable(e) ||
         one_of(e.code, {"net.ca_unreachable", "net.ca_connect_timeout", "net.ca_timeout", "net.connection_lost",
                         "net.transfer_failed", "ca.service_unavailable", "ca.server_error", "ca.internal_error",
                         "ca.rpc_unavailable"});
}

bool may_have_reached_ca(const Error& e) {
  return !one_of(e.code, {"net.ca_unreachable", "net.ca_connect_timeout", "net.ca_host_unknown",
                          "ca.service_unavailable", "ca.rpc_unavailable", "ca.circuit_open", "ca.request_failed"});
}

bool leaves_outcome_unknown(const Error& e) {
  // CMP: an answer whose protection does not verify, or a certConf/pollReq
  // that could not be delivered after the CA answered.
  const bool cmp_doubt = one_of(e.code, {"ca.response_untrusted", "ca.transaction_failed"});
  return may_have_reached_ca(e) && (is_transient(e) || cmp_doubt);
}

CircuitBreaker::CircuitBreaker(std::string ca_name, BreakerPolicy policy, Clock clock)
    : ca_(std::move(ca_name)), policy_(policy), clock_(std::move(clock)) {}

Status CircuitBreaker::admit() {
  std::lock_guard l(mu_);
  if (state_ == State::closed) return {};
  const auto now = clock_();
  if (state_ == State::open && now - opened_at_ >= policy_.open_for) {
    state_ = State::half_open;  // this caller is the trial
    return {};
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(policy_.open_for - (now - opened_at_));
  return Error{"ca.circuit_open",
               "CA " + ca_ + " failed " + std::to_string(consecutive_) + " times in a row; not contacted for " +
                   std::to_string(std::max<long long>(0, left.count())) + " ms more",
               "check the CA's availability (`certcustody ca ping --ca " + ca_ + "`); requests are kept and resume "
               "when it answers"};
}

void CircuitBreaker::record(bool transient_failure) {
  std::lock_guard l(mu_);
  if (!transient_failure) {
    state_ = State::closed;
    consecutive_ = 0;
    return;
  }
  ++consecutive_;
  if (state_ == State::half_open || (policy_.failures > 0 && consecutive_ >= policy_.failures)) {
    state_ = State::open;
    opened_at_ = clock_();
  }
}

CircuitBreaker::State CircuitBreaker::state() const {
  std::lock_guard l(mu_);
  return state_;
}

ResilientCaClient::ResilientCaClient(std::string ca_name, std::unique_ptr<CaClient> inner, RetryPolicy retry,
                                     BreakerPolicy breaker, Sleeper sleep)
    : ca_(std::move(ca_name)),
      inner_(std::move(inner)),
      retry_(retry),
      breaker_(ca_, breaker),
      sleep_(sleep ? std::move(sleep) : Sleeper([](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); })),
      rng_(std::random_device{}()) {}

std::chrono::milliseconds ResilientCaClient::backoff(unsigned attempt) {
  const long long cap = retry_.max.count();
  long long d = retry_.base.count();
  for (unsigned i = 0; i < attempt && d < cap; ++i) d *= 2;
  d = std::min(d, cap);
  std::lock_guard l(rng_mu_);
  std::uniform_int_distribution<long long> jitter(0, d / 2);
  return std::chrono::milliseconds(d - d / 2 + jitter(rng_));
}

template <class F>
auto ResilientCaClient::call(const std::string& operation, bool idempotent, F&& f) -> decltype(f()) {
  for (unsigned attempt = 0;; ++attempt) {
    CC_TRY(breaker_.admit());
    auto r = f();
    const bool transient = !r && is_transient(r.error());
    breaker_.record(transient);
    if (r) return r;
    if (!idempotent && leaves_outcome_unknown(r.error()))
      return Error{"ca.outcome_unknown",
                   operation + " at CA " + ca_ + " may have reached the CA before it failed (" + r.error().code +
                       ": " + r.error().what + "); not re-sent, so that no second certificate is issued",
                   "look the request up on the CA; the request is kept until an operator resolves it. The "
                   "failure's own remedy: " + r.error().remedy,
                   r.error().native};
    if (!transient) return r;
    if (attempt >= retry_.retries) {
      Error e = r.error();
      e.what += " (" + operation + ", " + std::to_string(attempt + 1) + " attempts)";
      return e;
    }
    sleep_(backoff(attempt));
  }
}

Result<policy::TemplatePolicy> ResilientCaClient::fetch_policy(const std::string& template_id) {
  return call("policy fetch", true, [&] { return inner_->fetch_policy(template_id); });
}

Result<Enrollment> ResilientCaClient::submit(const SubmitRequest& request) {
  return call("submission " + request.transaction_id, inner_->submit_is_idempotent(),
              [&] { return inner_->submit(request); });
}

Result<Enrollment> ResilientCaClient::poll(const PendingTicket& ticket) {
  return call("poll of " + ticket.request_id, true, [&] { return inner_->poll(ticket); });
}

Status ResilientCaClient::revoke(const RevokeRequest& request) {
  // Revoking twice leaves the certificate revoked: safe to repeat.
  return call("revocation", true, [&] { return inner_->revoke(request); });
}

}  // namespace certcustody::ca
