// Fuzzer for the TPM key file reader: any text in <key_dir>/<label>.tss2 (a
// damaged or planted file) yields a key blob or custody.key_file_invalid
// naming the file; it never crashes. A blob that parses encodes back to a
// file that parses to the same blob.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "custody/tpm2_key_file.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace certcustody;
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto r = parse_tss2_pem(text, "/fuzz/k.tss2");
  if (!r) {
    if (r.error().code != "custody.key_file_invalid" || r.error().what.find("/fuzz/k.tss2") == std::string::npos ||
        r.error().remedy.empty())
      std::abort();
    return 0;
  }
  auto pem = encode_tss2_pem(*r);
  if (!pem) return 0;  // a public area the marshaller refuses is not a round-trip failure
  auto again = parse_tss2_pem(*pem, "/fuzz/again.tss2");
  if (!again || again->parent != r->parent || again->empty_auth != r->empty_auth ||
      again->priv.size != r->priv.size || std::memcmp(again->priv.buffer, r->priv.buffer, r->priv.size) != 0 ||
      public_area_name(again->pub.publicArea) != public_area_name(r->pub.publicArea))
    std::abort();
  return 0;
}
