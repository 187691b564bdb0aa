#include "core/container.hpp"

namespace director::spawner::core {

namespace {

// A UTF-8 character a page would not show as itself: a C1 control (U+0080-U+009F), or one
// that reorders or marks the text around it (U+061C, U+200E, U+200F, U+202A-U+202E,
// U+2066-U+2069), which could make an image name read as another.
bool hides_or_reorders_text(std::string_view character) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(character[i]); };
  if (character.size() == 2) return (byte(0) == 0xC2U && byte(1) <= 0x9FU) || (byte(0) == 0xD8U && byte(1) == 0x9CU);
  if (character.size() != 3 || byte(0) != 0xE2U) return false;
  if (byte(1) == 0x80U) return byte(2) == 0x8EU || byte(2) == 0x8FU || (byte(2) >= 0xAAU && byte(2) <= 0xAEU);
  return byte(1) == 0x81U && byte(2) >= 0xA6U && byte(2) <= 0xA9U;
}

}  // namespace

std::string runtime_message(std::string_view text) {
  constexpr std::string_view cut_mark = "...";
  const bool cut = text.size() > max_runtime_message;
  if (cut) {
    std::size_t end = max_runtime_message - cut_mark.size();
    // Back to the start of a character: a UTF-8 continuation byte is 10xxxxxx, and a character
    // has at most three (more are not UTF-8: cut there, not at the text's start).
    for (int back = 0; back < 3 && end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0U) == 0x80U; ++back) --end;
    text = text.substr(0, end);
  }
  std::string kept;
  kept.reserve(text.size() + cut_mark.size());
  while (!text.empty()) {
    const auto lead = static_cast<unsigned char>(text.front());
    std::size_t length = lead >= 0xF8U ? 1 : lead >= 0xF0U ? 4 : lead >= 0xE0U ? 3 : lead >= 0xC0U ? 2 : 1;
    // A lead byte without all its continuation bytes (10xxxxxx) is not UTF-8: it stands alone,
    // so that the bytes after it are looked at as characters of their own.
    for (std::size_t i = 1; i < length; ++i) {
      if (i >= text.size() || (static_cast<unsigned char>(text[i]) & 0xC0U) != 0x80U) length = 1;
    }
    const auto character = text.substr(0, length);
    text.remove_prefix(character.size());
    if (character.size() == 1) {
      const bool control = (lead < 0x20U && lead != '\n' && lead != '\t') || lead == 0x7FU;
      kept += control ? ' ' : character.front();
    } else {
      kept += hides_or_reorders_text(character) ? std::string_view(" ") : character;
    }
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
