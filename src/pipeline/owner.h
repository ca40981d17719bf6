// Which process owns a request in processing, and whether it still lives.
//
// The request store records an owner with every move to processing. A request
// whose owner died (a killed daemon worker, a killed `certcustody redeliver`)
// is taken back by the running daemon without waiting for a restart; one whose
// owner lives is never touched, so a daemon starting beside a CLI command does
// not take the command's request away from it.
//
// An owner is "<boot id>/<pid>/<start time>": the kernel's boot id and the
// process's start time (clock ticks since boot, /proc/<pid>/stat) make it
// unique on this host for ever, even when a pid is reused.
#pragma once

#include <string>
#include <string_view>

namespace certcustody::pipeline {

std::string this_process_owner();

// Whether the owner is a process alive now. An empty owner (a request of an
// older store) or one of an earlier boot is dead; a string that is not an
// owner of this form is taken as alive (never taken back on a guess).
bool owner_alive(std::string_view owner);

// "<pid>-<start time>" of this process, for names of temporary files, and
// whether such a token names a live process (false for a malformed token).
std::string this_process_token();
bool process_token_alive(std::string_view token);

}  // namespace certcustody::pipeline
