// The request store: intake idempotence, the state machine as compare-and-set,
// one claim per request across threads and processes, durability and named
// errors for damaged or foreign files.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
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
  auto jump = s->transition("r1", State::processing, State::delivered);
  ASSERT_FALSE(jump);
  EXPECT_EQ(jump.error().code, "store.transition_invalid");
  ASSERT_TRUE(s->transition("r1", State::processing, State::pending_ca,
                            Update{std::nullopt, std::string("65"), std::string("https://ces/CES")}));
  auto r = s->get("r1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->state, State::pending_ca);
  EXPECT_EQ(r->ca_request_id, "65");
  EXPECT_EQ(r->ca_poll_uri, "https://ces/CES");
  EXPECT_EQ(r->attempts, 1);
  ASSERT_TRUE(s->transition("r1", State::pending_ca, State::failed,
                            Update{Error{"ca.denied", "denied by a CA manager", "ask the CA", 0}, {}, {}}));
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
