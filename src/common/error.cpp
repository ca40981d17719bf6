#include "common/error.h"

namespace certcustody {

std::string Error::to_string() const {
  std::string s = "error " + code + ": " + what;
  if (!remedy.empty()) s += " \xE2\x80\x94 " + remedy;  // em dash
  return s;
}

}  // namespace certcustody
