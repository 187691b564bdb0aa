// The in-cluster configuration (spawner/src/config/in_cluster.hpp): the variables the kubelet
// sets and the service account's files, as a pod finds them, and one clear message for each
// thing missing.
#include "config/in_cluster.hpp"

#include "../../common/child_process_fixture.hpp"

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

namespace {

namespace config = director::spawner::config;
using director::test::TempDirectory;

// A service account directory with the given files (name -> content).
struct ServiceAccount {
  explicit ServiceAccount(const std::map<std::string, std::string>& files) : directory("director-in-cluster-test") {
    for (const auto& [name, content] : files) std::ofstream(directory / name) << content;
  }
  config::KubernetesOptions options(std::string namespace_name = {}, bool share_namespace = false) const {
    config::KubernetesOptions options;
    options.serviceaccount_dir = directory.path().string();
    options.namespace_name = std::move(namespace_name);
    options.share_namespace = share_namespace;
    return options;
  }
  std::string path(std::string_view name) const { return (directory / name).string(); }
  TempDirectory directory;
};

const std::map<std::string, std::string> complete = {
    {"token", "eyJhbGciOi.token"}, {"ca.crt", "-----BEGIN CERTIFICATE-----\n"}, {"namespace", "users\n"}};

config::EnvironmentLookup environment(std::map<std::string, std::string> variables) {
  return [variables = std::move(variables)](std::string_view name) -> std::optional<std::string> {
    const auto found = variables.find(std::string(name));
    if (found == variables.end()) return std::nullopt;
    return found->second;
  };
}

const auto in_cluster = environment({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}});

std::string error_of(const std::variant<config::InCluster, std::string>& found) {
  const auto* error = std::get_if<std::string>(&found);
  return error ? *error : std::string("(no error)");
}

}  // namespace

TEST_CASE("in a cluster: the API server from the kubelet's variables, the files from the service account") {
  const ServiceAccount account(complete);
  const auto found = config::find_in_cluster(account.options("team-a"), in_cluster);
  INFO(error_of(found));
  REQUIRE(std::holds_alternative<config::InCluster>(found));
  const auto& cluster = std::get<config::InCluster>(found);
  CHECK(cluster.api_host == "10.96.0.1");
  CHECK(cluster.api_port == 443);
  CHECK(cluster.token_file == account.path("token"));
  CHECK(cluster.ca_file == account.path("ca.crt"));
  CHECK(cluster.namespace_name == "team-a");  // the option's
  CHECK(cluster.own_namespace == "users");    // the file's, its newline dropped

  // Sharing accepted: the file's namespace by default, and the file not needed with the option.
  const auto shared = config::find_in_cluster(account.options({}, true), in_cluster);
  INFO(error_of(shared));
  REQUIRE(std::holds_alternative<config::InCluster>(shared));
  CHECK(std::get<config::InCluster>(shared).namespace_name == "users");
  const ServiceAccount without_namespace({{"token", "t"}, {"ca.crt", "c"}});
  const auto named = config::find_in_cluster(without_namespace.options("team-a", true), in_cluster);
  INFO(error_of(named));
  REQUIRE(std::holds_alternative<config::InCluster>(named));
  CHECK(std::get<config::InCluster>(named).namespace_name == "team-a");

  // IPv6 clusters and DNS names.
  for (const auto* host : {"fd00::1", "kubernetes.default.svc"}) {
    const auto other = config::find_in_cluster(
        account.options("team-a"), environment({{"KUBERNETES_SERVICE_HOST", host}, {"KUBERNETES_SERVICE_PORT", "6443"}}));
    INFO(host << ": " << error_of(other));
    REQUIRE(std::holds_alternative<config::InCluster>(other));
    CHECK(std::get<config::InCluster>(other).api_host == host);
    CHECK(std::get<config::InCluster>(other).api_port == 6443);
  }
}

TEST_CASE("not in a cluster: the message says so and names the variables it needs") {
  const ServiceAccount account(complete);
  CHECK(error_of(config::find_in_cluster(account.options(), environment({}))) ==
        "runtime kubernetes: the spawner is not running in a Kubernetes cluster: KUBERNETES_SERVICE_HOST and "
        "KUBERNETES_SERVICE_PORT not set (the kubelet sets KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT in "
        "every container; the spawner finds the API server through them)");
  CHECK_THAT(error_of(config::find_in_cluster(account.options(), environment({{"KUBERNETES_SERVICE_PORT", "443"}}))),
             Catch::StartsWith("runtime kubernetes: the spawner is not running in a Kubernetes cluster: "
                               "KUBERNETES_SERVICE_HOST not set"));
  CHECK_THAT(error_of(config::find_in_cluster(
                 account.options(), environment({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", ""}}))),
             Catch::Contains(": KUBERNETES_SERVICE_PORT not set"));
  CHECK_THAT(error_of(config::find_in_cluster(
                 account.options(), environment({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "https"}}))),
             Catch::Contains("KUBERNETES_SERVICE_PORT is 'https', expected a port from 1 to 65535"));
  CHECK_THAT(error_of(config::find_in_cluster(
                 account.options(), environment({{"KUBERNETES_SERVICE_HOST", "http://x"}, {"KUBERNETES_SERVICE_PORT", "443"}}))),
             Catch::Contains("KUBERNETES_SERVICE_HOST is 'http://x', expected the API server's IP address or DNS name"));
}

TEST_CASE("a service account file missing or unreadable: the message names the file") {
  for (const auto* missing : {"token", "ca.crt"}) {
    auto files = complete;
    files.erase(missing);
    const ServiceAccount account(files);
    const auto error = error_of(config::find_in_cluster(account.options(), in_cluster));
    INFO(error);
    CHECK_THAT(error, Catch::StartsWith("runtime kubernetes: cannot read " + account.path(missing) +
                                        " (No such file or directory): the pod's service account token and CA "
                                        "certificate are mounted there"));
    CHECK_THAT(error, Catch::Contains("SPAWNER_KUBERNETES_SERVICEACCOUNT_DIR"));
  }
  if (::geteuid() != 0) {  // root reads anything
    const ServiceAccount account(complete);
    ::chmod(account.path("token").c_str(), 0);
    CHECK_THAT(error_of(config::find_in_cluster(account.options(), in_cluster)),
               Catch::StartsWith("runtime kubernetes: cannot read " + account.path("token") + " (Permission denied)"));
  }
}

TEST_CASE("no namespace: the file missing, empty or not a name, and no option") {
  auto files = complete;
  files.erase("namespace");
  const ServiceAccount missing(files);
  CHECK(error_of(config::find_in_cluster(missing.options(), in_cluster)) ==
        "runtime kubernetes: cannot read " + missing.path("namespace") +
            " (No such file or directory) for the namespace; set kubernetes_namespace (SPAWNER_KUBERNETES_NAMESPACE)");
  files["namespace"] = " \n";
  const ServiceAccount empty(files);
  CHECK(error_of(config::find_in_cluster(empty.options(), in_cluster)) ==
        "runtime kubernetes: " + empty.path("namespace") +
            " holds no namespace name (expected 1 to 63 characters of [a-z0-9-], found it empty); set "
            "kubernetes_namespace (SPAWNER_KUBERNETES_NAMESPACE)");
  files["namespace"] = "Users/../x";
  const ServiceAccount invalid(files);
  CHECK_THAT(error_of(config::find_in_cluster(invalid.options(), in_cluster)),
             Catch::Contains(" holds no namespace name (expected 1 to 63 characters of [a-z0-9-]); set"));
}

TEST_CASE("the users' namespace the spawner's own: refused, saying why, unless sharing is accepted") {
  const ServiceAccount account(complete);  // the spawner runs in "users"
  const auto why = std::string(
      "the spawner's own namespace (" + account.path("namespace") +
      "): the spawner's right to create Pods there (or a Pod it is tricked into making) could mount the director's "
      "Secrets, e.g. oauth2-proxy's cookie secret, which signs every session. Put the users' objects in a namespace "
      "of their own (deploy/kubernetes: container-director-users; docs/kubernetes.md), or accept the risk with "
      "kubernetes_share_namespace (SPAWNER_KUBERNETES_SHARE_NAMESPACE=true)");
  const auto named = "runtime kubernetes: the users' namespace kubernetes_namespace (SPAWNER_KUBERNETES_NAMESPACE) "
                     "\"users\" is " + why;
  const auto by_default = "runtime kubernetes: the users' namespace (kubernetes_namespace, SPAWNER_KUBERNETES_NAMESPACE, "
                          "unset: the default) is \"users\", " + why;
  // At startup (find_in_cluster) and in the option table's check (--check-config): the same words.
  CHECK(error_of(config::find_in_cluster(account.options("users"), in_cluster)) == named);
  CHECK(config::shared_namespace_problem(account.options("users")) == named);
  CHECK(error_of(config::find_in_cluster(account.options(), in_cluster)) == by_default);
  CHECK(config::shared_namespace_problem(account.options()) == by_default);
  // Another namespace, or sharing accepted: fine.
  CHECK_FALSE(config::shared_namespace_problem(account.options("team-a")));
  CHECK_FALSE(config::shared_namespace_problem(account.options("users", true)));
  CHECK_FALSE(config::shared_namespace_problem(account.options({}, true)));
  CHECK(std::holds_alternative<config::InCluster>(config::find_in_cluster(account.options("users", true), in_cluster)));

  // Without the namespace file nothing can be compared: the option table lets it pass (outside
  // a cluster), the startup refuses (a pod always has the file beside its token).
  auto files = complete;
  files.erase("namespace");
  const ServiceAccount missing(files);
  CHECK_FALSE(config::shared_namespace_problem(missing.options("team-a")));
  CHECK(error_of(config::find_in_cluster(missing.options("team-a"), in_cluster)) ==
        "runtime kubernetes: cannot read " + missing.path("namespace") +
            " (No such file or directory) for the namespace; it is needed to check that kubernetes_namespace "
            "(SPAWNER_KUBERNETES_NAMESPACE) is not the spawner's own namespace (the service account mounts it beside "
            "the token)");
}
