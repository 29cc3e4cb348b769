#include "atomic_file.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "simvos/client.hpp"

namespace simvos {

void write_atomic(const std::string& path, const std::string& data) {
  const std::filesystem::path target(path);
  std::string temporary = (target.parent_path() / ("." + target.filename().string() + ".XXXXXX.tmp")).string();
  const int fd = mkstemps(temporary.data(), 4);
  if (fd < 0) throw Error("cannot write " + path + " (" + std::strerror(errno) + ")");
  std::size_t written = 0;
  while (written < data.size()) {
    const ssize_t n = ::write(fd, data.data() + written, data.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    written += static_cast<std::size_t>(n);
  }
  int error = written == data.size() ? 0 : (errno != 0 ? errno : EIO);
  if (error == 0 && ::fchmod(fd, 0644) != 0) error = errno;  // mkstemps creates 0600; outputs are for all to read
  if (::close(fd) != 0 && error == 0) error = errno;
  if (error == 0 && std::rename(temporary.c_str(), path.c_str()) != 0) error = errno;
  if (error != 0) {
    std::remove(temporary.c_str());
    throw Error("cannot write " + path + " (" + std::strerror(error) + ")");
  }
}

}  // namespace simvos
