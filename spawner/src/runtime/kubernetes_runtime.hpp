// runtime::Runtime over the Kubernetes API, in-cluster: one namespace, HTTPS to the API server
// with the service account's CA and bearer token (net::http's TlsEndpoint overloads, one
// connection per call). The JSON is kube_api.hpp's (pure); this class does the HTTP and maps
// its failures onto RuntimeError: no connection, a timeout, 5xx or 429 -> unavailable; 404 ->
// not_found; 409 -> conflict; 401/403 (RBAC, token) and 422 -> refused.
//
// Per user (docs/kubernetes.md), all named <prefix>-<label> (ContainerSpec::name) but the PVC
// (<volume_prefix>-<label>, ContainerSpec::volume_name), all labelled
// io.container-director.managed=true and io.container-director.label=<label>, the raw username
// in the annotation io.container-director.user:
// - a PersistentVolumeClaim, kept across stops and removals (never deleted here);
// - a ClusterIP Service (port and targetPort `container_port`): create() makes the PVC and the
//   Service;
// - a bare Pod while the user is started; a stopped user has no Pod (inspect: exited, code 0).
//   start() renders it from the CURRENT template (settings.container_template, core::render, as
//   the lifecycle's create renders its spec) for the user the lifecycle names (the Service
//   must name the same): a new image or command reaches a user at their next start (a Docker
//   start restarts the container create made), a new volume prefix a new, empty claim (made
//   then; the old one is kept), and nothing written into a Service can change what Pod is made.
// The container id is the object name <prefix>-<label>: stable across stop and start.
//
// Every request carries "Authorization: Bearer <token>" from `token_file`, read again when its
// modification time or size changes (bound service account tokens rotate); a call answered 401
// reads it again whatever its time and size and is made once more (a watch's 401 ends it, and
// the next call reads it again); a missing or empty token file: unavailable, naming the file. Not thread-safe: await it from one strand.
//
// The calls it makes, all in `namespace_name` (what the service account's Role must grant, no
// more): pods: get, list, watch, create, delete; pods/log: get; services: get, list, watch,
// create, delete; persistentvolumeclaims: create. Plus GET /version (allowed to every
// authenticated client by the default ClusterRole system:public-info-viewer).
#pragma once

#include "net/tls_client.hpp"
#include "runtime/kube_api.hpp"
#include "runtime/runtime.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace director::spawner::runtime {

// Built from config::Config (main.cpp): no defaults of its own.
struct KubernetesRuntimeSettings {
  net::http::TlsEndpoint api;           // https://KUBERNETES_SERVICE_HOST:PORT, ca_file = <serviceaccount dir>/ca.crt
  std::string token_file;               // <serviceaccount dir>/token: read again when it changes (bound tokens rotate)
  std::string namespace_name;           // every object lives here
  std::uint16_t container_port = 0;     // CONTAINER_PORT: the Pod's containerPort, the Service's port and targetPort
  std::string volume_size;              // each PVC's spec.resources.requests.storage, e.g. "10Gi"
  std::string storage_class;            // empty: the cluster's default class
  bool pull_missing_images = true;      // imagePullPolicy IfNotPresent; false: Never
  std::uint32_t fs_group = 0;           // the Pods' securityContext.fsGroup; 0: none
  bool restricted = false;              // the Pod Security Standard restricted (kube::ObjectSettings::restricted)
  std::chrono::milliseconds timeout{};  // each call (a stop adds its grace period)
  // The spawner's template (Config::container_template): start() renders each user's Pod from it.
  core::ContainerTemplate container_template;
  // The spawner's own clock: only when an answer has no readable Date header is a Pod's
  // deletionTimestamp (server time) compared with it. A test sets one that is off.
  std::function<std::chrono::system_clock::time_point()> local_clock = [] { return std::chrono::system_clock::now(); };
  // Called with how many users' Pods the runtime knows stuck Terminating now, whenever that
  // changes: a start or stop that finds one stuck adds it, as does a watch's listing (at the
  // start of each watch(), so also the first after the spawner started); it goes when the runtime sees it gone
  // or no longer Terminating (a 404, the Pod read again by a start, stop or inspect, the watch's
  // DELETED or changed Pod, the watch's listing). main.cpp shows it in the metrics
  // (director_spawner_kubernetes_pods_stuck_terminating), which the runtime does not know.
  // Called on the strand the runtime is awaited from; empty: nothing but the warning.
  std::function<void(std::size_t stuck_pods)> on_stuck_pods;
};

class KubernetesRuntime final : public Runtime {
 public:
  // The longest line of a watch stream; a longer one ends watch() with an error.
  static constexpr std::size_t max_line = 1024 * 1024;
  // The largest answer of any call but logs (a page of a listing included).
  static constexpr std::size_t max_body = 32 * 1024 * 1024;
  // The items of one page of a listing (the API server's pages of a large namespace).
  static constexpr unsigned page_size = 500;

  explicit KubernetesRuntime(KubernetesRuntimeSettings settings);

  // GET /version: name "Kubernetes v1.x.y", api_version "v1".
  boost::asio::awaitable<RuntimeResult<RuntimeInfo>> ping() override;
  // The Service and the Pod named `name_or_id` (<prefix>-<label>); nullopt when neither exists.
  boost::asio::awaitable<RuntimeResult<std::optional<core::ContainerStatus>>> inspect(std::string name_or_id) override;
  // Always false: the kubelet never runs an image's HEALTHCHECK (a Docker image format field),
  // so only the template's check (a readinessProbe) exists.
  boost::asio::awaitable<RuntimeResult<bool>> image_has_health_check(std::string image) override;
  // Success without a call: the kubelet pulls (imagePullPolicy); an image it cannot pull shows
  // in the Pod's status, which inspect reports as exited with the kubelet's message.
  boost::asio::awaitable<RuntimeResult<void>> pull(std::string image) override;
  // The PVC (one that exists already is the user's) and the Service (one that exists: conflict);
  // returns spec.name.
  boost::asio::awaitable<RuntimeResult<std::string>> create(core::ContainerSpec spec) override;
  // Creates the Pod rendered from container_template for `user`, after the claim it mounts
  // (ensure_claim: the template may name one create() did not make). The Service must be that
  // user's (its label io.container-director.label = user.label, the name <prefix>-<label>, the
  // annotation io.container-director.user = user.username); one that is not: refused, no Pod. A Pod that exists and has not ended: success;
  // one that ended (Succeeded/Failed) or whose container cannot start (a waiting reason such as
  // ImagePullBackOff: kube::PodState): deleted at once and created again, so that each wake
  // after such a failure retries the pull with the template of now; one being deleted:
  // waited for (within the call's timeout), then created; one stuck Terminating: unavailable
  // at once (await_pod_gone).
  boost::asio::awaitable<RuntimeResult<void>> start(std::string id, core::UserIdentity user) override;
  // Deletes the Pod with gracePeriodSeconds = grace (none: success) and waits until it is gone,
  // within timeout + grace (one stuck Terminating: unavailable at once, as for start).
  boost::asio::awaitable<RuntimeResult<void>> stop(std::string id, std::chrono::seconds grace) override;
  // Deletes the Pod (grace 0) and the Service; never the PVC.
  boost::asio::awaitable<RuntimeResult<void>> remove(std::string id) override;
  // GET pods/{id}/log?tailLines=lines&limitBytes=max_bytes.
  boost::asio::awaitable<RuntimeResult<std::string>> logs(std::string id, unsigned lines, std::size_t max_bytes) override;
  // Services and Pods with labelSelector io.container-director.managed=true, joined by name.
  boost::asio::awaitable<RuntimeResult<std::vector<core::ContainerStatus>>> list_managed() override;
  // Lists Pods and Services (for their resourceVersions), then watches both with
  // allowWatchBookmarks; on_subscribed once both watch streams are accepted; each change
  // becomes the events DockerRuntime would report for it (kube::EventTracker). A stream that
  // ends cleanly (timeoutSeconds, the server closing) is resumed from its last resourceVersion
  // (bookmarks included) without telling the caller; an ERROR 410 Expired (or a 410 answer)
  // ends watch() with an unavailable error, so that the caller lists again. One watch() at a
  // time (another while one runs: refused): a start waits for it to tell a deleted Pod gone
  // (await_watch_told_gone).
  boost::asio::awaitable<RuntimeResult<void>> watch(std::function<void()> on_subscribed,
                                                    EventHandler on_event) override;

 private:
  // One call to the API server: the answer whatever its status, or unavailable when there is
  // none (or no token to send).
  boost::asio::awaitable<RuntimeResult<net::http::ClientResponse>> call(boost::beast::http::verb method,
                                                                         std::string target, std::string body = {},
                                                                         std::chrono::milliseconds timeout = {},
                                                                         std::size_t body_limit = max_body);
  // GET of one object: nullopt on 404.
  boost::asio::awaitable<RuntimeResult<std::optional<std::string>>> get_object(std::string_view resource,
                                                                               std::string_view name);
  // Polls the Pod until it is gone (404), until `deadline`; one stuck Terminating (its
  // deletionTimestamp, the end of its grace period, more than a minute past by the API server's
  // clock, the Date of the same answer: a lost node) fails at once, the message naming it and
  // `kubectl delete pod --force` (pod_stuck).
  boost::asio::awaitable<RuntimeResult<void>> await_pod_gone(std::string name,
                                                             std::chrono::steady_clock::time_point deadline);
  // Before a start creates the Pod `name`, gone by the API (404): while a watch() runs whose
  // stream has not told an earlier Pod of that name DELETED yet (a stop just before, a deletion
  // by start itself), waits for it (at most watch_catch_up, never past `deadline`). The old
  // Pod's stopped, told after the new Pod's creation, would end the new one's wake as "exited
  // before it was ready": the two have the same id. Not covered (a watch's first moments only):
  // events the watch holds until both streams are accepted, or that its caller queues while it
  // lists again (EventWatcher); Pod uids in the events would cover those too.
  boost::asio::awaitable<void> await_watch_told_gone(const std::string& name,
                                                     std::chrono::steady_clock::time_point deadline);
  // POST of the user's PersistentVolumeClaim when the spec mounts one (409, it exists: success).
  boost::asio::awaitable<RuntimeResult<void>> ensure_claim(const core::ContainerSpec& spec);
  // The API server's time when it answered: the answer's Date header, else the local clock.
  std::chrono::system_clock::time_point server_now(const net::http::ClientResponse& response) const;
  // DELETE of one object (404: success).
  boost::asio::awaitable<RuntimeResult<void>> delete_object(std::string_view resource, std::string_view name,
                                                            std::optional<std::chrono::seconds> grace);
  // The managed Services and Pods, page by page (limit page_size, then continue); a 410 on a
  // continue token (its snapshot compacted) starts that list over from its first page, once.
  struct ManagedObjects {
    kube::Listed<kube::ServiceState> services;
    kube::Listed<kube::PodState> pods;
    // The API server's time when it answered the Pods' listing (server_now of its first page).
    std::chrono::system_clock::time_point pods_listed_at;
  };
  boost::asio::awaitable<RuntimeResult<ManagedObjects>> list_managed_objects();
  // `answered_at`, unless null: set to server_now of the first page's answer.
  template <typename Item, typename Parse>
  boost::asio::awaitable<RuntimeResult<kube::Listed<Item>>> list_pages(
      std::string_view resource, Parse parse, std::chrono::system_clock::time_point* answered_at = nullptr);
  // /api/v1/namespaces/<namespace>/<resource>[/<name>]
  std::string path(std::string_view resource, std::string_view name = {}) const;
  // The token file's content, read again when its modification time or size changed, or when
  // `read_again` (after a 401).
  RuntimeResult<std::string> bearer_token(bool read_again = false);

  KubernetesRuntimeSettings settings_;
  std::string token_;
  std::filesystem::file_time_type token_time_{};
  std::uintmax_t token_size_ = 0;
  // What the runtime has just read of the Pod `name` (nullptr: it is gone): its entry in
  // stuck_warned_ stays only while it is Terminating (a Pod never leaves that state but by
  // going; a deletion with a shorter grace period moves its deletionTimestamp earlier);
  // settings_.on_stuck_pods is told when the count changes.
  void pod_seen(const std::string& name, const kube::PodState* pod);
  // `pod` found stuck Terminating: kept in stuck_warned_, a warning logged once per Pod and
  // deletionTimestamp, settings_.on_stuck_pods told when the count changes.
  void pod_stuck(const kube::PodState& pod);
  // A listing of the managed Pods, answered at `server_now` by the API server's clock: each Pod
  // stuck_warned_ holds looked up in it (pod_seen), and each listed Pod stuck counted (pod_stuck),
  // so that a restarted spawner's first watch finds the Pods stuck since before it started.
  void stuck_pods_listed(const std::vector<kube::PodState>& pods, std::chrono::system_clock::time_point server_now);

  // Pod name -> the deletionTimestamp of it already warned about as stuck (await_pod_gone: a
  // new one is warned about again); an entry goes when the Pod is seen gone or no longer
  // Terminating (pod_seen): the Pods known stuck now.
  std::map<std::string, std::string> stuck_warned_;
  // The event tracker of the watch() running now (one at a time), if one is: what its stream
  // has told (await_watch_told_gone).
  std::optional<kube::EventTracker> watch_tracker_;
};

}  // namespace director::spawner::runtime
