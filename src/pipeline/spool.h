// The spool directory through which requests arrive and results leave:
//
//   <state>/requests/incoming/<id>.json   dropped by `certcustody submit` or the
//                                         device-management service (rename in)
//   <state>/requests/claimed/             taken by the daemon (rename: one winner)
//   <state>/requests/rejected/            files that cannot be recorded at all
//   <state>/requests/outgoing/<id>.pfx.p7m, <id>.password.p7m, <id>.status.json,
//                                         <id>.revocation.json
//
// Every file appears under its final name by rename(2), so a reader never sees
// half of one.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace certcustody::pipeline {

struct SpoolPaths {
  std::string root, incoming, claimed, rejected, outgoing, tmp;
};
SpoolPaths spool_paths(const std::string& state_dir);
// Creates the state directory and the spool's (mode 0700) when missing.
Status ensure_spool(const SpoolPaths& p);

// A request id: 1-128 of [A-Za-z0-9._@-], not starting with '.'.
bool valid_request_id(std::string_view id);

// Drops `text` into incoming/<id>.json.
Status spool_submit(const SpoolPaths& p, const std::string& id, std::string_view text);

// Moves every incoming/*.json into claimed/ and returns the claimed files'
// paths, oldest first, including those a crashed run had claimed already.
Result<std::vector<std::string>> spool_claim(const SpoolPaths& p);

// Reads a claimed file of at most `max_bytes` (larger: request.too_large, unread).
Result<std::string> read_spool_file(const std::string& path, std::size_t max_bytes);

// Writes `data` to `dir`/`name` by temp file + fsync + rename (+ directory fsync).
// The temporary file (in tmp/) is named after its writer (pid and start time).
Status write_atomic(const SpoolPaths& p, const std::string& dir, const std::string& name, std::string_view data);
// Removes the temporary files of writers that died (killed between creating
// and renaming one); a live writer's are left alone.
Status clean_temp_files(const SpoolPaths& p);

}  // namespace certcustody::pipeline
