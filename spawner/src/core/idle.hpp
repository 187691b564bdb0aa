// Idle retirement (JupyterHub's idle-culler, done right): which running managed containers to
// stop or remove. A user is idle when no agent has seen a request from them for idle_timeout
// AND no connection of theirs is open through HAProxy (an IDE works for hours over one
// WebSocket). A user no agent knows is not idle before idle_timeout has passed since the
// spawner started watching. Missing data retires nobody: when an agent or an HAProxy could not
// be read this round, the plan is empty. Pure: the I/O layer gathers the inputs.
#pragma once

#include "core/container.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace director::spawner::core {

enum class IdleAction : std::uint8_t { stop, remove };
std::string_view to_string(IdleAction action) noexcept;

struct IdleSettings {
  std::chrono::milliseconds timeout{3'600'000};  // 0: never retire
  IdleAction action = IdleAction::stop;
};

struct IdleInputs {
  TimePoint now;
  TimePoint watching_since;          // when the spawner started (or last lost its data)
  std::vector<ContainerStatus> running;  // managed containers in state running
  // Per label: the most recent request any agent saw (the smallest last_seen age over agents).
  std::map<std::string, TimePoint, std::less<>> last_request;
  // Per label: open connections through HAProxy (summed over HAProxy processes).
  std::map<std::string, std::uint64_t, std::less<>> open_connections;
  bool complete = true;              // false: some agent or HAProxy could not be read
};

struct Retirement {
  std::string id;
  std::string label;
  IdleAction action = IdleAction::stop;
  std::chrono::milliseconds idle_for{0};
};

std::vector<Retirement> plan_retirements(const IdleSettings& settings, const IdleInputs& inputs);

}  // namespace director::spawner::core
