// What the spawner knows about one container, in the runtime's terms but independent of any
// runtime's wire format (runtime/ translates Docker's JSON to and from these types). No I/O.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace director::spawner::core {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

// The labels that mark a container (and its volume) as this project's. A container without
// `managed_label` = "true" is never started, stopped or removed by the spawner, whatever its name.
inline constexpr std::string_view managed_label = "io.container-director.managed";
inline constexpr std::string_view user_label = "io.container-director.user";    // the username, as received
inline constexpr std::string_view label_label = "io.container-director.label";  // the user's DNS label

// The runtime's container state (Docker's State.Status).
enum class ContainerState : std::uint8_t { created, running, paused, restarting, removing, exited, dead, unknown };
// The runtime's health check state (Docker's State.Health.Status); none: the container has no check.
enum class Health : std::uint8_t { none, starting, healthy, unhealthy };

std::string_view to_string(ContainerState state) noexcept;
std::string_view to_string(Health health) noexcept;
ContainerState parse_container_state(std::string_view text) noexcept;  // unknown for anything else
Health parse_health(std::string_view text) noexcept;                   // none for anything else

// One container as the runtime reports it (inspect, or one row of a listing).
struct ContainerStatus {
  std::string id;
  std::string name;       // without Docker's leading '/'
  bool managed = false;   // carries managed_label = "true"
  std::string label;      // label_label's value; empty when absent
  std::string username;   // user_label's value; empty when absent
  ContainerState state = ContainerState::unknown;
  Health health = Health::none;
  int exit_code = 0;      // meaningful when state is exited or dead
  std::string error;      // the runtime's State.Error, if any (e.g. why a start failed)
  bool oom_killed = false;
};

// A change the runtime reports for a managed container (Docker's /events, type container).
enum class EventKind : std::uint8_t { created, started, stopped, died, health, destroyed };
std::string_view to_string(EventKind kind) noexcept;

struct ContainerEvent {
  EventKind kind = EventKind::created;
  std::string id;
  std::string label;         // the container's label_label value
  Health health = Health::none;          // for kind == health
  std::optional<int> exit_code;          // for kind == died, when the runtime says
  std::string username;                  // the container's user_label value; empty when absent
};

}  // namespace director::spawner::core
