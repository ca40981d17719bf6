// Writing a small file so that a crash leaves either the old file or the
// whole new one: a temporary file in the same directory, fsync, rename (or
// link, to never replace), fsync of the directory.
#pragma once

#include <string>
#include <string_view>

namespace certcustody {

enum class Existing { replace, keep };

// 0, or the errno of the step that failed (EEXIST: `path` exists and
// Existing::keep was asked). Callers turn it into their own named error.
int write_file_durably(const std::string& path, std::string_view data, unsigned mode, Existing existing);

}  // namespace certcustody
