// The spool: request ids, atomic drop and claim (one winner among claimers),
// the size limit checked before reading, and private file modes.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "pipeline/spool.h"
#include "support/temp_dir.h"

namespace certcustody::pipeline {
namespace {

using testing::TempDir;

unsigned mode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 0777;
}

TEST(Spool, RequestIdsAreSafeFileNames) {
  for (const char* ok : {"r-1", "dev_4711.wifi", "user@contoso.example", "A", "x..y"})
    EXPECT_TRUE(valid_request_id(ok)) << ok;
  for (const char* bad : {"", ".hidden", "..", "a/b", "../etc/passwd", "a b", "a\nb", "ä", "a:b", "a\\b"})
    EXPECT_FALSE(valid_request_id(bad)) << bad;
  EXPECT_TRUE(valid_request_id(std::string(128, 'a')));
  EXPECT_FALSE(valid_request_id(std::string(129, 'a')));
}

TEST(Spool, CreatesPrivateDirectoriesAndFiles) {
  TempDir d;
  const SpoolPaths p = spool_paths(d / "state");
  ASSERT_TRUE(ensure_spool(p));
  ASSERT_TRUE(ensure_spool(p));  // idempotent
  for (const std::string& dir : {d / "state", p.incoming, p.claimed, p.rejected, p.outgoing, p.tmp})
    EXPECT_EQ(mode_of(dir), 0700u) << dir;
  ASSERT_TRUE(write_atomic(p, p.outgoing, "r-1.status.json", "{}"));
  EXPECT_EQ(mode_of(p.outgoing + "/r-1.status.json"), 0600u);
  EXPECT_EQ(testing::read_file(p.outgoing + "/r-1.status.json"), "{}");
  ASSERT_TRUE(write_atomic(p, p.outgoing, "r-1.status.json", "{\"v\":2}"));  // replaced whole
  EXPECT_EQ(testing::read_file(p.outgoing + "/r-1.status.json"), "{\"v\":2}");
}

TEST(Spool, SubmitRefusesBadIdsAndADoubleQueue) {
  TempDir d;
  const SpoolPaths p = spool_paths(d / "state");
  ASSERT_TRUE(ensure_spool(p));
  EXPECT_EQ(spool_submit(p, "../x", "{}").error().code, "request.id_invalid");
  ASSERT_TRUE(spool_submit(p, "r-1", "{}"));
  EXPECT_EQ(spool_submit(p, "r-1", "{}").error().code, "request.already_queued");
  auto claimed = spool_claim(p);
  ASSERT_TRUE(claimed);
  ASSERT_EQ(claimed->size(), 1u);
  EXPECT_EQ(spool_submit(p, "r-1", "{}").error().code, "request.already_queued");  // claimed, not yet recorded
}

TEST(Spool, ClaimTakesOnlyJsonFilesAndKeepsEarlierClaims) {
  TempDir d;
  const SpoolPaths p = spool_paths(d / "state");
  ASSERT_TRUE(ensure_spool(p));
  testing::write_file(p.incoming + "/a.json", "{}");
  testing::write_file(p.incoming + "/.b.json", "{}");  // a file still being written under a dot name
  testing::write_file(p.incoming + "/c.tmp", "{}");
  testing::write_file(p.claimed + "/old.json", "{}");  // claimed by a run that was killed
  ASSERT_EQ(::mkdir((p.incoming + "/dir.json").c_str(), 0700), 0);
  auto claimed = spool_claim(p);
  ASSERT_TRUE(claimed);
  std::vector<std::string> names;
  for (const auto& f : *claimed) names.push_back(f.substr(f.rfind('/') + 1));
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"a.json", "old.json"}));
  EXPECT_EQ(testing::read_file(p.incoming + "/c.tmp"), "{}");
}

TEST(Spool, ConcurrentClaimersTakeEachFileOnce) {
  TempDir d;
  const SpoolPaths p = spool_paths(d / "state");
  ASSERT_TRUE(ensure_spool(p));
  for (int i = 0; i < 200; ++i) testing::write_file(p.incoming + "/r" + std::to_string(i) + ".json", "{}");
  // Two claimers move files into one claimed/ directory; together they move
  // each exactly once (a lost rename race is ENOENT, not an error).
  std::atomic<int> errors{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 2; ++t)
    ts.emplace_back([&] {
      if (!spool_claim(p)) ++errors;
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(errors, 0);
  auto all = spool_claim(p);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 200u);
}

TEST(Spool, ATooLargeFileIsRefusedUnread) {
  TempDir d;
  testing::write_file(d / "big.json", std::string(2048, ' '));
  auto r = read_spool_file(d / "big.json", 1024);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "request.too_large");
  EXPECT_NE(r.error().what.find("2048 bytes"), std::string::npos) << r.error().what;
  auto ok = read_spool_file(d / "big.json", 4096);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->size(), 2048u);
}

}  // namespace
}  // namespace certcustody::pipeline
