#include "runtime/docker_api.hpp"

#include "runtime/json_fields.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>

namespace director::spawner::runtime::docker {
namespace {

using json_fields::Json;
using json_fields::object_at;
using json_fields::parse;
using json_fields::string_at;

std::optional<int> int_text(std::string_view text) {
  int value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<std::pair<int, int>> parse_version(std::string_view text) {
  const auto dot = text.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  const auto major = int_text(text.substr(0, dot));
  const auto minor = int_text(text.substr(dot + 1));
  if (!major || !minor || *major < 0 || *minor < 0) return std::nullopt;
  return std::pair{*major, *minor};
}

std::string strip_slash(std::string name) {
  if (!name.empty() && name.front() == '/') name.erase(0, 1);
  return name;
}

// The identity labels shared by inspect and list rows.
void read_labels(const Json& labels, core::ContainerStatus& status) {
  status.managed = string_at(labels, core::managed_label) == "true";
  status.label = string_at(labels, core::label_label);
  status.username = string_at(labels, core::user_label);
}

std::int64_t nanoseconds(std::chrono::milliseconds duration) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(duration).count();
}

bool contains_word(std::string_view text, std::string_view word) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return lower.find(word) != std::string::npos;
}

}  // namespace

std::optional<std::string> negotiate_api_version(std::string_view daemon_version) {
  const auto daemon = parse_version(daemon_version);
  const auto client = parse_version(client_api_version);
  const auto oldest = parse_version(oldest_api_version);
  if (!daemon || *daemon < *oldest) return std::nullopt;
  return std::string(*daemon < *client ? daemon_version : client_api_version);
}

std::string managed_containers_filter() {
  return Json{{"label", {std::string(core::managed_label) + "=true"}}}.dump();
}

std::string managed_events_filter() {
  return Json{{"type", {"container"}}, {"label", {std::string(core::managed_label) + "=true"}}}.dump();
}

std::string create_body(const core::ContainerSpec& spec) {
  Json body = {{"Image", spec.image}, {"Env", spec.environment}, {"Labels", spec.labels}};
  if (!spec.command.empty()) body["Cmd"] = spec.command;
  if (const auto& check = spec.health_check; !check.command.empty()) {
    Json test = check.command.size() == 1 ? Json{"CMD-SHELL", check.command.front()} : Json{"CMD"};
    if (check.command.size() > 1) {
      for (const auto& word : check.command) test.push_back(word);
    }
    body["Healthcheck"] = {{"Test", test},
                           {"Interval", nanoseconds(check.interval)},
                           {"Timeout", nanoseconds(check.timeout)},
                           {"StartPeriod", nanoseconds(check.start_period)},
                           {"Retries", check.retries}};
  }
  Json host = {{"RestartPolicy", {{"Name", std::string(core::to_string(spec.restart))}}}};
  if (spec.memory_bytes > 0) host["Memory"] = spec.memory_bytes;
  if (spec.nano_cpus > 0) host["NanoCpus"] = spec.nano_cpus;
  if (spec.pids_limit > 0) host["PidsLimit"] = spec.pids_limit;
  if (!spec.volume_name.empty()) {
    host["Mounts"] = Json::array({{{"Type", "volume"}, {"Source", spec.volume_name}, {"Target", spec.volume_mount}}});
  }
  if (!spec.network.empty()) {
    host["NetworkMode"] = spec.network;
    // Aliases exist only on user-defined networks (the spec has none for host, none, ...).
    if (!spec.network_aliases.empty()) {
      body["NetworkingConfig"] = {{"EndpointsConfig", {{spec.network, {{"Aliases", spec.network_aliases}}}}}};
    }
  }
  body["HostConfig"] = std::move(host);
  return body.dump(-1, ' ', false, Json::error_handler_t::replace);  // a non-UTF-8 username never throws
}

std::string volume_create_body(const core::ContainerSpec& spec) {
  return Json{{"Name", spec.volume_name}, {"Labels", spec.labels}}.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string parse_created_id(std::string_view json) { return string_at(parse(json), "Id"); }

std::optional<core::ContainerStatus> parse_inspect(std::string_view json) {
  const Json body = parse(json);
  if (!body.is_object() || string_at(body, "Id").empty()) return std::nullopt;
  core::ContainerStatus status;
  status.id = string_at(body, "Id");
  status.name = strip_slash(string_at(body, "Name"));
  read_labels(object_at(object_at(body, "Config"), "Labels"), status);
  const Json& state = object_at(body, "State");
  status.state = core::parse_container_state(string_at(state, "Status"));
  status.health = core::parse_health(string_at(object_at(state, "Health"), "Status"));
  if (const auto code = state.find("ExitCode"); code != state.end() && code->is_number_integer()) {
    status.exit_code = code->get<int>();
  }
  status.error = core::runtime_message(string_at(state, "Error"));
  if (const auto oom = state.find("OOMKilled"); oom != state.end() && oom->is_boolean()) {
    status.oom_killed = oom->get<bool>();
  }
  return status;
}

std::optional<std::vector<core::ContainerStatus>> parse_list(std::string_view json) {
  const Json rows = parse(json);
  if (!rows.is_array()) return std::nullopt;
  std::vector<core::ContainerStatus> statuses;
  for (const auto& row : rows) {
    if (!row.is_object() || string_at(row, "Id").empty()) continue;
    core::ContainerStatus status;
    status.id = string_at(row, "Id");
    if (const auto names = row.find("Names"); names != row.end() && names->is_array() && !names->empty() &&
                                              names->front().is_string()) {
      status.name = strip_slash(names->front().get<std::string>());
    }
    read_labels(object_at(row, "Labels"), status);
    status.state = core::parse_container_state(string_at(row, "State"));
    const std::string text = string_at(row, "Status");  // "Up 3 minutes (healthy)", "Exited (137) 2 seconds ago"
    if (text.find("(healthy)") != std::string::npos) {
      status.health = core::Health::healthy;
    } else if (text.find("(unhealthy)") != std::string::npos) {
      status.health = core::Health::unhealthy;
    } else if (text.find("(health: starting)") != std::string::npos || text.find("(starting)") != std::string::npos) {
      status.health = core::Health::starting;
    }
    if (text.starts_with("Exited (")) {
      const auto close = text.find(')');
      if (const auto code = int_text(std::string_view(text).substr(8, close == std::string::npos ? 0 : close - 8))) {
        status.exit_code = *code;
      }
    }
    statuses.push_back(std::move(status));
  }
  return statuses;
}

std::optional<bool> parse_image_has_health_check(std::string_view json) {
  const Json body = parse(json);
  if (!body.is_object()) return std::nullopt;
  const Json& check = object_at(object_at(body, "Config"), "Healthcheck");
  const auto test = check.find("Test");
  if (test == check.end() || !test->is_array() || test->empty()) return false;
  return !(test->front().is_string() && test->front().get<std::string>() == "NONE");
}

std::optional<core::ContainerEvent> parse_event(std::string_view line) {
  const Json event = parse(line);
  if (!event.is_object()) return std::nullopt;
  std::string type = string_at(event, "Type");
  if (type.empty()) type = string_at(event, "type");
  if (type != "container") return std::nullopt;
  const Json& actor = object_at(event, "Actor");
  const Json& attributes = object_at(actor, "Attributes");
  if (string_at(attributes, core::managed_label) != "true") return std::nullopt;

  core::ContainerEvent result;
  result.id = string_at(actor, "ID");
  if (result.id.empty()) result.id = string_at(event, "id");
  result.label = string_at(attributes, core::label_label);
  result.username = string_at(attributes, core::user_label);
  if (result.id.empty()) return std::nullopt;

  const std::string action = string_at(event, "Action");
  constexpr std::string_view health_prefix = "health_status";
  if (action == "create") {
    result.kind = core::EventKind::created;
  } else if (action == "start") {
    result.kind = core::EventKind::started;
  } else if (action == "stop") {
    result.kind = core::EventKind::stopped;
  } else if (action == "die") {
    result.kind = core::EventKind::died;
    result.exit_code = int_text(string_at(attributes, "exitCode"));
  } else if (action == "destroy" || action == "remove") {
    result.kind = core::EventKind::destroyed;
  } else if (action.starts_with(health_prefix)) {
    result.kind = core::EventKind::health;
    std::string_view status = std::string_view(action).substr(health_prefix.size());  // Docker: ": healthy"
    if (status.starts_with(":")) status.remove_prefix(1);
    while (status.starts_with(" ")) status.remove_prefix(1);
    const std::string podman_status = string_at(event, "HealthStatus");
    result.health = core::parse_health(status.empty() ? std::string_view(podman_status) : status);
  } else {
    return std::nullopt;
  }
  return result;
}

std::optional<std::string> pull_error(std::string_view progress) {
  while (!progress.empty()) {
    const auto end = progress.find('\n');
    const std::string_view line = progress.substr(0, end);
    progress = end == std::string_view::npos ? std::string_view{} : progress.substr(end + 1);
    const Json json = parse(line);
    if (!json.is_object()) continue;
    if (std::string error = string_at(json, "error"); !error.empty()) return error;
    if (std::string error = string_at(object_at(json, "errorDetail"), "message"); !error.empty()) return error;
  }
  return std::nullopt;
}

core::CallError classify(Call call, unsigned http_status, std::string_view message) {
  if (call == Call::create && http_status == 500 && contains_word(message, "already in use")) {
    return core::CallError::conflict;  // Podman's name conflict
  }
  if (http_status >= 500 || http_status < 400) return core::CallError::unavailable;
  if (http_status == 404) {
    return call == Call::create && contains_word(message, "image") ? core::CallError::image_missing
                                                                    : core::CallError::not_found;
  }
  if (http_status == 409) return core::CallError::conflict;
  return core::CallError::refused;
}

std::string demultiplex_logs(std::string_view body) {
  constexpr std::size_t header = 8;
  const auto framed = [](std::string_view at) {
    return at.size() >= header && static_cast<unsigned char>(at[0]) <= 2 && at[1] == 0 && at[2] == 0 && at[3] == 0;
  };
  if (!framed(body)) return std::string(body);  // a TTY's raw output
  std::string output;
  while (framed(body)) {
    std::size_t length = 0;
    for (std::size_t i = 4; i < header; ++i) length = (length << 8) | static_cast<unsigned char>(body[i]);
    body.remove_prefix(header);
    const auto take = std::min(length, body.size());
    output.append(body.substr(0, take));
    body.remove_prefix(take);
  }
  return output;
}

}  // namespace director::spawner::runtime::docker
