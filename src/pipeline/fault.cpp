#include "pipeline/fault.h"

#include <csignal>
#include <cstdlib>
#include <cstring>

namespace certcustody::pipeline {

#ifdef CERTCUSTODY_FAULT_POINTS
void fault_point(const char* name) {
  static const char* armed = std::getenv("CERTCUSTODY_FAULT_POINT");
  if (armed != nullptr && std::strcmp(armed, name) == 0) std::raise(SIGKILL);
}
#else
void fault_point(const char*) {}
#endif

}  // namespace certcustody::pipeline
