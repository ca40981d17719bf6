#include "audit/audit_log.h"

#include <fcntl.h>
#include <sys/file.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <optional>
#include <nlohmann/json.hpp>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "common/file_lock.h"
#include "common/ossl.h"

namespace certcustody::audit {

namespace {

constexpr std::size_t kMaxLine = 16 * 1024;  // a record; the tail is searched within this
using Json = nlohmann::ordered_json;          // fields in the documented order

Error io_error(const std::string& what) {
  return Error{"audit.unwritable", what + ": " + std::strerror(errno),
               "let the service user write the audit log's directory and free space on its file system; "
               "nothing is issued while the audit log cannot be written"};
}

std::string sha256_hex(std::string_view line) {
  auto d = digest("SHA256", {reinterpret_cast<const std::uint8_t*>(line.data()), line.size()});
  return d ? to_hex_lower(*d) : std::string{};
}

std::string utc_now() {
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms % 1000));
  return buf;
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

Error broken(const std::string& name, std::size_t line, const std::string& why) {
  return Error{"audit.chain_broken", name + ":" + std::to_string(line) + ": " + why,
               "the log was altered after it was written: keep this copy as evidence and compare it with the "
               "last verified copy and its checkpoints"};
}

struct RecordHead {
  std::uint64_t seq = 0;
  bool checkpoint = false;  // an audit.checkpoint record
};

// The seq and kind of a record line, or nullopt when it is not a record.
std::optional<RecordHead> record_head(std::string_view line) {
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  auto it = j.find("seq");
  if (it == j.end() || !it->is_number_unsigned()) return std::nullopt;
  auto event = j.find("event");
  return RecordHead{it->get<std::uint64_t>(), event != j.end() && *event == "audit.checkpoint"};
}

constexpr std::chrono::milliseconds kCheckpointBackoffFirst{1000}, kCheckpointBackoffMax{60000};

}  // namespace

Actor current_actor(const std::string& command) {
  Actor a;
  a.uid = static_cast<long>(::getuid());
  a.pid = static_cast<long>(::getpid());
  a.command = command;
  passwd pw{};
  passwd* found = nullptr;
  char buf[4096];
  if (::getpwuid_r(::getuid(), &pw, buf, sizeof buf, &found) == 0 && found != nullptr) a.user = found->pw_name;
  return a;
}

Result<std::unique_ptr<AuditLog>> AuditLog::open(Options options) {
  const int fd = ::open(options.path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return io_error("cannot open the audit log " + options.path);
  if (options.host.empty()) options.host = host_name();
  std::unique_ptr<AuditLog> log(new AuditLog(fd, std::move(options)));
  std::lock_guard l(log->mu_);
  FileLock fl(fd);
  CC_TRY(log->recover_tail());
  return log;
}

AuditLog::~AuditLog() { ::close(fd_); }

// Finds the head in the last complete line; a last line without its newline
// (a write cut short by a crash) is cut off, then recorded. Both locks held.
Status AuditLog::recover_tail() {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return io_error("cannot stat " + options_.path);
  const auto size = static_cast<std::size_t>(st.st_size);
  size_ = size;
  const std::size_t window = std::min(size, 2 * kMaxLine + 2);
  std::string tail(window, '\0');
  if (::pread(fd_, tail.data(), window, static_cast<off_t>(size - window)) != static_cast<ssize_t>(window))
    return io_error("cannot read the end of " + options_.path);
  std::string torn;
  if (!tail.empty() && tail.back() != '\n') {
    const auto nl = tail.rfind('\n');
    torn = nl == std::string::npos ? tail : tail.substr(nl + 1);
    if (nl == std::string::npos && size > window)
      return Error{"audit.corrupt", options_.path + " ends in " + std::to_string(window) + " bytes without a line end",
                   "this is not a certcustody audit log: move it aside and keep it as evidence"};
    if (::ftruncate(fd_, static_cast<off_t>(size - torn.size())) != 0 || ::fdatasync(fd_) != 0)
      return io_error("cannot cut the torn last line off " + options_.path);
    tail.resize(tail.size() - torn.size());
    size_ = size - torn.size();
  }
  if (!tail.empty()) {
    tail.pop_back();  // its newline
    const std::string last = tail.substr(tail.rfind('\n') == std::string::npos ? 0 : tail.rfind('\n') + 1);
    auto rec = record_head(last);
    if (!rec)
      return Error{"audit.corrupt", "the last record of " + options_.path + " is not an audit record",
                   "run `certcustody audit verify`, keep the file as evidence, and start a new log"};
    seq_ = rec->seq;
    last_is_checkpoint_ = rec->checkpoint;
    head_ = sha256_hex(last);
  }
  if (torn.empty()) return {};
  return append_locked(Event{.type = "audit.torn_tail_repaired",
                      .detail = {{"bytes", std::to_string(torn.size())}, {"sha256", sha256_hex(torn)}}});
}

Status AuditLog::write_line(const std::string& line) {
  std::size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return io_error("cannot append to " + options_.path);
    done += static_cast<std::size_t>(n);
  }
  return {};
}

// Another process (a CLI command beside the daemon) may have appended since
// this one last did: then the head is read again from the file. Both locks held.
Status AuditLog::follow_file() {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return io_error("cannot stat " + options_.path);
  if (static_cast<std::size_t>(st.st_size) == size_) return {};
  return recover_tail();
}

// The file lock on the log as it is at its path now: a writer that still has
// a rotated-away file open moves to the new one first. Then follow_file().
Result<std::unique_ptr<FileLock>> AuditLog::lock_current() {
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto fl = std::make_unique<FileLock>(fd_);
    struct stat open_one {}, at_path {};
    if (::fstat(fd_, &open_one) != 0) return io_error("cannot stat " + options_.path);
    if (::stat(options_.path.c_str(), &at_path) == 0 && at_path.st_ino == open_one.st_ino &&
        at_path.st_dev == open_one.st_dev) {
      CC_TRY(follow_file());
      return fl;
    }
    fl.reset();  // unlocked before the descriptor goes
    const int fd = ::open(options_.path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return io_error("cannot open the audit log " + options_.path);
    ::close(fd_);
    fd_ = fd;
    size_ = static_cast<std::size_t>(-1);  // read the new file's head
  }
  return Error{"audit.unwritable", options_.path + " was replaced 8 times while this process tried to append",
               "find what keeps moving the audit log (only certcustody rotates it)"};
}

Status AuditLog::append(const Event& e) {
  std::lock_guard l(mu_);
  CC_TRY_ASSIGN(auto fl, lock_current());
  CC_TRY(append_locked(e));
  if (options_.signer && ++since_checkpoint_ >= options_.checkpoint_every)
    if (Status s = checkpoint_backing_off_locked(); !s) unreported_ = s.error();
  return {};  // the record is written, signed or not
}

// The checkpoint of append() and the timer: after a failure (the token away)
// the next waits for a backoff instead of costing every append a token call.
Status AuditLog::checkpoint_backing_off_locked() {
  const auto now = std::chrono::steady_clock::now();
  if (now < retry_at_) return {};
  Status s = checkpoint_locked(*options_.signer);
  if (s) {
    backoff_ = std::chrono::milliseconds(0);
    return s;
  }
  backoff_ = std::clamp(backoff_ * 2, kCheckpointBackoffFirst, kCheckpointBackoffMax);
  retry_at_ = now + backoff_;
  return s;
}

Status AuditLog::append_locked(const Event& e) {
  Json j;
  j["seq"] = seq_ + 1;
  j["ts"] = utc_now();
  j["host"] = options_.host;
  j["actor"] = {{"user", options_.actor.user},
                {"uid", options_.actor.uid},
                {"pid", options_.actor.pid},
                {"command", options_.actor.command}};
  j["event"] = e.type;
  if (!e.request_id.empty()) j["request"] = e.request_id;
  j["outcome"] = e.outcome;
  if (!e.error_code.empty()) j["error"] = e.error_code;
  if (!e.detail.empty()) {
    Json d = Json::object();
    for (const auto& [k, v] : e.detail) d[k] = v;
    j["detail"] = std::move(d);
  }
  j["prev"] = head_;
  // Invalid UTF-8 is escaped, never refused: an event is always recorded.
  std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (line.size() > kMaxLine)
    return Error{"audit.record_too_large", "an audit record of event " + e.type + " has " +
                                               std::to_string(line.size()) + " bytes",
                 "this is a bug: events carry names and digests only; report it"};
  const std::string hash = sha256_hex(line);
  line.push_back('\n');
  CC_TRY(write_line(line));
  size_ += line.size();
  ++seq_;
  head_ = hash;
  last_is_checkpoint_ = e.type == "audit.checkpoint";
  return {};
}

std::string checkpoint_payload(std::uint64_t covers_seq, const std::string& head, std::uint64_t counter) {
  return "certcustody-audit-checkpoint/1\nseq=" + std::to_string(covers_seq) + "\nhead=" + head +
         "\ncounter=" + std::to_string(counter) + "\n";
}

Status AuditLog::checkpoint(const CheckpointSigner& signer) {
  std::lock_guard l(mu_);
  CC_TRY_ASSIGN(auto fl, lock_current());
  return checkpoint_locked(signer);
}

Status AuditLog::maybe_checkpoint(std::chrono::milliseconds interval) {
  std::lock_guard l(mu_);
  if (unreported_) {
    Error e = std::move(*unreported_);
    unreported_.reset();
    return e;
  }
  if (!options_.signer || since_checkpoint_ == 0 || std::chrono::steady_clock::now() - last_checkpoint_ < interval)
    return {};
  CC_TRY_ASSIGN(auto fl, lock_current());
  return checkpoint_backing_off_locked();
}

Status AuditLog::checkpoint_unsigned_tail() {
  std::lock_guard l(mu_);
  if (!options_.signer) return {};
  CC_TRY_ASSIGN(auto fl, lock_current());
  if (seq_ == 0 || last_is_checkpoint_) return {};
  return checkpoint_locked(*options_.signer);
}

// The file is closed with a checkpoint and kept as `archive`; the next file
// starts with audit.rotated, whose prev is the closed file's head, so the
// chain runs on across files. The new file is complete before it takes the
// log's name (rename), so the path always holds a log.
Status AuditLog::rotate(const std::string& archive) {
  std::lock_guard l(mu_);
  CC_TRY_ASSIGN(auto fl, lock_current());
  if (::access(archive.c_str(), F_OK) == 0)
    return Error{"audit.unwritable", "cannot keep the audit log as " + archive + ": that file exists",
                 "rotate to another name; rotated files are never overwritten"};
  if (options_.signer) CC_TRY(checkpoint_locked(*options_.signer));
  if (::link(options_.path.c_str(), archive.c_str()) != 0)  // never over an existing file
    return io_error("cannot keep the audit log as " + archive);
  const std::string next = options_.path + ".next";
  const int fd = ::open(next.c_str(), O_RDWR | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return io_error("cannot create " + next);
  const int old = fd_;
  const std::size_t old_size = size_;
  const std::uint64_t old_seq = seq_;
  const std::string old_head = head_;
  const bool old_last_checkpoint = last_is_checkpoint_;
  fd_ = fd;
  size_ = 0;
  const std::string name = archive.substr(archive.rfind('/') + 1);
  Status first = append_locked({.type = "audit.rotated",
                                .detail = {{"previous_file", name}, {"previous_seq", std::to_string(seq_)}}});
  if (first && ::fdatasync(fd_) != 0) first = io_error("cannot sync " + next);
  if (first && std::rename(next.c_str(), options_.path.c_str()) != 0) first = io_error("cannot rename " + next);
  if (!first) {  // the old file stays the log (its archive link is harmless)
    ::close(fd_);
    ::unlink(next.c_str());
    fd_ = old;
    size_ = old_size;
    seq_ = old_seq;  // the record went with the file: the chain goes on from the old head
    head_ = old_head;
    last_is_checkpoint_ = old_last_checkpoint;
    return first;
  }
  const std::string dir = options_.path.substr(0, options_.path.rfind('/') == std::string::npos ? 0 : options_.path.rfind('/'));
  if (const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  fl.reset();
  ::close(old);
  since_checkpoint_ = 1;
  return {};
}

Status AuditLog::maybe_rotate(std::uint64_t max_bytes) {
  std::string archive;
  {
    std::lock_guard l(mu_);
    if (max_bytes == 0 || size_ < max_bytes) return {};
    const std::uint64_t last = seq_ + (options_.signer ? 1 : 0);  // its closing checkpoint
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, ".%012llu", static_cast<unsigned long long>(last));
    archive = options_.path + suffix;  // named after its last record: names sort in order
  }
  return rotate(archive);
}

Status AuditLog::checkpoint_locked(const CheckpointSigner& signer) {
  CC_TRY_ASSIGN(std::uint64_t counter, signer.advance_counter());
  const std::string payload = checkpoint_payload(seq_, head_, counter);
  CC_TRY_ASSIGN(Bytes md, digest("SHA256", {reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()}));
  CC_TRY_ASSIGN(Bytes sig, signer.sign(md));
  const Event e{.type = "audit.checkpoint",
                .detail = {{"covers_seq", std::to_string(seq_)},
                           {"head", head_},
                           {"counter", std::to_string(counter)},
                           {"key", signer.key_id},
                           {"sig", to_hex_lower(sig)}}};
  // Still under the lock: a record slipping in would make the checkpoint
  // name a head that is no longer the one before it.
  CC_TRY(append_locked(e));
  since_checkpoint_ = 0;
  last_checkpoint_ = std::chrono::steady_clock::now();
  return sync();
}

Status AuditLog::sync() {
  if (::fdatasync(fd_) != 0) return io_error("cannot sync " + options_.path);
  return {};
}

std::uint64_t AuditLog::last_seq() const {
  std::lock_guard l(mu_);
  return seq_;
}

std::string AuditLog::head() const {
  std::lock_guard l(mu_);
  return head_;
}

namespace {

Error checkpoint_invalid(const std::string& name, std::size_t line, const std::string& why) {
  return Error{"audit.checkpoint_invalid", name + ":" + std::to_string(line) + ": " + why,
               "the checkpoint was forged or altered: keep this copy as evidence"};
}

std::string detail_of(const nlohmann::json& record, const char* key) {
  auto d = record.find("detail");
  if (d == record.end() || !d->is_object()) return {};
  auto v = d->find(key);
  return v != d->end() && v->is_string() ? v->get<std::string>() : std::string{};
}

std::optional<std::uint64_t> number(const std::string& s) {
  if (s.empty() || s.size() > 20 || s.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  try {
    return std::stoull(s);
  } catch (...) {
    return std::nullopt;
  }
}

bool signature_valid(EVP_PKEY* key, const std::string& payload, const std::string& sig_hex) {
  long len = 0;
  unsigned char* sig = OPENSSL_hexstr2buf(sig_hex.c_str(), &len);
  auto md = digest("SHA256", {reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()});
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
  const bool ok = sig != nullptr && md && ctx && EVP_PKEY_verify_init(ctx.get()) == 1 &&
                  EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256()) == 1 &&
                  EVP_PKEY_verify(ctx.get(), sig, static_cast<std::size_t>(len), md->data(), md->size()) == 1;
  OPENSSL_free(sig);
  ERR_clear_error();
  return ok;
}

struct AuditKeys {
  std::vector<EVP_PKEY*> keys;  // oldest first
  std::vector<std::string> ids;
};

// A checkpoint record at `line`, given the chain's state before it; its key's
// index in `keys` is stored in `key_index`.
Status check_checkpoint(const nlohmann::json& j, const VerifyReport& before, const AuditKeys& keys,
                        std::size_t& key_index, const std::string& name, std::size_t line) {
  const auto covers = number(detail_of(j, "covers_seq"));
  const auto counter = number(detail_of(j, "counter"));
  if (!covers || !counter) return checkpoint_invalid(name, line, "a checkpoint without covers_seq or counter");
  if (*covers != before.last_seq || detail_of(j, "head") != before.head)
    return checkpoint_invalid(name, line, "the checkpoint does not name the record before it");
  if ((before.checkpoints != 0 || before.last_counter != 0) && *counter <= before.last_counter)
    return checkpoint_invalid(name, line,
                              "counter " + std::to_string(*counter) + " after counter " +
                                  std::to_string(before.last_counter) + ": the counter never goes back");
  const std::string key_id = detail_of(j, "key");
  const auto found = std::find(keys.ids.begin(), keys.ids.end(), key_id);
  if (found == keys.ids.end())
    return Error{"audit.foreign_key",
                 name + ":" + std::to_string(line) + ": the checkpoint is signed by key " + key_id +
                     ", none of the given audit keys",
                 "give every audit public key of the period, oldest first (--pubkey per key), or treat the log as "
                 "forged"};
  key_index = static_cast<std::size_t>(found - keys.ids.begin());
  if (key_index < before.key_index)
    return Error{"audit.foreign_key",
                 name + ":" + std::to_string(line) + ": the checkpoint is signed by key " + key_id +
                     ", retired by a later key that signed before it",
                 "give the audit public keys oldest first; if they are, treat the log as forged"};
  if (!signature_valid(keys.keys[key_index], checkpoint_payload(*covers, before.head, *counter), detail_of(j, "sig")))
    return checkpoint_invalid(name, line, "the signature does not verify with the audit key");
  return {};
}

}  // namespace

Result<VerifyReport> verify_chain(const std::string& text, const std::string& name, const std::string& previous_head) {
  return verify_log(text, name, {.public_key = nullptr, .min_counter = 0, .previous_head = previous_head});
}

Result<VerifyReport> verify_log(const std::string& text, const std::string& name, const VerifyOptions& o) {
  VerifyReport r;
  r.head = o.previous_head;
  r.last_counter = o.previous_counter;
  r.key_index = o.previous_key_index;
  AuditKeys keys;
  if (o.public_key != nullptr) {
    keys.keys.push_back(o.public_key);
    keys.keys.insert(keys.keys.end(), o.successor_keys.begin(), o.successor_keys.end());
    for (EVP_PKEY* k : keys.keys) {
      auto id = digest("SHA256", public_key_der(k));
      keys.ids.push_back(id ? to_hex_lower(*id) : std::string{});
    }
  }
  std::size_t pos = 0, line_no = 0;
  while (pos < text.size()) {
    ++line_no;
    const auto nl = text.find('\n', pos);
    if (nl == std::string::npos)
      return Error{"audit.torn_tail", name + ":" + std::to_string(line_no) + ": the last line is incomplete",
                   "a write was cut short; the next start of certcustody cuts it off and records that"};
    const std::string_view line(text.data() + pos, nl - pos);
    pos = nl + 1;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return broken(name, line_no, "not a JSON record");
    auto seq = j.find("seq");
    auto prev = j.find("prev");
    if (seq == j.end() || !seq->is_number_unsigned() || prev == j.end() || !prev->is_string())
      return broken(name, line_no, "a record without seq or prev");
    const std::uint64_t s = seq->get<std::uint64_t>();
    if (s == 0) return broken(name, line_no, "seq 0 (records count from 1; a wrapped counter is refused)");
    if (r.records == 0 && o.previous_seq != 0 && s != o.previous_seq + 1)
      return broken(name, line_no,
                    "seq " + std::to_string(s) + " does not continue the previous file, which ended at seq " +
                        std::to_string(o.previous_seq));
    if (r.records != 0 && s != r.last_seq + 1)
      return broken(name, line_no,
                    "seq " + std::to_string(s) + " follows seq " + std::to_string(r.last_seq) +
                        (s > r.last_seq + 1 ? ": records are missing" : ": a record was inserted or moved"));
    if (prev->get_ref<const std::string&>() != r.head)
      return broken(name, line_no,
                    "seq " + std::to_string(s) + " names a previous record that is not the one before it" +
                        (r.records == 0 ? " (the chain does not start here)" : ": that record was changed"));
    auto event = j.find("event");
    if (o.public_key != nullptr && event != j.end() && *event == "audit.checkpoint") {
      std::size_t key_index = 0;
      CC_TRY(check_checkpoint(j, r, keys, key_index, name, line_no));
      r.key_index = key_index;
      ++r.checkpoints;
      r.last_checkpoint_seq = s;
      r.last_counter = *number(detail_of(j, "counter"));
    }
    if (r.records == 0) r.first_seq = s;
    r.last_seq = s;
    r.head = sha256_hex(line);
    ++r.records;
  }
  r.unsigned_tail = r.checkpoints == 0 ? r.records : r.last_seq - r.last_checkpoint_seq;
  if (o.public_key == nullptr) return r;
  if (r.checkpoints == 0 && o.previous_counter == 0)  // a file after a rotation may not have one yet
    return Error{"audit.unsigned", name + " holds " + std::to_string(r.records) + " records and no checkpoint",
                 "a log with no signed checkpoint proves nothing: check that the daemon has its audit key"};
  if (r.last_counter < o.min_counter)
    return Error{"audit.rolled_back",
                 name + ": the last checkpoint has counter " + std::to_string(r.last_counter) +
                     ", the audit counter has reached " + std::to_string(o.min_counter) +
                     ": the file was cut before its later checkpoints or swapped for an older copy",
                 "keep this copy as evidence and find the current log"};
  return r;
}

}  // namespace certcustody::audit
