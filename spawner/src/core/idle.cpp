#include "core/idle.hpp"

#include <algorithm>

namespace director::spawner::core {

std::string_view to_string(IdleAction action) noexcept {
  return action == IdleAction::remove ? "remove" : "stop";
}

UnknownSince track_unknown(const IdleInputs& inputs, const UnknownSince& previous) {
  UnknownSince unknown;
  for (const auto& container : inputs.running) {
    if (container.label.empty() || inputs.last_request.contains(container.label)) continue;
    const auto before = previous.find(container.label);
    unknown.emplace(container.label, before == previous.end() ? inputs.now : before->second);
  }
  return unknown;
}

std::vector<Retirement> plan_retirements(const IdleSettings& settings, const IdleInputs& inputs) {
  std::vector<Retirement> plan;
  if (settings.timeout.count() <= 0 || !inputs.complete) return plan;
  for (const auto& container : inputs.running) {
    if (!container.managed || container.state != ContainerState::running || container.label.empty()) continue;
    const auto connections = inputs.open_connections.find(container.label);
    if (connections != inputs.open_connections.end() && connections->second > 0) continue;
    const auto seen = inputs.last_request.find(container.label);
    TimePoint last_activity{};
    if (seen != inputs.last_request.end()) {
      last_activity = seen->second;
    } else {
      // A user no agent knows: idle since the spawner started watching, or since no agent knew
      // them, whichever is later.
      const auto unknown = inputs.unknown_since.find(container.label);
      last_activity = unknown == inputs.unknown_since.end() ? inputs.watching_since
                                                            : std::max(inputs.watching_since, unknown->second);
    }
    const auto idle_for = std::chrono::duration_cast<std::chrono::milliseconds>(inputs.now - last_activity);
    if (idle_for < settings.timeout) continue;
    plan.push_back(Retirement{container.id, container.label, settings.action, idle_for});
  }
  return plan;
}

}  // namespace director::spawner::core
