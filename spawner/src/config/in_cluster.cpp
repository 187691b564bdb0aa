#include "config/in_cluster.hpp"

#include "config/values.hpp"

#include <boost/asio/ip/address.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>

namespace director::spawner::config {
namespace {

constexpr std::string_view host_variable = "KUBERNETES_SERVICE_HOST";
constexpr std::string_view port_variable = "KUBERNETES_SERVICE_PORT";
// The namespace file holds one name; anything longer is not one.
constexpr std::size_t longest_namespace_file = 1024;

// Why `path` cannot be opened for reading, or nothing when it can.
std::optional<std::string> unreadable(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (file) return std::nullopt;
  return std::string(std::strerror(errno));
}

std::string without_surrounding_space(std::string text) {
  constexpr std::string_view space = " \t\r\n";
  const auto first = text.find_first_not_of(space);
  if (first == std::string::npos) return {};
  return text.substr(first, text.find_last_not_of(space) - first + 1);
}

bool is_address(std::string_view text) {
  boost::system::error_code error;
  boost::asio::ip::make_address(text, error);
  return !error;
}

std::string in_directory(const KubernetesOptions& options, std::string_view name) {
  auto path = options.serviceaccount_dir;
  if (!path.ends_with('/')) path += '/';
  return path + std::string(name);
}

// The service account's namespace file: the namespace the spawner runs in.
struct NamespaceFile {
  std::string path;
  std::string name;     // a DNS label, or empty when the file is no good
  std::string problem;  // why the file is no good: unreadable (errno's text) or no name in it
  bool readable = false;
};

NamespaceFile read_namespace_file(const KubernetesOptions& options) {
  NamespaceFile found{in_directory(options, "namespace"), {}, {}, false};
  std::ifstream file(found.path, std::ios::binary);
  if (!file) {
    found.problem = std::strerror(errno);
    return found;
  }
  found.readable = true;
  std::string text;
  text.resize(longest_namespace_file + 1);
  file.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(file.gcount()));
  auto name = without_surrounding_space(std::move(text));
  if (!config_table::is_dns_label(name)) {
    found.problem = "expected 1 to 63 characters of [a-z0-9-]" + std::string(name.empty() ? ", found it empty" : "");
    return found;
  }
  found.name = std::move(name);
  return found;
}

std::string shared_namespace_message(const KubernetesOptions& options, const std::string& own, const std::string& path) {
  return "runtime kubernetes: the users' namespace " +
         std::string(options.namespace_name.empty() ? "(kubernetes_namespace, SPAWNER_KUBERNETES_NAMESPACE, unset: the "
                                                      "default) is \"" + own + "\", "
                                                    : "kubernetes_namespace (SPAWNER_KUBERNETES_NAMESPACE) \"" + own +
                                                          "\" is ") +
         "the spawner's own namespace (" + path +
         "): the spawner's right to create Pods there (or a Pod it is tricked into making) could mount the director's "
         "Secrets, e.g. oauth2-proxy's cookie secret, which signs every session. Put the users' objects in a namespace "
         "of their own (deploy/kubernetes: container-director-users; docs/kubernetes.md), or accept the risk with "
         "kubernetes_share_namespace (SPAWNER_KUBERNETES_SHARE_NAMESPACE=true)";
}

}  // namespace

std::optional<std::string> shared_namespace_problem(const KubernetesOptions& options) {
  if (options.share_namespace) return std::nullopt;
  const auto own = read_namespace_file(options);
  if (own.name.empty()) return std::nullopt;
  if (!options.namespace_name.empty() && options.namespace_name != own.name) return std::nullopt;
  return shared_namespace_message(options, own.name, own.path);
}

std::variant<InCluster, std::string> find_in_cluster(const KubernetesOptions& options,
                                                     const EnvironmentLookup& environment) {
  const auto host = environment(host_variable);
  const auto port = environment(port_variable);
  std::string missing;
  for (const auto& [name, value] : {std::pair{host_variable, host}, std::pair{port_variable, port}}) {
    if (value && !value->empty()) continue;
    missing += (missing.empty() ? "" : " and ") + std::string(name);
  }
  if (!missing.empty())
    return "runtime kubernetes: the spawner is not running in a Kubernetes cluster: " + missing +
           " not set (the kubelet sets KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT in every container; the "
           "spawner finds the API server through them)";
  InCluster found;
  if (!is_address(*host) && !config_table::is_dns_name(*host))
    return "runtime kubernetes: " + std::string(host_variable) + " is '" + *host +
           "', expected the API server's IP address or DNS name";
  found.api_host = *host;
  const auto port_number = config_table::parse_integer<std::uint16_t>(*port, 1, 65535);
  if (!port_number)
    return "runtime kubernetes: " + std::string(port_variable) + " is '" + *port + "', expected a port from 1 to 65535";
  found.api_port = *port_number;

  found.token_file = in_directory(options, "token");
  found.ca_file = in_directory(options, "ca.crt");
  for (const auto* file : {&found.token_file, &found.ca_file}) {
    if (const auto problem = unreadable(*file))
      return "runtime kubernetes: cannot read " + *file + " (" + *problem +
             "): the pod's service account token and CA certificate are mounted there unless "
             "automountServiceAccountToken is false; kubernetes_serviceaccount_dir "
             "(SPAWNER_KUBERNETES_SERVICEACCOUNT_DIR) names the directory";
  }

  // The namespace file names where the spawner runs: the users' namespace when the option is
  // unset, and what the option must differ from unless sharing is accepted.
  auto own = read_namespace_file(options);
  const bool needed = options.namespace_name.empty() || !options.share_namespace;
  if (own.name.empty() && needed) {
    const auto remedy = options.namespace_name.empty()
                            ? std::string("set kubernetes_namespace (SPAWNER_KUBERNETES_NAMESPACE)")
                            : std::string("it is needed to check that kubernetes_namespace (SPAWNER_KUBERNETES_NAMESPACE) "
                                          "is not the spawner's own namespace (the service account mounts it beside "
                                          "the token)");
    if (!own.readable)
      return "runtime kubernetes: cannot read " + own.path + " (" + own.problem + ") for the namespace; " + remedy;
    return "runtime kubernetes: " + own.path + " holds no namespace name (" + own.problem + "); " + remedy;
  }
  found.own_namespace = own.name;
  found.namespace_name = options.namespace_name.empty() ? own.name : options.namespace_name;
  if (!options.share_namespace && found.namespace_name == found.own_namespace)
    return shared_namespace_message(options, own.name, own.path);
  return found;
}

}  // namespace director::spawner::config
