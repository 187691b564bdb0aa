// The Kubernetes API's wire format for director-spawner's Kubernetes runtime (core/v1 Pod,
// Service, PersistentVolumeClaim, Status, watch events), translated to and from the spawner's
// core types, and the derivation of the runtime's container events from watch events. Pure: no
// I/O; KubernetesRuntime (kubernetes_runtime.hpp) does the HTTP. Every parser takes what the
// API server sent, bounded by the caller, and never throws on bad input: it returns nullopt
// (or skips the row).
//
// The objects of one user (kubernetes_runtime.hpp says why these three):
// - PersistentVolumeClaim <volume_name>: ReadWriteOnce, requests.storage `volume_size`,
//   storageClassName `storage_class` when given.
// - Service <name>: ClusterIP, selector io.container-director.managed=true +
//   io.container-director.label=<label>, one TCP port `container_port` -> targetPort the same.
//   It is what stays of a stopped user (with the claim): start() renders the Pod again from the
//   template for the user it names, never from anything the Service carries.
// - Pod <name>: one container "main" (image, args = the template's command (Docker's Cmd
//   replaces the image's CMD, not its ENTRYPOINT, as `args` does), env, containerPort,
//   resources, readinessProbe from the health check, the PVC mounted at volume_mount,
//   imagePullPolicy), restartPolicy from the template's, automountServiceAccountToken false,
//   enableServiceLinks false, the securityContext of ObjectSettings (fs_group, restricted).
// All three carry the labels io.container-director.managed=true and
// io.container-director.label=<label>, and the raw username in the ANNOTATION
// io.container-director.user (a label value is at most 63 characters of [A-Za-z0-9._-]).
// The spec's network, network_aliases and pids_limit mean nothing here (the configuration
// refuses SPAWNER_NETWORK and SPAWNER_PIDS_LIMIT with Kubernetes); the health check's
// start_period has no counterpart (pod_body says why).
#pragma once

#include "core/container.hpp"
#include "core/container_template.hpp"
#include "core/lifecycle.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace director::spawner::runtime::kube {

// The name of the Pod's one container.
inline constexpr std::string_view container_name = "main";

// What the objects are made of beside the spec (from KubernetesRuntimeSettings).
struct ObjectSettings {
  std::uint16_t container_port = 0;
  std::string volume_size;    // a quantity, e.g. "10Gi"
  std::string storage_class;  // empty: none named (the cluster's default class)
  bool pull_missing_images = true;
  std::uint32_t fs_group = 0;  // spec.securityContext.fsGroup: the volume's group; 0: none
  // The Pod Security Standard restricted: spec.securityContext runAsNonRoot true and
  // seccompProfile RuntimeDefault, the container's allowPrivilegeEscalation false and
  // capabilities drop ALL. false: no securityContext but fsGroup (baseline admits that).
  bool restricted = false;
};

// Request bodies (JSON) for POST /api/v1/namespaces/{ns}/{persistentvolumeclaims|services|pods}.
std::string persistent_volume_claim_body(const core::ContainerSpec& spec, const ObjectSettings& settings);
std::string pod_body(const core::ContainerSpec& spec, const ObjectSettings& settings);
std::string service_body(const core::ContainerSpec& spec, const ObjectSettings& settings);

// Quantities: memory as bytes ("2147483648"), CPU as millicores ("1500m") from nano CPUs
// (rounded up: a limit never shrinks to nothing).
std::string memory_quantity(std::uint64_t bytes);
std::string cpu_quantity(std::uint64_t nano_cpus);

// The labelSelector of every managed object: io.container-director.managed=true (to be
// URL-encoded: url_encode, api_call.hpp).
std::string managed_selector();

// A Service as the runtime reads it.
struct ServiceState {
  std::string name;
  bool managed = false;
  std::string label;          // the label io.container-director.label
  std::string username;       // the annotation io.container-director.user
  std::string resource_version;
};

// A Pod as the runtime reads it: its status in the core's terms, and what the event derivation
// needs beside it.
struct PodState {
  // id and name: metadata.name. state: phase Pending -> created, Running -> running,
  // Succeeded/Failed -> exited (exit_code: the container's terminated exitCode), a waiting
  // reason that means the container cannot start (ErrImagePull, ImagePullBackOff,
  // InvalidImageName, CreateContainerConfigError, CreateContainerError, ErrImageNeverPull) ->
  // exited with error = "<reason>: <the kubelet's message>" (through core::runtime_message:
  // bounded, untrusted), CrashLoopBackOff -> restarting, metadata.deletionTimestamp set ->
  // exited (being_deleted): a Pod being deleted is a stop under way, never a container that
  // comes back, so the lifecycle starts the user again and start() waits for it to be gone. health: none without a readinessProbe; with one, the Ready condition: True ->
  // healthy, anything else -> starting. Kubernetes has no "unhealthy" for readiness: a failing
  // probe only takes the Pod out of its Service's endpoints.
  core::ContainerStatus status;
  core::ContainerState state_before_deletion = core::ContainerState::unknown;  // status.state without deletionTimestamp
  bool being_deleted = false;               // metadata.deletionTimestamp set: in its grace period
  // metadata.deletionTimestamp: when its grace period ends (the API sets it to the deletion's
  // time plus the grace period); nullopt when unset or unreadable.
  std::optional<std::chrono::system_clock::time_point> deletion_time;
  std::string deletion_timestamp;           // its text, for messages
  std::optional<int> terminated_exit_code;  // state.terminated.exitCode of the container, when it has ended
  int restart_count = 0;                    // the container's restartCount
  std::optional<int> last_exit_code;        // lastState.terminated.exitCode (the run before a restart)
  std::string resource_version;
};

std::optional<ServiceState> parse_service(std::string_view json);
std::optional<PodState> parse_pod(std::string_view json);

// A list (ServiceList, PodList), or one page of it: its items (rows that are not objects with
// a name are skipped), metadata.resourceVersion (where a watch of what follows starts) and
// metadata.continue (empty on the last page; the next page's `continue` query otherwise).
template <typename Item>
struct Listed {
  std::vector<Item> items;
  std::string resource_version;
  std::string continue_token;
};
std::optional<Listed<ServiceState>> parse_service_list(std::string_view json);
std::optional<Listed<PodState>> parse_pod_list(std::string_view json);

// One status per user, joined by object name: a Service with its Pod -> the Pod's status with
// the Service's identity; a Service without a Pod (a stopped user) -> exited, code 0; a Pod
// without a Service (half removed) -> the Pod's status.
core::ContainerStatus join(const std::optional<ServiceState>& service, const std::optional<PodState>& pod);
std::vector<core::ContainerStatus> join(const std::vector<ServiceState>& services, const std::vector<PodState>& pods);

// A Status object (the body of every error answer, and an ERROR watch event's object).
struct ApiStatus {
  unsigned code = 0;
  std::string reason;   // e.g. "AlreadyExists", "Conflict", "Expired"
  std::string message;
};
// nullopt unless it is an object of kind Status. (An error answer's message for pages:
// error_message, api_call.hpp, reads a Status's "message" as it reads Docker's.)
std::optional<ApiStatus> parse_status(std::string_view json);

// The class of a non-2xx answer: 5xx and 429 -> unavailable, 404 -> not_found, 409 ->
// conflict, 401/403 and 422 (and other 4xx) -> refused.
core::CallError classify(unsigned http_status);
// The message of a failure to show: the API's, and what to check for a 401 (the service
// account's token) and for RBAC's 403 (its Role and RoleBinding in the namespace).
std::string failure_message(unsigned http_status, std::string_view api_message);

// A metav1.Time as the API writes it: RFC 3339 in UTC to the second, "2026-11-29T06:00:00Z"
// (fractional seconds are accepted and dropped); nullopt for anything else.
std::optional<std::chrono::system_clock::time_point> parse_time(std::string_view text);
// An HTTP Date header (RFC 9110's IMF-fixdate, as the API server sends it):
// "Sun, 06 Nov 1994 08:49:37 GMT"; nullopt for anything else (the obsolete forms included).
std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view text);

// GET /version -> "Kubernetes v1.x.y" (from gitVersion); nullopt when it names none.
std::optional<std::string> parse_version(std::string_view json);

// One line of a watch stream.
enum class WatchType : std::uint8_t { added, modified, deleted, bookmark, error };
struct WatchEvent {
  WatchType type = WatchType::added;
  std::string resource_version;     // the object's (a BOOKMARK's included); empty for an ERROR
  std::optional<PodState> pod;          // the object, when it is a Pod
  std::optional<ServiceState> service;  // the object, when it is a Service
  std::optional<ApiStatus> status;      // for ERROR
};
// nullopt for a line that is not a watch event (or names an unknown type).
std::optional<WatchEvent> parse_watch_event(std::string_view line);

// Turns watch events into the container events DockerRuntime would have reported for the same
// transitions. Keeps the last known state per object name (seeded from a listing, so that a
// change of an object listed before the watch is told as a change).
//
// - Service ADDED (not known before): created. Service DELETED: destroyed.
// - A new Pod: created (old news to the lifecycle: the id, the name, is known), then what its
//   state says (below), from "created".
// - A Pod changing: not running -> running: started; running with a higher restartCount (the
//   kubelet restarted it): died (lastState's exit code) then started; health (readiness)
//   changed while running: health; running or created -> exited: died with the exit code.
//   Every died carries the Pod's error (PodState::status.error: the kubelet's reason and
//   message for a container that cannot start, a Failed Pod's reason), so that the page
//   of a wake it ends can say why.
// - A Pod gone (DELETED): died with its exit code when it had ended without a died told yet,
//   then stopped. Not when metadata.deletionTimestamp is set: that is a request, the container
//   still runs its grace period (a Docker stop event also comes after the process ended).
// - A user's events come between its Service's created and destroyed, as a Docker
//   container's between create and destroy: the Pods' and the Services' watches are two
//   streams with no order between them, so a Pod seen before its Service is told (as a new
//   Pod) right after the Service's created, a Pod still there when its Service's DELETED
//   comes is told stopped before destroyed, and Pod events while no Service is known say
//   nothing.
// Events carry id and label from io.container-director.label, username from the annotation
// io.container-director.user. Unmanaged objects are ignored.
class EventTracker {
 public:
  void seed(const std::vector<ServiceState>& services, const std::vector<PodState>& pods);
  std::vector<core::ContainerEvent> on_event(const WatchEvent& event);
  // Whether a managed Pod of this name is known: listed or seen, its DELETED not yet.
  bool knows_pod(std::string_view name) const { return pods_.contains(name); }

 private:
  std::vector<core::ContainerEvent> on_pod(WatchType type, const PodState& pod);
  std::vector<core::ContainerEvent> on_service(WatchType type, const ServiceState& service);
  // The events of a Pod's change from `before` (nullptr: a new Pod).
  static std::vector<core::ContainerEvent> transition(const PodState* before, WatchType type, const PodState& pod);

  std::map<std::string, PodState, std::less<>> pods_;
  std::map<std::string, ServiceState, std::less<>> services_;
};

}  // namespace director::spawner::runtime::kube
