#include "route/route_handler.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>

namespace director::route {

std::optional<RouteRequest> find_route_request(const spop::Notify& notify) {
  for (const auto& message : notify.messages) {
    if (message.name != "route") continue;
    RouteRequest request;
    bool seen_user = false;
    bool seen_retry = false;
    for (const auto& argument : message.arguments) {
      if (argument.name == "user" && !seen_user) {
        seen_user = true;
        if (const auto* text = std::get_if<std::string>(&argument.value)) request.username = *text;
      } else if (argument.name == "retry" && !seen_retry) {
        seen_retry = true;
        const auto* flag = std::get_if<bool>(&argument.value);
        request.retry = flag != nullptr && *flag;
      }
    }
    return request;
  }
  return std::nullopt;
}

std::string shown_username(std::string_view username) {
  static constexpr char kHex[] = "0123456789abcdef";
  static constexpr std::string_view kEscaped = "&<>\"'\\";
  const std::string_view shown_part = username.substr(0, kShownUsernameBytes);
  std::string shown;
  shown.reserve(shown_part.size() + 3);
  for (const char c : shown_part) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f && kEscaped.find(c) == std::string_view::npos) {
      shown.push_back(c);
    } else {
      shown += "\\x";
      shown.push_back(kHex[byte >> 4]);
      shown.push_back(kHex[byte & 0xf]);
    }
  }
  if (username.size() > shown_part.size()) shown += "...";
  return shown;
}

std::vector<spop::Action> to_actions(const decision::Answer& answer, std::optional<std::string_view> username) {
  using spop::Scope;
  using spop::SetVar;
  std::vector<spop::Action> actions;
  actions.reserve(8);
  actions.emplace_back(SetVar{Scope::transaction, "alive", answer.alive});
  actions.emplace_back(SetVar{Scope::transaction, "reason", std::string(to_string(answer.reason))});
  if (!answer.label.empty()) {
    actions.emplace_back(SetVar{Scope::transaction, "label", answer.label});
    actions.emplace_back(SetVar{Scope::transaction, "host", answer.host});
  }
  if (answer.reason == decision::Reason::invalid_username && username) {
    actions.emplace_back(SetVar{Scope::transaction, "refused_username", shown_username(*username)});
  }
  if (answer.alive && answer.address) {
    if (answer.address->is_v4()) {
      actions.emplace_back(SetVar{Scope::transaction, "addr", spop::Ipv4{answer.address->to_v4().to_bytes()}});
    } else {
      actions.emplace_back(SetVar{Scope::transaction, "addr", spop::Ipv6{answer.address->to_v6().to_bytes()}});
    }
    actions.emplace_back(SetVar{Scope::transaction, "port", static_cast<std::int32_t>(answer.port)});
    const auto age_ms = std::chrono::duration_cast<std::chrono::milliseconds>(answer.age).count();
    actions.emplace_back(SetVar{Scope::transaction, "age",
                                static_cast<std::int32_t>(std::clamp<std::int64_t>(age_ms, 0, INT32_MAX))});
    const auto hold_ms = std::chrono::duration_cast<std::chrono::milliseconds>(answer.hold).count();
    if (hold_ms > 0) {
      actions.emplace_back(SetVar{Scope::transaction, "hold", static_cast<std::int32_t>(std::min<std::int64_t>(hold_ms, INT32_MAX))});
    }
  }
  return actions;
}

}  // namespace director::route
