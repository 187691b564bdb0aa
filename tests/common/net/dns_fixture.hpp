// A real dnsmasq for C++ tests: answers on 127.0.0.1 at a free port from one hosts file that the
// test rewrites, and logs every query so that tests can count what reached the wire.
//
// dnsmasq ($DNSMASQ, /usr/sbin/dnsmasq or PATH) runs in the foreground as the current user with no
// configuration file, no upstream, no /etc/hosts and no pid file (several test processes may run
// side by side):
//   dnsmasq --keep-in-foreground --conf-file=/dev/null --pid-file --user=<current user>
//           --port=<p> --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts
//           --hostsdir=<dir> --local-ttl=<ttl> --log-queries --log-facility=-
//           [--local=/#/]
// `--local=/#/` makes it authoritative for every name: NXDOMAIN for unknown names and NODATA for
// a missing record type. Without it (authoritative = false) anything not in the hosts file is
// REFUSED, which is how tests get a server that answers with an error.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/ip/udp.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

extern char** environ;

namespace director::test {

class Dnsmasq {
 public:
  struct Options {
    int local_ttl = 0;          // TTL of the answers from the hosts file, in seconds
    bool authoritative = true;  // false: REFUSED for names not in the hosts file
    std::string hosts;          // initial hosts file, e.g. "127.0.1.5 vscode-jack\n"
  };

  // Starts dnsmasq and returns once it has read the hosts file. Throws std::runtime_error when
  // dnsmasq cannot be started (after trying a few ports).
  explicit Dnsmasq(Options options) : options_(std::move(options)) {
    char pattern[] = "/tmp/director-dnsmasq-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("dns fixture: mkdtemp failed");
    directory_ = pattern;
    std::filesystem::create_directory(hosts_directory());
    write_file(hosts_file(), options_.hosts);

    std::string failures;
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = free_port();
      if (start()) return;
      failures += log() + "\n";
      stop();
    }
    std::filesystem::remove_all(directory_);
    throw std::runtime_error("dns fixture: dnsmasq did not start:\n" + failures);
  }

  Dnsmasq() : Dnsmasq(Options{}) {}

  ~Dnsmasq() {
    stop();
    std::error_code ignored;
    std::filesystem::remove_all(directory_, ignored);
  }

  Dnsmasq(const Dnsmasq&) = delete;
  Dnsmasq& operator=(const Dnsmasq&) = delete;

  std::uint16_t port() const { return port_; }
  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }  // --dns-server's grammar
  boost::asio::ip::udp::endpoint endpoint() const {
    return {boost::asio::ip::address_v4::loopback(), port_};
  }

  // Replaces the hosts file atomically and returns once dnsmasq has read the new one.
  void set_hosts(std::string_view content) {
    const std::size_t reads_before = count_in_log("read " + hosts_file().string() + " ");
    const auto staged = directory_ / "hosts.new";
    write_file(staged, content);
    std::filesystem::rename(staged, hosts_file());
    if (!wait_for_log("read " + hosts_file().string() + " ", reads_before + 1)) {
      throw std::runtime_error("dns fixture: dnsmasq did not reload the hosts file:\n" + log());
    }
  }

  // Queries of `type` ("A", "AAAA") for `name` that dnsmasq logged so far.
  std::size_t queries(std::string_view name, std::string_view type = "A") const {
    return count_in_log("query[" + std::string(type) + "] " + std::string(name) + " from ");
  }

  // Waits (up to 2 s) until at least `expected` such queries were logged, then returns the count.
  // dnsmasq may write the log line after it sent the answer.
  std::size_t wait_for_queries(std::string_view name, std::size_t expected,
                               std::string_view type = "A") const {
    const std::string needle = "query[" + std::string(type) + "] " + std::string(name) + " from ";
    wait_for_log(needle, expected);
    return count_in_log(needle);
  }

  // Kills dnsmasq; its port is left without a listener.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  std::string log() const {
    std::ifstream in(log_file());
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

 private:
  std::filesystem::path hosts_directory() const { return directory_ / "hosts.d"; }
  std::filesystem::path hosts_file() const { return hosts_directory() / "hosts"; }
  std::filesystem::path log_file() const { return directory_ / "dnsmasq.log"; }

  static void write_file(const std::filesystem::path& path, std::string_view content) {
    std::ofstream out(path, std::ios::trunc);
    out << content;
    if (!out.flush()) throw std::runtime_error("dns fixture: cannot write " + path.string());
  }

  // A port free for both UDP and TCP on 127.0.0.1 right now (dnsmasq binds both).
  static std::uint16_t free_port() {
    for (int attempt = 0; attempt < 20; ++attempt) {
      const int udp = ::socket(AF_INET, SOCK_DGRAM, 0);
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      socklen_t length = sizeof address;
      ::bind(udp, reinterpret_cast<sockaddr*>(&address), sizeof address);
      ::getsockname(udp, reinterpret_cast<sockaddr*>(&address), &length);
      const int tcp = ::socket(AF_INET, SOCK_STREAM, 0);
      const bool tcp_free = ::bind(tcp, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
      ::close(tcp);
      ::close(udp);
      if (tcp_free) return ntohs(address.sin_port);
    }
    throw std::runtime_error("dns fixture: no free port");
  }

  // $DNSMASQ, else /usr/sbin/dnsmasq (not in a normal user's PATH on Debian), else PATH.
  static std::string executable() {
    if (const char* configured = std::getenv("DNSMASQ"); configured != nullptr && *configured) {
      return configured;
    }
    if (::access("/usr/sbin/dnsmasq", X_OK) == 0) return "/usr/sbin/dnsmasq";
    return "dnsmasq";
  }

  bool start() {
    const passwd* user = ::getpwuid(::geteuid());
    std::vector<std::string> arguments = {
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--pid-file",
        "--user=" + std::string(user != nullptr ? user->pw_name : "root"),
        "--port=" + std::to_string(port_),
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--hostsdir=" + hosts_directory().string(),
        "--local-ttl=" + std::to_string(options_.local_ttl),
        "--log-queries",
        "--log-facility=-",
    };
    if (options_.authoritative) arguments.emplace_back("--local=/#/");
    std::vector<char*> argv;
    for (auto& argument : arguments) argv.push_back(argument.data());
    argv.push_back(nullptr);

    posix_spawn_file_actions_t files;
    ::posix_spawn_file_actions_init(&files);
    ::posix_spawn_file_actions_addopen(&files, STDOUT_FILENO, log_file().c_str(),
                                       O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    ::posix_spawn_file_actions_adddup2(&files, STDOUT_FILENO, STDERR_FILENO);
    const int error =
        ::posix_spawnp(&pid_, executable().c_str(), &files, nullptr, argv.data(), environ);
    ::posix_spawn_file_actions_destroy(&files);
    if (error != 0) {
      pid_ = -1;
      return false;
    }
    // Ready once the hosts directory was read; gone early when the port was taken.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      if (count_in_log("read " + hosts_file().string() + " ") > 0) return true;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }

  std::size_t count_in_log(const std::string& needle) const {
    const std::string text = log();
    std::size_t count = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
      ++count;
    }
    return count;
  }

  bool wait_for_log(const std::string& needle, std::size_t expected) const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (count_in_log(needle) < expected) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }

  Options options_;
  std::filesystem::path directory_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace director::test
