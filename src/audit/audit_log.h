// The audit log (issue 8): one JSON line per security-relevant event,
// append-only, each record naming the SHA-256 of the line before it, so that
// changing, removing, inserting or reordering a record breaks the chain.
//
//   {"seq":7,"ts":"2026-11-29T14:35:12.123Z","host":"ra1","actor":{...},
//    "event":"request.received","request":"dev-4711","outcome":"ok",
//    "error":"...","detail":{...},"prev":"<sha256 hex of line 6>"}
//
// Durability: every record is one write(2) to a file opened O_APPEND, so a
// killed process loses nothing it appended; sync() (fdatasync) makes the
// records survive a power cut too and is called at checkpoints. A crash in
// the middle of a write leaves a last line without its newline: open() cuts
// it off and records that as the event audit.torn_tail_repaired.
//
// Secrets never go in: events carry names, ids, codes and digests, and the
// callers pass nothing else in `detail`.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "common/file_lock.h"
#include "common/ossl.h"

namespace certcustody::audit {

// Who acted: the process and its user, and the certcustody command.
struct Actor {
  std::string user{}, command{};
  long uid = -1, pid = -1;
};
Actor current_actor(const std::string& command);

struct Event {
  std::string type;                                            // e.g. "request.received", "token.login"
  std::string request_id{};                                    // empty: none
  std::string outcome = "ok";                                  // "ok" | "failed"
  std::string error_code{};                                    // the named error of a failure
  std::vector<std::pair<std::string, std::string>> detail{};  // names, ids, digests: never secrets
};

// What signs a checkpoint: the audit key in the token or TPM and its
// monotonic counter. The library asks; custody does.
struct CheckpointSigner {
  std::function<Result<std::uint64_t>()> advance_counter;  // one more than ever before; never repeats
  std::function<Result<Bytes>(std::span<const std::uint8_t> sha256)> sign;  // DER ECDSA or RSA PKCS#1 v1.5
  std::string key_id;  // SHA-256 (hex) of the audit public key's SubjectPublicKeyInfo
};

// The text a checkpoint signs (its SHA-256): the records it covers, up to and
// including `covers_seq`, whose last line hashes to `head`, and the counter.
std::string checkpoint_payload(std::uint64_t covers_seq, const std::string& head, std::uint64_t counter);

// The hash of the record before the first one of a new chain.
inline constexpr const char* kGenesis = "0000000000000000000000000000000000000000000000000000000000000000";

class AuditLog {
 public:
  struct Options {
    std::string path;
    std::string host{};  // empty: gethostname()
    Actor actor{};
    // With a signer, a checkpoint follows every `checkpoint_every` records
    // (and maybe_checkpoint() adds the time-based ones).
    std::optional<CheckpointSigner> signer{};
    std::uint64_t checkpoint_every = 1000;
  };
  // Opens (creating it 0600) the log at options.path and finds the chain's
  // head in its last record; a torn last line is cut off and recorded.
  // audit.corrupt when the last complete line is not a record.
  static Result<std::unique_ptr<AuditLog>> open(Options options);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Appends one record; safe from many threads (file order = seq order).
  // Succeeds once the record is written: a checkpoint due after it that
  // fails (the token away) leaves the record appended and unsigned, is
  // tried again after a backoff, and is reported by maybe_checkpoint().
  Status append(const Event& event);
  // Makes every appended record durable (fdatasync).
  Status sync();
  // Signs the chain's head: appends an audit.checkpoint record (covered seq,
  // head, counter, key id, signature), then syncs.
  Status checkpoint(const CheckpointSigner& signer);
  // A checkpoint with options.signer when records were appended since the
  // last one and `interval` has passed since it (the daemon's timer). After a
  // failed checkpoint the next waits for a backoff (1 s doubling to 60 s);
  // a failure of a checkpoint that append() attempted is returned here once.
  Status maybe_checkpoint(std::chrono::milliseconds interval);
  // A checkpoint now when any record follows the last checkpoint of the file
  // (the daemon's start: the tail a killed run left unsigned), else nothing.
  Status checkpoint_unsigned_tail();
  // Closes this file with a checkpoint (with options.signer), keeps it as
  // `archive` (never over an existing file) and goes on in a new file at the
  // same path whose first record, audit.rotated, continues the chain.
  Status rotate(const std::string& archive);
  // rotate() to "<path>.<seq of its last record, 12 digits>" once the file
  // has `max_bytes` (0: never).
  Status maybe_rotate(std::uint64_t max_bytes);

  std::uint64_t last_seq() const;
  std::string head() const;  // SHA-256 (hex) of the last record line

 private:
  AuditLog(int fd, Options options) : fd_(fd), options_(std::move(options)) {}
  // The methods below run with mu_ and the file lock held.
  Result<std::unique_ptr<FileLock>> lock_current();
  Status recover_tail();
  Status follow_file();
  Status append_locked(const Event& event);
  Status checkpoint_locked(const CheckpointSigner& signer);
  Status checkpoint_backing_off_locked();
  Status write_line(const std::string& line);

  int fd_;
  Options options_;
  mutable std::mutex mu_;
  std::uint64_t seq_ = 0;
  std::string head_ = kGenesis;
  std::size_t size_ = 0;  // of the file after this process's last look or write
  std::uint64_t since_checkpoint_ = 0;
  std::chrono::steady_clock::time_point last_checkpoint_ = std::chrono::steady_clock::now();
  bool last_is_checkpoint_ = false;  // the file's last record is an audit.checkpoint
  // After a failed checkpoint: none before retry_at_; the failure of one
  // that append() tried waits in unreported_ for maybe_checkpoint().
  std::chrono::milliseconds backoff_{0};
  std::chrono::steady_clock::time_point retry_at_{};
  std::optional<Error> unreported_;
};

// What a verification found: records and checkpoints read, the chain's head.
struct VerifyReport {
  std::uint64_t records = 0, first_seq = 0, last_seq = 0;
  std::string head = kGenesis;
  std::uint64_t checkpoints = 0, last_checkpoint_seq = 0, last_counter = 0;
  std::uint64_t unsigned_tail = 0;  // records after the last checkpoint
  std::size_t key_index = 0;        // the key of the last checkpoint (see VerifyOptions)
};

struct VerifyOptions {
  EVP_PKEY* public_key = nullptr;  // the audit key; null: the chain alone is checked
  // The keys that replaced it (audit key rotation), oldest first: a
  // checkpoint may be signed by a later key, never by a key after its successor.
  std::vector<EVP_PKEY*> successor_keys{};
  std::uint64_t min_counter = 0;   // the token's counter as the auditor last saw it
  // For a file that continues a rotated one: that file's report.
  std::string previous_head = kGenesis;
  std::uint64_t previous_seq = 0, previous_counter = 0;
  std::size_t previous_key_index = 0;  // 0: public_key, 1: successor_keys[0], ...
};

// Checks the hash chain of the log text (`name` for the messages): every line
// complete JSON, seq one more than the line before, prev the SHA-256 of the
// line before (kGenesis for the first unless `previous_head` is given). The
// first bad record is named: audit.chain_broken (what and where), or
// audit.torn_tail for a last line without its newline.
Result<VerifyReport> verify_chain(const std::string& text, const std::string& name,
                                  const std::string& previous_head = kGenesis);

// verify_chain, and with a public key every checkpoint too: it covers the
// record before it and names that record's hash, its counter is larger than
// the one before, it is signed by this key (audit.checkpoint_invalid, or
// audit.foreign_key for another key's checkpoint); at least one checkpoint;
// and the last counter is at least min_counter (audit.rolled_back: the file
// was cut before a checkpoint or swapped for an older copy).
Result<VerifyReport> verify_log(const std::string& text, const std::string& name, const VerifyOptions& options);

}  // namespace certcustody::audit
