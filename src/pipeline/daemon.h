// `certcustody serve`: the spool scanner and a pool of workers over one
// Pipeline. SIGTERM/SIGINT: stop taking work, let every worker bring its
// request to a resting state, exit. SIGHUP: build a new Runtime from the
// configuration file and swap it in (a bad file keeps the old one).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "pipeline/pipeline.h"

namespace certcustody::pipeline {

// Holds <state>/serve.lock (flock) for the life of the object: one daemon per
// state directory, since recovery assumes nobody else owns "processing".
class DaemonLock {
 public:
  static Result<std::unique_ptr<DaemonLock>> acquire(const std::string& state_dir);
  // Whether a daemon holds the lock of `state_dir` now.
  static bool held(const std::string& state_dir);
  ~DaemonLock();
  DaemonLock(const DaemonLock&) = delete;
  DaemonLock& operator=(const DaemonLock&) = delete;

 private:
  explicit DaemonLock(int fd) : fd_(fd) {}
  int fd_;
};

struct DaemonOptions {
  unsigned workers = 1;
  bool until_idle = false;  // exit when nothing is due within a minute (tests, the demo, cron-style runs)
  std::function<Result<std::shared_ptr<Runtime>>()> reload;  // SIGHUP
  audit::AuditLog* audit = nullptr;     // start, reload and stop events; checkpoints on a timer and at stop
  unsigned checkpoint_interval_ms = 1000;
  std::uint64_t rotate_bytes = 0;  // the audit log's size for a new, chained file (0: never)
  // Watched on a timer: while the keys are out of reach the workers pause (the
  // requests wait in the store), and the loss and the recovery are logged,
  // recorded in the audit log and shown in <state_dir>/serve.status.json.
  KeyCustody* custody = nullptr;
  std::string state_dir;
};

// What `certcustody status` shows of a running daemon: <state>/serve.status.json.
std::string daemon_status_path(const std::string& state_dir);

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and so in every
// thread it starts); call before any other thread exists.
void block_daemon_signals();

Status run_daemon(Pipeline& pipeline, store::RequestStore& store, const DaemonOptions& options);

}  // namespace certcustody::pipeline
