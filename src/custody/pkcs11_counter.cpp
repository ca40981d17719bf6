// Pkcs11Custody's monotonic counters (the audit log's checkpoints): private
// CKO_DATA objects labelled with the counter's name, CKA_VALUE 8 bytes
// big-endian. PKCS#11 has no portable monotonic-counter object every token
// offers (CKH_MONOTONIC_COUNTER is optional; SoftHSM lacks it, and it keeps a
// data object's CKA_VALUE read-only), so the token's access control keeps it:
// only a logged-in user can add or remove objects. Advancing creates the
// object for the next value, then destroys the older ones; the value is the
// largest found, so a crash between the two steps never moves it back.
#include <algorithm>
#include <mutex>
#include <vector>

#include "custody/pkcs11_custody.h"

namespace certcustody {
namespace {

constexpr char kApplication[] = "certcustody counter";

Bytes encode(std::uint64_t v) {
  Bytes b(8);
  for (int i = 7; i >= 0; --i, v >>= 8) b[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v & 0xff);
  return b;
}

Result<std::uint64_t> decode(const Bytes& b, const std::string& label) {
  if (b.size() != 8)
    return Error{"custody.counter_invalid",
                 "the token object '" + label + "' holds " + std::to_string(b.size()) + " bytes, not an 8-byte counter",
                 "that label belongs to another object: rename it, or configure another counter label"};
  std::uint64_t v = 0;
  for (std::uint8_t x : b) v = (v << 8) | x;
  return v;
}

Result<CK_OBJECT_HANDLE> create_counter(TokenSession& s, const std::string& label, const Bytes& value) {
  CK_OBJECT_CLASS cls = CKO_DATA;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof cls},
      {CKA_TOKEN, &yes, sizeof yes},
      {CKA_PRIVATE, &yes, sizeof yes},
      {CKA_MODIFIABLE, &no, sizeof no},  // never edited: replaced by the next value
      {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
      {CKA_APPLICATION, const_cast<char*>(kApplication), sizeof kApplication - 1},
      {CKA_VALUE, const_cast<std::uint8_t*>(value.data()), value.size()},
  };
  return s.create_object(tmpl, "counter " + label);
}

}  // namespace

struct Pkcs11Custody::CounterObjects {
  std::uint64_t value = 0;
  std::vector<CK_OBJECT_HANDLE> handles;
};

namespace {

using CounterObjects = Pkcs11Custody::CounterObjects;

Result<CounterObjects> counter_objects(TokenSession& s, const std::string& label) {
  CK_OBJECT_CLASS cls = CKO_DATA;
  CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls}, {CKA_LABEL, const_cast<char*>(label.data()), label.size()}};
  CounterObjects c;
  CC_TRY_ASSIGN(c.handles, s.find(tmpl));
  for (CK_OBJECT_HANDLE h : c.handles) {
    CC_TRY_ASSIGN(Bytes raw, s.attribute(h, CKA_VALUE, "counter " + label));
    CC_TRY_ASSIGN(std::uint64_t v, decode(raw, label));
    c.value = std::max(c.value, v);
  }
  return c;
}

}  // namespace

// A counter below a value this process saw before is a token that lost
// sight of its objects (away, misreporting, or restored from an old backup):
// never advanced from there, or the audit checkpoints would count backwards.
Result<CounterObjects> Pkcs11Custody::counter_now(TokenSession& s, const std::string& label) {
  CC_TRY_ASSIGN(CounterObjects now, counter_objects(s, label));
  std::uint64_t& seen = counter_seen_[label];
  if (now.value < seen)
    return Error{"custody.counter_vanished",
                 "counter '" + label + "' reads " + std::to_string(now.value) + " on token " + pool_->uri().text() +
                     " after " + std::to_string(seen) + " was seen",
                 "if the token was away it is reconnected by itself; if it was restored from a backup, the audit "
                 "counter went back: keep the audit log as evidence and have the HSM officer restore the newest "
                 "backup",
                 CKR_OBJECT_HANDLE_INVALID};
  seen = now.value;
  return now;
}

Result<std::uint64_t> Pkcs11Custody::advance_counter(const std::string& label) {
  std::lock_guard l(counter_mu_);
  return pool_->run([&](TokenSession& s) -> Result<std::uint64_t> {
    CC_TRY_ASSIGN(CounterObjects now, counter_now(s, label));
    if (now.value == UINT64_MAX)
      return Error{"custody.counter_exhausted", "counter '" + label + "' is at its maximum",
                   "create a new counter under another label (and record the change)"};
    CC_TRY(create_counter(s, label, encode(now.value + 1)));
    counter_seen_[label] = now.value + 1;
    for (CK_OBJECT_HANDLE old : now.handles) CC_TRY(s.destroy_object(old, "counter " + label));
    return now.value + 1;
  });
}

Result<std::uint64_t> Pkcs11Custody::read_counter(const std::string& label) {
  std::lock_guard l(counter_mu_);
  return pool_->run([&](TokenSession& s) -> Result<std::uint64_t> {
    CC_TRY_ASSIGN(CounterObjects now, counter_now(s, label));
    return now.value;
  });
}

}  // namespace certcustody
