// What the spawner knows about one container, in the runtime's terms but independent of any
// runtime's wire format (runtime/ translates Docker's JSON to and from these types). No I/O.
#pragma once

#include <chrono>
#include <cstddef>
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

// The most bytes of a runtime's message (ContainerStatus::error, ContainerEvent::error) that
// the spawner keeps: it is shown on the user's page and logged, and it comes from outside (the
// kubelet quotes a registry's answer).
inline constexpr std::size_t max_runtime_message = 512;
// `text` as the spawner keeps a runtime's message: control characters (C0 but tab and newline,
// DEL, C1) and the characters that reorder text (bidirectional marks and overrides) become
// spaces, and a text longer than max_runtime_message is cut at a UTF-8 character's start and
// ends with "..." (at most max_runtime_message bytes in all). Bytes that are not UTF-8 are kept
// as they are, one by one (a control character after a stray lead byte is still blanked; the
// runtimes' texts come from parsed JSON, and every JSON sink replaces bad bytes); not
// HTML-escaped: the pages do.
std::string runtime_message(std::string_view text);

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
  // Why the container is not running, when the runtime says: Docker's State.Error (e.g. "OCI
  // runtime create failed"), the kubelet's waiting reason and message ("ImagePullBackOff: ...").
  // Untrusted text, as the runtime reads it through runtime_message(); empty when none.
  std::string error;
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
  // For kind == died: why the container did not run, when the runtime says (ContainerStatus's
  // error, e.g. the kubelet's "ErrImagePull: ..." for a Pod whose image it cannot pull); empty
  // otherwise. Untrusted text, through runtime_message(). (The `{}` lets an event be written
  // {kind, id, label, health, exit_code, username} without a missing-initializer warning.)
  std::string error{};
};

}  // namespace director::spawner::core
