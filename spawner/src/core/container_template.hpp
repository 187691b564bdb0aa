// The container template: what every user's container is made of (image, command, environment,
// network, volume, limits, health check), and its rendering for one user into a runtime-neutral
// ContainerSpec. runtime/ turns a spec into its own request (Docker: POST /containers/create).
// Pure: no I/O.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace director::spawner::core {

// Who the container is for, as the director names them (HAProxy's headers to the spawner).
struct UserIdentity {
  std::string username;  // X-Forwarded-Preferred-Username, as sent by the sign-in proxy
  std::string label;     // the agent's DNS label for that username (X-Director-Label)
};

enum class RestartPolicy : std::uint8_t { no, on_failure, unless_stopped, always };
std::string_view to_string(RestartPolicy policy) noexcept;  // Docker's names: "no", "on-failure", ...

// A health check run inside the container (Docker's HealthConfig). Empty `command`: none.
struct HealthCheck {
  std::vector<std::string> command;  // run with CMD-SHELL when it is one string, else CMD
  std::chrono::milliseconds interval{5000};
  std::chrono::milliseconds timeout{3000};
  std::chrono::milliseconds start_period{0};
  int retries = 3;
};

struct ContainerTemplate {
  std::string host_prefix = "vscode";  // container name and network alias: <prefix>-<label>
  std::string image;
  // "{username}" and "{label}" in a command entry or an environment VALUE are replaced by the
  // user's (no other substitution; "{{" is not special; substituted text is not scanned again).
  std::vector<std::string> command;     // empty: the image's own
  std::vector<std::string> environment; // "NAME=VALUE" entries
  std::string network;                  // joined with the alias <prefix>-<label>; empty: runtime default
  std::string volume_mount;             // where the per-user volume is mounted; empty: no volume
  std::string volume_prefix = "director-home";  // volume name: <volume_prefix>-<label>
  std::uint64_t memory_bytes = 0;       // 0: no limit
  std::uint64_t nano_cpus = 0;          // CPUs * 1e9; 0: no limit
  // What the scheduler reserves (Kubernetes' resources.requests; Docker has no such thing and
  // ignores them). 0: none given, so Kubernetes takes the limit as the request.
  std::uint64_t memory_request_bytes = 0;
  std::uint64_t nano_cpus_request = 0;
  std::int64_t pids_limit = 0;          // 0: no limit
  RestartPolicy restart = RestartPolicy::no;
  HealthCheck health_check;             // command empty: none (the image's own check, if any, applies)
};

// One user's container, ready for a runtime to create.
struct ContainerSpec {
  std::string name;                     // <prefix>-<label>
  std::string image;
  std::vector<std::string> command;
  std::vector<std::string> environment; // substituted
  std::map<std::string, std::string> labels;  // managed_label, user_label, label_label
  std::string network;
  // {name} on a user-defined network; none on no network, "host", "none", "bridge", "default"
  // or "container:<id>" (Docker gives aliases only on user-defined networks).
  std::vector<std::string> network_aliases;
  std::string volume_name;              // empty: no volume
  std::string volume_mount;
  std::uint64_t memory_bytes = 0;
  std::uint64_t nano_cpus = 0;
  std::uint64_t memory_request_bytes = 0;
  std::uint64_t nano_cpus_request = 0;
  std::int64_t pids_limit = 0;
  RestartPolicy restart = RestartPolicy::no;
  HealthCheck health_check;
};

// <prefix>-<label>: the container's name, network alias and the director's container host.
std::string container_name(const ContainerTemplate& container_template, std::string_view label);

ContainerSpec render(const ContainerTemplate& container_template, const UserIdentity& user);

}  // namespace director::spawner::core
