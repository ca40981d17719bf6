// Fuzzer for the configuration parser: any text yields a Config or a named
// config.* error that points at the file; it never crashes or throws.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto c = certcustody::parse_config(text, "/fuzz/certcustody.toml");
  if (c) {
    if (c->custody.backend != "pkcs11" || c->custody.token.rfind("pkcs11:", 0) != 0) std::abort();
    if (c->custody.sessions < 1 || c->custody.sessions > 256) std::abort();
    return 0;
  }
  const auto& e = c.error();
  if (e.code.rfind("config.", 0) != 0 || e.remedy.empty()) std::abort();
  if (e.what.find("/fuzz/certcustody.toml") == std::string::npos) std::abort();
  return 0;
}
