// A real simvos-serve for the tests: cpp/tests/serve_fixture.py run once per test program.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace simvos::testing {

//! The running fixture: its gRPC address and work folder (serve_fixture.py says what lies there).
struct Served {
  std::string url;   // HOST:PORT of the gRPC endpoint
  int http_port = 0;
  std::string spare;  // HOST:PORT of a second server of the same export, for kill_spare()
  std::filesystem::path workdir;
};

//! The fixture, started by the first call; null when it cannot run (why() says why).
const Served* served();
std::string why();
//! SIGKILLs the spare server (and its Triton), as when its machine fails; true once it is dead.
bool kill_spare();
//! Whether the tests may skip: the venvs are missing, and SIMVOS_REQUIRE_SERVER=1 (CI) does not forbid it;
//! a fixture that fails otherwise fails them.
bool skippable();

//! Runs a command line through /bin/sh; returns its exit status, its stdout and stderr in `out`, `err`.
int run(const std::string& command, std::string* out = nullptr, std::string* err = nullptr);
//! The bytes of a file ("" if it cannot be read).
std::string read_bytes(const std::filesystem::path& path);

}  // namespace simvos::testing

//! At the top of a test: `name`, the fixture, or the test is skipped (or failed, unless skippable()).
#define SIMVOS_SERVED(name)                                                 \
  const ::simvos::testing::Served* name = ::simvos::testing::served();      \
  if (name == nullptr) {                                                    \
    if (!::simvos::testing::skippable()) FAIL() << ::simvos::testing::why(); \
    GTEST_SKIP() << ::simvos::testing::why();                               \
  }
