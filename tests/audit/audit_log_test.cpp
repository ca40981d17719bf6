// The audit log's hash chain: records verify, every kind of tampering with
// the records is named at the first bad one, a torn last line is cut off and
// recorded, and concurrent appends keep the chain whole.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "audit/audit_log.h"
#include "support/temp_dir.h"

namespace certcustody::audit {
namespace {

using testing::read_file;
using testing::TempDir;
using testing::write_file;

std::unique_ptr<AuditLog> open_or_die(const std::string& path) {
  auto log = AuditLog::open({.path = path, .host = "test-host", .actor = current_actor("test")});
  EXPECT_TRUE(log) << log.error().to_string();
  return log ? std::move(log.value()) : nullptr;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

// A log of `n` request events.
std::string make_log(const TempDir& d, int n) {
  auto log = open_or_die(d / "audit.log");
  for (int i = 1; i <= n; ++i)
    EXPECT_TRUE(log->append({.type = "request.received", .request_id = "r-" + std::to_string(i)}));
  EXPECT_TRUE(log->sync());
  return read_file(d / "audit.log");
}

TEST(AuditLog, RecordsFormAChainThatVerifiesAndContinuesAfterReopen) {
  TempDir d;
  const std::string text = make_log(d, 5);
  auto lines = lines_of(text);
  ASSERT_EQ(lines.size(), 5u);
  auto first = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(first["seq"], 1);
  EXPECT_EQ(first["prev"], kGenesis);
  EXPECT_EQ(first["event"], "request.received");
  EXPECT_EQ(first["request"], "r-1");
  EXPECT_EQ(first["host"], "test-host");
  EXPECT_EQ(first["actor"]["command"], "test");
  EXPECT_EQ(first["ts"].get<std::string>().back(), 'Z');
  auto r = verify_chain(text, "audit.log");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->records, 5u);
  EXPECT_EQ(r->last_seq, 5u);

  auto log = open_or_die(d / "audit.log");
  EXPECT_EQ(log->last_seq(), 5u);
  EXPECT_EQ(log->head(), r->head);
  ASSERT_TRUE(log->append({.type = "daemon.stop", .outcome = "failed", .error_code = "x.y", .detail = {{"k", "v"}}}));
  auto again = verify_chain(read_file(d / "audit.log"), "audit.log");
  ASSERT_TRUE(again) << again.error().to_string();
  EXPECT_EQ(again->last_seq, 6u);
  auto last = nlohmann::json::parse(lines_of(read_file(d / "audit.log")).back());
  EXPECT_EQ(last["error"], "x.y");
  EXPECT_EQ(last["detail"]["k"], "v");
}

struct Tamper {
  const char* name;
  std::vector<std::string> (*apply)(std::vector<std::string>);
  const char* must_mention;
};

class AuditTamper : public ::testing::TestWithParam<Tamper> {};

TEST_P(AuditTamper, IsFoundAtTheFirstBadRecord) {
  TempDir d;
  const auto lines = lines_of(make_log(d, 6));
  auto r = verify_chain(joined(GetParam().apply(lines)), "audit.log");
  ASSERT_FALSE(r) << GetParam().name;
  EXPECT_EQ(r.error().code, "audit.chain_broken");
  EXPECT_NE(r.error().what.find(GetParam().must_mention), std::string::npos) << r.error().what;
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, AuditTamper,
    ::testing::Values(
        Tamper{"modification",
               [](std::vector<std::string> l) {
                 auto j = nlohmann::ordered_json::parse(l[2]);
                 j["outcome"] = "failed";  // a field changed, its own prev intact
                 l[2] = j.dump();
                 return l;
               },
               "audit.log:4: seq 4 names a previous record that is not the one before it: that record was changed"},
        Tamper{"deletion",
               [](std::vector<std::string> l) {
                 l.erase(l.begin() + 2);
                 return l;
               },
               "audit.log:3: seq 4 follows seq 2: records are missing"},
        Tamper{"insertion",
               [](std::vector<std::string> l) {
                 l.insert(l.begin() + 3, l[2]);  // a copy of a real record
                 return l;
               },
               "audit.log:4: seq 3 follows seq 3: a record was inserted or moved"},
        Tamper{"reordering",
               [](std::vector<std::string> l) {
                 std::swap(l[3], l[4]);
                 return l;
               },
               "audit.log:4: seq 5 follows seq 3"},
        Tamper{"first record removed",
               [](std::vector<std::string> l) {
                 l.erase(l.begin());
                 return l;
               },
               "audit.log:1: seq 2 names a previous record that is not the one before it (the chain does not start "
               "here)"},
        Tamper{"garbage line", [](std::vector<std::string> l) {
                 l[1] = "{\"seq\": \"two\"}";
                 return l;
               },
               "audit.log:2: a record without seq or prev"}),
    [](const auto& param_info) {
      std::string n = param_info.param.name;
      std::replace(n.begin(), n.end(), ' ', '_');
      return n;
    });

TEST(AuditLog, ATornLastLineIsCutOffAndRecorded) {
  TempDir d;
  const std::string text = make_log(d, 3);
  const std::string torn = R"({"seq":4,"ts":"2026-11-29T1)";
  write_file(d / "audit.log", text + torn);
  auto partial = verify_chain(read_file(d / "audit.log"), "audit.log");
  ASSERT_FALSE(partial);
  EXPECT_EQ(partial.error().code, "audit.torn_tail");

  auto log = open_or_die(d / "audit.log");
  ASSERT_TRUE(log);
  EXPECT_EQ(log->last_seq(), 4u);  // the repair is record 4
  const std::string repaired = read_file(d / "audit.log");
  EXPECT_EQ(repaired.substr(0, text.size()), text);
  auto last = nlohmann::json::parse(lines_of(repaired).back());
  EXPECT_EQ(last["event"], "audit.torn_tail_repaired");
  EXPECT_EQ(last["detail"]["bytes"], std::to_string(torn.size()));
  auto r = verify_chain(repaired, "audit.log");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->records, 4u);
}

TEST(AuditLog, AFileWhoseLastLineIsNoRecordIsRefused) {
  TempDir d;
  write_file(d / "audit.log", "hello\n");
  auto log = AuditLog::open({.path = d / "audit.log"});
  ASSERT_FALSE(log);
  EXPECT_EQ(log.error().code, "audit.corrupt");
}

TEST(AuditLog, EightThreadsAppendingKeepTheChainWhole) {
  TempDir d;
  auto log = open_or_die(d / "audit.log");
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 250; ++i)
        EXPECT_TRUE(log->append({.type = "request.received", .request_id = std::to_string(t) + "-" + std::to_string(i)}));
    });
  for (auto& t : ts) t.join();
  auto r = verify_chain(read_file(d / "audit.log"), "audit.log");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->records, 2000u);
  EXPECT_EQ(r->head, log->head());
}

TEST(AuditLog, ValuesThatAreNotUtf8AreEscapedNotDropped) {
  TempDir d;
  auto log = open_or_die(d / "audit.log");
  ASSERT_TRUE(log->append({.type = "request.received", .request_id = std::string("bad\xff\xfe id")}));
  auto r = verify_chain(read_file(d / "audit.log"), "audit.log");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->records, 1u);
}

}  // namespace
}  // namespace certcustody::audit
