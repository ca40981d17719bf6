// The audit log (issue 8): records appended per second with and without
// signed checkpoints, the cost of one checkpoint and of its parts, and
// verification speed, in one run so that every figure is a ratio against a
// baseline measured beside it.
//
//   BM_Append/unsigned/threads:N   AuditLog::append of a typical event
//                                  ("request.received", a request id, two
//                                  detail pairs), no signer: the baseline
//   BM_Append/signed/threads:N     the same with options.signer = token_signer
//                                  (EC P-256 audit key and counter in SoftHSM)
//                                  and checkpoint_every = 1000, and the
//                                  daemon's timer call maybe_checkpoint(1 s)
//                                  after every append (a no-op under load)
//   BM_Append/synced/threads:1     append + sync() (fdatasync) per event
//   BM_Checkpoint/full/threads:1   AuditLog::checkpoint(signer) alone: token
//                                  counter advance + SHA-256 + token signature
//                                  + the checkpoint record + fdatasync
//   BM_Checkpoint/counter, /sign   its token parts alone
//   BM_Verify/chain, /signed       verify_chain (baseline) and verify_log with
//                                  the public key over a log of 100,000
//                                  records holding a checkpoint every 1000
//
// items_per_second is events (or records) per second, wall clock. Logs are
// written to a fresh file in a temporary directory ($TMPDIR) per run; one
// SoftHSM token is made on first use. bench/run-audit-bench.sh builds this in
// Release and prints the table of docs/performance.md.
//
// As in custody_bench, main() tears the token down before OpenSSL's exit
// cleanup (SoftHSM 2.6.1 crashes otherwise).

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

#include "audit/audit_log.h"
#include "audit/token_signer.h"
#include "bench_support.h"
#include "common/ossl.h"
#include "custody/pkcs11_custody.h"
#include "support/softhsm_token.h"
#include "support/temp_dir.h"

namespace {

using namespace certcustody;
using certcustody::audit::AuditLog;
using certcustody::testing::SoftHsmToken;
using certcustody::testing::TempDir;

constexpr const char* kKeyLabel = "audit-bench-ec";
constexpr const char* kCounterLabel = "audit-bench-counter";
constexpr std::uint64_t kCheckpointEvery = 1000;
constexpr std::uint64_t kVerifyRecords = 100000;

template <class T>
T value_or_throw(Result<T> r, const std::string& what) {
  if (!r) throw std::runtime_error(what + ": " + r.error().to_string());
  return std::move(r).value();
}

void ok_or_throw(const Status& s, const std::string& what) {
  if (!s) throw std::runtime_error(what + ": " + s.error().to_string());
}

// What the daemon records when a request arrives.
const audit::Event& typical_event() {
  static const audit::Event e{
      .type = "request.received",
      .request_id = "dev-4711-20261129-000042",
      .detail = {{"profile", "device-tls-client"},
                 {"csr_sha256", "3f7a9c1e5b2d4f6a8c0e1b3d5f7a9c1e5b2d4f6a8c0e1b3d5f7a9c1e5b2d4f6a"}}};
  return e;
}

// The token with the audit key and counter, the signer on it, and a
// directory for the logs. Destroyed in reverse order: the custody logs out
// and finalises before the token directory goes.
class AuditBench {
 public:
  AuditBench() : token_("certcustody-audit-bench") {
    custody_ = value_or_throw(Pkcs11Custody::open(token_.custody_config()), "Pkcs11Custody::open");
    (void)value_or_throw(custody_->generate_key_pair(kKeyLabel, KeyType::ec_p256, KeyPurpose::sign),
                         "generating the audit key");
    public_key_ = value_or_throw(custody_->public_key(kKeyLabel), "public key of the audit key");
    signer_ = value_or_throw(audit::token_signer(*custody_, kKeyLabel, kCounterLabel), "token_signer");
  }

  Pkcs11Custody& custody() { return *custody_; }
  const audit::CheckpointSigner& signer() const { return signer_; }
  EVP_PKEY* public_key() const { return public_key_.get(); }

  // A fresh, empty log file path.
  std::string new_path() { return logs_ / ("audit-" + std::to_string(++files_) + ".log"); }

  // The text of a log of kVerifyRecords records, a checkpoint every
  // kCheckpointEvery (made once, checked with verify_log).
  const std::string& verify_text() {
    if (verify_text_.empty()) {
      const std::string path = new_path();
      {
        auto log = value_or_throw(AuditLog::open(options(path, true)), "AuditLog::open");
        while (log->last_seq() < kVerifyRecords) ok_or_throw(log->append(typical_event()), "append");
      }
      verify_text_ = certcustody::testing::read_file(path);
      std::remove(path.c_str());
      auto r = value_or_throw(audit::verify_log(verify_text_, "verify.log", {.public_key = public_key()}),
                              "verify_log of the prepared log");
      verify_checkpoints_ = r.checkpoints;
    }
    return verify_text_;
  }
  std::uint64_t verify_checkpoints() const { return verify_checkpoints_; }

  AuditLog::Options options(const std::string& path, bool with_signer) const {
    AuditLog::Options o{.path = path, .host = "bench-host", .actor = audit::current_actor("bench")};
    if (with_signer) o.signer = signer_;
    o.checkpoint_every = kCheckpointEvery;
    return o;
  }

 private:
  SoftHsmToken token_;
  TempDir logs_;
  std::unique_ptr<Pkcs11Custody> custody_;
  EvpPkeyPtr public_key_;
  audit::CheckpointSigner signer_;
  std::string verify_text_;
  std::uint64_t verify_checkpoints_ = 0, files_ = 0;
};

certcustody::bench::Lazy<AuditBench> g_bench;

// The log shared by the threads of one run: made by thread 0 before the
// loop (whose start is a barrier for all threads), removed after it.
std::unique_ptr<AuditLog> g_log;
std::string g_log_path;
std::atomic<bool> g_failed{false};

enum class Mode { unsigned_append, signed_append, synced_append };

void bm_append(benchmark::State& state, Mode mode) {
  std::string error;
  AuditBench* b = g_bench.get(error);
  if (b == nullptr) {
    state.SkipWithError(error.c_str());
    return;
  }
  if (state.thread_index() == 0) {
    g_failed = false;
    g_log_path = b->new_path();
    auto log = AuditLog::open(b->options(g_log_path, mode == Mode::signed_append));
    if (!log) {
      g_failed = true;
      error = log.error().to_string();
    } else {
      g_log = std::move(log).value();
    }
  }
  const audit::Event& e = typical_event();
  std::uint64_t counter0 = 0;
  if (state.thread_index() == 0 && mode == Mode::signed_append) {
    auto c = b->custody().read_counter(kCounterLabel);
    counter0 = c ? *c : 0;
  }
  double max_us = 0;
  for (auto _ : state) {
    if (g_failed) {
      state.SkipWithError(error.empty() ? "failed in another thread" : error.c_str());
      break;
    }
    const auto t0 = std::chrono::steady_clock::now();
    Status s = g_log->append(e);
    if (s && mode == Mode::signed_append) s = g_log->maybe_checkpoint(std::chrono::seconds(1));
    if (s && mode == Mode::synced_append) s = g_log->sync();
    const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    max_us = std::max(max_us, us);
    if (!s) {
      g_failed = true;
      state.SkipWithError(s.error().to_string().c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    // The slowest single call of thread 0: with a signer, the append that
    // made a checkpoint (the others wait for it behind the log's lock).
    state.counters["max_append_us"] = benchmark::Counter(max_us);
    if (mode == Mode::signed_append && g_log) {
      auto c = b->custody().read_counter(kCounterLabel);
      const double checkpoints = c ? static_cast<double>(*c - counter0) : 0;
      state.counters["checkpoints"] = benchmark::Counter(checkpoints);
      state.counters["checkpoints_per_s"] = benchmark::Counter(checkpoints, benchmark::Counter::kIsRate);
    }
    g_log.reset();
    std::remove(g_log_path.c_str());
  }
}

enum class Part { full, counter, sign };

void bm_checkpoint(benchmark::State& state, Part part) {
  std::string error;
  AuditBench* b = g_bench.get(error);
  if (b == nullptr) {
    state.SkipWithError(error.c_str());
    return;
  }
  const std::string path = b->new_path();
  auto opened = AuditLog::open(b->options(path, false));  // checkpoints only when asked
  if (!opened) {
    state.SkipWithError(opened.error().to_string().c_str());
    return;
  }
  auto log = std::move(opened).value();
  if (Status s = log->append(typical_event()); !s) {
    state.SkipWithError(s.error().to_string().c_str());
    return;
  }
  const audit::CheckpointSigner& signer = b->signer();
  const std::string payload = audit::checkpoint_payload(1, log->head(), 1);
  const Bytes md = value_or_throw(digest("SHA256", {reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()}),
                                  "SHA-256");
  for (auto _ : state) {
    Status s;
    if (part == Part::full) {
      s = log->checkpoint(signer);
    } else if (part == Part::counter) {
      auto c = signer.advance_counter();
      if (!c) s = c.error();
      benchmark::DoNotOptimize(c);
    } else {
      auto sig = signer.sign(md);
      if (!sig) s = sig.error();
      benchmark::DoNotOptimize(sig);
    }
    if (!s) {
      state.SkipWithError(s.error().to_string().c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  log.reset();
  std::remove(path.c_str());
}

void bm_verify(benchmark::State& state, bool with_key) {
  std::string error;
  AuditBench* b = g_bench.get(error);
  if (b == nullptr) {
    state.SkipWithError(error.c_str());
    return;
  }
  std::string text;
  try {
    text = b->verify_text();
  } catch (const std::exception& ex) {
    state.SkipWithError(ex.what());
    return;
  }
  audit::VerifyOptions o{.public_key = with_key ? b->public_key() : nullptr};
  std::uint64_t records = 0;
  for (auto _ : state) {
    auto r = with_key ? audit::verify_log(text, "verify.log", o) : audit::verify_chain(text, "verify.log");
    if (!r) {
      state.SkipWithError(r.error().to_string().c_str());
      break;
    }
    records += r->records;
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(records));
  state.counters["records"] = benchmark::Counter(static_cast<double>(kVerifyRecords));
  state.counters["checkpoints"] = benchmark::Counter(static_cast<double>(b->verify_checkpoints()));
  state.counters["bytes"] = benchmark::Counter(static_cast<double>(text.size()));
}

}  // namespace

int main(int argc, char** argv) {
  if (!certcustody::bench::initialize(argc, argv, "audit_bench")) return 1;
  benchmark::AddCustomContext("softhsm_module", certcustody::testing::kSoftHsmModule);
  benchmark::AddCustomContext("checkpoint_every", std::to_string(kCheckpointEvery));

  benchmark::RegisterBenchmark("BM_Append/unsigned", bm_append, Mode::unsigned_append)
      ->Unit(benchmark::kMicrosecond)->Threads(1)->Threads(2)->UseRealTime();
  benchmark::RegisterBenchmark("BM_Append/signed", bm_append, Mode::signed_append)
      ->Unit(benchmark::kMicrosecond)->Threads(1)->Threads(2)->UseRealTime();
  benchmark::RegisterBenchmark("BM_Append/synced", bm_append, Mode::synced_append)
      ->Unit(benchmark::kMicrosecond)->Threads(1)->UseRealTime();
  benchmark::RegisterBenchmark("BM_Checkpoint/full", bm_checkpoint, Part::full)
      ->Unit(benchmark::kMicrosecond)->Threads(1)->UseRealTime();
  benchmark::RegisterBenchmark("BM_Checkpoint/counter", bm_checkpoint, Part::counter)
      ->Unit(benchmark::kMicrosecond)->Threads(1)->UseRealTime();
  benchmark::RegisterBenchmark("BM_Checkpoint/sign", bm_checkpoint, Part::sign)
      ->Unit(benchmark::kMicrosecond)->Threads(1)->UseRealTime();
  benchmark::RegisterBenchmark("BM_Verify/chain", bm_verify, false)
      ->Unit(benchmark::kMillisecond)->Threads(1)->UseRealTime();
  benchmark::RegisterBenchmark("BM_Verify/signed", bm_verify, true)
      ->Unit(benchmark::kMillisecond)->Threads(1)->UseRealTime();

  benchmark::RunSpecifiedBenchmarks();

  const bool failed = g_bench.failed();
  g_log.reset();
  g_bench.reset();
  benchmark::Shutdown();
  return failed ? 1 : 0;
}
