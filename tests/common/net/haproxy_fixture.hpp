// A real HAProxy for C++ tests of its runtime API: started in the foreground (`-db`) with a
// minimal configuration in a temporary directory: a stats socket there (unix, level admin), and
// optionally one on 127.0.0.1 and a stick table like haproxy/haproxy.cfg's `fast_path`
// (type string len 64, store gpt(3)). No frontend unless `tracking_frontend`: one on
// 127.0.0.1 whose requests track their x-user header's entry in fast_path as haproxy.cfg's
// `track-sc0` does, and wait for a body (track() opens one that never finishes: its entry stays
// in use until the returned request is closed).
//
// Versions: Debian's 2.6 (`haproxy` on PATH, found at configure time: DIRECTOR_TEST_HAPROXY) and
// 3.2 (DIRECTOR_TEST_HAPROXY3, ../shared/haproxy/haproxy-3.2 beside the source tree); an empty
// definition means absent. haproxy_versions() lists those present; tests run once per version.
#pragma once

#include "../child_process_fixture.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#ifndef DIRECTOR_TEST_HAPROXY
#define DIRECTOR_TEST_HAPROXY ""
#endif
#ifndef DIRECTOR_TEST_HAPROXY3
#define DIRECTOR_TEST_HAPROXY3 ""
#endif

namespace director::test {

struct HaproxyVersion {
  std::string name;        // "2.6", "3.2"
  std::string executable;  // absolute path
};

// The HAProxy versions this machine has (possibly none: the tests then say "skipped: HAProxy").
inline std::vector<HaproxyVersion> haproxy_versions() {
  std::vector<HaproxyVersion> versions;
  const std::string debian = DIRECTOR_TEST_HAPROXY;
  const std::string lts = DIRECTOR_TEST_HAPROXY3;
  if (!debian.empty() && ::access(debian.c_str(), X_OK) == 0) versions.push_back({"2.6", debian});
  if (!lts.empty() && ::access(lts.c_str(), X_OK) == 0) versions.push_back({"3.2", lts});
  return versions;
}

class Haproxy {
 public:
  struct Options {
    std::string executable;
    bool fast_path_table = true;  // false: HAProxy has no table `fast_path` (a stale haproxy.cfg)
    bool tcp_socket = false;      // also a stats socket on 127.0.0.1:<reserved port>
    bool tracking_frontend = false;  // a frontend on 127.0.0.1:<reserved port> tracking x-user in fast_path
    // A table `user_connections` like haproxy.cfg's (conn_cur per username), which the tracking
    // frontend's requests also track (track-sc1), as haproxy.cfg's do.
    bool connections_table = false;
    bool user_level_socket = false;  // also a unix stats socket of level user (user_socket())
  };

  // An open request tracking a key's entry (HAProxy refuses to delete it meanwhile); closed on
  // destruction.
  class TrackedRequest {
   public:
    explicit TrackedRequest(int fd) : fd_(fd) {}
    ~TrackedRequest() {
      if (fd_ >= 0) ::close(fd_);
    }
    TrackedRequest(TrackedRequest&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    TrackedRequest(const TrackedRequest&) = delete;
    TrackedRequest& operator=(const TrackedRequest&) = delete;
    TrackedRequest& operator=(TrackedRequest&&) = delete;

   private:
    int fd_;
  };

  // Starts HAProxy and returns once its stats socket answers. Throws std::runtime_error when it
  // does not start within 5 s.
  explicit Haproxy(Options options) : options_(std::move(options)) {
    if (options_.tcp_socket) tcp_port_ = reservations_.emplace_back().port();
    if (options_.tracking_frontend) frontend_port_ = reservations_.emplace_back().port();
    write_config();
    start();
  }

  Haproxy(const Haproxy&) = delete;
  Haproxy& operator=(const Haproxy&) = delete;

  // The stats sockets, as config_table::parse_stats_socket reads them.
  std::string socket() const { return (directory_ / "admin.sock").string(); }
  std::string tcp_socket() const { return "127.0.0.1:" + std::to_string(tcp_port_); }
  std::string user_socket() const { return (directory_ / "user.sock").string(); }

  // Starts it again (after stop()) with the same configuration and sockets: an empty table.
  void start() {
    const int error = process_.start(options_.executable, {"haproxy", "-db", "-f", config_file().string()}, log_file(),
                                     ChildProcess::Log::append);
    if (error != 0) {
      throw std::runtime_error("haproxy fixture: cannot run " + options_.executable + ": " + std::strerror(error));
    }
    if (process_.wait_until_ready([&] { return command("show info\n").find("Name: HAProxy") != std::string::npos; },
                                  std::chrono::seconds(5), std::chrono::milliseconds(10))) {
      return;
    }
    stop();
    throw std::runtime_error("haproxy fixture: HAProxy did not start:\n" + log());
  }

  // Kills HAProxy and removes its unix socket: commands then fail to connect.
  void stop() {
    process_.stop();
    std::error_code ignored;
    std::filesystem::remove(socket(), ignored);
  }

  // Sends one command on the unix socket, blocking, and returns the whole answer ("" when the
  // socket does not answer): for the tests' own setup and checks.
  std::string command(std::string_view text) const {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    const auto path = socket();
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    std::string answer;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
        ::send(fd, text.data(), text.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(text.size())) {
      char buffer[16384];
      for (ssize_t got; (got = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) answer.append(buffer, static_cast<std::size_t>(got));
    }
    ::close(fd);
    return answer;
  }

  // The keys of `table` (`show table <table>` rows "0x...: key=<key> use=...").
  std::vector<std::string> keys(std::string_view table = "fast_path") const {
    std::vector<std::string> result;
    std::istringstream lines(command("show table " + std::string(table) + "\n"));
    for (std::string line; std::getline(lines, line);) {
      const auto at = line.find(": key=");
      if (line.starts_with("#") || at == std::string::npos) continue;
      const auto start = at + std::strlen(": key=");
      result.push_back(line.substr(start, line.find(' ', start) - start));
    }
    return result;
  }

  // The keys of fast_path whose gpt0 (the address) is not 0: the entries HAProxy's fast path uses.
  std::vector<std::string> live_keys() const {
    std::vector<std::string> result;
    for (auto& key : keys()) {
      if (gpt0(key).value_or(0) != 0) result.push_back(std::move(key));
    }
    return result;
  }

  // gpt0 of `key`'s entry in fast_path; nullopt without an entry.
  std::optional<long long> gpt0(std::string_view key) const { return field(key, "gpt0="); }

  // How many streams use `key`'s entry (`use=`); nullopt without an entry.
  std::optional<long long> use(std::string_view key) const { return field(key, "use="); }

  // Opens a request to the tracking frontend with header x-user: `key` and a body that never
  // comes, and returns once HAProxy tracks the key's entry. Throws when it does not within 5 s.
  TrackedRequest track(std::string_view key) const {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    TrackedRequest request(fd);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(frontend_port_);
    const std::string head = "POST / HTTP/1.1\r\nHost: test\r\nx-user: " + std::string(key) +
                             "\r\nContent-Length: 1000000\r\n\r\n";
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::send(fd, head.data(), head.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(head.size())) {
      throw std::runtime_error("haproxy fixture: cannot open a request to the tracking frontend");
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (use(key).value_or(0) < 1) {
      if (std::chrono::steady_clock::now() >= deadline) throw std::runtime_error("haproxy fixture: key not tracked");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return request;
  }

  // Stores `key` in fast_path (gpt0 = 1), as an answer of the agent would.
  void store(std::string_view key) const {
    const auto answer = command("set table fast_path key " + std::string(key) + " data.gpt 1\n");
    if (answer != "\n") throw std::runtime_error("haproxy fixture: set table failed: " + answer);
  }

  // Stores each of `keys`, a hundred to a command line (one line a connection: 3.x runs no more).
  void store_many(const std::vector<std::string>& keys) const {
    for (std::size_t at = 0; at < keys.size(); at += 100) {
      std::string line;
      std::size_t commands = 0;
      for (std::size_t i = at; i < keys.size() && i < at + 100; ++i, ++commands) {
        if (!line.empty()) line += ';';
        line += "set table fast_path key " + keys[i] + " data.gpt 1";
      }
      const auto answer = command(line + "\n");
      if (answer != std::string(commands, '\n')) throw std::runtime_error("haproxy fixture: set table failed: " + answer);
    }
  }

  std::string log() const { return read_file(log_file()); }

 private:
  // A number field (`name` ends in '=') of `key`'s row in fast_path; nullopt without the row.
  std::optional<long long> field(std::string_view key, std::string_view name) const {
    std::istringstream lines(command("show table fast_path\n"));
    const std::string row_key = ": key=" + std::string(key) + " ";
    for (std::string line; std::getline(lines, line);) {
      if (line.find(row_key) == std::string::npos) continue;
      const auto at = line.find(" " + std::string(name));
      if (at == std::string::npos) return std::nullopt;
      return std::stoll(line.substr(at + 1 + name.size()));
    }
    return std::nullopt;
  }

  std::filesystem::path config_file() const { return directory_ / "haproxy.cfg"; }
  std::filesystem::path log_file() const { return directory_ / "haproxy.log"; }

  void write_config() const {
    std::ostringstream out;
    out << "global\n"
        << "    stats socket " << socket() << " mode 600 level admin\n";
    if (options_.tcp_socket) out << "    stats socket " << tcp_socket() << " level admin\n";
    if (options_.user_level_socket) out << "    stats socket " << user_socket() << " mode 600 level user\n";
    out << "defaults\n    timeout client 5s\n";
    if (options_.tracking_frontend) {
      out << "frontend tracking\n"
          << "    mode http\n"
          << "    timeout client 30s\n"
          << "    bind 127.0.0.1:" << frontend_port_ << "\n"
          << "    http-request track-sc0 req.hdr(x-user) table fast_path\n";
      if (options_.connections_table) out << "    http-request track-sc1 req.hdr(x-user) table user_connections\n";
      out
          << "    http-request wait-for-body time 30s at-least 1000000\n"
          << "    http-request return status 200\n";
    }
    if (options_.fast_path_table) {
      out << "backend fast_path\n"
          << "    stick-table type string len 64 size 200k expire 2m store gpt(3)\n";
    } else {
      out << "backend other_table\n"
          << "    stick-table type string len 64 size 1k expire 2m store gpt(3)\n";
    }
    if (options_.connections_table) {
      out << "backend user_connections\n"
          << "    stick-table type string len 64 size 100k expire 24h store conn_cur,http_req_cnt\n";
    }
    write_file(config_file(), out.str());
  }

  Options options_;
  TempDirectory directory_{"director-haproxy"};
  std::vector<PortReservation> reservations_;  // HAProxy's ports, held while it runs
  std::uint16_t tcp_port_ = 0;
  std::uint16_t frontend_port_ = 0;
  ChildProcess process_{SIGKILL};
};

}  // namespace director::test
