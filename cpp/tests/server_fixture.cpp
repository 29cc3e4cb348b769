#include "server_fixture.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

namespace simvos::testing {

namespace {

namespace fs = std::filesystem;

constexpr std::size_t kLogTail = 2000;  // how much of the fixture's log a failure quotes, from its end

std::string env_or(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

//! The fixture process: started once, stopped by closing its stdin when the test program ends.
class Fixture : public ::testing::Environment {
 public:
  const Served* get() {
    if (!tried_) {
      tried_ = true;
      start();
    }
    return ready_ ? &served_ : nullptr;
  }
  const std::string& reason() const { return reason_; }

  bool kill_spare() {
    const char command[] = "kill spare\n";
    if (!ready_ || write(stdin_, command, sizeof command - 1) != static_cast<ssize_t>(sizeof command - 1)) return false;
    char line[64];
    return std::fgets(line, sizeof line, out_) != nullptr && std::string(line) == "killed\n";
  }
  bool venvs_missing() const { return venvs_missing_; }

  void TearDown() override {
    if (stdin_ >= 0) close(stdin_);  // serve_fixture.py stops its server and exits
    stdin_ = -1;
    if (pid_ > 0) waitpid(pid_, nullptr, 0);
    pid_ = -1;
    if (out_ != nullptr) std::fclose(out_);
    out_ = nullptr;
  }

 private:
  void start() {
    const std::string python = env_or("SIMVOS_PYTHON", SIMVOS_DEFAULT_PYTHON);
    const std::string serve_python = env_or("SIMVOS_SERVE_PYTHON", SIMVOS_DEFAULT_SERVE_PYTHON);
    for (const auto& [path, variable] : {std::pair{python, "SIMVOS_PYTHON"}, {serve_python, "SIMVOS_SERVE_PYTHON"}})
      if (access(path.c_str(), X_OK) != 0) {
        reason_ = "no Python at " + path + ": set " + variable + " (README, \"C++ client\": the venvs the tests use)";
        venvs_missing_ = true;
        return;
      }
    served_.workdir = env_or("SIMVOS_TEST_WORKDIR", SIMVOS_TEST_WORKDIR);  // the export is kept there
    fs::create_directories(served_.workdir);
    const fs::path log = served_.workdir / "fixture.log";
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0 || pipe(from_child) != 0) {
      reason_ = "pipe() failed";
      return;
    }
    pid_ = fork();
    if (pid_ < 0) {
      reason_ = std::string("fork() failed: ") + std::strerror(errno);
      return;
    }
    if (pid_ == 0) {
      dup2(to_child[0], STDIN_FILENO);
      dup2(from_child[1], STDOUT_FILENO);
      if (std::freopen(log.c_str(), "w", stderr) == nullptr) _exit(127);
      close(to_child[1]);
      close(from_child[0]);
      setenv("SIMVOS_SERVE_PYTHON", serve_python.c_str(), 1);
      execl(python.c_str(), python.c_str(), SIMVOS_FIXTURE_SCRIPT, served_.workdir.c_str(), nullptr);
      _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    stdin_ = to_child[1];
    out_ = fdopen(from_child[0], "r");
    char line[512];
    while (out_ != nullptr && std::fgets(line, sizeof line, out_) != nullptr) {
      std::istringstream words(line);
      std::string word;
      if (words >> word && word == "ready" && words >> served_.url >> served_.http_port >> served_.spare) {
        ready_ = true;
        break;
      }
    }
    if (!ready_) {
      const std::string text = read_bytes(log);
      reason_ = "serve_fixture.py did not start a server; the end of " + log.string() + ":\n" +
                text.substr(text.size() > kLogTail ? text.size() - kLogTail : 0);
    }
  }

  bool tried_ = false, ready_ = false, venvs_missing_ = false;
  Served served_;
  std::string reason_;
  pid_t pid_ = -1;
  int stdin_ = -1;
  FILE* out_ = nullptr;  // its stdout: "ready ...", then "killed"
};

Fixture* const fixture = static_cast<Fixture*>(::testing::AddGlobalTestEnvironment(new Fixture));

}  // namespace

const Served* served() { return fixture->get(); }
std::string why() { return fixture->reason(); }
bool kill_spare() { return fixture->kill_spare(); }
bool skippable() { return fixture->venvs_missing() && env_or("SIMVOS_REQUIRE_SERVER", "0") != "1"; }

std::string read_bytes(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

int run(const std::string& command, std::string* out, std::string* err) {
  char errors[] = "/tmp/simvos-test-stderr-XXXXXX";
  const int fd = mkstemp(errors);
  if (fd < 0) return -1;
  close(fd);
  FILE* pipe = popen((command + " 2>" + errors).c_str(), "r");
  std::string text;
  char buffer[4096];
  std::size_t n = 0;
  while (pipe != nullptr && (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) text.append(buffer, n);
  const int status = pipe != nullptr ? pclose(pipe) : -1;
  if (out != nullptr) *out = text;
  if (err != nullptr) *err = read_bytes(errors);
  std::remove(errors);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace simvos::testing
