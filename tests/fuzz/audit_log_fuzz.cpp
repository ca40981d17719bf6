// Fuzzer for the audit log verifier: any text (an attacker's edit of a log
// file) yields a report or a named audit.* error at a line of the file; it
// never crashes, hangs or throws.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "audit/audit_log.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto r = certcustody::audit::verify_chain(text, "/fuzz/audit.log");
  if (r) {
    std::size_t lines = 0;
    for (char c : text) lines += c == '\n' ? 1 : 0;
    if (r->records != lines || (lines != 0 && r->last_seq - r->first_seq + 1 != lines)) std::abort();
    return 0;
  }
  const auto& e = r.error();
  if ((e.code != "audit.chain_broken" && e.code != "audit.torn_tail") || e.remedy.empty()) std::abort();
  if (e.what.rfind("/fuzz/audit.log:", 0) != 0) std::abort();
  return 0;
}
