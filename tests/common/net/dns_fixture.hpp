// A real dnsmasq for C++ tests: answers on 127.0.0.1 at a reserved port from one hosts file that the
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

#include "../child_process_fixture.hpp"

#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <boost/asio/ip/udp.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

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
    std::filesystem::create_directory(hosts_directory());
    write_file(hosts_file(), options_.hosts);

    std::string failures;
    for (int attempt = 0; attempt < 5; ++attempt) {
      reservation_.emplace(PortUse::tcp_and_udp);  // dnsmasq binds both (SO_REUSEADDR)
      port_ = reservation_->port();
      if (start()) return;
      failures += log() + "\n";
      stop();
    }
    throw std::runtime_error("dns fixture: dnsmasq did not start:\n" + failures);
  }

  Dnsmasq() : Dnsmasq(Options{}) {}

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
  void stop() { process_.stop(); }

  std::string log() const { return read_file(log_file()); }

 private:
  std::filesystem::path hosts_directory() const { return directory_ / "hosts.d"; }
  std::filesystem::path hosts_file() const { return hosts_directory() / "hosts"; }
  std::filesystem::path log_file() const { return directory_ / "dnsmasq.log"; }

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
    // Ready once the hosts directory was read; gone early when the port was taken.
    return process_.start(executable(), std::move(arguments), log_file(), ChildProcess::Log::truncate) == 0 &&
           process_.wait_until_ready([&] { return count_in_log("read " + hosts_file().string() + " ") > 0; },
                                     std::chrono::seconds(5), std::chrono::milliseconds(5));
  }

  std::size_t count_in_log(const std::string& needle) const { return count_in(log(), needle); }

  bool wait_for_log(const std::string& needle, std::size_t expected) const {
    return poll_until([&] { return count_in_log(needle) >= expected; }, std::chrono::seconds(2),
                      std::chrono::milliseconds(5));
  }

  Options options_;
  TempDirectory directory_{"director-dnsmasq"};
  std::optional<PortReservation> reservation_;  // held while dnsmasq runs
  std::uint16_t port_ = 0;
  ChildProcess process_{SIGTERM};
};

}  // namespace director::test
