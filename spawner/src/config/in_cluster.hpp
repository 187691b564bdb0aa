// Where the Kubernetes API is and who the spawner is there, found as a pod finds them
// ("in-cluster configuration"): the API server at https://$KUBERNETES_SERVICE_HOST:
// $KUBERNETES_SERVICE_PORT (the kubelet sets both in every container), the service account's
// token, CA certificate and namespace in KubernetesOptions::serviceaccount_dir. Read once at
// startup, with the runtime kind kubernetes (main.cpp); every problem is one message naming the
// variable or file and what it should hold.
#pragma once

#include "config/config.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <variant>

namespace director::spawner::config {

struct InCluster {
  std::string api_host;         // KUBERNETES_SERVICE_HOST: an IP address (IPv6 without brackets) or a DNS name
  std::uint16_t api_port = 0;   // KUBERNETES_SERVICE_PORT
  std::string token_file;       // <serviceaccount_dir>/token: readable now; the runtime reads it again when it changes
  std::string ca_file;          // <serviceaccount_dir>/ca.crt: readable now
  std::string namespace_name;   // the option, else the namespace file's content (a DNS label)
  std::string own_namespace;    // the namespace file's content: where the spawner itself runs
};

// The in-cluster configuration, or why there is none: not in a cluster (a variable missing), a
// variable that is not what the kubelet sets, a token or CA file missing or unreadable, the
// namespace file missing, empty or not a namespace name (needed unless the option is set and
// share_namespace is on), or the users' namespace the spawner's own (shared_namespace_problem).
std::variant<InCluster, std::string> find_in_cluster(const KubernetesOptions& options,
                                                     const EnvironmentLookup& environment);

// Why the users' namespace must not be the one the spawner runs in, or nothing: with
// share_namespace off, a namespace_name (or, empty, the default) equal to the service account's
// namespace file. Whoever can create Pods in a namespace can mount its Secrets, and the
// director's namespace holds oauth2-proxy's cookie secret. Nothing when the file cannot be read:
// outside a cluster there is nothing to compare (find_in_cluster then refuses to start, and
// reads the file even when namespace_name is set).
std::optional<std::string> shared_namespace_problem(const KubernetesOptions& options);

}  // namespace director::spawner::config
