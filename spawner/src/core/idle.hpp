// Idle retirement (JupyterHub's idle-culler, done right): which running managed containers to
// stop or remove. A user is idle when no agent has seen a request from them for idle_timeout
// AND no connection of theirs is open through HAProxy (an IDE works for hours over one
// WebSocket). A user no agent knows (an agent restarted or evicted them, or none routed them
// yet) is idle since the later of: the spawner started watching, and the first round that found
// their running container without any agent's record (UnknownSince, kept across rounds by the
// I/O layer through track_unknown). Missing data retires nobody: when an agent or an HAProxy could not
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

// Per label: the first round that found the user's running container without any agent's record.
using UnknownSince = std::map<std::string, TimePoint, std::less<>>;

struct IdleInputs {
  TimePoint now;
  TimePoint watching_since;          // when the spawner started (or last lost its data)
  UnknownSince unknown_since;        // as track_unknown returned it for this round (no entry: watching_since)
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

// This round's UnknownSince: each running container's label that no agent knows keeps its time
// in `previous` or gets inputs.now; every other label (known again, or its container gone) is dropped.
UnknownSince track_unknown(const IdleInputs& inputs, const UnknownSince& previous);

std::vector<Retirement> plan_retirements(const IdleSettings& settings, const IdleInputs& inputs);

}  // namespace director::spawner::core
