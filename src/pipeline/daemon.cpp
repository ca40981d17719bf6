#include "pipeline/daemon.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "common/durable_file.h"

namespace certcustody::pipeline {
namespace {

void log_daemon(const std::string& text) { std::fprintf(stderr, "certcustody serve: %s\n", text.c_str()); }

constexpr std::chrono::milliseconds kMaintenanceInterval{1000};

struct Shared {
  std::atomic<bool> stop{false};
  std::atomic<bool> custody_available{true};  // false: workers pause, requests wait in the store
  std::atomic<int> busy{0};
  std::mutex mu;
  std::condition_variable wake;
  std::uint64_t intake_rounds = 0;  // under mu: moves on when intake recorded new requests
};

sigset_t daemon_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

void worker(Pipeline& p, Shared& sh, unsigned scan_ms) {
  while (!sh.stop) {
    std::uint64_t seen = 0;
    {
      std::unique_lock l(sh.mu);
      if (!sh.custody_available) {  // nothing to do but wait for the keys
        sh.wake.wait_for(l, std::chrono::seconds(1), [&] { return sh.stop.load() || sh.custody_available.load(); });
        continue;
      }
      seen = sh.intake_rounds;
    }
    ++sh.busy;
    auto did = p.work_once();
    --sh.busy;
    if (!did) log_daemon("worker: " + did.error().to_string());
    if (did && *did) continue;
    // Idle: until intake brings new requests, or a retry or poll may be due.
    std::unique_lock l(sh.mu);
    sh.wake.wait_for(l, std::chrono::milliseconds(did ? scan_ms : 1000),
                     [&] { return sh.stop.load() || sh.intake_rounds != seen; });
  }
}

void announce_intake(Shared& sh) {
  {
    std::lock_guard l(sh.mu);
    ++sh.intake_rounds;
  }
  sh.wake.notify_all();
}

// Nothing left to do soon: no request owned by a worker, none due within a
// minute (a request waiting longer, e.g. at the CA, is left for the next run).
Result<bool> idle(store::RequestStore& store, const Shared& sh) {
  if (sh.busy != 0) return false;
  CC_TRY_ASSIGN(auto counts, store.counts());
  if (counts[store::State::processing] != 0) return false;
  const std::int64_t soon =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count() +
      60000;
  for (store::State s : {store::State::received, store::State::issued, store::State::pending_ca}) {
    CC_TRY_ASSIGN(auto due, store.next_due(s));
    if (due && *due <= soon) return false;
  }
  return sh.busy == 0;
}

// An event of the daemon itself; a failure is reported (the workers' own
// events stop their steps when the log cannot be written).
void record(const DaemonOptions& o, const audit::Event& e) {
  if (o.audit == nullptr) return;
  if (Status s = o.audit->append(e); !s) log_daemon("audit: " + s.error().to_string());
}

void reload(Pipeline& p, const DaemonOptions& o) {
  if (!o.reload) return;
  auto rt = o.reload();
  if (!rt) {
    log_daemon("reload refused, the previous configuration stays: " + rt.error().to_string());
    record(o, {.type = "config.reload_refused", .outcome = "failed", .error_code = rt.error().code});
    return;
  }
  const std::string sha256 = (*rt)->cfg.sha256;
  p.set_runtime(std::move(rt).value());
  record(o, {.type = "config.reloaded", .detail = {{"config_sha256", sha256}}});
  log_daemon("configuration reloaded");
}

std::int64_t epoch_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The keys' reachability as the daemon last saw it.
struct CustodyWatch {
  bool available = true;
  std::optional<Error> error;
  std::int64_t since_ms = 0;
  std::int64_t started_ms = epoch_ms();
};

void write_daemon_status(const DaemonOptions& o, const CustodyWatch& w) {
  if (o.state_dir.empty()) return;
  nlohmann::json custody = {{"location", o.custody != nullptr ? o.custody->location() : ""},
                            {"available", w.available}};
  if (!w.available) {
    custody["since_ms"] = w.since_ms;
    if (w.error) custody["error"] = {{"code", w.error->code}, {"what", w.error->what}, {"remedy", w.error->remedy}};
  }
  const nlohmann::json j = {{"version", 1}, {"pid", static_cast<long>(::getpid())}, {"started_at_ms", w.started_ms},
                            {"custody", custody}};
  if (int err = write_file_durably(daemon_status_path(o.state_dir), j.dump(2) + "\n", 0600, Existing::replace); err)
    log_daemon(std::string("cannot write ") + daemon_status_path(o.state_dir) + ": " + std::strerror(err));
}

// Probes the keys (a token that left while nothing used it is noticed too)
// and acts on a change: workers pause or resume, the change is logged,
// recorded and shown in serve.status.json.
void watch_custody(const DaemonOptions& o, Shared& sh, CustodyWatch& w) {
  if (o.custody == nullptr) return;
  (void)o.custody->check();
  const CustodyHealth h = o.custody->health();
  if (h.available == w.available) return;
  w.available = h.available;
  const std::string where = o.custody->location();
  if (!h.available) {
    w.error = h.error;
    w.since_ms = h.since_ms != 0 ? h.since_ms : epoch_ms();
    const std::string why = h.error ? h.error->to_string() : "unknown";
    log_daemon("the keys at " + where + " are out of reach, requests wait: " + why);
    record(o, {.type = "custody.unavailable", .outcome = "failed",
               .error_code = h.error ? h.error->code : "", .detail = {{"location", where}}});
  } else {
    const std::int64_t away = epoch_ms() - w.since_ms;
    w.error.reset();
    log_daemon("the keys at " + where + " are back after " + std::to_string(away) + " ms; requests resume");
    record(o, {.type = "custody.recovered", .detail = {{"location", where}, {"away_ms", std::to_string(away)}}});
  }
  {
    std::lock_guard l(sh.mu);
    sh.custody_available = h.available;
  }
  sh.wake.notify_all();
  write_daemon_status(o, w);
}

}  // namespace

std::string daemon_status_path(const std::string& state_dir) { return state_dir + "/serve.status.json"; }

bool DaemonLock::held(const std::string& state_dir) {
  const std::string path = state_dir + "/serve.lock";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return false;
  const bool taken = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);
  return taken;
}

Result<std::unique_ptr<DaemonLock>> DaemonLock::acquire(const std::string& state_dir) {
  const std::string path = state_dir + "/serve.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return Error{"spool.unwritable", "cannot open " + path + ": " + std::strerror(errno),
                 "let the service user write the state directory"};
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return Error{"pipeline.already_running", "another `certcustody serve` holds " + path,
                 "run one daemon per state directory (systemctl status certcustody)"};
  }
  return std::unique_ptr<DaemonLock>(new DaemonLock(fd));
}

DaemonLock::~DaemonLock() { ::close(fd_); }

void block_daemon_signals() {
  sigset_t set = daemon_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

Status run_daemon(Pipeline& pipeline, store::RequestStore& store, const DaemonOptions& o) {
  // The records a killed run (or a CLI command since) left after the last
  // checkpoint are signed before anything else happens.
  if (o.audit != nullptr)
    if (Status s = o.audit->checkpoint_unsigned_tail(); !s) log_daemon("audit checkpoint at start: " + s.error().to_string());
  CC_TRY(pipeline.recover());
  Shared sh;
  const unsigned scan_ms = pipeline.runtime()->pcfg.scan_interval_ms;
  std::vector<std::thread> workers;
  for (unsigned i = 0; i < std::max(1u, o.workers); ++i)
    workers.emplace_back(worker, std::ref(pipeline), std::ref(sh), scan_ms);
  log_daemon("started with " + std::to_string(workers.size()) + " workers");
  record(o, {.type = "daemon.start",
             .detail = {{"workers", std::to_string(workers.size())},
                        {"config", pipeline.runtime()->cfg.path},
                        {"config_sha256", pipeline.runtime()->cfg.sha256}}});
  const sigset_t set = daemon_signals();
  auto next_scan = std::chrono::steady_clock::now();
  auto next_maintenance = next_scan + kMaintenanceInterval;
  CustodyWatch watch;
  write_daemon_status(o, watch);
  while (!sh.stop) {
    if (std::chrono::steady_clock::now() >= next_maintenance) {
      // Requests of processes that died (a killed redeliver), status records
      // a kill left unwritten: picked up without a restart.
      if (Status s = pipeline.maintain(); !s) log_daemon("maintenance: " + s.error().to_string());
      watch_custody(o, sh, watch);
      next_maintenance = std::chrono::steady_clock::now() + kMaintenanceInterval;
    }
    if (std::chrono::steady_clock::now() >= next_scan) {
      auto taken = pipeline.intake();
      if (!taken) log_daemon("intake: " + taken.error().to_string());
      if (taken && *taken > 0) announce_intake(sh);
      next_scan = std::chrono::steady_clock::now() + std::chrono::milliseconds(scan_ms);
      if (o.until_idle && taken && *taken == 0) {
        auto is_idle = idle(store, sh);
        if (is_idle && *is_idle) break;
      }
    }
    if (o.audit != nullptr) {
      if (Status s = o.audit->maybe_checkpoint(std::chrono::milliseconds(o.checkpoint_interval_ms)); !s)
        log_daemon("audit checkpoint: " + s.error().to_string());
      if (Status s = o.audit->maybe_rotate(o.rotate_bytes); !s) log_daemon("audit rotation: " + s.error().to_string());
    }
    timespec wait{0, 50 * 1000 * 1000};
    const int sig = sigtimedwait(&set, nullptr, &wait);
    if (sig == SIGHUP) {
      reload(pipeline, o);
    } else if (sig == SIGTERM || sig == SIGINT) {
      log_daemon(std::string("stopping on ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") +
                 ": finishing the requests in hand");
      break;
    }
  }
  {
    std::lock_guard l(sh.mu);
    sh.stop = true;
  }
  sh.wake.notify_all();
  for (auto& t : workers) t.join();
  auto counts = store.counts();
  if (counts) {
    std::string line = "stopped;";
    for (const auto& [state, n] : *counts)
      line.append(" ").append(store::state_name(state)).append(" ").append(std::to_string(n));
    log_daemon(line);
  }
  record(o, {.type = "daemon.stop"});
  if (o.audit != nullptr)
    if (Status s = o.audit->checkpoint_unsigned_tail(); !s)
      log_daemon("audit checkpoint at stop: " + s.error().to_string());
  return {};
}

}  // namespace certcustody::pipeline
