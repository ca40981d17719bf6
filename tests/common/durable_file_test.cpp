#include "common/durable_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cerrno>
#include <filesystem>

#include "support/temp_dir.h"

namespace certcustody {
namespace {

std::size_t entries(const std::string& dir) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++n;
  return n;
}

TEST(DurableFile, ReplacesOrKeepsAndLeavesNoTemporaryFile) {
  testing::TempDir dir;
  const std::string path = dir / "f";
  ASSERT_EQ(write_file_durably(path, "one", 0600, Existing::keep), 0);
  EXPECT_EQ(write_file_durably(path, "two", 0600, Existing::keep), EEXIST);
  EXPECT_EQ(testing::read_file(path), "one") << "kept";
  ASSERT_EQ(write_file_durably(path, "three", 0644, Existing::replace), 0);
  EXPECT_EQ(testing::read_file(path), "three");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  EXPECT_EQ(entries(dir.path()), 1u) << "no temporary file left";
}

TEST(DurableFile, AMissingDirectoryIsAnErrno) {
  testing::TempDir dir;
  EXPECT_EQ(write_file_durably(dir / "none/f", "x", 0600, Existing::replace), ENOENT);
  EXPECT_EQ(entries(dir.path()), 0u);
}

}  // namespace
}  // namespace certcustody
