#include "core/container_template.hpp"

#include "core/container.hpp"

#include <catch2/catch.hpp>

using namespace director::spawner::core;

namespace {

ContainerTemplate code_server() {
  ContainerTemplate t;
  t.host_prefix = "vscode";
  t.image = "codercom/code-server:latest";
  t.command = {"--bind-addr", "0.0.0.0:8080", "--user-data-dir=/home/{label}", "{username}{label}{unknown}{{label}}"};
  t.environment = {"USER_NAME={username}", "HOME=/home/{label}", "PLAIN", "EQUALS=a=b={label}",
                   "{label}=name-is-not-substituted"};
  t.network = "director-users";
  t.volume_mount = "/home/coder";
  t.volume_prefix = "director-home";
  t.memory_bytes = 2ull << 30;
  t.nano_cpus = 1'500'000'000;
  t.memory_request_bytes = 1ull << 30;
  t.nano_cpus_request = 250'000'000;
  t.pids_limit = 512;
  t.restart = RestartPolicy::unless_stopped;
  t.health_check.command = {"curl -fs http://localhost:8080/healthz"};
  t.health_check.retries = 7;
  return t;
}

const UserIdentity alice{"Alice Smith@example.org", "alice-smith-example-org-0123456789abcdef"};

}  // namespace

TEST_CASE("the container name is <prefix>-<label>", "[template]") {
  CHECK(container_name(code_server(), "alice") == "vscode-alice");
  ContainerTemplate other;
  other.host_prefix = "ide";
  CHECK(container_name(other, "bob") == "ide-bob");
}

TEST_CASE("render names, labels and substitutes", "[template]") {
  const auto spec = render(code_server(), alice);
  CHECK(spec.name == "vscode-alice-smith-example-org-0123456789abcdef");
  CHECK(spec.image == "codercom/code-server:latest");
  CHECK(spec.command == std::vector<std::string>{"--bind-addr", "0.0.0.0:8080",
                                                 "--user-data-dir=/home/alice-smith-example-org-0123456789abcdef",
                                                 "Alice Smith@example.org" + alice.label + "{unknown}{" + alice.label + "}"});
  CHECK(spec.environment == std::vector<std::string>{"USER_NAME=Alice Smith@example.org",
                                                     "HOME=/home/alice-smith-example-org-0123456789abcdef", "PLAIN",
                                                     "EQUALS=a=b=alice-smith-example-org-0123456789abcdef",
                                                     "{label}=name-is-not-substituted"});
  CHECK(spec.labels == std::map<std::string, std::string>{
                           {"io.container-director.managed", "true"},
                           {"io.container-director.user", "Alice Smith@example.org"},
                           {"io.container-director.label", "alice-smith-example-org-0123456789abcdef"}});
  CHECK(spec.network == "director-users");
  CHECK(spec.network_aliases == std::vector<std::string>{spec.name});
  CHECK(spec.volume_name == "director-home-alice-smith-example-org-0123456789abcdef");
  CHECK(spec.volume_mount == "/home/coder");
  CHECK(spec.memory_bytes == 2ull << 30);
  CHECK(spec.nano_cpus == 1'500'000'000);
  CHECK(spec.memory_request_bytes == 1ull << 30);
  CHECK(spec.nano_cpus_request == 250'000'000);
  CHECK(spec.pids_limit == 512);
  CHECK(spec.restart == RestartPolicy::unless_stopped);
  CHECK(spec.health_check.command == std::vector<std::string>{"curl -fs http://localhost:8080/healthz"});
  CHECK(spec.health_check.retries == 7);
}

TEST_CASE("a substituted username is not scanned again", "[template]") {
  ContainerTemplate t;
  t.command = {"{username}"};
  const auto spec = render(t, UserIdentity{"{label}", "x"});
  CHECK(spec.command == std::vector<std::string>{"{label}"});
}

TEST_CASE("no volume without a mount point, no aliases on host, none, bridge or no network", "[template]") {
  auto t = code_server();
  t.volume_mount.clear();
  for (const std::string network : {"", "host", "none", "bridge", "default", "container:abc"}) {
    CAPTURE(network);
    t.network = network;
    const auto spec = render(t, alice);
    CHECK(spec.network == network);
    CHECK(spec.network_aliases.empty());
    CHECK(spec.volume_name.empty());
    CHECK(spec.volume_mount.empty());
  }
}

TEST_CASE("restart policies carry Docker's names", "[template]") {
  CHECK(to_string(RestartPolicy::no) == "no");
  CHECK(to_string(RestartPolicy::on_failure) == "on-failure");
  CHECK(to_string(RestartPolicy::unless_stopped) == "unless-stopped");
  CHECK(to_string(RestartPolicy::always) == "always");
}
