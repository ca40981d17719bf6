// The request store: intake idempotence, the state machine as compare-and-set,
// one claim per request across threads and processes, durability and named
// errors for damaged or foreign files.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <set>
#include <thread>

#include "store/request_store.h"
#include "support/temp_dir.h"

namespace certcustody::store {
namespace {

using testing::TempDir;

std::unique_ptr<RequestStore> open_or_die(const std::string& path) {
  auto s = RequestStore::open(path);
  EXPECT_TRUE(s) << s.error().to_string();
  return s ? std::move(s.value()) : nullptr;
}

TEST(RequestStore, ReceiveIsIdempotentForTheSameRequestAndRefusesAReusedId) {
  TempDir d;
  auto s = open_or_die(d / "requests.db");
  ASSERT_TRUE(s);
  auto a = s->receive("r1", "users", "aaaa");
  ASSERT_TRUE(a) << a.error().to_string();
  EXPECT_EQ(a->state, State::received);
  auto again = s->receive("r1", "users", "aaaa");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->received_at_ms, a->received_at_ms);
  auto other = s->receive("r1", "users", "bbbb");
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, "store.request_conflict");
  EXPECT_EQ(s->list()->size(), 1u);
  struct stat st {};
  ASSERT_EQ(::stat((d / "requests.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(RequestStore, TransitionsAreCompareAndSetAlongTheStateMachine) {
  TempDir d;
  auto s = open_or_die(d / "requests.db");
  ASSERT_TRUE(s->receive("r1", "users", "h"));
  ASSERT_TRUE(s->transition("r1", State::received, State::processing));
  auto lost = s->transition("r1", State::received, State::processing);  // a second worker, too late
  ASSERT_FALSE(lost);
  EXPECT_EQ(lost.error().code, "store.state_conflict");
  ASSERT_TRUE(s->receive("r2", "users", "h2"));
  auto jump = s->transition("r2", State::received, State::delivered);  // skips the CA
  ASSERT_FALSE(jump);
  EXPECT_EQ(jump.error().code, "store.transition_invalid");
  ASSERT_TRUE(s->transition("r1", State::processing, State::pending_ca,
                            Update{.ca_request_id = std::string("65"), .ca_poll_uri = std::string("https://ces/CES")}));
  auto r = s->get("r1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->state, State::pending_ca);
  EXPECT_EQ(r->ca_request_id, "65");
  EXPECT_EQ(r->ca_poll_uri, "https://ces/CES");
  EXPECT_EQ(r->attempts, 1);
  ASSERT_TRUE(s->transition("r1", State::pending_ca, State::failed,
                            Update{.error = Error{"ca.denied", "denied by a CA manager", "ask the CA", 0}}));
  r = s->get("r1");
  EXPECT_EQ(r->state, State::failed);
  EXPECT_EQ(r->error_code, "ca.denied");
  EXPECT_EQ(r->error_remedy, "ask the CA");
  EXPECT_EQ(r->ca_request_id, "65");  // kept
  EXPECT_FALSE(transition_allowed(State::failed, State::received));
  EXPECT_EQ(s->get("nope").error().code, "store.not_found");
  EXPECT_EQ(s->transition("nope", State::received, State::processing).error().code, "store.not_found");
}

TEST(RequestStore, EveryRequestIsClaimedExactlyOnceByConcurrentWorkers) {
  TempDir d;
  auto s = open_or_die(d / "requests.db");
  constexpr int kRequests = 300;
  for (int i = 0; i < kRequests; ++i) ASSERT_TRUE(s->receive("r" + std::to_string(i), "users", "h"));
  // Two stores on one file (two daemons) and two threads on each.
  auto s2 = open_or_die(d / "requests.db");
  std::mutex mu;
  std::multiset<std::string> claimed;
  auto worker = [&](RequestStore* st) {
    for (;;) {
      auto c = st->claim_next(State::received, State::processing);
      ASSERT_TRUE(c) << c.error().to_string();
      if (!*c) return;
      std::lock_guard l(mu);
      claimed.insert((*c)->id);
    }
  };
  std::vector<std::thread> threads;
  for (RequestStore* st : {s.get(), s.get(), s2.get(), s2.get()}) threads.emplace_back(worker, st);
  for (auto& t : threads) t.join();
  ASSERT_EQ(claimed.size(), static_cast<std::size_t>(kRequests));
  for (const auto& id : claimed) EXPECT_EQ(claimed.count(id), 1u) << id;
  EXPECT_EQ(s->list(State::processing)->size(), static_cast<std::size_t>(kRequests));
  EXPECT_TRUE(s->list(State::received)->empty());
}

TEST(RequestStore, ClaimsInArrivalOrderAndCountsAttempts) {
  TempDir d;
  auto s = open_or_die(d / "requests.db");
  for (const char* id : {"b", "a", "c"}) ASSERT_TRUE(s->receive(id, "users", "h"));
  EXPECT_EQ((*s->claim_next(State::received, State::processing))->id, "b");
  ASSERT_TRUE(s->transition("b", State::processing, State::received));  // checkpointed at shutdown
  EXPECT_EQ((*s->claim_next(State::received, State::processing))->id, "b");
  EXPECT_EQ(s->get("b")->attempts, 2);
  EXPECT_EQ((*s->claim_next(State::received, State::processing))->id, "a");
}

TEST(RequestStore, ARefusedRequestIsRecordedFailedInOneStep) {
  TempDir d;
  auto s = open_or_die(d / "requests.db");
  const Error why{"request.too_large", "10 MB", "send less", 0};
  auto r = s->refuse("big", "h", why);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->state, State::failed);
  EXPECT_EQ(s->get("big")->error_code, "request.too_large");
  EXPECT_EQ(s->get("big")->error_remedy, "send less");
  EXPECT_FALSE(*s->claim_next(State::received, State::processing));  // never visible to a worker
  EXPECT_TRUE(s->refuse("big", "h", why));                           // the same file again
  EXPECT_EQ(s->refuse("big", "other", why).error().code, "store.request_conflict");
}

TEST(RequestStore, ArtifactsArePutOnlyInTheExpectedState) {
  TempDir d;
  auto s = open_or_die(d / "requests.db");
  ASSERT_TRUE(s->receive("r1", "users", "h", "{\"version\":2}"));
  EXPECT_EQ(s->artifacts("r1")->at("request"), "{\"version\":2}");
  ASSERT_TRUE(s->transition("r1", State::received, State::processing));
  const std::string binary("\0\x01\xff", 3);
  ASSERT_TRUE(s->put("r1", State::processing, {{"csr", binary}, {"submitted", "1"}}));
  EXPECT_EQ(s->put("r1", State::received, {{"x", "y"}}).error().code, "store.state_conflict");
  ASSERT_TRUE(s->transition("r1", State::processing, State::issued, Update{.artifacts = {{"certificate", "C"}}}));
  auto a = *s->artifacts("r1");
  EXPECT_EQ(a["csr"], binary);
  EXPECT_EQ(a["submitted"], "1");
  EXPECT_EQ(a["certificate"], "C");
  EXPECT_EQ(a.count("x"), 0u);
}

TEST(RequestStore, OnlyDueRequestsAreClaimed) {
  TempDir d;
  auto s = open_or_die(d / "requests.db");
  ASSERT_TRUE(s->receive("later", "users", "h"));
  ASSERT_TRUE(s->receive("now", "users", "h"));
  ASSERT_TRUE(s->transition("later", State::received, State::processing));
  const std::int64_t in_an_hour = std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count() +
                                  3'600'000;
  ASSERT_TRUE(s->transition("later", State::processing, State::received, Update{.not_before_ms = in_an_hour}));
  EXPECT_EQ((*s->claim_next(State::received, State::processing))->id, "now");
  EXPECT_FALSE(*s->claim_next(State::received, State::processing));
  EXPECT_EQ(**s->next_due(State::received), in_an_hour);
  auto counts = *s->counts();
  EXPECT_EQ(counts[State::received], 1);
  EXPECT_EQ(counts[State::processing], 1);
}

// The tables of an earlier schema version: 1 had no due time and no
// artifacts, 2 no owner and no status versions.
std::string old_schema(int version) {
  return std::string(
             "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
             "CREATE TABLE requests (id TEXT PRIMARY KEY, profile TEXT NOT NULL,"
             " body_sha256 TEXT NOT NULL, state TEXT NOT NULL, received_at_ms INTEGER NOT NULL,"
             " updated_at_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
             " error_code TEXT NOT NULL DEFAULT '', error_what TEXT NOT NULL DEFAULT '',"
             " error_remedy TEXT NOT NULL DEFAULT '', ca_request_id TEXT NOT NULL DEFAULT '',"
             " ca_poll_uri TEXT NOT NULL DEFAULT '', seq INTEGER NOT NULL") +
         (version >= 2 ? ", not_before_ms INTEGER NOT NULL DEFAULT 0);"
                         "CREATE TABLE artifacts (id TEXT NOT NULL, name TEXT NOT NULL, value BLOB NOT NULL,"
                         " PRIMARY KEY (id, name));"
                       : ");") +
         "INSERT INTO meta VALUES ('schema_version', '" + std::to_string(version) + "');";
}

// A store of that schema version holding request "old" in `state`, opened
// (and so upgraded) by this version.
std::unique_ptr<RequestStore> open_old_store(const TempDir& d, int version, const std::string& state) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open((d / "requests.db").c_str(), &db), SQLITE_OK);
  const std::string sql = old_schema(version) +
                          "INSERT INTO requests(id, profile, body_sha256, state, received_at_ms, updated_at_ms, seq)"
                          " VALUES ('old', 'users', 'h', '" + state + "', 1, 1, 1);";
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  return open_or_die(d / "requests.db");
}

// A store written by the first schema (no due time, no artifacts) opens and
// is upgraded in place with its requests kept.
TEST(RequestStore, UpgradesASchemaVersion1Store) {
  TempDir d;
  auto s = open_old_store(d, 1, "received");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->get("old")->state, State::received);
  EXPECT_EQ((*s->claim_next(State::received, State::processing))->id, "old");
  EXPECT_TRUE(s->put("old", State::processing, {{"csr", "c"}}));
  s.reset();
  EXPECT_TRUE(open_or_die(d / "requests.db"));  // and opens again as the current version
}

// Who took a request: the owner is stamped on every move to processing (a
// claim or a transition), so that a request whose owner died can be taken
// back while others work on.
TEST(RequestStore, EveryMoveToProcessingRecordsItsOwner) {
  TempDir d;
  auto daemon = RequestStore::open(d / "requests.db", {.owner = "boot/100/1"});
  auto cli = RequestStore::open(d / "requests.db", {.owner = "boot/200/2"});
  ASSERT_TRUE(daemon && cli);
  ASSERT_TRUE((*daemon)->receive("a", "users", "h"));
  ASSERT_TRUE((*daemon)->receive("b", "users", "h"));
  auto claimed = (*daemon)->claim_next(State::received, State::processing);
  ASSERT_TRUE(claimed && *claimed);
  EXPECT_EQ((*claimed)->owner, "boot/100/1");
  EXPECT_EQ((*daemon)->get((*claimed)->id)->owner, "boot/100/1");
  ASSERT_TRUE((*daemon)->transition("a", State::processing, State::issued));
  ASSERT_TRUE((*cli)->transition("a", State::issued, State::processing));  // a CLI redelivery
  EXPECT_EQ((*daemon)->get("a")->owner, "boot/200/2");
}

// The status record as an outbox: a change that shows there makes its
// version due; marking an older version written leaves the newer one due,
// so a writer that read the record before a later change never hides it.
TEST(RequestStore, StatusVersionsStayDueUntilTheirOwnVersionIsWritten) {
  TempDir d;
  auto s = open_or_die(d / "requests.db");
  ASSERT_TRUE(s->receive("r", "users", "h"));
  EXPECT_TRUE(s->status_due()->empty());
  ASSERT_TRUE(s->refuse("bad", "h2", Error{"request.x", "bad", "fix"}));
  ASSERT_EQ(s->status_due()->size(), 1u);
  EXPECT_EQ(s->status_due()->front().id, "bad");
  ASSERT_TRUE(s->status_published("bad", 1));

  ASSERT_TRUE(s->claim_next(State::received, State::processing));
  ASSERT_TRUE(s->transition("r", State::processing, State::issued, {.status_changed = true}));
  const auto v1 = s->get("r")->status_version;
  ASSERT_TRUE(s->put("r", State::issued, {{"revocation", "{}"}}, true));  // a later change
  EXPECT_TRUE(s->status_published("r", v1));
  auto due = s->status_due();
  ASSERT_EQ(due->size(), 1u) << "the later version is still due";
  EXPECT_TRUE(due->front().status_due());
  ASSERT_TRUE(s->status_published("r", due->front().status_version));
  EXPECT_TRUE(s->status_due()->empty());
  ASSERT_TRUE(s->put("r", State::issued, {{"x", "y"}}));  // not shown in the status
  EXPECT_TRUE(s->status_due()->empty());
}

// A request sent back to received because the connector's own resources
// were away (the token) did not try the CA: the attempt is given back.
TEST(RequestStore, AnAttemptThatNeverReachedTheCaIsGivenBack) {
  TempDir d;
  auto s = open_or_die(d / "requests.db");
  ASSERT_TRUE(s->receive("r", "users", "h"));
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(s->claim_next(State::received, State::processing));
    ASSERT_TRUE(s->transition("r", State::processing, State::received, {.refund_attempt = true}));
  }
  EXPECT_EQ(s->get("r")->attempts, 0);
  ASSERT_TRUE(s->claim_next(State::received, State::processing));
  ASSERT_TRUE(s->transition("r", State::processing, State::received));
  EXPECT_EQ(s->get("r")->attempts, 1);
}

// A version 2 store (no owner, no status versions) is upgraded in place;
// its request in processing has no owner, so it counts as an orphan.
TEST(RequestStore, UpgradesASchemaVersion2Store) {
  TempDir d;
  auto s = open_old_store(d, 2, "processing");
  ASSERT_TRUE(s);
  auto old = s->get("old");
  ASSERT_TRUE(old) << old.error().to_string();
  EXPECT_EQ(old->state, State::processing);
  EXPECT_EQ(old->owner, "");
  EXPECT_FALSE(old->status_due());
}

// Killed in the middle of a stream of committed changes: on reopen every
// committed change is there, the file is intact, nothing half-written.
TEST(RequestStore, SurvivesSigkillMidWrite) {
  TempDir d;
  const std::string path = d / "requests.db";
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto s = RequestStore::open(path);
    if (!s) ::_exit(2);
    for (int i = 0;; ++i) {
      if (!(*s)->receive("r" + std::to_string(i), "users", "h")) ::_exit(3);
      if (i % 2 == 0) (void)(*s)->transition("r" + std::to_string(i), State::received, State::processing);
      if (i == 50) {  // tell the parent enough is committed
        std::ofstream(path + ".ready") << "1";
      }
    }
  }
  for (int i = 0; i < 500 && !std::ifstream(path + ".ready"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  auto s = open_or_die(path);
  ASSERT_TRUE(s);
  auto all = s->list();
  ASSERT_TRUE(all);
  ASSERT_GT(all->size(), 50u);
  // Ids are consecutive from r0: no gap, and each even one is processing
  // unless the kill fell between its receive and its transition (the last one).
  for (std::size_t i = 0; i < all->size(); ++i) {
    EXPECT_EQ((*all)[i].id, "r" + std::to_string(i));
    if (i % 2 == 0 && i + 1 < all->size()) {
      EXPECT_EQ((*all)[i].state, State::processing) << i;
    }
    if (i % 2 == 1) {
      EXPECT_EQ((*all)[i].state, State::received) << i;
    }
  }
}

TEST(RequestStore, ADamagedOrForeignFileIsNamed) {
  TempDir d;
  std::ofstream(d / "garbage.db") << std::string(8192, 'x');
  auto g = RequestStore::open(d / "garbage.db");
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().code, "store.corrupt") << g.error().to_string();
  EXPECT_NE(g.error().remedy.find("backup"), std::string::npos);

  {
    auto s = open_or_die(d / "newer.db");
    ASSERT_TRUE(s);
  }
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((d / "newer.db").c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "UPDATE meta SET value = '99' WHERE key = 'schema_version'", nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  auto n = RequestStore::open(d / "newer.db");
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().code, "store.schema_newer");

  auto missing_dir = RequestStore::open(d / "no-such-dir/requests.db");
  ASSERT_FALSE(missing_dir);
  EXPECT_EQ(missing_dir.error().code, "store.unwritable");
}

}  // namespace
}  // namespace certcustody::store
