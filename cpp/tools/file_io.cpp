#include "file_io.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "simvos/client.hpp"

namespace simvos {

namespace {

constexpr char kTemporarySuffix[] = ".tmp";
constexpr mode_t kOutputMode = 0644;  // mkstemps creates 0600; outputs are for all to read, as Python writes them

//! Writes all of `data` to `fd`; returns 0, or the errno of the failure.
int write_all(int fd, const std::string& data) {
  std::size_t written = 0;
  while (written < data.size()) {
    const ssize_t n = ::write(fd, data.data() + written, data.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return EIO;
    written += static_cast<std::size_t>(n);
  }
  return 0;
}

}  // namespace

std::vector<std::uint8_t> read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw InputError(path + " does not exist or cannot be read");
  return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

void write_atomic(const std::string& path, const std::string& data) {
  const std::filesystem::path target(path);
  const std::string name = "." + target.filename().string() + ".XXXXXX" + kTemporarySuffix;
  std::string temporary = (target.parent_path() / name).string();
  const int fd = mkstemps(temporary.data(), static_cast<int>(std::strlen(kTemporarySuffix)));
  if (fd < 0) throw Error("cannot write " + path + " (" + std::strerror(errno) + ")");
  int error = write_all(fd, data);
  if (error == 0 && ::fchmod(fd, kOutputMode) != 0) error = errno;
  if (::close(fd) != 0 && error == 0) error = errno;
  if (error == 0 && std::rename(temporary.c_str(), path.c_str()) != 0) error = errno;
  if (error != 0) {
    std::remove(temporary.c_str());
    throw Error("cannot write " + path + " (" + std::strerror(error) + ")");
  }
}

}  // namespace simvos
