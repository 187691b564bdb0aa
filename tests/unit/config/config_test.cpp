#include "config/config.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

using director::config::Command;
using director::config::Config;
using director::config::Invocation;
using director::config::Source;

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
  CHECK(config.listen.address().to_string() == "127.0.0.1");
  CHECK(config.decision.host_prefix == "vscode");
  CHECK(config.decision.container_port == 8080);
  CHECK(config.decision.username_mode == director::decision::UsernameMode::escape);
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
  CHECK(parse({}).config->hello_timeout == std::chrono::seconds(5));
  CHECK(parse({}).config->decision.stale_if_error == std::chrono::seconds(60));
  CHECK(parse({"--stale-if-error", "0s"}).config->decision.stale_if_error == std::chrono::seconds(0));
  CHECK(parse({"--hello-timeout", "30s"}).config->hello_timeout == std::chrono::seconds(30));
  CHECK(parse({"--dead-ttl", "2s"}).config->decision.dead_ttl == std::chrono::seconds(2));
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
      {{"--alive-ttl", "300ms", "--refresh-after", "300ms"}, {}, "refresh_after must be shorter than alive_ttl"},
  };
  for (const auto& c : cases) {
    const auto outcome = parse(c.arguments, c.environment);
    INFO("expected: " << c.expected);
    CHECK_FALSE(outcome.config);
    CHECK_THAT(outcome.error, Catch::Contains(c.expected));
  }
}

TEST_CASE("HAProxy sockets: the agent talks to the HAProxy beside it by address, never by DNS name") {
  const auto outcome = parse({"--haproxy-sockets", "/run/a.sock haproxy:9999"});
  CHECK_FALSE(outcome.config);
  CHECK(outcome.error.find("for --haproxy-sockets: expected entries separated by spaces or commas, each an absolute "
                           "unix socket path (at most 107 characters) or IP:PORT ([IPv6]:PORT), e.g.") !=
        std::string::npos);
  CHECK(parse({"--haproxy-sockets", "/run/a.sock 127.0.0.1:9999"}).config);
}

TEST_CASE("one grammar for DNS servers: what --dns-server accepts is what parse_dns_server reads") {
  using director::config::parse_dns_server;
  struct Good {
    std::string_view text;
    std::string_view address;
    std::uint16_t port;
  };
  for (const Good& good : {Good{"127.0.0.1", "127.0.0.1", 53}, Good{"127.0.0.1:5353", "127.0.0.1", 5353},
                           Good{"::1", "::1", 53}, Good{"[::1]", "::1", 53}, Good{"[fd00::53]:5353", "fd00::53", 5353},
                           Good{"fd00::1:53", "fd00::1:53", 53}}) {
    INFO("server '" << good.text << "'");
    const auto server = parse_dns_server(good.text);
    REQUIRE(server);
    CHECK(server->address.to_string() == good.address);
    CHECK(server->port == good.port);
    const auto outcome = parse({"--dns-server", good.text});
    INFO(outcome.error);
    CHECK(outcome.config);
  }
  // "[127.0.0.1]:53" was accepted by --check-config and refused by the resolver at startup;
  // "[::1]" the other way round.
  for (const std::string_view bad : {"", "localhost", "dns.example:53", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
                                     "127.0.0.1:53x", "127.0.0.1:-1", "1.2.3.4:5:6", "[127.0.0.1]:53", "[127.0.0.1]",
                                     "[::1", "[::1]x", "[::1]:", "[::1]:0", " 127.0.0.1", "127.0.0.1 "}) {
    INFO("server '" << bad << "'");
    CHECK_FALSE(parse_dns_server(bad));
    if (!bad.empty()) CHECK_THAT(parse({"--dns-server", bad}).error, Catch::Contains("for --dns-server"));
  }
}

TEST_CASE("the listen options share the address grammar, with a port required") {
  CHECK(parse({"--listen", "[::1]:9000"}).config->listen ==
        boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("::1"), 9000));
  CHECK(parse({"--http-listen", "0.0.0.0:9103"}).config->http_listen.port() == 9103);
  for (const std::string_view bad : {"[127.0.0.1]:9000", "::1:9000", "[::1]", "127.0.0.1", "localhost:9000"}) {
    INFO("listen '" << bad << "'");
    CHECK_THAT(parse({"--listen", bad}).error, Catch::Contains("for --listen"));
    CHECK_THAT(parse({"--http-listen", bad}).error, Catch::Contains("for --http-listen"));
  }
}

TEST_CASE("the DNS cache option is gone: every check resolves afresh") {
  CHECK_THAT(parse({"--dns-max-cache-ttl", "0s"}).error, Catch::Contains("unknown argument '--dns-max-cache-ttl'"));
  CHECK(parse({}, {{"DIRECTOR_DNS_MAX_CACHE_TTL", "5s"}}).config);  // an unknown variable is not read
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
  CHECK_THAT(json, Catch::Contains("\"listen\":\"127.0.0.1:12345\""));
}

// --- the configuration file, precedence and sources ----------------------------------------

namespace {

// A directory of its own under the system's temporary directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    static std::atomic<unsigned> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("director-config-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }

  // Writes `content` to `name` in the directory; returns its path.
  std::string write(const std::string& name, std::string_view content) const {
    const auto file = path_ / name;
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    REQUIRE(out.good());
    return file.string();
  }

  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// The "sources" object of to_json: its keys are the option keys, its values the sources.
std::string sources_json(const Config& config) {
  const auto json = director::config::to_json(config);
  const auto at = json.find("\"sources\":{");
  REQUIRE(at != std::string::npos);
  return json.substr(at);
}

std::string source_entry(std::string_view key, std::string_view source) {
  return "\"" + std::string(key) + "\":\"" + std::string(source) + "\"";
}

std::string markdown() {
  std::ostringstream out;
  director::config::print_markdown(out);
  return out.str();
}

}  // namespace

TEST_CASE("a configuration file sets options with their JSON types") {
  const TempDir dir;
  const auto path = dir.write("director.json", R"({
    "listen": "127.0.0.1:9000",
    "threads": 3,
    "container_host_prefix": "jupyter",
    "container_port": 8888,
    "container_domain": "users.example.org",
    "alive_ttl": "2s",
    "dns_servers": ["127.0.0.1:5353", "[::1]:53"],
    "log_format": "json"
  })");
  const auto outcome = parse({"--config", path});
  INFO(outcome.error);
  REQUIRE(outcome.config);
  const auto& config = *outcome.config;
  CHECK(config.config_file == path);
  CHECK(config.listen.port() == 9000);
  CHECK(config.threads == 3);
  CHECK(config.decision.host_prefix == "jupyter");
  CHECK(config.decision.container_port == 8888);
  CHECK(config.decision.domain_suffix == "users.example.org");
  CHECK(config.decision.alive_ttl == std::chrono::seconds(2));
  CHECK(config.dns.servers == std::vector<std::string>{"127.0.0.1:5353", "[::1]:53"});
  CHECK(config.log_format == director::config::LogFormat::json);
  CHECK(config.sources.at("container_port") == Source::file);
  CHECK(config.sources.at("config") == Source::flag);
  CHECK(config.sources.count("probe_mode") == 0);
}

TEST_CASE("an empty object and an empty array in a file are valid") {
  const TempDir dir;
  const auto empty = dir.write("empty-object.json", "{}\n");
  const auto outcome = parse({"--config", empty});
  REQUIRE(outcome.config);
  CHECK(outcome.config->sources.size() == 1);  // config itself

  const auto no_servers = dir.write("no-servers.json", R"({"dns_servers": []})");
  const auto servers = parse({"--config", no_servers}, {{"DIRECTOR_DNS_SERVER", "127.0.0.1"}});
  REQUIRE(servers.config);
  CHECK(servers.config->dns.servers == std::vector<std::string>{"127.0.0.1"});  // the environment wins
  CHECK(parse({"--config", no_servers}).config->dns.servers.empty());
}

TEST_CASE("DIRECTOR_CONFIG names the file, --config overrides it, an empty value means none") {
  const TempDir dir;
  const auto from_env = dir.write("env.json", R"({"container_port": 1001})");
  const auto from_flag = dir.write("flag.json", R"({"container_port": 1002})");

  const auto env_only = parse({}, {{"DIRECTOR_CONFIG", from_env}});
  REQUIRE(env_only.config);
  CHECK(env_only.config->decision.container_port == 1001);
  CHECK(env_only.config->sources.at("config") == Source::environment);

  const auto both = parse({"--config", from_flag}, {{"DIRECTOR_CONFIG", dir.path() + "/missing.json"}});
  INFO(both.error);
  REQUIRE(both.config);  // the file DIRECTOR_CONFIG names is not read
  CHECK(both.config->decision.container_port == 1002);
  CHECK(both.config->config_file == from_flag);

  const auto last_flag = parse({"--config", from_env, "--config=" + from_flag});
  REQUIRE(last_flag.config);
  CHECK(last_flag.config->decision.container_port == 1002);

  const auto disabled = parse({"--config", ""}, {{"DIRECTOR_CONFIG", from_env}});
  REQUIRE(disabled.config);
  CHECK(disabled.config->decision.container_port == 8080);
  CHECK(disabled.config->config_file.empty());
}

TEST_CASE("precedence is default < file < environment < flag, and to_json reports each source") {
  const TempDir dir;
  const auto path = dir.write("director.json",
                              R"({"container_port": 1001, "threads": 3, "dns_tries": 4, "probe_mode": "http"})");
  const auto outcome = parse({"--container-port", "1003", "--config", path},
                             {{"CONTAINER_PORT", "1002"}, {"DIRECTOR_THREADS", "5"}});
  INFO(outcome.error);
  REQUIRE(outcome.config);
  const auto& config = *outcome.config;
  CHECK(config.decision.container_port == 1003);  // flag over environment over file
  CHECK(config.threads == 5);                     // environment over file
  CHECK(config.dns.tries == 4);                   // file over default
  CHECK(config.probe.mode == director::config::ProbeMode::http);
  CHECK(config.listen.port() == 12345);           // default

  const auto json = director::config::to_json(config);
  CHECK_THAT(json, Catch::Contains("\"container_port\":1003,"));
  CHECK_THAT(json, Catch::Contains("\"threads\":5,"));
  CHECK_THAT(json, Catch::Contains("\"dns_tries\":4,"));
  const auto sources = sources_json(config);
  CHECK_THAT(sources, Catch::Contains(source_entry("container_port", "flag")));
  CHECK_THAT(sources, Catch::Contains(source_entry("config", "flag")));
  CHECK_THAT(sources, Catch::Contains(source_entry("threads", "environment")));
  CHECK_THAT(sources, Catch::Contains(source_entry("dns_tries", "file")));
  CHECK_THAT(sources, Catch::Contains(source_entry("probe_mode", "file")));
  CHECK_THAT(sources, Catch::Contains(source_entry("listen", "default")));
  CHECK_THAT(sources, Catch::Contains(source_entry("log_format", "default")));
}

TEST_CASE("every option has a source in to_json, default when nothing set it") {
  const auto outcome = parse({});
  REQUIRE(outcome.config);
  const auto sources = sources_json(*outcome.config);
  const auto table = markdown();
  std::istringstream lines(table);
  std::string line;
  std::size_t rows = 0;
  while (std::getline(lines, line)) {
    if (line.rfind("| `", 0) != 0) continue;
    const auto key = line.substr(3, line.find('`', 3) - 3);
    CHECK_THAT(sources, Catch::Contains(source_entry(key, "default")));
    ++rows;
  }
  CHECK(rows >= 20);
  CHECK_THAT(sources, Catch::Contains(source_entry("config", "default")));
}

TEST_CASE("a bad configuration file is refused with the file and what is wrong") {
  const TempDir dir;
  struct Case {
    std::string name;
    std::string content;
    std::vector<std::string> expected;  // substrings of the message; "PATH" stands for the file
  };
  const std::vector<Case> cases = {
      {"typo.json", R"({"container_prot": 8080})",
       {"unknown key \"container_prot\" in PATH; did you mean \"container_port\"?"}},
      {"env-name.json", R"({"CONTAINER_PORT": 8080})",
       {"unknown key \"CONTAINER_PORT\" in PATH; did you mean \"container_port\"?"}},
      {"flag-name.json", R"({"--dns-server": ["127.0.0.1"]})",
       {"unknown key \"--dns-server\" in PATH; did you mean \"dns_servers\"?"}},
      {"dashes.json", R"({"alive-ttl": "1s"})", {"unknown key \"alive-ttl\" in PATH; did you mean \"alive_ttl\"?"}},
      {"far.json", R"({"colour": "blue"})", {"unknown key \"colour\" in PATH (director-agent --help lists the keys)"}},
      {"printed.json", R"({"sources": {}})", {"unknown key \"sources\" in PATH", "it is not an option"}},
      {"version.json", R"({"version": "0.1.0"})", {"unknown key \"version\" in PATH", "it is not an option"}},
      {"duplicate.json", R"({"container_port": 8080, "threads": 1, "container_port": 8081})",
       {"duplicate key \"container_port\" in PATH"}},
      {"array.json", R"([{"container_port": 8080}])", {"configuration file PATH must hold one JSON object"}},
      {"string.json", R"("container_port")", {"configuration file PATH must hold one JSON object"}},
      {"null.json", "null", {"configuration file PATH must hold one JSON object"}},
      {"number.json", "8080", {"configuration file PATH must hold one JSON object"}},
      {"empty.json", "", {"configuration file PATH is empty: it must hold one JSON object"}},
      {"blank.json", " \n\t\n", {"configuration file PATH is empty"}},
      {"trailing-comma.json", "{\n  \"container_port\": 8080,\n}\n",
       {"malformed configuration file PATH: parse error at line 3, column 1"}},
      {"unquoted.json", "{\"threads\": 2, listen: \"x\"}",
       {"malformed configuration file PATH: parse error at line 1, column 16"}},
      {"truncated.json", "{\"threads\": 2", {"malformed configuration file PATH: parse error at line 1", "end of input"}},
      {"comment.json", "// options\n{}", {"malformed configuration file PATH: parse error at line 1, column"}},
      {"two-objects.json", "{} {}", {"malformed configuration file PATH: parse error at line 1, column"}},
      {"latin1.json", "{\"container_domain\": \"caf\xe9\"}", {"malformed configuration file PATH", "UTF-8"}},
      {"config-key.json", R"({"config": "other.json"})",
       {"key \"config\" in PATH: a configuration file cannot name another one"}},
      {"string-for-integer.json", R"({"container_port": "8080"})",
       {"wrong type for container_port in PATH: expected an integer, got string \"8080\""}},
      {"float-for-integer.json", R"({"threads": 2.5})", {"wrong type for threads in PATH: expected an integer, got number 2.5"}},
      {"bool-for-integer.json", R"({"dns_tries": true})", {"wrong type for dns_tries in PATH: expected an integer, got boolean"}},
      {"integer-for-string.json", R"({"alive_ttl": 800})", {"wrong type for alive_ttl in PATH: expected a string, got number 800"}},
      {"null-for-string.json", R"({"listen": null})", {"wrong type for listen in PATH: expected a string, got null"}},
      {"string-for-array.json", R"({"dns_servers": "127.0.0.1"})",
       {"wrong type for dns_servers in PATH: expected an array of strings, got string \"127.0.0.1\""}},
      {"number-in-array.json", R"({"dns_servers": ["127.0.0.1", 53]})",
       {"wrong type for dns_servers in PATH: expected an array of strings, got array"}},
      {"comma-in-array.json", R"({"dns_servers": ["127.0.0.1,127.0.0.2"]})",
       {"invalid value [\"127.0.0.1,127.0.0.2\"] for dns_servers in PATH: expected one non-empty entry per array "
        "element, without commas"}},
      {"empty-in-array.json", R"({"dns_servers": [""]})", {"for dns_servers in PATH: expected one non-empty entry"}},
      {"out-of-range.json", R"({"container_port": 70000})",
       {"invalid value 70000 for container_port in PATH: expected an integer from 1 to 65535"}},
      {"negative.json", R"({"threads": -1})", {"invalid value -1 for threads in PATH: expected an integer from 0 to 256"}},
      {"huge.json", R"({"cache_capacity": 123456789012345678901234567890})",
       {"wrong type for cache_capacity in PATH: expected an integer, got number"}},
      {"inconsistent.json", R"({"alive_ttl": "300ms", "refresh_after": "300ms"})",
       {"refresh_after (DIRECTOR_REFRESH_AFTER, --refresh-after) is \"300ms\" (file)",
        "alive_ttl (DIRECTOR_ALIVE_TTL, --alive-ttl) is \"300ms\" (file)", "refresh_after must be shorter than alive_ttl"}},
  };
  for (const auto& c : cases) {
    const auto path = dir.write(c.name, c.content);
    const auto outcome = parse({"--config", path});
    INFO(c.name << ": " << outcome.error);
    CHECK_FALSE(outcome.config);
    for (auto expected : c.expected) {
      const auto at = expected.find("PATH");
      if (at != std::string::npos) expected.replace(at, 4, path);
      CHECK_THAT(outcome.error, Catch::Contains(expected));
    }
    CHECK(outcome.error.find('\n') == std::string::npos);
  }
}

TEST_CASE("a bad value in the file is refused even when the environment or a flag overrides it") {
  const TempDir dir;
  const auto path = dir.write("bad.json", R"({"container_port": 0})");
  const auto outcome = parse({"--config", path, "--container-port", "8080"}, {{"CONTAINER_PORT", "8080"}});
  CHECK_FALSE(outcome.config);
  CHECK_THAT(outcome.error, Catch::Contains("invalid value 0 for container_port in " + path));
}

TEST_CASE("a configuration file is at most max_config_file_size bytes") {
  const TempDir dir;
  const auto limit = director::config::max_config_file_size;
  std::string content = "{}";
  content.resize(limit, ' ');
  const auto at_limit = dir.write("at-limit.json", content);
  CHECK(parse({"--config", at_limit}).config);

  content += ' ';
  const auto over = dir.write("over.json", content);
  const auto outcome = parse({"--config", over});
  CHECK_FALSE(outcome.config);
  CHECK_THAT(outcome.error,
             Catch::Contains("configuration file " + over + " is larger than " + std::to_string(limit) + " bytes"));
}

TEST_CASE("a configuration file that cannot be read is named with the reason") {
  const TempDir dir;
  const auto missing = dir.path() + "/missing.json";
  CHECK_THAT(parse({"--config", missing}).error,
             Catch::Contains("cannot open configuration file " + missing + ": No such file or directory"));
  CHECK_THAT(parse({}, {{"DIRECTOR_CONFIG", missing}}).error,
             Catch::Contains("cannot open configuration file " + missing));
  CHECK_THAT(parse({"--config", dir.path()}).error,
             Catch::Contains("cannot read configuration file " + dir.path() + ": Is a directory"));
  if (::geteuid() != 0) {  // root reads anything
    const auto locked = dir.write("locked.json", "{}");
    std::filesystem::permissions(locked, std::filesystem::perms::none);
    CHECK_THAT(parse({"--config", locked}).error,
               Catch::Contains("cannot open configuration file " + locked + ": Permission denied"));
  }
  CHECK_THAT(parse({"--config", std::string("a\nb.json")}).error,
             Catch::Contains("invalid value 'a\\x0ab.json' for --config: expected a file path of at most 4096 characters"));
}

TEST_CASE("the commands help, help-markdown and version read no file") {
  const auto missing = std::string("/nonexistent/director.json");
  CHECK(parse({"--config", missing, "--help"}).command == Command::help);
  CHECK(parse({"--help-markdown", "--config", missing}).command == Command::help_markdown);
  CHECK(parse({"--version"}, {{"DIRECTOR_CONFIG", missing}}).command == Command::version);
  CHECK_THAT(parse({"--check-config"}, {{"DIRECTOR_CONFIG", missing}}).error,
             Catch::Contains("cannot open configuration file"));
}

// --- every option refuses bad values from every source ---------------------------------------

TEST_CASE("every option's invalid value names the variable, flag or key and the accepted range") {
  struct BadValue {
    std::string environment;  // the variable
    std::string flag;
    std::string key;          // in the file; empty for --config, which is not a file key
    std::string text;         // the value as the variable or flag gives it
    std::string json;         // the value in the file
    std::string accepted;     // what the message says is accepted (its beginning)
  };
  const std::vector<BadValue> cases = {
      {"DIRECTOR_CONFIG", "--config", "", std::string("x\x01.json"), "", "a file path of at most 4096 characters, or empty for none"},
      {"DIRECTOR_LISTEN", "--listen", "listen", "127.0.0.1", R"("127.0.0.1")", "IP:PORT with a port from 0 (any free port) to 65535"},
      {"DIRECTOR_HTTP_LISTEN", "--http-listen", "http_listen", "localhost:9102", R"("localhost:9102")",
       "IP:PORT with a port from 0 (any free port) to 65535"},
      {"DIRECTOR_THREADS", "--threads", "threads", "257", "257", "an integer from 0 to 256"},
      {"CONTAINER_HOST_PREFIX", "--container-host-prefix", "container_host_prefix", "VS_Code", R"("VS_Code")",
       "1 to 40 characters of [a-z0-9-], starting and ending with a letter or digit"},
      {"CONTAINER_PORT", "--container-port", "container_port", "0", "0", "an integer from 1 to 65535"},
      {"CONTAINER_DOMAIN", "--container-domain", "container_domain", "example.org.", R"("example.org.")",
       "empty for none, or a DNS name of at most 180 characters without a trailing dot"},
      {"DIRECTOR_USERNAME_MODE", "--username-mode", "username_mode", "loose", R"("loose")", "strict or escape"},
      {"DIRECTOR_ALIVE_TTL", "--alive-ttl", "alive_ttl", "5ms", R"("5ms")", "a duration from 10ms to 1m (units ms, s, m"},
      {"DIRECTOR_REFRESH_AFTER", "--refresh-after", "refresh_after", "2m", R"("2m")", "a duration from 0s to 1m"},
      {"DIRECTOR_DEAD_TTL", "--dead-ttl", "dead_ttl", "-1s", R"("-1s")", "a duration from 0s to 1m"},
      {"DIRECTOR_STALE_IF_ERROR", "--stale-if-error", "stale_if_error", "61m", R"("61m")",
       "a duration from 0s to 60m"},
      {"DIRECTOR_CACHE_CAPACITY", "--cache-capacity", "cache_capacity", "0", "0", "an integer from 1 to 10000000"},
      {"DIRECTOR_EVENT_FEEDS", "--event-feeds", "event_feeds", "https://spawner:9181/events",
       R"(["https://spawner:9181/events"])", "entries of http://HOST:PORT/PATH separated by spaces or commas"},
      {"DIRECTOR_EVENT_BACKSTOP", "--event-backstop", "event_backstop", "999ms", R"("999ms")",
       "a duration from 1s to 60m"},
      {"DIRECTOR_FAST_PATH_HOLD", "--fast-path-hold", "fast_path_hold", "61s", R"("61s")", "a duration from 0s to 1m"},
      {"DIRECTOR_HAPROXY_SOCKETS", "--haproxy-sockets", "haproxy_sockets", "run/haproxy.sock",
       R"(["run/haproxy.sock"])",
       "entries separated by spaces or commas, each an absolute unix socket path (at most 107 characters) or "
       "IP:PORT"},
      {"DIRECTOR_PROBE_MODE", "--probe-mode", "probe_mode", "icmp", R"("icmp")", "tcp or http"},
      {"DIRECTOR_PROBE_PATH", "--probe-path", "probe_path", "health", R"("health")",
       "a path starting with / of printable ASCII without spaces, at most 1024 characters"},
      {"DIRECTOR_PROBE_TIMEOUT", "--probe-timeout", "probe_timeout", "0ms", R"("0ms")", "a duration from 1ms to 30s"},
      {"DIRECTOR_DNS_SERVER", "--dns-server", "dns_servers", "dns.example:53", R"(["dns.example:53"])",
       "entries of IP, IPv4:PORT, [IPv6] or [IPv6]:PORT (port 1 to 65535, default 53) separated by commas"},
      {"DIRECTOR_DNS_TIMEOUT", "--dns-timeout", "dns_timeout", "31s", R"("31s")", "a duration from 10ms to 30s"},
      {"DIRECTOR_DNS_TRIES", "--dns-tries", "dns_tries", "11", "11", "an integer from 1 to 10"},
      {"DIRECTOR_MAX_FRAME_SIZE", "--max-frame-size", "max_frame_size", "1048577", "1048577",
       "an integer from 256 to 1048576"},
      {"DIRECTOR_HELLO_TIMEOUT", "--hello-timeout", "hello_timeout", "50ms", R"("50ms")",
       "a duration from 100ms to 10m"},
      {"DIRECTOR_LOG_LEVEL", "--log-level", "log_level", "verbose", R"("verbose")", "error, warn, info or debug"},
      {"DIRECTOR_LOG_FORMAT", "--log-format", "log_format", "xml", R"("xml")", "text or json"},
  };

  // Every option of the reference is covered here.
  std::set<std::string> covered;
  for (const auto& c : cases) covered.insert(c.environment);
  std::istringstream lines(markdown());
  std::string line;
  std::size_t options = 0;
  while (std::getline(lines, line)) {
    if (line.rfind("| ", 0) != 0 || line.rfind("| JSON key", 0) == 0) continue;
    const auto start = line.find("| `", 1) + 3;  // the second column: the variable
    const auto variable = line.substr(start, line.find('`', start) - start);
    INFO("no bad-value case for " << variable);
    CHECK(covered.count(variable) == 1);
    ++options;
  }
  CHECK(options == cases.size());

  const TempDir dir;
  for (const auto& c : cases) {
    INFO(c.environment << " = " << c.text);
    const auto shown = "'" + std::string(c.text == std::string("x\x01.json") ? "x\\x01.json" : c.text) + "'";

    const auto from_environment = parse({}, {{c.environment, c.text}});
    CHECK_FALSE(from_environment.config);
    CHECK_THAT(from_environment.error,
               Catch::StartsWith("invalid value " + shown + " for " + c.environment + ": expected " + c.accepted));

    const auto from_flag = parse({c.flag, c.text});
    CHECK_FALSE(from_flag.config);
    CHECK_THAT(from_flag.error, Catch::StartsWith("invalid value " + shown + " for " + c.flag + ": expected " + c.accepted));

    const auto joined = c.flag + "=" + c.text;
    CHECK_THAT(parse({joined}).error, Catch::StartsWith("invalid value " + shown + " for " + c.flag + ": expected "));

    if (c.key.empty()) continue;
    const auto path = dir.write(c.key + ".json", "{\"" + c.key + "\": " + c.json + "}");
    const auto from_file = parse({"--config", path});
    CHECK_FALSE(from_file.config);
    CHECK_THAT(from_file.error, Catch::StartsWith("invalid value " + c.json + " for " + c.key + " in " + path +
                                                  ": expected " + c.accepted));

    // And the wrong JSON type for the key.
    const bool is_string = c.json.front() == '"';
    const bool is_list = c.json.front() == '[';
    const auto wrong = is_string || is_list ? std::string("12") : std::string("\"12\"");
    const auto expected_type = is_string ? "a string" : is_list ? "an array of strings" : "an integer";
    const auto typed = dir.write(c.key + "-type.json", "{\"" + c.key + "\": " + wrong + "}");
    CHECK_THAT(parse({"--config", typed}).error,
               Catch::StartsWith("wrong type for " + c.key + " in " + typed + ": expected " + expected_type));
  }
}

TEST_CASE("values in messages are escaped and shortened") {
  const auto control = parse({}, {{"CONTAINER_PORT", "80\n\x1b[31m"}});
  CHECK_THAT(control.error, Catch::StartsWith("invalid value '80\\x0a\\x1b[31m' for CONTAINER_PORT"));
  const auto long_value = parse({"--container-host-prefix", std::string(500, 'a')});
  CHECK_THAT(long_value.error, Catch::StartsWith("invalid value '" + std::string(80, 'a') + "'... for"));
  CHECK(long_value.error.size() < 300);

  const TempDir dir;
  const auto path = dir.write("unicode.json", "{\"container_domain\": \"caf\xc3\xa9\\n\"}");
  CHECK_THAT(parse({"--config", path}).error,
             Catch::StartsWith("invalid value \"caf\\u00e9\\n\" for container_domain in " + path));
}

// --- arguments ------------------------------------------------------------------------------

TEST_CASE("unknown arguments get a hint, missing values say what is expected") {
  CHECK(parse({"--container-prot", "1"}).error == "unknown argument '--container-prot'; did you mean --container-port?");
  CHECK(parse({"--check_config"}).error == "unknown argument '--check_config'; did you mean --check-config?");
  CHECK(parse({"--help_markdwn"}).error == "unknown argument '--help_markdwn'; did you mean --help-markdown?");
  CHECK(parse({"CONTAINER_PORT=8080"}).error == "unknown argument 'CONTAINER_PORT=8080'; did you mean --container-port?");
  CHECK(parse({"dns_servers"}).error == "unknown argument 'dns_servers'; did you mean --dns-server?");
  CHECK(parse({"--frobnicate"}).error == "unknown argument '--frobnicate' (see --help)");
  CHECK(parse({"-v"}).error == "unknown argument '-v' (see --help)");
  CHECK(parse({"--"}).error == "unknown argument '--' (see --help)");
  CHECK(parse({"--listen"}).error ==
        "missing value for --listen: expected IP:PORT with a port from 0 (any free port) to 65535, e.g. 127.0.0.1:12345 (see --help)");
  CHECK_THAT(parse({"--threads", "2", "--log-level"}).error,
             Catch::StartsWith("missing value for --log-level: expected error, warn, info or debug"));
  CHECK(parse({"--help-markdown"}).command == Command::help_markdown);
}

TEST_CASE("options that contradict each other are refused, naming both and their sources") {
  const auto ttl = parse({"--refresh-after", "1s"});
  CHECK(ttl.error ==
        "inconsistent options: refresh_after (DIRECTOR_REFRESH_AFTER, --refresh-after) is \"1s\" (flag), alive_ttl "
        "(DIRECTOR_ALIVE_TTL, --alive-ttl) is \"800ms\" (default); refresh_after must be shorter than alive_ttl");
  CHECK_THAT(parse({}, {{"DIRECTOR_ALIVE_TTL", "100ms"}}).error,
             Catch::Contains("alive_ttl (DIRECTOR_ALIVE_TTL, --alive-ttl) is \"100ms\" (environment)"));
  CHECK(parse({"--refresh-after", "0s", "--alive-ttl", "10ms", "--fast-path-hold", "10ms"}).config);

  struct Case {
    std::vector<std::string_view> arguments;
    bool conflict;
  };
  const std::vector<Case> cases = {
      {{"--listen", "127.0.0.1:9102"}, true},      // http_listen's default
      {{"--listen", "0.0.0.0:9102"}, true},        // covers 127.0.0.1
      {{"--listen", "[::]:9102"}, true},           // dual stack: covers IPv4 too
      {{"--http-listen", "0.0.0.0:12345"}, true},  // listen's default
      {{"--listen", "[::1]:9000", "--http-listen", "[::1]:9000"}, true},
      {{"--listen", "127.0.0.2:9102"}, false},
      {{"--listen", "[::1]:9102"}, false},
      {{"--http-listen", "[::1]:12345"}, false},  // 0.0.0.0 is IPv4 only
      {{"--listen", "127.0.0.1:9103"}, false},
      {{"--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"}, false},  // two free ports
      {{"--listen", "0.0.0.0:0", "--http-listen", "0.0.0.0:0"}, false},
  };
  for (const auto& c : cases) {
    const auto outcome = parse(c.arguments);
    INFO(c.arguments.back() << ": " << outcome.error);
    CHECK(outcome.config.has_value() == !c.conflict);
    if (c.conflict) {
      CHECK_THAT(outcome.error, Catch::StartsWith("inconsistent options: listen (DIRECTOR_LISTEN, --listen) is "));
      CHECK_THAT(outcome.error, Catch::Contains("http_listen (DIRECTOR_HTTP_LISTEN, --http-listen) is "));
    }
  }
}

TEST_CASE("event mode options: feeds and sockets as lists, the backstop, the fast path's hold") {
  const auto defaults = parse({});
  REQUIRE(defaults.config);
  CHECK(defaults.config->event_feeds.empty());
  CHECK(defaults.config->haproxy_sockets.empty());
  CHECK(defaults.config->decision.event_alive_ttl == std::chrono::seconds(60));
  CHECK(defaults.config->decision.fast_path_hold == std::chrono::milliseconds(500));
  const auto json = director::config::to_json(*defaults.config);
  CHECK_THAT(json, Catch::Contains(R"("event_feeds":[],"event_backstop":"1m","fast_path_hold":"500ms","haproxy_sockets":[])"));

  // Spaces, commas or both separate entries.
  const auto set = parse({"--event-feeds", "http://127.0.0.1:9181/events, http://spawner-2.example:9181/events",
                          "--event-backstop", "2m", "--fast-path-hold", "0s"},
                         {{"DIRECTOR_HAPROXY_SOCKETS", "/run/haproxy/admin.sock 127.0.0.1:9999,[::1]:9999"}});
  REQUIRE(set.config);
  CHECK(set.config->event_feeds ==
        std::vector<std::string>{"http://127.0.0.1:9181/events", "http://spawner-2.example:9181/events"});
  CHECK(set.config->haproxy_sockets ==
        std::vector<std::string>{"/run/haproxy/admin.sock", "127.0.0.1:9999", "[::1]:9999"});
  CHECK(set.config->decision.event_alive_ttl == std::chrono::minutes(2));
  CHECK(set.config->decision.fast_path_hold == std::chrono::milliseconds(0));
  CHECK(parse({"--event-feeds", ""}).config->event_feeds.empty());

  for (const std::string_view bad : {"http://127.0.0.1/events", "http://:9181/events", "http://127.0.0.1:0/events",
                                     "ftp://127.0.0.1:9181/events", "http://127.0.0.1:9181/ev"}) {
    INFO(bad);
    CHECK_THAT(parse({"--event-feeds", bad}).error, Catch::StartsWith("invalid value "));
  }
  for (const std::string_view bad : {"admin.sock", "localhost:9999", "127.0.0.1", "/run/x"}) {
    INFO(bad);
    CHECK_THAT(parse({"--haproxy-sockets", bad}).error, Catch::StartsWith("invalid value "));
  }
}

TEST_CASE("the fast path's hold is at most alive_ttl") {
  CHECK(parse({"--fast-path-hold", "1s"}).error ==
        "inconsistent options: fast_path_hold (DIRECTOR_FAST_PATH_HOLD, --fast-path-hold) is \"1s\" (flag), "
        "alive_ttl (DIRECTOR_ALIVE_TTL, --alive-ttl) is \"800ms\" (default); fast_path_hold must not be longer than "
        "alive_ttl (HAProxy would reuse answers the agent no longer serves)");
  CHECK(parse({"--fast-path-hold", "800ms"}).config);
  CHECK(parse({"--fast-path-hold", "2s", "--alive-ttl", "2s"}).config);
}

TEST_CASE("listen addresses take port 0, other ports do not") {
  const auto outcome = parse({"--listen", "127.0.0.1:0"}, {{"DIRECTOR_HTTP_LISTEN", "[::1]:0"}});
  REQUIRE(outcome.config);
  CHECK(outcome.config->listen.port() == 0);
  CHECK(outcome.config->listen.address().to_string() == "127.0.0.1");
  CHECK(outcome.config->http_listen.port() == 0);
  CHECK(outcome.config->http_listen.address().to_string() == "::1");
  CHECK_THAT(director::config::to_json(*outcome.config), Catch::Contains("\"listen\":\"127.0.0.1:0\""));

  CHECK_THAT(parse({"--listen", "127.0.0.1:65536"}).error,
             Catch::Contains("for --listen: expected IP:PORT with a port from 0 (any free port) to 65535"));
  CHECK_THAT(parse({"--dns-server", "127.0.0.1:0"}).error, Catch::Contains("for --dns-server"));
  CHECK_THAT(parse({"--container-port", "0"}).error, Catch::Contains("for --container-port"));
}

// --- the references -------------------------------------------------------------------------

TEST_CASE("the Markdown reference has one well-formed row per option") {
  const auto table = markdown();
  std::istringstream lines(table);
  std::string line;
  std::size_t rows = 0;
  while (std::getline(lines, line)) {
    INFO(line);
    REQUIRE(line.front() == '|');
    std::size_t pipes = 0;
    for (std::size_t i = 0; i < line.size(); ++i) {
      if (line[i] == '|' && (i == 0 || line[i - 1] != '\\')) ++pipes;
    }
    CHECK(pipes == 8);  // seven columns
    CHECK(line.find('<') == std::string::npos);  // no HTML: "<label>" is written &lt;label&gt;
    ++rows;
  }
  CHECK(rows == 2 + 27);
  CHECK_THAT(table, Catch::Contains("| `container_port` | `CONTAINER_PORT` | `--container-port` | integer | `8080` | "
                                    "an integer from 1 to 65535 |"));
  CHECK_THAT(table, Catch::Contains("| (not in the file) | `DIRECTOR_CONFIG` | `--config` |"));
  CHECK_THAT(table, Catch::Contains("PREFIX-&lt;label&gt;"));
  CHECK_THAT(table, Catch::Contains("| `dns_tries` | `DIRECTOR_DNS_TRIES` | `--dns-tries` | integer | `2` |"));
}

TEST_CASE("the help text lists the commands and every option") {
  std::ostringstream out;
  director::config::print_help(out);
  const auto help = out.str();
  for (const auto* text : {"--help-markdown", "--check-config", "--config VALUE", "DIRECTOR_CONFIG", "(not in the file)",
                           "\"dns_servers\": array of strings", "--log-format VALUE", "default, file,\nenvironment, flag"}) {
    INFO(text);
    CHECK_THAT(help, Catch::Contains(text));
  }
}
