// A background peer process (openssl s_server, a CMP server...) for tests:
// started on a free loopback port, stopped (SIGTERM, then SIGKILL) on
// destruction. Output goes to a log file the test can read.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace certcustody::testing {

class Process {
 public:
  Process(const std::vector<std::string>& argv, const std::vector<std::string>& env, const std::string& log_path);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  bool running() const;
  void signal(int sig) const;
  // Waits for the process to end by itself (up to timeout_ms); -1 on timeout.
  int wait(int timeout_ms);
  std::string log() const;
  // Polls the log until it contains `needle` (e.g. s_server's "ACCEPT").
  bool wait_for_output(const std::string& needle, int timeout_ms) const;

 private:
  pid_t pid_ = -1;
  std::string log_path_;
  int exit_code_ = -1;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
int free_loopback_port();
// Polls until something accepts connections on 127.0.0.1:port.
bool wait_for_port(int port, int timeout_ms);

}  // namespace certcustody::testing
