// Files written whole or not at all (as simvos_trt.io.write_atomic).
#pragma once

#include <string>

namespace simvos {

//! Writes `data` to a temporary file beside `path` (mode 0644), then renames it to `path`; Error on failure.
void write_atomic(const std::string& path, const std::string& data);

}  // namespace simvos
