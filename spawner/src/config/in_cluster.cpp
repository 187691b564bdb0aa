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

}  // namespace

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

  const auto in_directory = [&](std::string_view name) {
    auto path = options.serviceaccount_dir;
    if (!path.ends_with('/')) path += '/';
    return path + std::string(name);
  };
  found.token_file = in_directory("token");
  found.ca_file = in_directory("ca.crt");
  for (const auto* file : {&found.token_file, &found.ca_file}) {
    if (const auto problem = unreadable(*file))
      return "runtime kubernetes: cannot read " + *file + " (" + *problem +
             "): the pod's service account token and CA certificate are mounted there unless "
             "automountServiceAccountToken is false; kubernetes_serviceaccount_dir "
             "(SPAWNER_KUBERNETES_SERVICEACCOUNT_DIR) names the directory";
  }

  if (!options.namespace_name.empty()) {
    found.namespace_name = options.namespace_name;
    return found;
  }
  const auto namespace_file = in_directory("namespace");
  std::ifstream file(namespace_file, std::ios::binary);
  if (!file)
    return "runtime kubernetes: cannot read " + namespace_file + " (" + std::strerror(errno) +
           ") for the namespace; set kubernetes_namespace (SPAWNER_KUBERNETES_NAMESPACE)";
  std::string text;
  text.resize(longest_namespace_file + 1);
  file.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(file.gcount()));
  auto name = without_surrounding_space(std::move(text));
  if (!config_table::is_dns_label(name))
    return "runtime kubernetes: " + namespace_file + " holds no namespace name (expected 1 to 63 characters of " +
           "[a-z0-9-]" + (name.empty() ? std::string(", found it empty") : std::string()) +
           "); set kubernetes_namespace (SPAWNER_KUBERNETES_NAMESPACE)";
  found.namespace_name = std::move(name);
  return found;
}

}  // namespace director::spawner::config
