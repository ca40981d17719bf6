// The per-request state of the issuance pipeline, in SQLite (WAL, synchronous
// FULL): what the reference's Processing / Failed / Succeeded folders show,
// with crash-safe semantics. Every change is one transaction and every state
// change a compare-and-set, so two workers (or a worker and a restarted
// daemon) can never both move the same request on.
//
//   received -> processing -> pending_ca -> issued -> delivered
//   any of the first four -> failed (with the named error)
//   processing is "a worker owns it": it is entered from received (a new
//   request), pending_ca (a poll) and issued (a delivery), and left for the
//   next resting state (received or pending_ca again after a transient failure)
//   delivered -> issued      (redelivery)
#pragma once

#include <cstdint>
#include <map>
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
  int attempts = 0;         // times the request was taken from received for processing (CA submissions)
  // The named error of a failed request (or the last transient one).
  std::string error_code, error_what, error_remedy;
  // The CA's handle on a pending request.
  std::string ca_request_id, ca_poll_uri;
  std::int64_t not_before_ms = 0;  // not claimed before this time (backoff, next poll)
  // Who moved it to processing (RequestStore::Options::owner): a request whose
  // owner died is taken back by the pipeline, without waiting for a restart.
  std::string owner;
  // The status record the outside reads (outgoing/<id>.status.json) is a
  // projection of this record: status_version moves on with every change that
  // shows there; status_published is the version last written out. A version
  // not yet published (a process killed in between) is written by recovery.
  std::int64_t status_version = 0, status_published = 0;
  bool status_due() const { return status_version > status_published; }
};

// Named blobs kept with a request (the request body, the CSR, the sealed
// user key, the certificate...). Values are opaque to the store.
using Artifacts = std::map<std::string, std::string>;

// What a transition also records; unset fields keep their value.
struct Update {
  // (Default member initialisers: callers name only the fields they set.)
  std::optional<Error> error{};  // recorded (failed, or a transient error noted on the way)
  std::optional<std::string> ca_request_id{}, ca_poll_uri{};
  std::optional<std::int64_t> not_before_ms{};
  Artifacts artifacts{};         // written (replaced) in the same transaction
  bool status_changed = false;   // the status record shows this change: status_version + 1
  bool refund_attempt = false;   // back to received without counting the attempt (the CA was never asked)
};

class RequestStore {
 public:
  struct Options {
    // Recorded with every move to processing (e.g. "<boot id>/<pid>/<start
    // time>", pipeline/owner.h); opaque to the store.
    std::string owner{};
  };
  // Opens or creates the database file (mode 0600), schema included.
  static Result<std::unique_ptr<RequestStore>> open(const std::string& path, Options options);
  static Result<std::unique_ptr<RequestStore>> open(const std::string& path) { return open(path, Options{}); }
  ~RequestStore();
  RequestStore(const RequestStore&) = delete;
  RequestStore& operator=(const RequestStore&) = delete;

  // A new request in state received. The same id with the same body is the
  // same request (a re-delivered spool file): its record is returned, not a
  // second one made. The same id with another body: store.request_conflict.
  // `body` (the request as received) is kept as the artifact "request".
  Result<RequestRecord> receive(const std::string& id, const std::string& profile, const std::string& body_sha256,
                                std::string_view body = {});
  // A request refused at intake: recorded straight in state failed with
  // `why`, in one step, so no worker ever sees it received. Same id and body
  // again: the existing record; another body: store.request_conflict.
  Result<RequestRecord> refuse(const std::string& id, const std::string& body_sha256, const Error& why);

  // Moves `id` from `from` to `to` if, and only if, it is in `from` now
  // (store.state_conflict otherwise; store.transition_invalid for a move the
  // state machine does not have).
  Status transition(const std::string& id, State from, State to, const Update& update = {});

  // Writes artifacts of `id` if, and only if, it is in `state` now: what a
  // worker persists before its next side effect, without a state change.
  // `status_changed`: the status record shows them (status_version + 1).
  Status put(const std::string& id, State state, const Artifacts& artifacts, bool status_changed = false);
  // All artifacts of `id` (empty when none).
  Result<Artifacts> artifacts(const std::string& id);

  // The oldest request in `from` that is due (not_before_ms <= now), moved to
  // `to` in the same transaction (attempts + 1 from received to processing);
  // nullopt when there is none.
  Result<std::optional<RequestRecord>> claim_next(State from, State to);
  // When the next request in `state` becomes due (nullopt: none waits).
  Result<std::optional<std::int64_t>> next_due(State state);
  // How many requests are in each state.
  Result<std::map<State, std::int64_t>> counts();

  // Requests whose status record has a version not yet written out.
  Result<std::vector<RequestRecord>> status_due();
  // The status record of `id` at `version` is written out. Not synced by
  // itself: lost in a power cut, the record is just written again.
  Status status_published(const std::string& id, std::int64_t version);

  Result<RequestRecord> get(const std::string& id);
  // All requests, or those in `state`, oldest first.
  Result<std::vector<RequestRecord>> list(std::optional<State> state = std::nullopt);

  static constexpr int kSchemaVersion = 3;

 private:
  explicit RequestStore(sqlite3* db, std::string path, Options o)
      : db_(db), path_(std::move(path)), options_(std::move(o)) {}
  Status exec(const char* sql);
  Error db_error(const std::string& doing, int rc) const;
  Error state_mismatch(const std::string& id, State expected);
  Status write_artifacts(const std::string& id, const Artifacts& artifacts);
  Status migrate(int from);
  Result<RequestRecord> insert(const std::string& id, const std::string& profile, const std::string& body_sha256,
                               std::string_view body, const Error* refused);

  sqlite3* db_;
  std::string path_;
  Options options_;
  std::mutex mu_;  // one connection; SQLite serialises, this keeps BEGIN..COMMIT together
};

}  // namespace certcustody::store
