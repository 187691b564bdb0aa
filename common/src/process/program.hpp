// What a director program's main() does around its run(): read the configuration, answer the
// commands (--help, --help-markdown, --version, --check-config, --health), set up logging, and
// run. The same for the agent and the spawner; each gives its own functions.
#pragma once

#include "config/option_types.hpp"
#include "log/log.hpp"
#include "net/health_probe.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <csignal>
#include <exception>
#include <iostream>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace director::process {

template <typename Config>
struct Program {
  std::string_view name;          // "director-agent": the prefix of its messages, --version's first word
  std::string_view http_variable;  // "DIRECTOR_HTTP_LISTEN": named when --health cannot know the port
  std::variant<config_table::Invocation<Config>, std::string> (*parse)(std::span<const std::string_view>,
                                                                       const config_table::EnvironmentLookup&);
  void (*print_help)(std::ostream&);
  void (*print_markdown)(std::ostream&);
  std::string (*to_json)(const Config&);
  std::string_view (*version)() noexcept;
  int (*run)(const Config&);  // until stopped; 0 when it stopped as asked
};

// --health: whether the program listening on `http_listen` is ready (its GET /readyz), for
// container health checks. 0 when ready, else 1 with the reason on stderr.
inline int health(std::string_view name, std::string_view http_variable,
                  const boost::asio::ip::tcp::endpoint& http_listen) {
  constexpr auto health_timeout = std::chrono::milliseconds(1000);  // within a HEALTHCHECK's 2 s
  if (http_listen.port() == 0) {
    std::cerr << name << ": not healthy: http_listen has port 0, so the port it bound is unknown; give "
              << "--health the actual " << http_variable << '\n';
    return 1;
  }
  const auto problem =
      net::readiness_problem(net::health_target(http_listen), health_timeout, std::string(name) + " --health");
  if (problem) {
    std::cerr << name << ": not healthy: " << *problem << '\n';
    return 1;
  }
  return 0;
}

// The exit code: 0 for a command or a run that stopped as asked, 1 when run() threw, 2 for a
// configuration refused (its message on stderr).
template <typename Config>
int main(const Program<Config>& program, int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  const std::vector<std::string_view> arguments(argv + 1, argv + argc);
  const auto parsed = program.parse(arguments, config_table::process_environment());
  if (const auto* error = std::get_if<std::string>(&parsed)) {
    std::cerr << program.name << ": " << *error << '\n';
    return 2;
  }
  const auto& invocation = std::get<config_table::Invocation<Config>>(parsed);
  switch (invocation.command) {
    case config_table::Command::help:
      program.print_help(std::cout);
      return 0;
    case config_table::Command::help_markdown:
      program.print_markdown(std::cout);
      return 0;
    case config_table::Command::version:
      std::cout << program.name << ' ' << program.version() << '\n';
      return 0;
    case config_table::Command::check_config:
      std::cout << program.to_json(invocation.config) << '\n';
      return 0;
    case config_table::Command::health:
      return health(program.name, program.http_variable, invocation.config.http_listen);
    case config_table::Command::run:
      break;
  }
  set_log_level(invocation.config.log_level);
  set_log_format(invocation.config.log_format);
  try {
    return program.run(invocation.config);
  } catch (const std::exception& error) {
    log(LogLevel::error, std::string(program.name) + " failed", {{"error", error.what()}});
    return 1;
  }
}

}  // namespace director::process
