// Property fuzzer for the RFC 4514 subject parser (operator input on the
// command line): it never crashes, never accepts control characters, and
// whatever it accepts survives a print/re-parse round trip unchanged — so an
// escaped ',' or '+' can never turn into an extra RDN.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "ra/distinguished_name.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto first = certcustody::parse_rfc4514_name(text);
  if (!first) {
    if (first.error().code != "ra.subject_invalid") std::abort();
    return 0;
  }
  const std::string printed = certcustody::name_to_string(first->get());
  auto second = certcustody::parse_rfc4514_name(printed);
  if (!second) std::abort();  // what we print, we must read back
  if (X509_NAME_cmp(first->get(), second->get()) != 0) std::abort();
  if (X509_NAME_entry_count(first->get()) != X509_NAME_entry_count(second->get())) std::abort();
  return 0;
}
