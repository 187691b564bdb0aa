#include "core/idle.hpp"

namespace director::spawner::core {

std::string_view to_string(IdleAction action) noexcept {
  return action == IdleAction::remove ? "remove" : "stop";
}

std::vector<Retirement> plan_retirements(const IdleSettings& settings, const IdleInputs& inputs) {
  std::vector<Retirement> plan;
  if (settings.timeout.count() <= 0 || !inputs.complete) return plan;
  for (const auto& container : inputs.running) {
    if (!container.managed || container.state != ContainerState::running || container.label.empty()) continue;
    const auto connections = inputs.open_connections.find(container.label);
    if (connections != inputs.open_connections.end() && connections->second > 0) continue;
    const auto seen = inputs.last_request.find(container.label);
    // A user no agent knows: idle since the spawner started watching, at most.
    const TimePoint last_activity = seen == inputs.last_request.end() ? inputs.watching_since : seen->second;
    const auto idle_for = std::chrono::duration_cast<std::chrono::milliseconds>(inputs.now - last_activity);
    if (idle_for < settings.timeout) continue;
    plan.push_back(Retirement{container.id, container.label, settings.action, idle_for});
  }
  return plan;
}

}  // namespace director::spawner::core
