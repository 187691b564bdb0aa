// Where the Kubernetes API is and who the spawner is there, found as a pod finds them
// ("in-cluster configuration"): the API server at https://$KUBERNETES_SERVICE_HOST:
// $KUBERNETES_SERVICE_PORT (the kubelet sets both in every container), the service account's
// token, CA certificate and namespace in KubernetesOptions::serviceaccount_dir. Read once at
// startup, with the runtime kind kubernetes (main.cpp); every problem is one message naming the
// variable or file and what it should hold.
#pragma once

#include "config/config.hpp"

#include <cstdint>
#include <string>
#include <variant>

namespace director::spawner::config {

struct InCluster {
  std::string api_host;         // KUBERNETES_SERVICE_HOST: an IP address (IPv6 without brackets) or a DNS name
  std::uint16_t api_port = 0;   // KUBERNETES_SERVICE_PORT
  std::string token_file;       // <serviceaccount_dir>/token: readable now; the runtime reads it again when it changes
  std::string ca_file;          // <serviceaccount_dir>/ca.crt: readable now
  std::string namespace_name;   // the option, else the namespace file's content (a DNS label)
};

// The in-cluster configuration, or why there is none: not in a cluster (a variable missing), a
// variable that is not what the kubelet sets, a token or CA file missing or unreadable, no
// namespace (option empty and the file missing, empty or not a namespace name).
std::variant<InCluster, std::string> find_in_cluster(const KubernetesOptions& options,
                                                     const EnvironmentLookup& environment);

}  // namespace director::spawner::config
