// The per-request state of the issuance pipeline, in SQLite (WAL, synchronous
// FULL): what the reference's Processing / Failed / Succeeded folders show,
// with crash-safe semantics. Every change is one transaction and every state
// change a compare-and-set, so two workers (or a worker and a restarted
// daemon) can never both move the same request on.
//
//   received -> processing -> pending_ca -> issued -> delivered
//   any of the first four -> failed (with the named error)
//   processing -> received  (a checkpoint: work handed back on shutdown)
//   pending_ca -> processing (the CA's answer is being handled)
//   delivered -> issued      (redelivery)
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

typedef struct sqlite3 sqlite3;

namespace certcustody::store {

enum class State { received, processing, pending_ca, issued, delivered, failed };
std::string_view state_name(State s);
std::optional<State> parse_state(std::string_view name);
bool transition_allowed(State from, State to);

struct RequestRecord {
  std::string id;           // the caller's request id
  std::string profile;
  std::string body_sha256;  // of the request as received: an id reused for another request is refused
  State state = State::received;
  std::int64_t received_at_ms = 0;  // Unix epoch, UTC
  std::int64_t updated_at_ms = 0;
  int attempts = 0;         // times the request was claimed for processing
  // The named error of a failed request (or the last transient one).
  std::string error_code, error_what, error_remedy;
  // The CA's handle on a pending request.
  std::string ca_request_id, ca_poll_uri;
};

// What a transition also records; unset fields keep their value.
struct Update {
  std::optional<Error> error;  // recorded (failed, or a transient error noted on the way)
  std::optional<std::string> ca_request_id, ca_poll_uri;
};

class RequestStore {
 public:
  // Opens or creates the database file (mode 0600), schema included.
  static Result<std::unique_ptr<RequestStore>> open(const std::string& path);
  ~RequestStore();
  RequestStore(const RequestStore&) = delete;
  RequestStore& operator=(const RequestStore&) = delete;

  // A new request in state received. The same id with the same body is the
  // same request (a re-delivered spool file): its record is returned, not a
  // second one made. The same id with another body: store.request_conflict.
  Result<RequestRecord> receive(const std::string& id, const std::string& profile, const std::string& body_sha256);

  // Moves `id` from `from` to `to` if, and only if, it is in `from` now
  // (store.state_conflict otherwise; store.transition_invalid for a move the
  // state machine does not have).
  Status transition(const std::string& id, State from, State to, const Update& update = {});

  // The oldest request in `from`, moved to `to` in the same transaction
  // (attempts + 1 when `to` is processing); nullopt when there is none.
  Result<std::optional<RequestRecord>> claim_next(State from, State to);

  Result<RequestRecord> get(const std::string& id);
  // All requests, or those in `state`, oldest first.
  Result<std::vector<RequestRecord>> list(std::optional<State> state = std::nullopt);

  static constexpr int kSchemaVersion = 1;

 private:
  explicit RequestStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  Status exec(const char* sql);
  Error db_error(const std::string& doing, int rc) const;

  sqlite3* db_;
  std::string path_;
  std::mutex mu_;  // one connection; SQLite serialises, this keeps BEGIN..COMMIT together
};

}  // namespace certcustody::store
