#include "config/config.hpp"

#include "../../common/child_process_fixture.hpp"
#include "temp_config_file.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace config = director::spawner::config;
using config::Command;
using config::Config;
using config::Invocation;
using director::config_table::Source;

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
  auto parsed = config::parse(arguments, lookup);
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

using TempFile = director::test::TempConfigFile;

}  // namespace

TEST_CASE("defaults are the documented ones") {
  const auto outcome = parse({});
  REQUIRE(outcome.config);
  const auto& c = *outcome.config;
  CHECK(c.listen.address().to_string() == "127.0.0.1");
  CHECK(c.listen.port() == 9180);
  CHECK(c.http_listen.port() == 9181);
  CHECK(c.container_template.host_prefix == "vscode");
  CHECK(c.container_port == 8080);
  CHECK(c.container_domain.empty());
  CHECK(c.runtime.kind == config::RuntimeEndpoint::Kind::unix_socket);
  CHECK(c.runtime.path == "/var/run/docker.sock");
  CHECK(c.kubernetes.serviceaccount_dir == "/var/run/secrets/kubernetes.io/serviceaccount");
  CHECK(c.kubernetes.namespace_name.empty());
  CHECK(c.kubernetes.volume_size == "10Gi");
  CHECK(c.kubernetes.storage_class.empty());
  CHECK(c.kubernetes.fs_group == 0);
  CHECK(c.kubernetes.pod_security == config::KubernetesOptions::PodSecurity::baseline);
  CHECK_FALSE(c.kubernetes.share_namespace);
  CHECK(c.runtime_timeout == std::chrono::seconds(10));
  CHECK(c.pull_timeout == std::chrono::minutes(10));
  CHECK(c.container_template.image == "codercom/code-server:latest");
  CHECK(c.container_template.command.empty());
  CHECK(c.container_template.volume_prefix == "director-home");
  CHECK(c.container_template.memory_bytes == 0);
  CHECK(c.container_template.nano_cpus == 0);
  CHECK(c.container_template.memory_request_bytes == 0);
  CHECK(c.container_template.nano_cpus_request == 0);
  CHECK(c.container_template.restart == director::spawner::core::RestartPolicy::no);
  CHECK(c.container_template.health_check.command.empty());
  CHECK(c.pull_missing_images);
  CHECK(c.ready_timeout == std::chrono::minutes(2));
  CHECK(c.stop_grace == std::chrono::seconds(10));
  CHECK(c.refresh_interval == std::chrono::seconds(2));
  CHECK(c.log_lines == 20);
  CHECK(c.idle.timeout == std::chrono::hours(1));
  CHECK(c.idle.action == director::spawner::core::IdleAction::stop);
  CHECK(c.idle_check_interval == std::chrono::minutes(1));
  CHECK(c.agent_urls.empty());
  CHECK(c.sources.empty());
  CHECK(c.effective_threads() >= 1);
}

TEST_CASE("every option is read from its environment variable") {
  const auto outcome = parse(
      {}, {{"SPAWNER_LISTEN", "127.0.0.2:1"},
           {"SPAWNER_HTTP_LISTEN", "[::1]:2"},
           {"SPAWNER_THREADS", "3"},
           {"CONTAINER_HOST_PREFIX", "jupyter"},
           {"CONTAINER_PORT", "8888"},
           {"CONTAINER_DOMAIN", "users.example"},
           {"SPAWNER_DNS_SERVER", "127.0.0.1:5353,[::1]"},
           {"SPAWNER_RUNTIME", "tcp://127.0.0.1:2375"},
           {"SPAWNER_KUBERNETES_SERVICEACCOUNT_DIR", "/run/sa"},
           {"SPAWNER_KUBERNETES_NAMESPACE", "users"},
           {"SPAWNER_KUBERNETES_VOLUME_SIZE", "500M"},
           {"SPAWNER_KUBERNETES_STORAGE_CLASS", "fast.ssd"},
           {"SPAWNER_KUBERNETES_FS_GROUP", "1000"},
           {"SPAWNER_KUBERNETES_SHARE_NAMESPACE", "true"},
           {"SPAWNER_RUNTIME_TIMEOUT", "5s"},
           {"SPAWNER_PULL_TIMEOUT", "30m"},
           {"SPAWNER_IMAGE", "registry.example:5000/team/jupyter:2024@sha256:abc123"},
           {"SPAWNER_COMMAND", R"(["start-notebook.sh","--NotebookApp.base_url=/{label}/,x"])"},
           {"SPAWNER_ENV", "TZ=UTC,OWNER={username}"},
           {"SPAWNER_NETWORK", "host"},
           {"SPAWNER_VOLUME_MOUNT", "/home/jovyan"},
           {"SPAWNER_VOLUME_PREFIX", "jupyter_home"},
           {"SPAWNER_MEMORY", "2g"},
           {"SPAWNER_CPUS", "1.5"},
           {"SPAWNER_MEMORY_REQUEST", "1g"},
           {"SPAWNER_CPUS_REQUEST", "0.5"},
           {"SPAWNER_PIDS_LIMIT", "512"},
           {"SPAWNER_RESTART", "unless-stopped"},
           {"SPAWNER_HEALTH_CMD", "curl -f http://localhost:8888/"},
           {"SPAWNER_HEALTH_INTERVAL", "10s"},
           {"SPAWNER_HEALTH_TIMEOUT", "2s"},
           {"SPAWNER_HEALTH_RETRIES", "5"},
           {"SPAWNER_HEALTH_START_PERIOD", "30s"},
           {"SPAWNER_PULL", "never"},
           {"SPAWNER_READY_TIMEOUT", "5m"},
           {"SPAWNER_STOP_GRACE", "0s"},
           {"SPAWNER_REFRESH_INTERVAL", "3s"},
           {"SPAWNER_LOG_LINES", "0"},
           {"SPAWNER_IDLE_TIMEOUT", "90m"},
           {"SPAWNER_IDLE_ACTION", "remove"},
           {"SPAWNER_IDLE_CHECK_INTERVAL", "30s"},
           {"SPAWNER_AGENTS", "http://127.0.0.1:9102,http://[::1]:9103"},
           {"SPAWNER_LOG_LEVEL", "debug"},
           {"SPAWNER_LOG_FORMAT", "json"}});
  INFO(outcome.error);
  REQUIRE(outcome.config);
  const auto& c = *outcome.config;
  const auto& t = c.container_template;
  CHECK(c.listen.address().to_string() == "127.0.0.2");
  CHECK(c.http_listen.address().to_string() == "::1");
  CHECK(c.threads == 3);
  CHECK(t.host_prefix == "jupyter");
  CHECK(c.container_port == 8888);
  CHECK(c.container_domain == "users.example");
  CHECK(c.dns_servers == std::vector<std::string>{"127.0.0.1:5353", "[::1]"});
  CHECK(c.runtime.kind == config::RuntimeEndpoint::Kind::tcp);
  CHECK(c.runtime.host == "127.0.0.1");
  CHECK(c.runtime.port == 2375);
  CHECK(c.kubernetes.serviceaccount_dir == "/run/sa");
  CHECK(c.kubernetes.namespace_name == "users");
  CHECK(c.kubernetes.volume_size == "500M");
  CHECK(c.kubernetes.storage_class == "fast.ssd");
  CHECK(c.kubernetes.fs_group == 1000);
  CHECK(c.kubernetes.share_namespace);
  CHECK(c.runtime_timeout == std::chrono::seconds(5));
  CHECK(c.pull_timeout == std::chrono::minutes(30));
  CHECK(t.image == "registry.example:5000/team/jupyter:2024@sha256:abc123");
  CHECK(t.command == std::vector<std::string>{"start-notebook.sh", "--NotebookApp.base_url=/{label}/,x"});
  CHECK(t.environment == std::vector<std::string>{"TZ=UTC", "OWNER={username}"});
  CHECK(t.network == "host");
  CHECK(t.volume_mount == "/home/jovyan");
  CHECK(t.volume_prefix == "jupyter_home");
  CHECK(t.memory_bytes == 2ULL * 1024 * 1024 * 1024);
  CHECK(t.nano_cpus == 1'500'000'000);
  CHECK(t.memory_request_bytes == 1ULL << 30);
  CHECK(t.nano_cpus_request == 500'000'000);
  CHECK(t.pids_limit == 512);
  CHECK(t.restart == director::spawner::core::RestartPolicy::unless_stopped);
  CHECK(t.health_check.command == std::vector<std::string>{"curl -f http://localhost:8888/"});
  CHECK(t.health_check.interval == std::chrono::seconds(10));
  CHECK(t.health_check.timeout == std::chrono::seconds(2));
  CHECK(t.health_check.retries == 5);
  CHECK(t.health_check.start_period == std::chrono::seconds(30));
  CHECK_FALSE(c.pull_missing_images);
  CHECK(c.ready_timeout == std::chrono::minutes(5));
  CHECK(c.stop_grace == std::chrono::seconds(0));
  CHECK(c.refresh_interval == std::chrono::seconds(3));
  CHECK(c.log_lines == 0);
  CHECK(c.idle.timeout == std::chrono::minutes(90));
  CHECK(c.idle.action == director::spawner::core::IdleAction::remove);
  CHECK(c.idle_check_interval == std::chrono::seconds(30));
  CHECK(c.agent_urls == std::vector<std::string>{"http://127.0.0.1:9102", "http://[::1]:9103"});
  CHECK(c.log_level == director::LogLevel::debug);
  CHECK(c.log_format == director::LogFormat::json);
  CHECK(c.sources.at("memory") == Source::environment);
}

TEST_CASE("precedence: default < file < environment < flag") {
  TempFile file(R"({"container_port": 1001, "memory": "1g", "cpus": "2", "log_lines": 5})");
  const auto outcome = parse({"--config", file.path(), "--container-port=1003", "--memory", "3g"},
                             {{"CONTAINER_PORT", "1002"}, {"SPAWNER_MEMORY", "2g"}, {"SPAWNER_CPUS", "0.5"}});
  INFO(outcome.error);
  REQUIRE(outcome.config);
  const auto& c = *outcome.config;
  CHECK(c.container_port == 1003);
  CHECK(c.sources.at("container_port") == Source::flag);
  CHECK(c.container_template.memory_bytes == 3ULL << 30);
  CHECK(c.container_template.nano_cpus == 500'000'000);
  CHECK(c.sources.at("cpus") == Source::environment);
  CHECK(c.log_lines == 5);
  CHECK(c.sources.at("log_lines") == Source::file);
  CHECK(c.sources.count("image") == 0);
  CHECK(c.config_file == file.path());
}

TEST_CASE("the file takes lists as arrays, and commands and the environment as arrays whose entries may hold commas") {
  TempFile file(R"({
    "command": ["sh", "-c", "echo a,b; exec sleep 1000"],
    "environment": ["LIST=a,b", "TZ=UTC"],
    "health_command": ["CMD-ARGS", "x"],
    "agents": ["http://127.0.0.1:9102", "http://127.0.0.2:9102"],
    "dns_servers": ["127.0.0.1:5353"]
  })");
  const auto outcome = parse({"--config", file.path()});
  INFO(outcome.error);
  REQUIRE(outcome.config);
  const auto& t = outcome.config->container_template;
  CHECK(t.command == std::vector<std::string>{"sh", "-c", "echo a,b; exec sleep 1000"});
  CHECK(t.environment == std::vector<std::string>{"LIST=a,b", "TZ=UTC"});
  CHECK(t.health_check.command == std::vector<std::string>{"CMD-ARGS", "x"});
  CHECK(outcome.config->agent_urls.size() == 2);
  CHECK(outcome.config->dns_servers == std::vector<std::string>{"127.0.0.1:5353"});

  TempFile shell(R"({"health_command": "wget -q -O- http://localhost:8080/ || exit 1"})");
  const auto shell_outcome = parse({"--config", shell.path()});
  REQUIRE(shell_outcome.config);
  CHECK(shell_outcome.config->container_template.health_check.command ==
        std::vector<std::string>{"wget -q -O- http://localhost:8080/ || exit 1"});
}

TEST_CASE("the effective configuration's JSON (--check-config), without its extra keys, is a configuration file giving the same configuration") {
  const auto first = parse({"--check-config"}, {{"SPAWNER_COMMAND", R"(["a","b,c"])"},
                                                {"SPAWNER_HEALTH_CMD", "true"},
                                                {"SPAWNER_MEMORY", "1536m"},
                                                {"SPAWNER_CPUS", "0.25"},
                                                {"SPAWNER_AGENTS", "http://127.0.0.1:1"},
                                                {"SPAWNER_RUNTIME", "tcp://[::1]:2375"},
                                                {"SPAWNER_MEMORY_REQUEST", "1g"},
                                                {"SPAWNER_KUBERNETES_STORAGE_CLASS", "standard"},
                                                {"SPAWNER_IDLE_TIMEOUT", "0s"}});
  INFO(first.error);
  REQUIRE(first.config);
  CHECK(first.command == Command::check_config);
  auto json = nlohmann::json::parse(config::to_json(*first.config));
  CHECK(json.at("memory") == "1536m");
  CHECK(json.at("cpus") == "0.25");
  CHECK(json.at("runtime") == "tcp://[::1]:2375");
  CHECK(json.at("idle_timeout") == "0s");
  CHECK(json.at("health_command") == "true");
  CHECK(json.at("command") == nlohmann::json::array({"a", "b,c"}));
  CHECK(json.at("sources").at("memory") == "environment");
  CHECK(json.at("sources").at("image") == "default");
  CHECK(json.at("version") == config::version());
  for (const auto* extra : {"config", "effective_threads", "version", "sources"}) json.erase(extra);
  TempFile file(json.dump());
  const auto second = parse({"--config", file.path()});
  INFO(second.error);
  REQUIRE(second.config);
  auto again = nlohmann::json::parse(config::to_json(*second.config));
  for (const auto* extra : {"config", "effective_threads", "version", "sources"}) again.erase(extra);
  CHECK(again == json);
}

TEST_CASE("the containers' environment is redacted in the effective configuration (startup log, /status)") {
  // Its values are often secrets (tokens, passwords); the JSON names only that it was set.
  const auto set = parse({}, {{"SPAWNER_ENV", R"(["PASSWORD=hunter2","TOKEN=abc"])"}});
  REQUIRE(set.config);
  CHECK(set.config->container_template.environment == std::vector<std::string>{"PASSWORD=hunter2", "TOKEN=abc"});
  const auto text = config::to_json(*set.config);
  CHECK(text.find("hunter2") == std::string::npos);
  CHECK(text.find("abc") == std::string::npos);
  const auto json = nlohmann::json::parse(text);
  CHECK(json.at("environment") == "(redacted)");
  CHECK(json.at("sources").at("environment") == "environment");
  // Redacted, the output is refused as a configuration file rather than read as an environment.
  TempFile file(R"json({"environment": "(redacted)"})json");
  CHECK_FALSE(parse({"--config", file.path()}).error.empty());
  // The default (none) is shown as it is.
  CHECK(nlohmann::json::parse(config::to_json(*parse({}).config)).at("environment") == nlohmann::json::array());
}

TEST_CASE("every invalid value names its source, the value and what is accepted") {
  struct Case {
    std::vector<std::string_view> arguments;
    std::map<std::string, std::string> environment;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{"--listen", "localhost:9180"}, {}, "invalid value 'localhost:9180' for --listen: expected IP:PORT"},
      {{}, {{"SPAWNER_HTTP_LISTEN", "9181"}}, "invalid value '9181' for SPAWNER_HTTP_LISTEN: expected IP:PORT"},
      {{"--threads", "300"}, {}, "for --threads: expected an integer from 0 to 256"},
      {{}, {{"CONTAINER_HOST_PREFIX", "VS"}}, "for CONTAINER_HOST_PREFIX: expected 1 to 40 characters of [a-z0-9-]"},
      {{"--container-port", "0"}, {}, "for --container-port: expected an integer from 1 to 65535"},
      {{"--container-domain", "a..b"}, {}, "for --container-domain: expected empty for none, or a DNS name"},
      {{"--dns-server", "dns.example"}, {}, "for --dns-server: expected entries of IP, IPv4:PORT"},
      {{"--runtime", "/var/run/docker.sock"}, {}, "for --runtime: expected unix:///ABSOLUTE/PATH"},
      {{"--runtime", "unix://relative.sock"}, {}, "for --runtime: expected unix:///ABSOLUTE/PATH"},
      {{"--runtime", "tcp://docker:2375"}, {}, "or tcp://IP:PORT"},
      {{"--runtime", "Kubernetes"}, {}, "for --runtime: expected unix:///ABSOLUTE/PATH (at most 107 characters) or "
                                        "tcp://IP:PORT ([IPv6]:PORT) for a Docker Engine API, e.g. "
                                        "unix:///var/run/docker.sock or tcp://127.0.0.1:2375, or kubernetes"},
      {{"--kubernetes-serviceaccount-dir", "secrets"}, {}, "for --kubernetes-serviceaccount-dir: expected an absolute directory path"},
      {{"--kubernetes-serviceaccount-dir", ""}, {}, "for --kubernetes-serviceaccount-dir"},
      {{}, {{"SPAWNER_KUBERNETES_NAMESPACE", "Users"}}, "for SPAWNER_KUBERNETES_NAMESPACE: expected empty for the service account's own namespace"},
      {{"--kubernetes-namespace", "a.b"}, {}, "for --kubernetes-namespace"},
      {{"--kubernetes-namespace", std::string_view("a234567890123456789012345678901234567890123456789012345678901234")}, {}, "for --kubernetes-namespace"},
      {{"--kubernetes-volume-size", "10GB"}, {}, "for --kubernetes-volume-size: expected a Kubernetes storage quantity: a positive integer"},
      {{"--kubernetes-volume-size", "0"}, {}, "for --kubernetes-volume-size"},
      {{"--kubernetes-volume-size", "010Gi"}, {}, "for --kubernetes-volume-size"},
      {{"--kubernetes-volume-size", "1.5Gi"}, {}, "for --kubernetes-volume-size"},
      {{"--kubernetes-volume-size", "1e9"}, {}, "for --kubernetes-volume-size"},
      {{"--kubernetes-volume-size", "-1Gi"}, {}, "for --kubernetes-volume-size"},
      {{"--kubernetes-volume-size", "Gi"}, {}, "for --kubernetes-volume-size"},
      {{"--kubernetes-volume-size", "10gi"}, {}, "for --kubernetes-volume-size"},
      {{"--kubernetes-volume-size", "10K"}, {}, "for --kubernetes-volume-size"},
      {{"--kubernetes-volume-size", "1234567890123456789"}, {}, "for --kubernetes-volume-size"},
      {{"--kubernetes-volume-size", ""}, {}, "for --kubernetes-volume-size"},
      {{"--kubernetes-storage-class", "Fast"}, {}, "for --kubernetes-storage-class: expected empty for the cluster's default storage class"},
      {{"--kubernetes-storage-class", "fast."}, {}, "for --kubernetes-storage-class"},
      {{"--kubernetes-storage-class", "fast_ssd"}, {}, "for --kubernetes-storage-class"},
      {{"--kubernetes-fs-group", "-1"}, {}, "for --kubernetes-fs-group: expected a group id from 1 to 2147483647, or 0 for none"},
      {{"--kubernetes-fs-group", "2147483648"}, {}, "for --kubernetes-fs-group"},
      {{"--runtime-timeout", "10"}, {}, "for --runtime-timeout: expected a duration from 100ms to 10m"},
      {{"--pull-timeout", "0s"}, {}, "for --pull-timeout: expected a duration from 1s to 120m"},
      {{"--image", ""}, {}, "invalid value '' for --image: expected an image reference"},
      {{"--image", "code server"}, {}, "for --image: expected an image reference"},
      {{"--command", "code-server --auth none"}, {}, "for --command: expected a JSON array of strings"},
      {{"--command", "[1,2]"}, {}, "for --command: expected a JSON array of strings"},
      {{"--command", "[]"}, {}, "for --command: expected a JSON array of strings"},
      {{"--env", "TZ"}, {}, "for --env: expected NAME=VALUE entries"},
      {{"--env", "1X=a"}, {}, "for --env: expected NAME=VALUE entries"},
      {{"--env", "[\"A=1\""}, {}, "for --env: expected NAME=VALUE entries"},
      {{"--network", "my net"}, {}, "for --network: expected a network name"},
      {{"--volume-mount", "home"}, {}, "for --volume-mount: expected an absolute path"},
      {{"--volume-mount", "/a:/b"}, {}, "for --volume-mount: expected an absolute path"},
      {{"--volume-prefix", ""}, {}, "for --volume-prefix: expected 1 to 64 characters"},
      {{"--memory", "2x"}, {}, "for --memory: expected 0 for no limit, or from 6m to 1024g"},
      {{"--memory", "1m"}, {}, "for --memory: expected 0 for no limit, or from 6m to 1024g"},
      {{"--memory", "2048g"}, {}, "for --memory"},
      {{"--cpus", "1.5.1"}, {}, "for --cpus: expected 0 for no limit, or a number of CPUs from 0.01 to 1024"},
      {{"--cpus", "0.001"}, {}, "for --cpus"},
      {{"--cpus", "-1"}, {}, "for --cpus"},
      {{"--cpus", "1."}, {}, "for --cpus"},
      {{"--memory-request", "1x"}, {}, "for --memory-request: expected 0 for no request, or from 6m to 1024g"},
      {{"--cpus-request", "0.001"}, {}, "for --cpus-request: expected 0 for no request, or a number of CPUs from 0.01 to 1024"},
      {{"--pids-limit", "-1"}, {}, "for --pids-limit: expected an integer from 0 (no limit) to 4194304"},
      {{"--restart", "sometimes"}, {}, "for --restart: expected no, on-failure, unless-stopped or always"},
      {{"--health-cmd", "[\"curl\""}, {}, "for --health-cmd: expected a JSON array of strings run as is"},
      {{"--health-cmd", "curl\n-f"}, {}, "for --health-cmd: expected a JSON array of strings run as is"},
      {{"--health-interval", "0s"}, {}, "for --health-interval: expected a duration from 1s to 10m"},
      {{"--health-timeout", "1h"}, {}, "for --health-timeout"},
      {{"--health-retries", "0"}, {}, "for --health-retries: expected an integer from 1 to 100"},
      {{"--health-start-period", "2h"}, {}, "for --health-start-period"},
      {{"--pull", "always"}, {}, "for --pull: expected missing or never"},
      {{"--ready-timeout", "0s"}, {}, "for --ready-timeout: expected a duration from 1s to 60m"},
      {{"--stop-grace", "11m"}, {}, "for --stop-grace: expected a duration from 0s to 10m"},
      {{"--refresh-interval", "1500ms"}, {}, "for --refresh-interval: expected whole seconds from 1s to 60s"},
      {{"--log-lines", "1001"}, {}, "for --log-lines: expected an integer from 0 to 1000"},
      {{"--idle-timeout", "30s"}, {}, "for --idle-timeout: expected 0s for never, or a duration from 1m to 43200m"},
      {{"--idle-timeout", "0"}, {}, "for --idle-timeout"},
      {{"--idle-action", "pause"}, {}, "for --idle-action: expected stop or remove"},
      {{"--idle-check-interval", "2h"}, {}, "for --idle-check-interval: expected a duration from 1s to 60m"},
      {{"--agents", "127.0.0.1:9102"}, {}, "for --agents: expected entries of http://IP:PORT"},
      {{"--agents", "http://Agent:9102"}, {}, "for --agents"},
      {{"--agents", "http://agents.:9102"}, {}, "for --agents"},
      {{"--agents", "http://300.1.1.1:9102"}, {}, "for --agents"},
      {{"--agents", "http://agents:0"}, {}, "for --agents"},
      {{"--agents", "https://127.0.0.1:9102"}, {}, "for --agents"},
      {{"--agents", "http://127.0.0.1:9102/"}, {}, "for --agents"},
      {{"--log-level", "trace"}, {}, "for --log-level: expected error, warn, info or debug"},
      {{"--log-format", "xml"}, {}, "for --log-format: expected text or json"},
      {{"--config", std::string_view("a\nb")}, {}, "for --config: expected a file path"},
      {{"--bogus"}, {}, "unknown argument '--bogus' (see --help)"},
      {{"--idle-timout", "1m"}, {}, "unknown argument '--idle-timout'; did you mean --idle-timeout?"},
      {{"SPAWNER_IMAGE=busybox"}, {}, "did you mean --image?"},
      {{"--image"}, {}, "missing value for --image: expected an image reference"},
  };
  for (const auto& c : cases) {
    const auto outcome = parse(c.arguments, c.environment);
    INFO("arguments: " << (c.arguments.empty() ? std::string_view() : c.arguments.front()) << " expected: " << c.expected);
    CHECK_FALSE(outcome.config);
    CHECK_THAT(outcome.error, Catch::Contains(c.expected));
  }
}

TEST_CASE("every limit's edge is accepted") {
  struct Case {
    std::vector<std::string_view> arguments;
  };
  for (const auto& arguments : std::vector<std::vector<std::string_view>>{
           {"--memory", "0"},          {"--memory", "6m"},         {"--memory", "1024g"},   {"--memory", "6291456"},
           {"--memory", "2G"},         {"--cpus", "0"},            {"--cpus", "0.01"},      {"--cpus", "1024"},
           {"--idle-timeout", "1m"}, {"--idle-timeout", "43200m"},
           {"--idle-timeout", "0ms"},  {"--runtime", "unix:///run/podman/podman.sock"},     {"--command", ""},
           {"--health-cmd", ""},       {"--env", ""},              {"--network", "none"},   {"--volume-mount", ""},
           {"--listen", "0.0.0.0:0"},  {"--http-listen", "127.0.0.1:0"},                    {"--agents", ""},
           {"--refresh-interval", "60s"},
           {"--runtime", "kubernetes"}, {"--kubernetes-namespace", "a"}, {"--kubernetes-namespace", ""},
           {"--kubernetes-volume-size", "1"}, {"--kubernetes-volume-size", "999999999999999999"},
           {"--kubernetes-storage-class", ""}, {"--kubernetes-storage-class", "standard"},
           {"--kubernetes-serviceaccount-dir", "/"}, {"--memory-request", "6m"}, {"--cpus-request", "0.01"}}) {
    const auto outcome = parse(arguments);
    INFO(arguments[0] << " " << arguments[1] << ": " << outcome.error);
    CHECK(outcome.config);
  }
}

TEST_CASE("memory and CPUs read as Docker writes them") {
  CHECK(parse({"--memory", "512m"}).config->container_template.memory_bytes == 512ULL << 20);
  CHECK(parse({"--memory", "1048576k"}).config->container_template.memory_bytes == 1ULL << 30);
  CHECK(parse({"--cpus", "2"}).config->container_template.nano_cpus == 2'000'000'000);
  CHECK(parse({"--cpus", "0.000000001"}).error.find("--cpus") != std::string::npos);
  const auto shown = nlohmann::json::parse(config::to_json(*parse({"--memory", "1048576k", "--cpus", "2.50"}).config));
  CHECK(shown.at("memory") == "1g");
  CHECK(shown.at("cpus") == "2.5");
}

TEST_CASE("consistency: listen and http_listen cannot collide, a health check's timeout fits its interval") {
  CHECK_THAT(parse({"--listen", "127.0.0.1:9000", "--http-listen", "0.0.0.0:9000"}).error,
             Catch::Contains("inconsistent options: listen (SPAWNER_LISTEN, --listen) is \"127.0.0.1:9000\" (flag), "
                             "http_listen (SPAWNER_HTTP_LISTEN, --http-listen) is \"0.0.0.0:9000\" (flag)"));
  CHECK(parse({"--listen", "127.0.0.1:9000", "--http-listen", "127.0.0.2:9000"}).config);
  CHECK_THAT(parse({"--health-cmd", "true", "--health-timeout", "10s", "--health-interval", "5s"}).error,
             Catch::Contains("health_timeout must not be longer than health_interval"));
  CHECK(parse({"--health-timeout", "10s", "--health-interval", "5s"}).config);  // no check: nothing to time out
}

TEST_CASE("a storage quantity takes every suffix Kubernetes reads for a size, binary and decimal") {
  for (const auto* size : {"10Gi", "1Ki", "2Mi", "3Ti", "4Pi", "5Ei", "6k", "7M", "8G", "9T", "10P", "11E", "12"}) {
    const auto outcome = parse({"--kubernetes-volume-size", size});
    INFO(size << ": " << outcome.error);
    REQUIRE(outcome.config);
    CHECK(outcome.config->kubernetes.volume_size == size);
    CHECK(nlohmann::json::parse(config::to_json(*outcome.config)).at("kubernetes_volume_size") == size);
  }
}

TEST_CASE("requests: at most their limits, any without a limit, shown as the limits are") {
  CHECK_THAT(parse({"--memory-request", "2g", "--memory", "1g"}).error,
             Catch::Contains("inconsistent options: memory_request (SPAWNER_MEMORY_REQUEST, --memory-request) is \"2g\" "
                             "(flag), memory (SPAWNER_MEMORY, --memory) is \"1g\" (flag); a request cannot be above its "
                             "limit"));
  CHECK_THAT(parse({"--cpus", "1"}, {{"SPAWNER_CPUS_REQUEST", "1.5"}}).error,
             Catch::Contains("cpus_request (SPAWNER_CPUS_REQUEST, --cpus-request) is \"1.5\" (environment), cpus "
                             "(SPAWNER_CPUS, --cpus) is \"1\" (flag); a request cannot be above its limit"));
  const auto equal = parse({"--memory-request", "1g", "--memory", "1024m", "--cpus-request", "2", "--cpus", "2"});
  INFO(equal.error);
  REQUIRE(equal.config);
  const auto unlimited = parse({"--memory-request", "512m", "--cpus-request", "0.25"});
  REQUIRE(unlimited.config);
  const auto shown = nlohmann::json::parse(config::to_json(*unlimited.config));
  CHECK(shown.at("memory_request") == "512m");
  CHECK(shown.at("cpus_request") == "0.25");
  CHECK(shown.at("memory") == "0");
}

TEST_CASE("runtime kubernetes: named as such, and the Docker-only options are refused with it") {
  const auto kubernetes = parse({"--runtime", "kubernetes", "--kubernetes-namespace", "users"});
  INFO(kubernetes.error);
  REQUIRE(kubernetes.config);
  CHECK(kubernetes.config->runtime.kind == config::RuntimeEndpoint::Kind::kubernetes);
  const auto shown = nlohmann::json::parse(config::to_json(*kubernetes.config));
  CHECK(shown.at("runtime") == "kubernetes");
  CHECK(shown.at("kubernetes_namespace") == "users");

  CHECK_THAT(parse({"--runtime", "kubernetes"}, {{"SPAWNER_NETWORK", "director"}}).error,
             Catch::Contains("inconsistent options: network (SPAWNER_NETWORK, --network) is \"director\" "
                             "(environment), runtime (SPAWNER_RUNTIME, --runtime) is \"kubernetes\" (flag); "
                             "Kubernetes has no Docker networks"));
  CHECK_THAT(parse({}, {{"SPAWNER_RUNTIME", "kubernetes"}, {"SPAWNER_PIDS_LIMIT", "100"}}).error,
             Catch::Contains("inconsistent options: pids_limit (SPAWNER_PIDS_LIMIT, --pids-limit) is 100 "
                             "(environment), runtime (SPAWNER_RUNTIME, --runtime) is \"kubernetes\" (environment); "
                             "Kubernetes has no process limit per Pod"));
  // Service names start with a letter; claim names are lowercase.
  CHECK_THAT(parse({"--runtime", "kubernetes", "--container-host-prefix", "1desk"}).error,
             Catch::Contains("inconsistent options: container_host_prefix (CONTAINER_HOST_PREFIX, "
                             "--container-host-prefix) is \"1desk\" (flag), runtime (SPAWNER_RUNTIME, --runtime) is "
                             "\"kubernetes\" (flag); a Kubernetes Service's name (PREFIX-<label>) must start with a letter"));
  CHECK(parse({"--container-host-prefix", "1desk"}).config);  // a Docker container's name may
  CHECK_THAT(parse({"--runtime", "kubernetes", "--volume-mount", "/home", "--volume-prefix", "Home_dir"}).error,
             Catch::Contains("volume_prefix (SPAWNER_VOLUME_PREFIX, --volume-prefix) is \"Home_dir\" (flag), "
                             "runtime (SPAWNER_RUNTIME, --runtime) is \"kubernetes\" (flag); a PersistentVolumeClaim's name"));
  CHECK(parse({"--runtime", "kubernetes", "--volume-mount", "/home", "--volume-prefix", "home.v2"}).config);
  CHECK(parse({"--runtime", "kubernetes", "--volume-prefix", "Home_dir"}).config);  // no volume, no claim
  CHECK(parse({"--volume-mount", "/home", "--volume-prefix", "Home_dir"}).config);
  // The Pods' securityContext: Kubernetes only.
  CHECK_THAT(parse({"--kubernetes-pod-security", "restricted"}).error,
             Catch::Contains("inconsistent options: kubernetes_pod_security (SPAWNER_KUBERNETES_POD_SECURITY, "
                             "--kubernetes-pod-security) is \"restricted\" (flag), runtime (SPAWNER_RUNTIME, "
                             "--runtime) is \"unix:///var/run/docker.sock\" (default); the Pods' securityContext "
                             "exists only with runtime kubernetes"));
  const auto restricted = parse({"--runtime", "kubernetes"}, {{"SPAWNER_KUBERNETES_POD_SECURITY", "restricted"}});
  REQUIRE(restricted.config);
  CHECK(restricted.config->kubernetes.pod_security == config::KubernetesOptions::PodSecurity::restricted);
  CHECK(nlohmann::json::parse(config::to_json(*restricted.config)).at("kubernetes_pod_security") == "restricted");
  CHECK_THAT(parse({"--kubernetes-pod-security", "privileged"}).error, Catch::Contains("baseline or restricted"));
  CHECK_THAT(parse({"--kubernetes-share-namespace", "yes"}).error,
             Catch::Contains("for --kubernetes-share-namespace: expected true or false"));

  // The users' namespace the spawner's own (its service account's namespace file): refused, as
  // at startup, unless sharing is accepted (in_cluster_test.cpp has the message's words).
  const director::test::TempDirectory account("director-config-test");
  std::ofstream(account / "namespace") << "container-director\n";
  const std::map<std::string, std::string> in_director_s = {{"SPAWNER_RUNTIME", "kubernetes"},
                                                            {"SPAWNER_KUBERNETES_SERVICEACCOUNT_DIR", account.path().string()}};
  for (const auto* users : {"", "container-director"}) {
    auto environment = in_director_s;
    environment["SPAWNER_KUBERNETES_NAMESPACE"] = users;
    CHECK_THAT(parse({"--check-config"}, environment).error,
               Catch::StartsWith("runtime kubernetes: the users' namespace ") &&
                   Catch::Contains("\"container-director\"") && Catch::Contains("SPAWNER_KUBERNETES_SHARE_NAMESPACE=true"));
    environment["SPAWNER_KUBERNETES_SHARE_NAMESPACE"] = "true";
    CHECK(parse({"--check-config"}, environment).config);
  }
  auto apart = in_director_s;
  apart["SPAWNER_KUBERNETES_NAMESPACE"] = "container-director-users";
  CHECK(parse({"--check-config"}, apart).config);

  // The same options with a Docker runtime, and their defaults with Kubernetes, are fine.
  CHECK(parse({"--network", "director", "--pids-limit", "100"}).config);
  CHECK(parse({"--runtime", "kubernetes", "--network", "", "--pids-limit", "0"}).config);
}

TEST_CASE("the template's host prefix is the director's container host prefix, from any source") {
  TempFile file(R"({"container_host_prefix": "desk"})");
  const auto outcome = parse({"--config", file.path()});
  REQUIRE(outcome.config);
  CHECK(outcome.config->container_template.host_prefix == "desk");
}

TEST_CASE("the file is checked like the agent's: unknown keys with a hint, types, duplicates") {
  TempFile unknown(R"({"idle_timout": "5m"})");
  CHECK_THAT(parse({"--config", unknown.path()}).error,
             Catch::Contains("unknown key \"idle_timout\" in " + unknown.path() + "; did you mean \"idle_timeout\"?"));
  TempFile spelled_as_variable(R"({"SPAWNER_IMAGE": "busybox"})");
  CHECK_THAT(parse({"--config", spelled_as_variable.path()}).error, Catch::Contains("did you mean \"image\"?"));
  TempFile far(R"({"zzzzzzzzzz": 1})");
  CHECK_THAT(parse({"--config", far.path()}).error, Catch::Contains("(director-spawner --help lists the keys)"));
  TempFile wrong_type(R"({"log_lines": "20"})");
  CHECK_THAT(parse({"--config", wrong_type.path()}).error,
             Catch::Contains("wrong type for log_lines in " + wrong_type.path() + ": expected an integer, got string \"20\""));
  TempFile command_type(R"({"command": 5})");
  CHECK_THAT(parse({"--config", command_type.path()}).error,
             Catch::Contains("wrong type for command in " + command_type.path() +
                             ": expected a string or an array of strings, got number 5"));
  TempFile list_entry(R"({"agents": ["http://127.0.0.1:1,http://127.0.0.1:2"]})");
  CHECK_THAT(parse({"--config", list_entry.path()}).error,
             Catch::Contains("expected one non-empty entry per array element, without commas"));
  TempFile duplicate(R"({"image": "a", "image": "b"})");
  CHECK_THAT(parse({"--config", duplicate.path()}).error, Catch::Contains("duplicate key \"image\""));
  TempFile nested(R"({"config": "/etc/other.json"})");
  CHECK_THAT(parse({"--config", nested.path()}).error, Catch::Contains("a configuration file cannot name another one"));
  TempFile output_only(R"({"effective_threads": 2})");
  CHECK_THAT(parse({"--config", output_only.path()}).error, Catch::Contains("--check-config prints it, but it is not an option"));
  CHECK_THAT(parse({"--config", "/nonexistent/spawner.json"}).error,
             Catch::Contains("cannot open configuration file /nonexistent/spawner.json"));
  CHECK_THAT(parse({}, {{"SPAWNER_CONFIG", "/nonexistent/spawner.json"}}).error,
             Catch::Contains("cannot open configuration file /nonexistent/spawner.json"));
}

TEST_CASE("commands: help, markdown and version read no file and validate nothing") {
  CHECK(parse({"--help", "--memory", "bad"}).command == Command::help);
  CHECK(parse({"-h"}).command == Command::help);
  CHECK(parse({"--help-markdown", "--config", "/nonexistent"}).command == Command::help_markdown);
  CHECK(parse({"--version"}, {{"SPAWNER_CPUS", "x"}}).command == Command::version);
  CHECK(parse({"--check-config"}).command == Command::check_config);
  CHECK(parse({"--health"}).command == Command::health);
  CHECK_FALSE(parse({"--check-config", "--cpus", "x"}).config);
}

TEST_CASE("the help (--help) lists every option with its variable and file key") {
  std::ostringstream help;
  config::print_help(help);
  const auto text = help.str();
  CHECK(text.starts_with("Usage: director-spawner [OPTIONS]\n"));
  for (const auto* needle : {"--image VALUE", "SPAWNER_IMAGE", "\"image\": string", "--env VALUE", "SPAWNER_ENV",
                             "\"environment\": array of strings", "--config VALUE", "(not in the file)",
                             "\"idle_timeout\": string", "\"log_lines\": integer", "--health "}) {
    INFO(needle);
    CHECK(text.find(needle) != std::string::npos);
  }
}

TEST_CASE("the Markdown reference (--help-markdown) is one table row per option with default and accepted values") {
  std::ostringstream markdown;
  config::print_markdown(markdown);
  std::istringstream lines(markdown.str());
  std::vector<std::string> rows;
  for (std::string line; std::getline(lines, line);) rows.push_back(line);
  REQUIRE(rows.size() >= 3);
  CHECK(rows[0] == "| JSON key | environment variable | flag | JSON type | default | accepted values | meaning |");
  CHECK(rows[2].starts_with("| (not in the file) | `SPAWNER_CONFIG` | `--config` | string | `\"\"` |"));
  const auto row = [&](std::string_view key) {
    for (const auto& r : rows)
      if (r.starts_with("| `" + std::string(key) + "` |")) return r;
    return std::string();
  };
  CHECK(row("memory") ==
        "| `memory` | `SPAWNER_MEMORY` | `--memory` | string | `\"0\"` | 0 for no limit, or from 6m to 1024g: an integer "
        "with an optional unit b, k, m or g (1024-based), e.g. 2g or 512m | Memory limit of each container, e.g. 2g. "
        "Default 0 (no limit) |");
  CHECK(row("image").find("`\"codercom/code-server:latest\"`") != std::string::npos);
  CHECK(row("idle_timeout").find("`\"60m\"` | 0s for never, or a duration from 1m to 43200m") != std::string::npos);
  CHECK(row("container_host_prefix").find("PREFIX-&lt;label&gt;") != std::string::npos);
  CHECK(row("agents").find("| array of strings | `[]` |") != std::string::npos);
  for (const auto& r : rows) {
    INFO(r);
    CHECK(r.find("| any text |") == std::string::npos);  // every option refuses something, and says what
  }
  CHECK(rows.size() == 2 + 46);
}

TEST_CASE("docs/configuration.md holds the spawner's Markdown reference as generated") {
  constexpr std::string_view begin = "<!-- BEGIN generated by director-spawner --help-markdown -->\n";
  constexpr std::string_view end = "<!-- END generated by director-spawner --help-markdown -->";
  std::ifstream file(std::string(DIRECTOR_DOCS_DIR) + "/configuration.md");
  REQUIRE(file);
  const std::string text{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
  const auto first = text.find(begin);
  const auto last = text.find(end);
  REQUIRE(first != std::string::npos);
  REQUIRE(last != std::string::npos);
  std::ostringstream markdown;
  config::print_markdown(markdown);
  const bool same = text.substr(first + begin.size(), last - first - begin.size()) == markdown.str();
  if (!same) {
    // The table to paste between the markers, unwrapped.
    const auto generated = std::filesystem::absolute("spawner-help-markdown.md");
    std::ofstream(generated) << markdown.str();
    FAIL("the table between the markers in docs/configuration.md differs from the option table; the generated "
         "table is in " << generated.string());
  }
}

TEST_CASE("agent URLs: the parser the server uses reads what the option accepts") {
  using boost::asio::ip::tcp;
  using director::config_table::NamedEndpoint;
  const auto agent = config::parse_agent_url("http://127.0.0.1:9102");
  REQUIRE(agent);
  CHECK(std::get<tcp::endpoint>(*agent).port() == 9102);
  CHECK(std::get<tcp::endpoint>(*config::parse_agent_url("http://[::1]:1")).address().to_string() == "::1");
  const auto named = config::parse_agent_url("http://director-agents.director.svc.cluster.local:9102");
  REQUIRE(named);
  CHECK(std::get<NamedEndpoint>(*named) == NamedEndpoint{"director-agents.director.svc.cluster.local", 9102});
  for (const auto* bad : {"127.0.0.1:9102", "http://127.0.0.1", "http://127.0.0.1:9102/", "http://agent", "http://agent:",
                          "http://Agent:9102", "http://1.2.3:9102", "http://agent:9102/users"}) {
    INFO(bad);
    CHECK_FALSE(config::parse_agent_url(bad));
  }
}

TEST_CASE("the replicas by DNS name: SPAWNER_AGENTS takes names beside addresses") {
  const auto outcome = parse({}, {{"SPAWNER_AGENTS", "http://director-agents.director.svc.cluster.local:9102,http://127.0.0.1:9102"}});
  INFO(outcome.error);
  REQUIRE(outcome.config);
  CHECK(outcome.config->agent_urls == std::vector<std::string>{"http://director-agents.director.svc.cluster.local:9102",
                                                               "http://127.0.0.1:9102"});
}

TEST_CASE("SPAWNER_HAPROXY_SOCKETS and SPAWNER_CONNECTIONS_TABLE are refused, saying what replaced them") {
  for (const auto* value : {"127.0.0.1:9999", ""}) {
    const auto sockets = parse({}, {{"SPAWNER_HAPROXY_SOCKETS", value}});
    CHECK_FALSE(sockets.config);
    CHECK_THAT(sockets.error, Catch::Contains("SPAWNER_HAPROXY_SOCKETS is no longer read") &&
                                  Catch::Contains("GET /connections") && Catch::Contains("DIRECTOR_HAPROXY_SOCKETS"));
  }
  const auto table = parse({}, {{"SPAWNER_CONNECTIONS_TABLE", "user_connections"}});
  CHECK_FALSE(table.config);
  CHECK_THAT(table.error, Catch::Contains("SPAWNER_CONNECTIONS_TABLE is no longer read"));
  CHECK_THAT(parse({"--haproxy-sockets", "/run/haproxy.sock"}).error, Catch::Contains("unknown argument"));
}
