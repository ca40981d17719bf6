#include "store/request_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>

namespace certcustody::store {
namespace {

constexpr std::array<std::string_view, 6> kNames = {"received", "processing", "pending_ca",
                                                    "issued",   "delivered",  "failed"};

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A prepared statement, finalised on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return rc_ == SQLITE_OK; }
  int prepare_rc() const { return rc_; }
  Stmt& bind(int i, std::string_view v) {
    // A null data() would bind SQL NULL, not the empty string.
    sqlite3_bind_text(s_, i, v.data() != nullptr ? v.data() : "", static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& blob(int i, std::string_view v) {
    sqlite3_bind_blob(s_, i, v.data() != nullptr ? v.data() : "", static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  std::string blob_at(int col) const {
    const auto* b = static_cast<const char*>(sqlite3_column_blob(s_, col));
    return b == nullptr ? std::string{} : std::string(b, static_cast<std::size_t>(sqlite3_column_bytes(s_, col)));
  }
  Stmt& bind(int i, std::int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  int step() { return sqlite3_step(s_); }
  std::string text(int col) const {
    const auto* t = sqlite3_column_text(s_, col);
    return t == nullptr ? std::string{} : std::string(reinterpret_cast<const char*>(t));
  }
  std::int64_t integer(int col) const { return sqlite3_column_int64(s_, col); }
  bool is_null(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }

 private:
  sqlite3_stmt* s_ = nullptr;
  int rc_ = SQLITE_OK;
};

constexpr const char* kColumns =
    "id, profile, body_sha256, state, received_at_ms, updated_at_ms, attempts, error_code, error_what, "
    "error_remedy, ca_request_id, ca_poll_uri, not_before_ms, owner, status_version, status_published";

RequestRecord read_record(const Stmt& s) {
  RequestRecord r;
  r.id = s.text(0);
  r.profile = s.text(1);
  r.body_sha256 = s.text(2);
  r.state = parse_state(s.text(3)).value_or(State::failed);
  r.received_at_ms = s.integer(4);
  r.updated_at_ms = s.integer(5);
  r.attempts = static_cast<int>(s.integer(6));
  r.error_code = s.text(7);
  r.error_what = s.text(8);
  r.error_remedy = s.text(9);
  r.ca_request_id = s.text(10);
  r.ca_poll_uri = s.text(11);
  r.not_before_ms = s.integer(12);
  r.owner = s.text(13);
  r.status_version = s.integer(14);
  r.status_published = s.integer(15);
  return r;
}

// BEGIN IMMEDIATE .. COMMIT, rolled back unless committed.
// synchronous=NORMAL for one transaction, FULL again afterwards (WAL mode:
// commits stay atomic and ordered; only their own fsync is left out).
class RelaxedSync {
 public:
  explicit RelaxedSync(sqlite3* db) : db_(db) { sqlite3_exec(db_, "PRAGMA synchronous=NORMAL", nullptr, nullptr, nullptr); }
  ~RelaxedSync() { sqlite3_exec(db_, "PRAGMA synchronous=FULL", nullptr, nullptr, nullptr); }
  RelaxedSync(const RelaxedSync&) = delete;
  RelaxedSync& operator=(const RelaxedSync&) = delete;

 private:
  sqlite3* db_;
};

class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) { rc_ = sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr); }
  ~Transaction() {
    if (rc_ == SQLITE_OK && !done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  int begin_rc() const { return rc_; }
  int commit() {
    done_ = true;
    return sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
  }

 private:
  sqlite3* db_;
  int rc_;
  bool done_ = false;
};

}  // namespace

std::string_view state_name(State s) { return kNames[static_cast<std::size_t>(s)]; }

std::optional<State> parse_state(std::string_view name) {
  for (std::size_t i = 0; i < kNames.size(); ++i)
    if (kNames[i] == name) return static_cast<State>(i);
  return std::nullopt;
}

bool transition_allowed(State from, State to) {
  switch (from) {
    case State::received: return to == State::processing || to == State::failed;
    case State::processing:
      return to == State::pending_ca || to == State::issued || to == State::delivered || to == State::failed ||
             to == State::received;
    case State::pending_ca: return to == State::processing || to == State::issued || to == State::failed;
    case State::issued: return to == State::processing || to == State::delivered || to == State::failed;
    case State::delivered: return to == State::issued;  // redelivery
    case State::failed: return false;
  }
  return false;
}

Error RequestStore::db_error(const std::string& doing, int rc) const {
  const std::string what = path_ + ": " + doing + ": " + sqlite3_errstr(rc) + " (" + sqlite3_errmsg(db_) + ")";
  switch (rc & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Error{"store.corrupt", what,
                   "stop the daemon, keep the damaged file for analysis, and restore the request store from backup",
                   static_cast<unsigned long>(rc)};
    case SQLITE_FULL:
      return Error{"store.disk_full", what, "free space on the state directory's file system; nothing was lost",
                   static_cast<unsigned long>(rc)};
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
      return Error{"store.unwritable", what, "let the service user read and write the state directory",
                   static_cast<unsigned long>(rc)};
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Error{"store.busy", what, "another process holds the request store; retried automatically",
                   static_cast<unsigned long>(rc)};
    default:
      return Error{"store.failed", what, "check the state directory's disk and permissions",
                   static_cast<unsigned long>(rc)};
  }
}

Status RequestStore::exec(const char* sql) {
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return db_error(std::string("executing ") + sql, rc);
  return {};
}

Result<std::unique_ptr<RequestStore>> RequestStore::open(const std::string& path, Options options) {
  // Created 0600 before SQLite opens it: request ids and errors are nobody else's business.
  if (const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600); fd >= 0) {
    ::close(fd);
  } else {
    return Error{"store.unwritable", "cannot create the request store " + path,
                 "create the state directory and let the service user write it"};
  }
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, nullptr);
  std::unique_ptr<RequestStore> store(new RequestStore(db, path, std::move(options)));
  if (rc != SQLITE_OK) return store->db_error("opening", rc);
  sqlite3_busy_timeout(db, 5000);
  // WAL: readers never block the writer; FULL: a committed change survives a power cut.
  CC_TRY(store->exec("PRAGMA journal_mode=WAL"));
  CC_TRY(store->exec("PRAGMA synchronous=FULL"));
  CC_TRY(store->exec(
      "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
      "CREATE TABLE IF NOT EXISTS requests ("
      " id TEXT PRIMARY KEY, profile TEXT NOT NULL, body_sha256 TEXT NOT NULL, state TEXT NOT NULL,"
      " received_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
      " error_code TEXT NOT NULL DEFAULT '', error_what TEXT NOT NULL DEFAULT '',"
      " error_remedy TEXT NOT NULL DEFAULT '', ca_request_id TEXT NOT NULL DEFAULT '',"
      " ca_poll_uri TEXT NOT NULL DEFAULT '', seq INTEGER NOT NULL, not_before_ms INTEGER NOT NULL DEFAULT 0,"
      " owner TEXT NOT NULL DEFAULT '', status_version INTEGER NOT NULL DEFAULT 0,"
      " status_published INTEGER NOT NULL DEFAULT 0);"
      "CREATE INDEX IF NOT EXISTS requests_by_state ON requests(state, seq);"
      "CREATE TABLE IF NOT EXISTS artifacts (id TEXT NOT NULL, name TEXT NOT NULL, value BLOB NOT NULL,"
      " PRIMARY KEY (id, name));"
      "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', '3');"));
  Stmt v(db, "SELECT value FROM meta WHERE key = 'schema_version'");
  if (!v.ok() || v.step() != SQLITE_ROW) return store->db_error("reading the schema version", v.prepare_rc());
  if (std::stoll(v.text(0)) > kSchemaVersion)
    return Error{"store.schema_newer",
                 path + " has schema version " + v.text(0) + "; this certcustody knows up to " +
                     std::to_string(kSchemaVersion),
                 "run the certcustody version that wrote it (or newer); never an older one"};
  if (std::stoll(v.text(0)) < kSchemaVersion) CC_TRY(store->migrate(static_cast<int>(std::stoll(v.text(0)))));
  CC_TRY(store->exec("CREATE INDEX IF NOT EXISTS requests_status_due ON requests(seq)"
                     " WHERE status_version > status_published"));
  return store;
}

RequestStore::~RequestStore() { sqlite3_close_v2(db_); }

// Version 1 (issue-7 groundwork) lacked the due time; version 2 the owner
// and the status versions (a version 2 request in processing has no owner:
// taken back as an orphan). artifacts is created above.
Status RequestStore::migrate(int from) {
  Transaction tx(db_);
  if (tx.begin_rc() != SQLITE_OK) return db_error("beginning the schema upgrade", tx.begin_rc());
  if (from < 2) CC_TRY(exec("ALTER TABLE requests ADD COLUMN not_before_ms INTEGER NOT NULL DEFAULT 0;"));
  CC_TRY(exec("ALTER TABLE requests ADD COLUMN owner TEXT NOT NULL DEFAULT '';"
              "ALTER TABLE requests ADD COLUMN status_version INTEGER NOT NULL DEFAULT 0;"
              "ALTER TABLE requests ADD COLUMN status_published INTEGER NOT NULL DEFAULT 0;"
              "UPDATE meta SET value = '3' WHERE key = 'schema_version';"));
  if (const int rc = tx.commit(); rc != SQLITE_OK) return db_error("committing the schema upgrade", rc);
  return {};
}

Status RequestStore::write_artifacts(const std::string& id, const Artifacts& artifacts) {
  for (const auto& [name, value] : artifacts) {
    Stmt ins(db_, "INSERT OR REPLACE INTO artifacts(id, name, value) VALUES (?, ?, ?)");
    ins.bind(1, id).bind(2, name).blob(3, value);
    if (const int rc = ins.step(); rc != SQLITE_DONE) return db_error("storing " + name + " of request " + id, rc);
  }
  return {};
}

Result<RequestRecord> RequestStore::receive(const std::string& id, const std::string& profile,
                                            const std::string& body_sha256, std::string_view body) {
  return insert(id, profile, body_sha256, body, nullptr);
}

Result<RequestRecord> RequestStore::refuse(const std::string& id, const std::string& body_sha256, const Error& why) {
  return insert(id, "", body_sha256, {}, &why);
}

Result<RequestRecord> RequestStore::insert(const std::string& id, const std::string& profile,
                                           const std::string& body_sha256, std::string_view body,
                                           const Error* refused) {
  std::lock_guard l(mu_);
  Transaction tx(db_);
  if (tx.begin_rc() != SQLITE_OK) return db_error("beginning a transaction", tx.begin_rc());
  {
    Stmt find(db_, (std::string("SELECT ") + kColumns + " FROM requests WHERE id = ?").c_str());
    find.bind(1, id);
    if (find.step() == SQLITE_ROW) {
      RequestRecord existing = read_record(find);
      if (existing.body_sha256 != body_sha256)
        return Error{"store.request_conflict",
                     "request id \"" + id + "\" is already taken by another request (state " +
                         std::string(state_name(existing.state)) + ")",
                     "give every request its own id; a re-sent request must be byte-for-byte the same"};
      return existing;
    }
  }
  const std::int64_t now = now_ms();
  const Error none{};
  const Error& e = refused != nullptr ? *refused : none;
  Stmt ins(db_,
           "INSERT INTO requests(id, profile, body_sha256, state, received_at_ms, updated_at_ms, seq,"
           " error_code, error_what, error_remedy, status_version) "
           "VALUES (?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM requests), ?, ?, ?, ?)");
  ins.bind(1, id).bind(2, profile).bind(3, body_sha256).bind(4, std::string(refused ? "failed" : "received"));
  ins.bind(5, now).bind(6, now).bind(7, e.code).bind(8, e.what).bind(9, e.remedy);
  ins.bind(10, std::int64_t{refused != nullptr});  // a refused request's status record is due
  if (const int rc = ins.step(); rc != SQLITE_DONE) return db_error("recording request " + id, rc);
  if (!body.empty()) CC_TRY(write_artifacts(id, {{"request", std::string(body)}}));
  if (const int rc = tx.commit(); rc != SQLITE_OK) return db_error("committing request " + id, rc);
  RequestRecord r;
  r.id = id;
  r.profile = profile;
  r.body_sha256 = body_sha256;
  r.received_at_ms = r.updated_at_ms = now;
  if (refused != nullptr) {
    r.status_version = 1;
    r.state = State::failed;
    r.error_code = e.code;
    r.error_what = e.what;
    r.error_remedy = e.remedy;
  }
  return r;
}

Status RequestStore::transition(const std::string& id, State from, State to, const Update& u) {
  if (!transition_allowed(from, to))
    return Error{"store.transition_invalid",
                 "request " + id + " cannot go from " + std::string(state_name(from)) + " to " +
                     std::string(state_name(to)),
                 "this is a bug in the pipeline: report it"};
  std::lock_guard l(mu_);
  Transaction tx(db_);
  if (tx.begin_rc() != SQLITE_OK) return db_error("beginning a transaction", tx.begin_rc());
  Stmt up(db_,
          "UPDATE requests SET state = ?1, updated_at_ms = ?2,"
          " attempts = attempts + (?1 = 'processing' AND ?3 = 'received') - ?14,"
          " error_code = CASE WHEN ?4 THEN ?5 ELSE error_code END,"
          " error_what = CASE WHEN ?4 THEN ?6 ELSE error_what END,"
          " error_remedy = CASE WHEN ?4 THEN ?7 ELSE error_remedy END,"
          " ca_request_id = COALESCE(?8, ca_request_id), ca_poll_uri = COALESCE(?9, ca_poll_uri),"
          " not_before_ms = COALESCE(?11, not_before_ms),"
          " owner = CASE WHEN ?1 = 'processing' THEN ?12 ELSE owner END,"
          " status_version = status_version + ?13"
          " WHERE id = ?10 AND state = ?3");
  up.bind(1, state_name(to)).bind(2, now_ms()).bind(3, state_name(from)).bind(4, std::int64_t{u.error.has_value()});
  if (u.error) up.bind(5, u.error->code).bind(6, u.error->what).bind(7, u.error->remedy);
  if (u.ca_request_id) up.bind(8, *u.ca_request_id);
  if (u.ca_poll_uri) up.bind(9, *u.ca_poll_uri);
  up.bind(10, id);
  if (u.not_before_ms) up.bind(11, *u.not_before_ms);
  up.bind(12, options_.owner).bind(13, std::int64_t{u.status_changed});
  up.bind(14, std::int64_t{u.refund_attempt && to == State::received && from == State::processing});
  if (const int rc = up.step(); rc != SQLITE_DONE) return db_error("updating request " + id, rc);
  if (sqlite3_changes(db_) == 1) {
    CC_TRY(write_artifacts(id, u.artifacts));
    if (const int rc = tx.commit(); rc != SQLITE_OK) return db_error("committing request " + id, rc);
    return {};
  }
  return state_mismatch(id, from);
}

Error RequestStore::state_mismatch(const std::string& id, State expected) {
  Stmt find(db_, "SELECT state FROM requests WHERE id = ?");
  find.bind(1, id);
  if (find.step() != SQLITE_ROW)
    return Error{"store.not_found", "no request \"" + id + "\" in " + path_, "check the request id"};
  return Error{"store.state_conflict",
               "request " + id + " is " + find.text(0) + ", not " + std::string(state_name(expected)) +
                   ": another worker moved it on",
               "none: the other worker owns it now"};
}

Status RequestStore::put(const std::string& id, State state, const Artifacts& artifacts, bool status_changed) {
  std::lock_guard l(mu_);
  Transaction tx(db_);
  if (tx.begin_rc() != SQLITE_OK) return db_error("beginning a transaction", tx.begin_rc());
  Stmt check(db_, "UPDATE requests SET status_version = status_version + ? WHERE id = ? AND state = ?");
  check.bind(1, std::int64_t{status_changed}).bind(2, id).bind(3, state_name(state));
  if (const int rc = check.step(); rc != SQLITE_DONE) return db_error("reading request " + id, rc);
  if (sqlite3_changes(db_) != 1) return state_mismatch(id, state);
  CC_TRY(write_artifacts(id, artifacts));
  if (const int rc = tx.commit(); rc != SQLITE_OK) return db_error("committing request " + id, rc);
  return {};
}

Result<Artifacts> RequestStore::artifacts(const std::string& id) {
  std::lock_guard l(mu_);
  Stmt all(db_, "SELECT name, value FROM artifacts WHERE id = ?");
  all.bind(1, id);
  Artifacts out;
  int rc;
  while ((rc = all.step()) == SQLITE_ROW) out.emplace(all.text(0), all.blob_at(1));
  if (rc != SQLITE_DONE) return db_error("reading the artifacts of request " + id, rc);
  return out;
}

Result<std::optional<std::int64_t>> RequestStore::next_due(State state) {
  std::lock_guard l(mu_);
  Stmt q(db_, "SELECT MIN(not_before_ms) FROM requests WHERE state = ?");
  q.bind(1, state_name(state));
  if (const int rc = q.step(); rc != SQLITE_ROW) return db_error("reading due times", rc);
  if (q.is_null(0)) return std::optional<std::int64_t>{};
  return std::optional<std::int64_t>{q.integer(0)};
}

Result<std::map<State, std::int64_t>> RequestStore::counts() {
  std::lock_guard l(mu_);
  Stmt q(db_, "SELECT state, COUNT(*) FROM requests GROUP BY state");
  std::map<State, std::int64_t> out;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW)
    if (auto st = parse_state(q.text(0))) out[*st] = q.integer(1);
  if (rc != SQLITE_DONE) return db_error("counting requests", rc);
  return out;
}

Result<std::optional<RequestRecord>> RequestStore::claim_next(State from, State to) {
  if (!transition_allowed(from, to))
    return Error{"store.transition_invalid",
                 "no request can go from " + std::string(state_name(from)) + " to " + std::string(state_name(to)),
                 "this is a bug in the pipeline: report it"};
  std::lock_guard l(mu_);
  // A claim need not reach the disk by itself: lost in a power cut, the
  // request is simply claimed again. The worker's next (FULL) commit syncs the
  // WAL, and with it this frame, before any side effect.
  RelaxedSync relaxed(db_);
  Transaction tx(db_);
  if (tx.begin_rc() != SQLITE_OK) return db_error("beginning a transaction", tx.begin_rc());
  std::optional<RequestRecord> r;
  {
    Stmt next(db_, (std::string("SELECT ") + kColumns +
                    " FROM requests WHERE state = ? AND not_before_ms <= ? ORDER BY seq LIMIT 1")
                       .c_str());
    next.bind(1, state_name(from)).bind(2, now_ms());
    const int rc = next.step();
    if (rc == SQLITE_DONE) return std::optional<RequestRecord>{};
    if (rc != SQLITE_ROW) return db_error("finding the next request", rc);
    r = read_record(next);
  }
  r->state = to;
  r->updated_at_ms = now_ms();
  if (to == State::processing && from == State::received) ++r->attempts;
  if (to == State::processing) r->owner = options_.owner;
  Stmt up(db_, "UPDATE requests SET state = ?, updated_at_ms = ?, attempts = ?, owner = ? WHERE id = ?");
  up.bind(1, state_name(to)).bind(2, r->updated_at_ms).bind(3, std::int64_t{r->attempts}).bind(4, r->owner);
  up.bind(5, r->id);
  if (const int rc = up.step(); rc != SQLITE_DONE) return db_error("claiming request " + r->id, rc);
  if (const int rc = tx.commit(); rc != SQLITE_OK) return db_error("committing the claim of " + r->id, rc);
  return r;
}

Result<std::vector<RequestRecord>> RequestStore::status_due() {
  std::lock_guard l(mu_);
  Stmt due(db_, (std::string("SELECT ") + kColumns +
                 " FROM requests WHERE status_version > status_published ORDER BY seq").c_str());
  std::vector<RequestRecord> out;
  int rc;
  while ((rc = due.step()) == SQLITE_ROW) out.push_back(read_record(due));
  if (rc != SQLITE_DONE) return db_error("listing status records to write", rc);
  return out;
}

Status RequestStore::status_published(const std::string& id, std::int64_t version) {
  std::lock_guard l(mu_);
  RelaxedSync relaxed(db_);
  Stmt up(db_, "UPDATE requests SET status_published = MAX(status_published, ?) WHERE id = ?");
  up.bind(1, version).bind(2, id);
  if (const int rc = up.step(); rc != SQLITE_DONE) return db_error("marking the status of " + id + " written", rc);
  return {};
}

Result<RequestRecord> RequestStore::get(const std::string& id) {
  std::lock_guard l(mu_);
  Stmt find(db_, (std::string("SELECT ") + kColumns + " FROM requests WHERE id = ?").c_str());
  find.bind(1, id);
  const int rc = find.step();
  if (rc == SQLITE_ROW) return read_record(find);
  if (rc == SQLITE_DONE) return Error{"store.not_found", "no request \"" + id + "\" in " + path_, "check the request id"};
  return db_error("reading request " + id, rc);
}

Result<std::vector<RequestRecord>> RequestStore::list(std::optional<State> state) {
  std::lock_guard l(mu_);
  Stmt all(db_, (std::string("SELECT ") + kColumns + " FROM requests WHERE ?1 = '' OR state = ?1 ORDER BY seq").c_str());
  all.bind(1, state ? state_name(*state) : std::string_view{});
  std::vector<RequestRecord> out;
  int rc;
  while ((rc = all.step()) == SQLITE_ROW) out.push_back(read_record(all));
  if (rc != SQLITE_DONE) return db_error("listing requests", rc);
  return out;
}

}  // namespace certcustody::store
