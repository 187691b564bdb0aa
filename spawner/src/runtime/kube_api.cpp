#include "runtime/kube_api.hpp"

#include "runtime/json_fields.hpp"

#include <algorithm>
#include <array>

namespace director::spawner::runtime::kube {
namespace {

using json_fields::Json;
using json_fields::object_at;
using json_fields::parse;
using json_fields::string_at;

// A non-UTF-8 username never throws: it is replaced.
std::string dump(const Json& json) { return json.dump(-1, ' ', false, Json::error_handler_t::replace); }

const Json& array_at(const Json& object, std::string_view key) {
  static const Json none = Json::array();
  if (!object.is_object()) return none;
  const auto found = object.find(key);
  return found != object.end() && found->is_array() ? *found : none;
}

std::optional<int> int_at(const Json& object, std::string_view key) {
  if (!object.is_object()) return std::nullopt;
  const auto found = object.find(key);
  if (found == object.end() || !found->is_number_integer()) return std::nullopt;
  const auto value = found->get<std::int64_t>();
  if (value < INT32_MIN || value > INT32_MAX) return std::nullopt;
  return static_cast<int>(value);
}

std::string label_of(const core::ContainerSpec& spec, std::string_view key) {
  const auto found = spec.labels.find(std::string(key));
  return found == spec.labels.end() ? std::string{} : found->second;
}

// metadata.labels and .annotations every object of the user carries.
Json metadata(const std::string& name, const core::ContainerSpec& spec) {
  return {{"name", name},
          {"labels", {{std::string(core::managed_label), "true"}, {std::string(core::label_label), label_of(spec, core::label_label)}}},
          {"annotations", {{std::string(core::user_label), label_of(spec, core::user_label)}}}};
}

std::string_view restart_policy(core::RestartPolicy policy) {
  switch (policy) {
    case core::RestartPolicy::no: return "Never";
    case core::RestartPolicy::on_failure: return "OnFailure";
    case core::RestartPolicy::unless_stopped:
    case core::RestartPolicy::always: return "Always";
  }
  return "Never";
}

// Probes count whole seconds, at least one.
std::int64_t probe_seconds(std::chrono::milliseconds duration) {
  return std::max<std::int64_t>(1, (duration.count() + 999) / 1000);
}

// The kubelet expands $(NAME) in a container's command, args and env values, and turns $$ into
// $; Docker passes them as written. Every $ doubled, the container sees exactly the text given
// (a username or template text with "$(" pulls in no other variable).
std::string literal_for_kubelet(std::string_view text) {
  std::string escaped;
  escaped.reserve(text.size());
  for (const char c : text) {
    if (c == '$') escaped += '$';
    escaped += c;
  }
  return escaped;
}

Json pod_json(const core::ContainerSpec& spec, const ObjectSettings& settings) {
  Json environment = Json::array();
  for (const auto& entry : spec.environment) {
    const auto equals = entry.find('=');
    environment.push_back(
        {{"name", entry.substr(0, equals)},
         {"value", equals == std::string::npos ? std::string{} : literal_for_kubelet(std::string_view(entry).substr(equals + 1))}});
  }
  Json container = {{"name", std::string(container_name)},
                    {"image", spec.image},
                    {"imagePullPolicy", settings.pull_missing_images ? "IfNotPresent" : "Never"},
                    {"ports", Json::array({{{"name", "http"}, {"containerPort", settings.container_port}, {"protocol", "TCP"}}})}};
  if (!spec.command.empty()) {
    Json args = Json::array();
    for (const auto& arg : spec.command) args.push_back(literal_for_kubelet(arg));
    container["args"] = std::move(args);
  }
  if (!environment.empty()) container["env"] = std::move(environment);
  Json limits = Json::object();
  Json requests = Json::object();
  if (spec.memory_bytes > 0) limits["memory"] = memory_quantity(spec.memory_bytes);
  if (spec.nano_cpus > 0) limits["cpu"] = cpu_quantity(spec.nano_cpus);
  if (spec.memory_request_bytes > 0) requests["memory"] = memory_quantity(spec.memory_request_bytes);
  if (spec.nano_cpus_request > 0) requests["cpu"] = cpu_quantity(spec.nano_cpus_request);
  Json resources = Json::object();
  if (!limits.empty()) resources["limits"] = std::move(limits);
  if (!requests.empty()) resources["requests"] = std::move(requests);  // none: Kubernetes takes the limits
  if (!resources.empty()) container["resources"] = std::move(resources);
  if (const auto& check = spec.health_check; !check.command.empty()) {
    // Docker's CMD-SHELL for one string, its words as they are otherwise. The start period
    // has no counterpart: a failing readiness probe kills nothing, it only keeps the Pod
    // not Ready, so there is nothing to protect during a start.
    const Json command = check.command.size() == 1 ? Json{"/bin/sh", "-c", check.command.front()} : Json(check.command);
    container["readinessProbe"] = {{"exec", {{"command", command}}},
                                   {"periodSeconds", probe_seconds(check.interval)},
                                   {"timeoutSeconds", probe_seconds(check.timeout)},
                                   {"failureThreshold", std::max(1, check.retries)},
                                   {"successThreshold", 1}};
  }
  Json spec_json = {{"restartPolicy", std::string(restart_policy(spec.restart))},
                    {"automountServiceAccountToken", false},
                    {"enableServiceLinks", false}};
  Json pod_security = Json::object();
  if (settings.fs_group != 0) pod_security["fsGroup"] = settings.fs_group;
  if (settings.restricted) {
    pod_security["runAsNonRoot"] = true;
    pod_security["seccompProfile"] = {{"type", "RuntimeDefault"}};
    container["securityContext"] = {{"allowPrivilegeEscalation", false}, {"capabilities", {{"drop", {"ALL"}}}}};
  }
  if (!pod_security.empty()) spec_json["securityContext"] = std::move(pod_security);
  if (!spec.volume_name.empty() && !spec.volume_mount.empty()) {
    container["volumeMounts"] = Json::array({{{"name", "home"}, {"mountPath", spec.volume_mount}}});
    spec_json["volumes"] = Json::array({{{"name", "home"}, {"persistentVolumeClaim", {{"claimName", spec.volume_name}}}}});
  }
  spec_json["containers"] = Json::array({std::move(container)});
  return {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", metadata(spec.name, spec)}, {"spec", std::move(spec_json)}};
}

// The identity every object carries.
template <typename State>
void read_identity(const Json& object, State& state) {
  const Json& meta = object_at(object, "metadata");
  state.name = string_at(meta, "name");
  const Json& labels = object_at(meta, "labels");
  state.managed = string_at(labels, core::managed_label) == "true";
  state.label = string_at(labels, core::label_label);
  state.username = string_at(object_at(meta, "annotations"), core::user_label);
  state.resource_version = string_at(meta, "resourceVersion");
}

struct Identity {
  std::string name;
  bool managed = false;
  std::string label;
  std::string username;
  std::string resource_version;
};

// The waiting reasons of a container that cannot start (the kubelet keeps trying, but not
// without a change: a page must say why).
bool cannot_start(std::string_view reason) {
  constexpr std::array reasons{std::string_view("ErrImagePull"), std::string_view("ImagePullBackOff"),
                               std::string_view("InvalidImageName"), std::string_view("CreateContainerConfigError"),
                               std::string_view("CreateContainerError"), std::string_view("ErrImageNeverPull")};
  return std::find(reasons.begin(), reasons.end(), reason) != reasons.end();
}

std::optional<PodState> pod_from(const Json& object) {
  if (!object.is_object()) return std::nullopt;
  Identity identity;
  read_identity(object, identity);
  if (identity.name.empty()) return std::nullopt;
  PodState pod;
  pod.resource_version = identity.resource_version;
  auto& status = pod.status;
  status.id = identity.name;
  status.name = identity.name;
  status.managed = identity.managed;
  status.label = identity.label;
  status.username = identity.username;

  const Json& pod_status = object_at(object, "status");
  const Json* container_status = nullptr;
  for (const auto& row : array_at(pod_status, "containerStatuses")) {
    if (!row.is_object()) continue;
    if (container_status == nullptr || string_at(row, "name") == container_name) container_status = &row;
  }
  static const Json none = Json::object();
  const Json& container = container_status != nullptr ? *container_status : none;
  const Json& state = object_at(container, "state");
  const Json& waiting = object_at(state, "waiting");
  const Json& terminated = object_at(state, "terminated");
  pod.terminated_exit_code = int_at(terminated, "exitCode");
  pod.restart_count = int_at(container, "restartCount").value_or(0);
  pod.last_exit_code = int_at(object_at(object_at(container, "lastState"), "terminated"), "exitCode");

  const std::string phase = string_at(pod_status, "phase");
  const std::string waiting_reason = string_at(waiting, "reason");
  if (cannot_start(waiting_reason)) {
    status.state = core::ContainerState::exited;
    const std::string message = string_at(waiting, "message");
    status.error = core::runtime_message(message.empty() ? waiting_reason : waiting_reason + ": " + message);
  } else if (phase == "Pending") {
    status.state = core::ContainerState::created;
  } else if (phase == "Running") {
    status.state = waiting_reason == "CrashLoopBackOff" ? core::ContainerState::restarting : core::ContainerState::running;
    if (status.state == core::ContainerState::restarting && pod.last_exit_code) status.exit_code = *pod.last_exit_code;
  } else if (phase == "Succeeded" || phase == "Failed") {
    status.state = core::ContainerState::exited;
    if (pod.terminated_exit_code) {
      status.exit_code = *pod.terminated_exit_code;
    } else if (phase == "Failed") {
      // Failed without a container that ended (NodeLost, Evicted): the Pod's own reason.
      const std::string reason = string_at(pod_status, "reason");
      const std::string message = string_at(pod_status, "message");
      status.error = core::runtime_message(message.empty() ? reason : (reason.empty() ? message : reason + ": " + message));
    }
  }
  status.oom_killed = string_at(terminated, "reason") == "OOMKilled";

  bool has_probe = false;
  for (const auto& row : array_at(object_at(object, "spec"), "containers")) {
    if (row.is_object() && row.contains("readinessProbe")) has_probe = true;
  }
  if (has_probe) {
    bool ready = false;
    for (const auto& condition : array_at(pod_status, "conditions")) {
      if (string_at(condition, "type") == "Ready") ready = string_at(condition, "status") == "True";
    }
    status.health = ready ? core::Health::healthy : core::Health::starting;
  }
  pod.state_before_deletion = status.state;
  pod.being_deleted = object_at(object, "metadata").contains("deletionTimestamp");
  pod.deletion_timestamp = string_at(object_at(object, "metadata"), "deletionTimestamp");
  pod.deletion_time = parse_time(pod.deletion_timestamp);
  if (pod.being_deleted) status.state = core::ContainerState::exited;
  return pod;
}

std::optional<ServiceState> service_from(const Json& object) {
  if (!object.is_object()) return std::nullopt;
  ServiceState service;
  read_identity(object, service);
  if (service.name.empty()) return std::nullopt;
  return service;
}

template <typename Item, typename From>
std::optional<Listed<Item>> parse_list(std::string_view json, From from) {
  const Json list = parse(json);
  if (!list.is_object()) return std::nullopt;
  const auto items = list.find("items");
  if (items == list.end() || !(items->is_array() || items->is_null())) return std::nullopt;
  Listed<Item> listed;
  listed.resource_version = string_at(object_at(list, "metadata"), "resourceVersion");
  listed.continue_token = string_at(object_at(list, "metadata"), "continue");
  if (items->is_array()) {
    for (const auto& row : *items) {
      if (auto item = from(row)) listed.items.push_back(std::move(*item));
    }
  }
  return listed;
}

std::optional<ApiStatus> status_from(const Json& object) {
  if (string_at(object, "kind") != "Status") return std::nullopt;
  ApiStatus status;
  status.code = static_cast<unsigned>(std::max(0, int_at(object, "code").value_or(0)));
  status.reason = string_at(object, "reason");
  status.message = string_at(object, "message");
  return status;
}

bool ended(core::ContainerState state) {
  return state == core::ContainerState::exited || state == core::ContainerState::dead;
}

}  // namespace

std::string memory_quantity(std::uint64_t bytes) { return std::to_string(bytes); }

std::string cpu_quantity(std::uint64_t nano_cpus) {
  return std::to_string((nano_cpus + 999'999) / 1'000'000) + "m";
}

std::string persistent_volume_claim_body(const core::ContainerSpec& spec, const ObjectSettings& settings) {
  Json claim_spec = {{"accessModes", {"ReadWriteOnce"}}, {"resources", {{"requests", {{"storage", settings.volume_size}}}}}};
  if (!settings.storage_class.empty()) claim_spec["storageClassName"] = settings.storage_class;
  return dump({{"apiVersion", "v1"},
               {"kind", "PersistentVolumeClaim"},
               {"metadata", metadata(spec.volume_name, spec)},
               {"spec", std::move(claim_spec)}});
}

std::string pod_body(const core::ContainerSpec& spec, const ObjectSettings& settings) {
  return dump(pod_json(spec, settings));
}

std::string service_body(const core::ContainerSpec& spec, const ObjectSettings& settings) {
  const std::string label = label_of(spec, core::label_label);
  return dump({{"apiVersion", "v1"},
               {"kind", "Service"},
               {"metadata", metadata(spec.name, spec)},
               {"spec",
                {{"type", "ClusterIP"},
                 {"selector", {{std::string(core::managed_label), "true"}, {std::string(core::label_label), label}}},
                 {"ports", Json::array({{{"name", "http"},
                                         {"port", settings.container_port},
                                         {"targetPort", settings.container_port},
                                         {"protocol", "TCP"}}})}}}});
}

std::string managed_selector() { return std::string(core::managed_label) + "=true"; }

std::optional<ServiceState> parse_service(std::string_view json) { return service_from(parse(json)); }
std::optional<PodState> parse_pod(std::string_view json) { return pod_from(parse(json)); }

std::optional<Listed<ServiceState>> parse_service_list(std::string_view json) {
  return parse_list<ServiceState>(json, service_from);
}
std::optional<Listed<PodState>> parse_pod_list(std::string_view json) { return parse_list<PodState>(json, pod_from); }

core::ContainerStatus join(const std::optional<ServiceState>& service, const std::optional<PodState>& pod) {
  core::ContainerStatus status;
  if (pod) {
    status = pod->status;
  } else if (service) {
    status.id = service->name;
    status.name = service->name;
    status.state = core::ContainerState::exited;  // a stopped user: the Service without its Pod
  }
  if (service) {
    status.managed = status.managed || service->managed;
    if (status.label.empty()) status.label = service->label;
    if (status.username.empty()) status.username = service->username;
  }
  return status;
}

std::vector<core::ContainerStatus> join(const std::vector<ServiceState>& services, const std::vector<PodState>& pods) {
  std::map<std::string_view, const PodState*, std::less<>> pods_by_name;
  for (const auto& pod : pods) pods_by_name.emplace(pod.status.name, &pod);
  std::vector<core::ContainerStatus> statuses;
  for (const auto& service : services) {
    const auto found = pods_by_name.find(service.name);
    std::optional<PodState> pod;
    if (found != pods_by_name.end()) {
      pod = *found->second;
      pods_by_name.erase(found);
    }
    statuses.push_back(join(service, pod));
  }
  for (const auto& [name, pod] : pods_by_name) statuses.push_back(join(std::nullopt, *pod));
  return statuses;
}

std::optional<ApiStatus> parse_status(std::string_view json) { return status_from(parse(json)); }

core::CallError classify(unsigned http_status) {
  if (http_status >= 500 || http_status < 400 || http_status == 429) return core::CallError::unavailable;
  if (http_status == 404) return core::CallError::not_found;
  if (http_status == 409) return core::CallError::conflict;
  return core::CallError::refused;
}

std::string failure_message(unsigned http_status, std::string_view api_message) {
  std::string message(api_message);
  if (http_status == 401) {
    message += " (the API server did not accept the service account's token: is it the current one?)";
  } else if (http_status == 403 && message.find(" cannot ") != std::string::npos) {
    // RBAC's denial ("User ... cannot create resource ..."), not another Forbidden (a quota).
    message += " (RBAC: the spawner's service account needs a Role granting pods, pods/log, services and "
               "persistentvolumeclaims in its namespace, and a RoleBinding to it)";
  }
  return message;
}

namespace {

// The digits text[at, at + length) as a number; nullopt if any is not a digit.
std::optional<int> digits_at(std::string_view text, std::size_t at, std::size_t length) {
  int value = 0;
  for (std::size_t i = at; i < at + length; ++i) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    value = value * 10 + (text[i] - '0');
  }
  return value;
}

// A UTC date and time of day as a time point; nullopt when any part is missing or out of range.
std::optional<std::chrono::system_clock::time_point> utc_time(std::optional<int> year, std::optional<int> month,
                                                              std::optional<int> day, std::optional<int> hour,
                                                              std::optional<int> minute, std::optional<int> second) {
  if (!year || !month || !day || !hour || !minute || !second || *hour > 23 || *minute > 59 || *second > 60) {
    return std::nullopt;
  }
  const std::chrono::year_month_day date{std::chrono::year(*year), std::chrono::month(static_cast<unsigned>(*month)),
                                         std::chrono::day(static_cast<unsigned>(*day))};
  if (!date.ok()) return std::nullopt;
  return std::chrono::sys_days(date) + std::chrono::hours(*hour) + std::chrono::minutes(*minute) +
         std::chrono::seconds(*second);
}

}  // namespace

std::optional<std::chrono::system_clock::time_point> parse_time(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.fraction]Z
  if (text.size() < 20 || text.back() != 'Z' || text[4] != '-' || text[7] != '-' || text[10] != 'T' ||
      text[13] != ':' || text[16] != ':') {
    return std::nullopt;
  }
  const std::string_view fraction = text.substr(19, text.size() - 20);
  if (!fraction.empty() && (fraction.front() != '.' || fraction.size() == 1 ||
                            !std::all_of(fraction.begin() + 1, fraction.end(), [](char c) { return c >= '0' && c <= '9'; }))) {
    return std::nullopt;
  }
  return utc_time(digits_at(text, 0, 4), digits_at(text, 5, 2), digits_at(text, 8, 2), digits_at(text, 11, 2),
                  digits_at(text, 14, 2), digits_at(text, 17, 2));
}

std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view text) {
  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
  if (text.size() != 29 || text.substr(3, 2) != ", " || text[7] != ' ' || text[11] != ' ' || text[16] != ' ' ||
      text[19] != ':' || text[22] != ':' || text.substr(25) != " GMT") {
    return std::nullopt;
  }
  constexpr std::string_view months = "JanFebMarAprMayJunJulAugSepOctNovDec";
  const auto month_at = months.find(text.substr(8, 3));
  if (month_at == std::string_view::npos || month_at % 3 != 0) return std::nullopt;
  return utc_time(digits_at(text, 12, 4), static_cast<int>(month_at / 3) + 1, digits_at(text, 5, 2),
                  digits_at(text, 17, 2), digits_at(text, 20, 2), digits_at(text, 23, 2));
}

std::optional<std::string> parse_version(std::string_view json) {
  const std::string version = string_at(parse(json), "gitVersion");
  if (version.empty()) return std::nullopt;
  return "Kubernetes " + version;
}

std::optional<WatchEvent> parse_watch_event(std::string_view line) {
  const Json json = parse(line);
  if (!json.is_object()) return std::nullopt;
  const std::string type = string_at(json, "type");
  WatchEvent event;
  if (type == "ADDED") {
    event.type = WatchType::added;
  } else if (type == "MODIFIED") {
    event.type = WatchType::modified;
  } else if (type == "DELETED") {
    event.type = WatchType::deleted;
  } else if (type == "BOOKMARK") {
    event.type = WatchType::bookmark;
  } else if (type == "ERROR") {
    event.type = WatchType::error;
  } else {
    return std::nullopt;
  }
  const Json& object = object_at(json, "object");
  if (event.type == WatchType::error) {
    event.status = status_from(object);
    if (!event.status) event.status = ApiStatus{0, "", "the watch sent an ERROR without a Status"};
    return event;
  }
  event.resource_version = string_at(object_at(object, "metadata"), "resourceVersion");
  if (event.type == WatchType::bookmark) return event;
  const std::string kind = string_at(object, "kind");
  if (kind == "Pod") {
    event.pod = pod_from(object);
  } else if (kind == "Service") {
    event.service = service_from(object);
  }
  if (!event.pod && !event.service) return std::nullopt;
  return event;
}

void EventTracker::seed(const std::vector<ServiceState>& services, const std::vector<PodState>& pods) {
  services_.clear();
  pods_.clear();
  for (const auto& service : services) services_.insert_or_assign(service.name, service);
  for (const auto& pod : pods) pods_.insert_or_assign(pod.status.name, pod);
}

std::vector<core::ContainerEvent> EventTracker::on_event(const WatchEvent& event) {
  if (event.pod && event.pod->status.managed) return on_pod(event.type, *event.pod);
  if (event.service && event.service->managed) return on_service(event.type, *event.service);
  return {};
}

std::vector<core::ContainerEvent> EventTracker::on_pod(WatchType type, const PodState& pod) {
  const auto known = pods_.find(pod.status.name);
  auto events = transition(known == pods_.end() ? nullptr : &known->second, type, pod);
  if (type == WatchType::deleted) {
    if (known != pods_.end()) pods_.erase(known);
  } else {
    pods_.insert_or_assign(pod.status.name, pod);
  }
  if (!services_.contains(pod.status.name)) events.clear();  // told when its Service comes, if it does
  return events;
}

std::vector<core::ContainerEvent> EventTracker::on_service(WatchType type, const ServiceState& service) {
  std::vector<core::ContainerEvent> events;
  const auto known = services_.find(service.name);
  const auto pod = pods_.find(service.name);
  core::ContainerEvent event;
  event.id = service.name;
  event.label = service.label;
  event.username = service.username;
  if (type == WatchType::deleted) {
    if (known == services_.end()) return events;
    services_.erase(known);
    if (pod != pods_.end()) {  // its DELETED has not come yet (it will say nothing)
      core::ContainerEvent stopped = event;
      stopped.kind = core::EventKind::stopped;
      events.push_back(std::move(stopped));
    }
    event.kind = core::EventKind::destroyed;
    events.push_back(std::move(event));
    return events;
  }
  if (known != services_.end()) {
    known->second = service;
    return events;
  }
  services_.emplace(service.name, service);
  event.kind = core::EventKind::created;
  events.push_back(std::move(event));
  if (pod != pods_.end()) {  // seen before its Service: told now, as a new Pod
    auto told = transition(nullptr, WatchType::added, pod->second);
    events.insert(events.end(), told.begin(), told.end());
  }
  return events;
}

std::vector<core::ContainerEvent> EventTracker::transition(const PodState* before_or_null, WatchType type,
                                                           const PodState& pod) {
  std::vector<core::ContainerEvent> events;
  const auto emit = [&](core::EventKind kind) -> core::ContainerEvent& {
    core::ContainerEvent& event = events.emplace_back();
    event.kind = kind;
    event.id = pod.status.name;
    event.label = pod.status.label;
    event.username = pod.status.username;
    if (kind == core::EventKind::died) event.error = pod.status.error;  // e.g. why it cannot start
    return event;
  };
  if (type == WatchType::deleted) {
    if (before_or_null == nullptr) return events;  // never told
    if (!ended(before_or_null->state_before_deletion) && ended(pod.state_before_deletion)) {
      emit(core::EventKind::died).exit_code = pod.terminated_exit_code;
    }
    emit(core::EventKind::stopped);
    return events;
  }
  PodState before;  // a new Pod is told from "created"
  before.state_before_deletion = core::ContainerState::created;
  if (before_or_null != nullptr) {
    before = *before_or_null;
  } else {
    emit(core::EventKind::created);
  }
  const auto was = before.state_before_deletion;
  const auto is = pod.state_before_deletion;
  const auto running = core::ContainerState::running;
  const bool restarted = pod.restart_count > before.restart_count;
  if (was == running && (is != running || restarted)) {
    emit(core::EventKind::died).exit_code = ended(is) ? pod.terminated_exit_code : pod.last_exit_code;
  } else if (!ended(was) && ended(is)) {
    emit(core::EventKind::died).exit_code = pod.terminated_exit_code;  // ended before it ran, or unseen
  }
  if (is == running && (was != running || restarted)) emit(core::EventKind::started);
  if (is == running && pod.status.health != before.status.health) {
    emit(core::EventKind::health).health = pod.status.health;
  }
  return events;
}

}  // namespace director::spawner::runtime::kube
