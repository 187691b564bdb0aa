#include "config/config.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

namespace {

using director::config::Command;
using director::config::Config;
using director::config::Invocation;

struct Outcome {
  std::optional<Config> config;
  Command command = Command::run;
  std::string error;
};

Outcome parse(std::vector<std::string_view> arguments, std::map<std::string, std::string> environment = {}) {
  const auto lookup = [&](std::string_view name) -> std::optional<std::string> {
    const auto found = environment.find(std::string(name));
    if (found == environment.end()) return std::nullopt;
    return found->second;
  };
  auto parsed = director::config::parse(arguments, lookup);
  Outcome outcome;
  if (auto* error = std::get_if<std::string>(&parsed)) {
    outcome.error = *error;
  } else {
    auto& invocation = std::get<Invocation>(parsed);
    outcome.config = invocation.config;
    outcome.command = invocation.command;
  }
  return outcome;
}

}  // namespace

TEST_CASE("defaults match the original director's and the documented ones") {
  const auto outcome = parse({});
  REQUIRE(outcome.config);
  const auto& config = *outcome.config;
  CHECK(config.listen.port() == 12345);
  CHECK(config.listen.address().to_string() == "0.0.0.0");
  CHECK(config.decision.host_prefix == "vscode");
  CHECK(config.decision.container_port == 8080);
  CHECK(config.decision.username_mode == director::decision::UsernameMode::strict);
  CHECK(config.dns.servers.empty());
  CHECK(config.effective_threads() >= 1);
}

TEST_CASE("the seed's environment variables configure the container address") {
  const auto outcome = parse({}, {{"CONTAINER_HOST_PREFIX", "jupyter"}, {"CONTAINER_PORT", "8888"}});
  REQUIRE(outcome.config);
  CHECK(outcome.config->decision.host_prefix == "jupyter");
  CHECK(outcome.config->decision.container_port == 8888);
}

TEST_CASE("flags win over the environment, in both --flag VALUE and --flag=VALUE forms") {
  const auto outcome = parse({"--listen", "127.0.0.1:9000", "--container-port=9001", "--dns-server",
                              "127.0.0.1:5353,[::1]:53", "--alive-ttl", "1s", "--username-mode=escape"},
                             {{"DIRECTOR_LISTEN", "0.0.0.0:1"}, {"CONTAINER_PORT", "1"}});
  REQUIRE(outcome.config);
  const auto& config = *outcome.config;
  CHECK(config.listen.port() == 9000);
  CHECK(config.decision.container_port == 9001);
  CHECK(config.dns.servers == std::vector<std::string>{"127.0.0.1:5353", "[::1]:53"});
  CHECK(config.decision.alive_ttl == std::chrono::seconds(1));
  CHECK(config.decision.username_mode == director::decision::UsernameMode::escape);
}

TEST_CASE("durations take a unit") {
  CHECK(parse({"--probe-timeout", "250ms"}).config->probe.timeout == std::chrono::milliseconds(250));
  CHECK(parse({"--dead-ttl", "2s"}).config->decision.dead_ttl == std::chrono::seconds(2));
  CHECK(parse({"--dns-max-cache-ttl", "1m"}).config->dns.max_cache_ttl == std::chrono::seconds(60));
  CHECK_THAT(parse({"--probe-timeout", "250"}).error, Catch::Contains("expected a duration"));
}

TEST_CASE("every invalid value names its source, the value and what is accepted") {
  struct Case {
    std::vector<std::string_view> arguments;
    std::map<std::string, std::string> environment;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{"--container-port", "0"}, {}, "invalid value '0' for --container-port: expected an integer from 1 to 65535"},
      {{}, {{"CONTAINER_PORT", "80a"}}, "invalid value '80a' for CONTAINER_PORT"},
      {{"--listen", "127.0.0.1"}, {}, "invalid value '127.0.0.1' for --listen: expected IP:PORT"},
      {{"--listen", "localhost:80"}, {}, "for --listen"},
      {{"--threads", "-1"}, {}, "for --threads: expected an integer from 0 to 256"},
      {{"--container-host-prefix", "VS_Code"}, {}, "for --container-host-prefix"},
      {{"--container-host-prefix", "-vscode"}, {}, "for --container-host-prefix"},
      {{}, {{"CONTAINER_DOMAIN", "users..example"}}, "for CONTAINER_DOMAIN"},
      {{"--container-domain", "example.org."}, {}, "without a trailing dot"},
      {{"--username-mode", "loose"}, {}, "expected strict or escape"},
      {{"--probe-mode", "icmp"}, {}, "expected tcp or http"},
      {{"--probe-path", "health"}, {}, "for --probe-path"},
      {{"--dns-server", "dns.example:53"}, {}, "for --dns-server"},
      {{"--dns-tries", "0"}, {}, "expected an integer from 1 to 10"},
      {{"--max-frame-size", "255"}, {}, "expected an integer from 256 to 1048576"},
      {{"--log-level", "verbose"}, {}, "expected error, warn, info or debug"},
      {{"--cache-capacity", "0"}, {}, "for --cache-capacity"},
      {{"--alive-ttl", "2h"}, {}, "for --alive-ttl"},
      {{"--bogus"}, {}, "unknown argument '--bogus'"},
      {{"--listen"}, {}, "missing value for --listen"},
      {{"--alive-ttl", "300ms", "--refresh-after", "300ms"}, {}, "must be shorter than"},
  };
  for (const auto& c : cases) {
    const auto outcome = parse(c.arguments, c.environment);
    INFO("expected: " << c.expected);
    CHECK_FALSE(outcome.config);
    CHECK_THAT(outcome.error, Catch::Contains(c.expected));
  }
}

TEST_CASE("help, version and check-config are commands, not runs") {
  CHECK(parse({"--help"}).command == Command::help);
  CHECK(parse({"--version"}).command == Command::version);
  CHECK(parse({"--check-config"}).command == Command::check_config);
}

TEST_CASE("the effective configuration prints every option") {
  const auto outcome = parse({"--container-domain", "users.example.org"});
  const auto json = director::config::to_json(*outcome.config);
  CHECK_THAT(json, Catch::Contains("\"container_domain\":\"users.example.org\""));
  CHECK_THAT(json, Catch::Contains("\"alive_ttl\":\"800ms\""));
  CHECK_THAT(json, Catch::Contains("\"listen\":\"0.0.0.0:12345\""));
}
