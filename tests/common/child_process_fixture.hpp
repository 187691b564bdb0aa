// What the C++ test fixtures that run a real program share (net/dns_fixture.hpp's dnsmasq,
// net/haproxy_fixture.hpp's HAProxy): a temporary directory removed with its contents, the
// program as a child process whose stdout and stderr go to a log file, waiting for it to be
// ready, ports on 127.0.0.1 held reserved (PortReservation), and reading and counting what
// the log says.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace director::test {

// A new directory /tmp/<prefix>-XXXXXX, removed with everything in it on destruction.
class TempDirectory {
 public:
  explicit TempDirectory(std::string_view prefix) {
    std::string pattern = "/tmp/" + std::string(prefix) + "-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("test fixture: mkdtemp failed for " + pattern);
    path_ = pattern;
  }
  ~TempDirectory() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDirectory(const TempDirectory&) = delete;
  TempDirectory& operator=(const TempDirectory&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// The whole file ("" when it cannot be read): a log so far.
inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Replaces the file's content; throws std::runtime_error when it cannot.
inline void write_file(const std::filesystem::path& path, std::string_view content) {
  std::ofstream out(path, std::ios::trunc);
  out << content;
  if (!out.flush()) throw std::runtime_error("test fixture: cannot write " + path.string());
}

// How many times `needle` occurs in `text` (overlapping occurrences count).
inline std::size_t count_in(std::string_view text, std::string_view needle) {
  std::size_t count = 0;
  for (auto at = text.find(needle); at != std::string_view::npos; at = text.find(needle, at + 1)) ++count;
  return count;
}

// Checks `condition` every `interval` until it holds (true) or `limit` has passed (false).
inline bool poll_until(const std::function<bool()>& condition, std::chrono::milliseconds limit,
                       std::chrono::milliseconds interval) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
  return true;
}

// Which protocols a PortReservation's port must be free for.
enum class PortUse : std::uint8_t { tcp, tcp_and_udp };

// A port on 127.0.0.1 held for a program the test starts and tells its port: a TCP socket bound
// to it with SO_REUSEADDR and not listening. While it lives, no bind() to port 0 anywhere (another
// test's reservation, tools/loopback.py's) is handed the port, and the program still binds it if
// it sets SO_REUSEADDR (dnsmasq, HAProxy and Python's HTTP servers do). A port merely free when
// picked is free only until another test reserves it, and such a program then binds over that
// reservation (tools/loopback.py). tcp_and_udp: its UDP port was free too when picked
// (UDP is not held).
class PortReservation {
 public:
  explicit PortReservation(PortUse use = PortUse::tcp) {
    for (int attempt = 0; attempt < 20; ++attempt) {
      fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);  // not inherited by the children
      const int on = 1;
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      socklen_t length = sizeof address;
      if (fd_ >= 0 && ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) == 0 &&
          ::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
          ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
        bool free = true;
        if (use == PortUse::tcp_and_udp) {
          const int udp = ::socket(AF_INET, SOCK_DGRAM, 0);
          free = ::bind(udp, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
          ::close(udp);
        }
        if (free) {
          port_ = ntohs(address.sin_port);
          return;
        }
      }
      if (fd_ >= 0) ::close(fd_);
      fd_ = -1;
    }
    throw std::runtime_error("test fixture: no port to reserve");
  }
  ~PortReservation() {
    if (fd_ >= 0) ::close(fd_);
  }
  PortReservation(PortReservation&& other) noexcept
      : fd_(std::exchange(other.fd_, -1)), port_(std::exchange(other.port_, 0)) {}
  PortReservation& operator=(PortReservation&& other) noexcept {
    if (this != &other) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = std::exchange(other.fd_, -1);
      port_ = std::exchange(other.port_, 0);
    }
    return *this;
  }
  PortReservation(const PortReservation&) = delete;
  PortReservation& operator=(const PortReservation&) = delete;

  std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

// A program running in the background, stdout and stderr written to a log file; sent
// `stop_signal` and reaped by stop() and on destruction.
class ChildProcess {
 public:
  // What start() does to an existing log file.
  enum class Log : std::uint8_t { append, truncate };

  explicit ChildProcess(int stop_signal) : stop_signal_(stop_signal) {}
  ~ChildProcess() { stop(); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Runs `executable` (a path, or a name looked up in PATH) with `arguments` (argv[0] first).
  // Returns 0, or posix_spawnp's error number when the program could not be run.
  int start(const std::string& executable, std::vector<std::string> arguments, const std::filesystem::path& log_file,
            Log log) {
    std::vector<char*> argv;
    for (auto& argument : arguments) argv.push_back(argument.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t files;
    ::posix_spawn_file_actions_init(&files);
    ::posix_spawn_file_actions_addopen(&files, STDOUT_FILENO, log_file.c_str(),
                                       O_WRONLY | O_CREAT | O_APPEND | (log == Log::truncate ? O_TRUNC : 0), 0644);
    ::posix_spawn_file_actions_adddup2(&files, STDOUT_FILENO, STDERR_FILENO);
    const int error = ::posix_spawnp(&pid_, executable.c_str(), &files, nullptr, argv.data(), environ);
    ::posix_spawn_file_actions_destroy(&files);
    if (error != 0) pid_ = -1;
    return error;
  }

  // True once `ready` holds; false when the program exits first (it is then reaped) or `limit`
  // passes (it keeps running: stop() it). Checks every `interval`.
  bool wait_until_ready(const std::function<bool()>& ready, std::chrono::milliseconds limit,
                        std::chrono::milliseconds interval) {
    bool ready_now = false;
    poll_until([&] { return (ready_now = ready()) || exited(); }, limit, interval);
    return ready_now;
  }

  // Whether it has exited (reaped: stop() then does nothing); true when it never ran.
  bool exited() {
    if (pid_ <= 0) return true;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) != pid_) return false;
    pid_ = -1;
    return true;
  }

  // Sends the stop signal and waits for the program to end; nothing when it is not running.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, stop_signal_);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  int stop_signal_;
  pid_t pid_ = -1;
};

}  // namespace director::test
