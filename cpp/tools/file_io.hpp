// Files read whole, and written whole or not at all (as simvos_trt.io.write_atomic).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace simvos {

//! The bytes of the file at `path`; InputError when it does not exist or cannot be read.
std::vector<std::uint8_t> read_file(const std::string& path);
//! Writes `data` to a temporary file beside `path` (mode 0644), then renames it to `path`; Error on failure.
void write_atomic(const std::string& path, const std::string& data);

}  // namespace simvos
