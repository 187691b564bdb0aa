#include "core/container.hpp"

namespace director::spawner::core {

std::string runtime_message(std::string_view text) {
  constexpr std::string_view cut_mark = "...";
  const bool cut = text.size() > max_runtime_message;
  if (cut) {
    std::size_t end = max_runtime_message - cut_mark.size();
    // Back to the start of a character: a UTF-8 continuation byte is 10xxxxxx.
    while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0U) == 0x80U) --end;
    text = text.substr(0, end);
  }
  std::string kept(text);
  for (char& c : kept) {
    const auto byte = static_cast<unsigned char>(c);
    if ((byte < 0x20U && c != '\n' && c != '\t') || byte == 0x7FU) c = ' ';
  }
  if (cut) kept += cut_mark;
  return kept;
}

std::string_view to_string(ContainerState state) noexcept {
  switch (state) {
    case ContainerState::created: return "created";
    case ContainerState::running: return "running";
    case ContainerState::paused: return "paused";
    case ContainerState::restarting: return "restarting";
    case ContainerState::removing: return "removing";
    case ContainerState::exited: return "exited";
    case ContainerState::dead: return "dead";
    case ContainerState::unknown: break;
  }
  return "unknown";
}

std::string_view to_string(Health health) noexcept {
  switch (health) {
    case Health::none: break;
    case Health::starting: return "starting";
    case Health::healthy: return "healthy";
    case Health::unhealthy: return "unhealthy";
  }
  return "none";
}

ContainerState parse_container_state(std::string_view text) noexcept {
  if (text == "created") return ContainerState::created;
  if (text == "running") return ContainerState::running;
  if (text == "paused") return ContainerState::paused;
  if (text == "restarting") return ContainerState::restarting;
  if (text == "removing") return ContainerState::removing;
  if (text == "exited") return ContainerState::exited;
  if (text == "dead") return ContainerState::dead;
  // Podman's own names, which its Docker-compatible API lets through in places.
  if (text == "configured" || text == "initialized") return ContainerState::created;
  if (text == "stopped") return ContainerState::exited;
  return ContainerState::unknown;
}

Health parse_health(std::string_view text) noexcept {
  if (text == "starting") return Health::starting;
  if (text == "healthy") return Health::healthy;
  if (text == "unhealthy") return Health::unhealthy;
  return Health::none;
}

std::string_view to_string(EventKind kind) noexcept {
  switch (kind) {
    case EventKind::created: break;
    case EventKind::started: return "started";
    case EventKind::stopped: return "stopped";
    case EventKind::died: return "died";
    case EventKind::health: return "health";
    case EventKind::destroyed: return "destroyed";
  }
  return "created";
}

}  // namespace director::spawner::core
