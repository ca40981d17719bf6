#include "pipeline/owner.h"

#include <unistd.h>

#include <charconv>
#include <fstream>
#include <iterator>
#include <sstream>

namespace certcustody::pipeline {
namespace {

std::string boot_id() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

// Field 22 of /proc/<pid>/stat (after the command name in parentheses, which
// may itself hold spaces and parentheses); empty when the process is gone.
std::string start_ticks(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  const std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return {};
  std::istringstream fields(stat.substr(close + 1));
  std::string f;
  for (int i = 3; i <= 22 && fields >> f; ++i) {
    if (i == 22) return f;
  }
  return {};
}

bool parse_pid(std::string_view s, long& pid) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), pid);
  return ec == std::errc{} && end == s.data() + s.size() && pid > 0;
}

bool alive(long pid, std::string_view ticks) {
  const std::string now = start_ticks(pid);
  return !now.empty() && now == ticks;
}

}  // namespace

std::string this_process_token() {
  const long pid = static_cast<long>(::getpid());
  return std::to_string(pid) + "-" + start_ticks(pid);
}

std::string this_process_owner() {
  const long pid = static_cast<long>(::getpid());
  return boot_id() + "/" + std::to_string(pid) + "/" + start_ticks(pid);
}

bool process_token_alive(std::string_view token) {
  const auto dash = token.find('-');
  long pid = 0;
  if (dash == std::string_view::npos || !parse_pid(token.substr(0, dash), pid)) return false;
  return alive(pid, token.substr(dash + 1));
}

bool owner_alive(std::string_view owner) {
  if (owner.empty()) return false;
  const auto first = owner.find('/'), second = owner.rfind('/');
  long pid = 0;
  if (first == std::string_view::npos || first == second || !parse_pid(owner.substr(first + 1, second - first - 1), pid))
    return true;  // not ours to judge
  if (owner.substr(0, first) != boot_id()) return false;  // that boot is over
  return alive(pid, owner.substr(second + 1));
}

}  // namespace certcustody::pipeline
