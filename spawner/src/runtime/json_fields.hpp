// Reading what an API answered (nlohmann::json) without throwing: a member of the wrong type or
// missing reads as empty. Shared by the runtimes' wire formats (docker_api, kube_api).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace director::spawner::runtime::json_fields {

using Json = nlohmann::json;

// The parsed text, or a discarded value when it is not JSON (never throws).
inline Json parse(std::string_view text) { return Json::parse(text.begin(), text.end(), nullptr, false); }

// The string member `key` of `object`, or empty.
inline std::string string_at(const Json& object, std::string_view key) {
  if (!object.is_object()) return {};
  const auto found = object.find(key);
  return found != object.end() && found->is_string() ? found->get<std::string>() : std::string{};
}

// The object member `key` of `object`, or an empty object.
inline const Json& object_at(const Json& object, std::string_view key) {
  static const Json none = Json::object();
  if (!object.is_object()) return none;
  const auto found = object.find(key);
  return found != object.end() && found->is_object() ? *found : none;
}

}  // namespace director::spawner::runtime::json_fields
