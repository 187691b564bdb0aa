#include "runtime/kubernetes_runtime.hpp"

#include "log/log.hpp"
#include "net/awaitable.hpp"
#include "runtime/api_call.hpp"
#include "runtime/kube_api.hpp"
#include "runtime/line_splitter.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/http/field.hpp>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <utility>

namespace director::spawner::runtime {
namespace {

namespace asio = boost::asio;
namespace http = net::http;
using Verb = boost::beast::http::verb;
using Clock = std::chrono::steady_clock;
using namespace asio::experimental::awaitable_operators;

constexpr std::string_view services = "services";
constexpr std::string_view pods = "pods";
constexpr std::string_view claims = "persistentvolumeclaims";
// How often a Pod being deleted is looked at again.
constexpr std::chrono::milliseconds deletion_poll{100};
// How long a start waits for a running watch to tell a Pod's DELETED that the API already
// answers 404 for (await_watch_told_gone), and how often it looks.
constexpr std::chrono::seconds watch_catch_up{2};
constexpr std::chrono::milliseconds watch_catch_up_poll{10};
// A Pod still Terminating this long after its grace period ended (its deletionTimestamp, by the
// API server's clock) is stuck: its kubelet does not answer (a lost node), and only a force
// deletion removes it. The minute leaves room for the kubelet's own delay.
constexpr std::chrono::seconds stuck_after{60};
// The server ends each watch after this (timeoutSeconds), and the watch is resumed; a stream
// still open `watch_slack` later is taken as lost and resumed too (a half-open connection
// never ends otherwise).
constexpr int watch_timeout_seconds = 300;
constexpr std::chrono::seconds watch_slack{30};
// A resumed watch that ended sooner than this waits that long before the next (never a busy loop).
constexpr std::chrono::seconds watch_resume_pause{1};
// Events held between the first watch's acceptance and the second's (on_subscribed comes first).
constexpr std::size_t max_held_events = 10'000;
constexpr std::uintmax_t max_token_size = 64 * 1024;

// The failure of an answer with a non-2xx status: its class and the Status's message.
RuntimeError refusal(unsigned status, std::string_view body) {
  std::string message = error_message(body);  // a Status's "message"
  if (message.empty()) message = "answered " + std::to_string(status);
  return RuntimeError{kube::classify(status), status, kube::failure_message(status, message)};
}
RuntimeError refusal(const http::ClientResponse& response) { return refusal(response.result_int(), response.body()); }


kube::ObjectSettings object_settings(const KubernetesRuntimeSettings& settings) {
  return {.container_port = settings.container_port,
          .volume_size = settings.volume_size,
          .storage_class = settings.storage_class,
          .pull_missing_images = settings.pull_missing_images,
          .fs_group = settings.fs_group,
          .restricted = settings.restricted};
}

// Why `service` does not name a user of the spawner's as create() makes them (empty: it does):
// the managed label, the user's label L with the name <prefix>-L, the username's annotation.
std::string not_a_user_service(const kube::ServiceState& service, std::string_view id,
                               const core::ContainerTemplate& container_template) {
  if (!service.managed) return "is not director-spawner's (no label " + std::string(core::managed_label) + "=true)";
  if (service.label.empty() || core::container_name(container_template, service.label) != id) {
    return "has the label " + std::string(core::label_label) + "=" + service.label + ", but a user's Service is named " +
           core::container_name(container_template, service.label.empty() ? "<label>" : service.label);
  }
  if (service.username.empty()) return "has no annotation " + std::string(core::user_label) + " naming its user";
  return {};
}

// Whether `pod` is stuck Terminating: its grace period ended more than stuck_after before
// `server_now`, the API server's time of the answer that had it.
bool stuck(const kube::PodState& pod, std::chrono::system_clock::time_point server_now) {
  return pod.being_deleted && pod.deletion_time && server_now - *pod.deletion_time > stuck_after;
}

// The failure of a start or stop that finds the Pod stuck Terminating (stuck_after), at once
// rather than after the call's timeout: the message says what the operator must do.
RuntimeError stuck_terminating(const std::string& pod, const std::string& since, const std::string& namespace_name) {
  return unavailable("the Pod " + pod + " has been Terminating since " + since +
                     " (past its grace period: its node may be lost); once its node is known to be down, " +
                     "remove it with `kubectl delete pod " + pod + " -n " + namespace_name +
                     " --force --grace-period=0`");
}

http::ClientRequest authorized_request(Verb method, std::string target, const std::string& token) {
  http::ClientRequest request(method, target, 11);
  request.set(boost::beast::http::field::user_agent, "director-spawner");
  request.set(boost::beast::http::field::authorization, "Bearer " + token);
  request.set(boost::beast::http::field::accept, "application/json");
  return request;
}

asio::awaitable<void> sleep_for(std::chrono::milliseconds duration) {
  asio::steady_timer timer(co_await asio::this_coro::executor, duration);
  co_await timer.async_wait(net::nothrow_awaitable);
}

}  // namespace

KubernetesRuntime::KubernetesRuntime(KubernetesRuntimeSettings settings) : settings_(std::move(settings)) {}

std::string KubernetesRuntime::path(std::string_view resource, std::string_view name) const {
  std::string target = "/api/v1/namespaces/" + url_encode(settings_.namespace_name) + "/" + std::string(resource);
  if (!name.empty()) target += "/" + url_encode(name);
  return target;
}

RuntimeResult<std::string> KubernetesRuntime::bearer_token(bool read_again) {
  const auto& file = settings_.token_file;
  std::error_code error;
  const auto time = std::filesystem::last_write_time(file, error);
  const auto size = error ? 0 : std::filesystem::file_size(file, error);
  if (error) return unavailable("cannot read the service account token " + file + ": " + error.message());
  if (!read_again && !token_.empty() && time == token_time_ && size == token_size_) return token_;
  if (size > max_token_size) {
    return unavailable("the service account token " + file + " is larger than " + std::to_string(max_token_size) + " bytes");
  }
  std::ifstream in(file, std::ios::binary);
  std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) return unavailable("cannot read the service account token " + file);
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) token.pop_back();
  if (token.empty()) return unavailable("the service account token " + file + " is empty");
  token_ = std::move(token);
  token_time_ = time;
  token_size_ = size;
  return token_;
}

asio::awaitable<RuntimeResult<http::ClientResponse>> KubernetesRuntime::call(Verb method, std::string target,
                                                                             std::string body,
                                                                             std::chrono::milliseconds timeout,
                                                                             std::size_t body_limit) {
  for (bool again = false;; again = true) {
    auto token = bearer_token(again);
    if (!token) co_return token.error();
    auto request = authorized_request(method, target, *token);
    if (!body.empty()) {
      request.set(boost::beast::http::field::content_type, "application/json");
      request.body() = body;
    }
    auto response = co_await http::request(settings_.api, std::move(request),
                                           {.timeout = timeout.count() > 0 ? timeout : settings_.timeout,
                                            .body_limit = body_limit});
    if (!response) co_return unavailable(response.error().message);
    // 401: the token may have rotated unseen (rewritten within the file time's resolution at
    // the same size): read again, and the call made once more.
    if (response->result_int() == 401 && !again) continue;
    co_return std::move(*response);
  }
}

asio::awaitable<RuntimeResult<std::optional<std::string>>> KubernetesRuntime::get_object(std::string_view resource,
                                                                                         std::string_view name) {
  auto response = co_await call(Verb::get, path(resource, name));
  if (!response) co_return response.error();
  if (response->result_int() == 404) co_return std::optional<std::string>{};
  if (!succeeded(response->result_int())) co_return refusal(*response);
  co_return std::optional<std::string>(std::move(response->body()));
}

asio::awaitable<RuntimeResult<void>> KubernetesRuntime::delete_object(std::string_view resource, std::string_view name,
                                                                      std::optional<std::chrono::seconds> grace) {
  std::string target = path(resource, name);
  if (grace) target += "?gracePeriodSeconds=" + std::to_string(grace->count());
  auto response = co_await call(Verb::delete_, std::move(target));
  if (!response) co_return response.error();
  if (!succeeded(response->result_int()) && response->result_int() != 404) co_return refusal(*response);
  co_return RuntimeResult<void>{};
}

std::chrono::system_clock::time_point KubernetesRuntime::server_now(const http::ClientResponse& response) const {
  // deletionTimestamp is the server's time: compared with the server's clock, a spawner whose
  // clock is ahead never takes a Pod in its grace period for a stuck one. The local clock only
  // when the answer has no Date header, or one that is not an IMF-fixdate (a proxy's doing).
  if (const auto date = kube::parse_http_date(response[boost::beast::http::field::date])) return *date;
  return settings_.local_clock();
}

void KubernetesRuntime::pod_seen(const std::string& name, const kube::PodState* pod) {
  const auto found = stuck_warned_.find(name);
  if (found == stuck_warned_.end()) return;
  if (pod && pod->being_deleted) return;  // never leaves Terminating; a deletion may move its deletionTimestamp
  stuck_warned_.erase(found);
  if (settings_.on_stuck_pods) settings_.on_stuck_pods(stuck_warned_.size());
}

void KubernetesRuntime::pod_stuck(const kube::PodState& pod) {
  const auto [warned, added] = stuck_warned_.try_emplace(pod.status.name, pod.deletion_timestamp);
  if (added || warned->second != pod.deletion_timestamp) {
    log(LogLevel::warn, "a user's Pod is stuck Terminating: its node may be lost; no start or stop of it completes until it is gone",
        {{"pod", pod.status.name}, {"namespace", settings_.namespace_name}, {"grace_period_ended", pod.deletion_timestamp}});
  }
  warned->second = pod.deletion_timestamp;
  if (added && settings_.on_stuck_pods) settings_.on_stuck_pods(stuck_warned_.size());
}

void KubernetesRuntime::stuck_pods_listed(const std::vector<kube::PodState>& listed,
                                          std::chrono::system_clock::time_point server_now) {
  std::vector<std::string> names;
  for (const auto& entry : stuck_warned_) names.push_back(entry.first);
  for (const auto& name : names) {
    const auto pod = std::find_if(listed.begin(), listed.end(), [&](const kube::PodState& p) { return p.status.name == name; });
    pod_seen(name, pod == listed.end() ? nullptr : &*pod);
  }
  for (const auto& pod : listed) {
    if (stuck(pod, server_now)) pod_stuck(pod);
  }
}

asio::awaitable<RuntimeResult<void>> KubernetesRuntime::await_pod_gone(std::string name, Clock::time_point deadline) {
  for (;;) {
    auto response = co_await call(Verb::get, path(pods, name));
    if (!response) co_return response.error();
    if (response->result_int() == 404) {
      pod_seen(name, nullptr);
      co_return RuntimeResult<void>{};
    }
    if (!succeeded(response->result_int())) co_return refusal(*response);
    const auto state = kube::parse_pod(response->body());
    if (state && stuck(*state, server_now(*response))) {
      // Not counted when a running watch has told it DELETED since this answer: gone (an
      // operator's force).
      if (!watch_tracker_ || watch_tracker_->knows_pod(name)) pod_stuck(*state);
      co_return stuck_terminating(name, state->deletion_timestamp, settings_.namespace_name);
    }
    if (state) pod_seen(name, &*state);
    if (Clock::now() >= deadline) co_return unavailable("the Pod " + name + " is still being deleted");
    co_await sleep_for(deletion_poll);
  }
}

asio::awaitable<void> KubernetesRuntime::await_watch_told_gone(const std::string& name, Clock::time_point deadline) {
  const auto until = std::min(deadline, Clock::now() + watch_catch_up);
  while (watch_tracker_ && watch_tracker_->knows_pod(name) && Clock::now() < until) co_await sleep_for(watch_catch_up_poll);
}

asio::awaitable<RuntimeResult<RuntimeInfo>> KubernetesRuntime::ping() {
  auto response = co_await call(Verb::get, "/version", {}, {}, 64 * 1024);
  if (!response) co_return response.error();
  if (!succeeded(response->result_int())) co_return refusal(*response);
  auto name = kube::parse_version(response->body());
  if (!name) co_return unavailable(http::to_string(settings_.api) + "/version names no Kubernetes version");
  co_return RuntimeInfo{std::move(*name), "v1"};
}

asio::awaitable<RuntimeResult<std::optional<core::ContainerStatus>>> KubernetesRuntime::inspect(std::string name_or_id) {
  auto service_body = co_await get_object(services, name_or_id);
  if (!service_body) co_return service_body.error();
  auto pod_body = co_await get_object(pods, name_or_id);
  if (!pod_body) co_return pod_body.error();
  std::optional<kube::ServiceState> service;
  std::optional<kube::PodState> pod;
  if (*service_body && !(service = kube::parse_service(**service_body))) {
    co_return unavailable("the API's Service " + name_or_id + " is not a Service");
  }
  if (*pod_body && !(pod = kube::parse_pod(**pod_body))) co_return unavailable("the API's Pod " + name_or_id + " is not a Pod");
  pod_seen(name_or_id, pod ? &*pod : nullptr);
  if (!service && !pod) co_return std::optional<core::ContainerStatus>{};
  co_return std::optional<core::ContainerStatus>(kube::join(service, pod));
}

asio::awaitable<RuntimeResult<bool>> KubernetesRuntime::image_has_health_check(std::string) { co_return false; }

asio::awaitable<RuntimeResult<void>> KubernetesRuntime::pull(std::string) { co_return RuntimeResult<void>{}; }

asio::awaitable<RuntimeResult<void>> KubernetesRuntime::ensure_claim(const core::ContainerSpec& spec) {
  if (spec.volume_name.empty()) co_return RuntimeResult<void>{};
  // Kept across stops and removals: one that exists already (409) is the user's.
  auto claim = co_await call(Verb::post, path(claims), kube::persistent_volume_claim_body(spec, object_settings(settings_)));
  if (!claim) co_return claim.error();
  if (!succeeded(claim->result_int()) && claim->result_int() != 409) co_return refusal(*claim);
  co_return RuntimeResult<void>{};
}

asio::awaitable<RuntimeResult<std::string>> KubernetesRuntime::create(core::ContainerSpec spec) {
  auto claim = co_await ensure_claim(spec);
  if (!claim) co_return claim.error();
  auto service = co_await call(Verb::post, path(services), kube::service_body(spec, object_settings(settings_)));
  if (!service) co_return service.error();
  if (!succeeded(service->result_int())) co_return refusal(*service);
  co_return std::move(spec.name);
}

asio::awaitable<RuntimeResult<void>> KubernetesRuntime::start(std::string id, core::UserIdentity user) {
  const auto deadline = Clock::now() + settings_.timeout;
  auto service_body = co_await get_object(services, id);
  if (!service_body) co_return service_body.error();
  if (!*service_body) co_return RuntimeError{core::CallError::not_found, 404, "no Service " + id + " to start a Pod of"};
  const auto service = kube::parse_service(**service_body);
  if (!service) co_return unavailable("the API's Service " + id + " is not a Service");
  // The Pod is rendered from the current template for `user` (the lifecycle's record: the
  // username HAProxy's header gave the agent), as the lifecycle's create does (core::render):
  // nothing the Service carries reaches the Pod, so whoever can write Services in the
  // namespace gets no other Pod made with the spawner's rights, and a stopped user starts with
  // the template of now. The Service must still be that user's, as create() made it.
  if (auto problem = not_a_user_service(*service, id, settings_.container_template); !problem.empty()) {
    co_return RuntimeError{core::CallError::refused, 0, "the Service " + id + " " + problem + ": not started"};
  }
  if (service->label != user.label || service->username != user.username) {
    co_return RuntimeError{core::CallError::refused, 0,
                           "the Service " + id + " is " + service->username + "'s (label " + service->label +
                               "), not " + user.username + "'s (label " + user.label + "): not started"};
  }
  const auto spec = core::render(settings_.container_template, user);
  // The claim the Pod mounts, made here too: the template may mount one, or name another
  // (a new volume prefix), that create() never made; a Pod on a missing claim stays Pending.
  auto claim = co_await ensure_claim(spec);
  if (!claim) co_return claim.error();
  const auto pod_manifest = kube::pod_body(spec, object_settings(settings_));
  for (;;) {
    auto pod_body = co_await get_object(pods, id);
    if (!pod_body) co_return pod_body.error();
    if (!*pod_body) {
      pod_seen(id, nullptr);
    } else {
      const auto pod = kube::parse_pod(**pod_body);
      if (!pod) co_return unavailable("the API's Pod " + id + " is not a Pod");
      pod_seen(id, &*pod);
      if (pod->being_deleted) {
        auto gone = co_await await_pod_gone(id, deadline);
        if (!gone) co_return gone.error();
        continue;
      }
      const auto state = pod->state_before_deletion;
      if (state != core::ContainerState::exited && state != core::ContainerState::dead) {
        co_return RuntimeResult<void>{};  // exists and has not ended: started already
      }
      // Ended (or cannot start): a Pod never runs again, a new one does.
      auto deleted = co_await delete_object(pods, id, std::chrono::seconds(0));
      if (!deleted) co_return deleted.error();
      auto gone = co_await await_pod_gone(id, deadline);
      if (!gone) co_return gone.error();
    }
    co_await await_watch_told_gone(id, deadline);
    auto created = co_await call(Verb::post, path(pods), pod_manifest);
    if (!created) co_return created.error();
    if (succeeded(created->result_int())) co_return RuntimeResult<void>{};
    if (created->result_int() != 409 || Clock::now() >= deadline) co_return refusal(*created);
    // 409: another start created it meanwhile; look at it again, not at once.
    co_await sleep_for(deletion_poll);
  }
}

asio::awaitable<RuntimeResult<void>> KubernetesRuntime::stop(std::string id, std::chrono::seconds grace) {
  // At least a second: the API takes gracePeriodSeconds=0 as a force deletion, which removes
  // the object before the kubelet has stopped the container, so that a start could run a
  // second Pod on the same claim while the first still writes to it.
  grace = std::max(grace, std::chrono::seconds(1));
  const auto deadline = Clock::now() + settings_.timeout + grace;
  auto deleted = co_await delete_object(pods, id, grace);
  if (!deleted) co_return deleted.error();
  co_return co_await await_pod_gone(std::move(id), deadline);
}

asio::awaitable<RuntimeResult<void>> KubernetesRuntime::remove(std::string id) {
  // One second, not a force deletion (stop() says why); the Service goes once the Pod is gone.
  const auto grace = std::chrono::seconds(1);
  const auto deadline = Clock::now() + settings_.timeout + grace;
  auto pod = co_await delete_object(pods, id, grace);
  if (!pod) co_return pod.error();
  auto gone = co_await await_pod_gone(id, deadline);
  if (!gone) co_return gone.error();
  co_return co_await delete_object(services, id, std::nullopt);  // never the claim
}

asio::awaitable<RuntimeResult<std::string>> KubernetesRuntime::logs(std::string id, unsigned lines, std::size_t max_bytes) {
  // limitBytes keeps the first bytes of the tail: ask for more than is kept and keep the end.
  const std::size_t read_limit = 2 * max_bytes + 4096;
  auto response = co_await call(Verb::get,
                                path(pods, id) + "/log?container=" + std::string(kube::container_name) +
                                    "&tailLines=" + std::to_string(lines) + "&limitBytes=" + std::to_string(read_limit),
                                {}, {}, read_limit + 1024);
  if (!response) co_return response.error();
  if (!succeeded(response->result_int())) {
    // 400 "container ... is waiting to start": it wrote nothing yet.
    if (response->result_int() == 400 && error_message(response->body()).find("waiting to start") != std::string::npos) {
      co_return std::string{};
    }
    co_return refusal(*response);
  }
  std::string output = std::move(response->body());
  if (output.size() > max_bytes) output.erase(0, output.size() - max_bytes);
  co_return std::move(output);
}

template <typename Item, typename Parse>
asio::awaitable<RuntimeResult<kube::Listed<Item>>> KubernetesRuntime::list_pages(
    std::string_view resource, Parse parse, std::chrono::system_clock::time_point* answered_at) {
  const std::string query = "?labelSelector=" + url_encode(kube::managed_selector()) +
                            "&limit=" + std::to_string(page_size);
  kube::Listed<Item> listed;
  std::string continue_token;
  bool started_over = false;
  bool first = true;
  while (first || !continue_token.empty()) {
    // Built before the co_await: GCC 12 destroys a conditional's temporaries inside one wrongly.
    std::string target = path(resource) + query;
    if (!first) target += "&continue=" + url_encode(continue_token);
    auto response = co_await call(Verb::get, std::move(target));
    if (!response) co_return response.error();
    // 410 on a continue token: the snapshot it pages was compacted away; the list starts over
    // from its first page, once. A second 410 is unavailable, the caller's to retry (as a
    // watch's 410), never refused.
    if (response->result_int() == 410 && !first && !started_over) {
      started_over = true;
      listed = {};
      continue_token.clear();
      first = true;
      continue;
    }
    if (!succeeded(response->result_int())) {
      auto failure = refusal(*response);
      if (response->result_int() == 410) failure.error = core::CallError::unavailable;
      co_return failure;
    }
    auto page = parse(response->body());
    if (!page) co_return unavailable("the API's list of " + std::string(resource) + " is not a list");
    if (first) {
      listed.resource_version = std::move(page->resource_version);  // every page's snapshot
      if (answered_at) *answered_at = server_now(*response);
    }
    std::move(page->items.begin(), page->items.end(), std::back_inserter(listed.items));
    continue_token = std::move(page->continue_token);
    first = false;
  }
  co_return std::move(listed);
}

asio::awaitable<RuntimeResult<KubernetesRuntime::ManagedObjects>> KubernetesRuntime::list_managed_objects() {
  auto listed_services = co_await list_pages<kube::ServiceState>(services, kube::parse_service_list);
  if (!listed_services) co_return listed_services.error();
  std::chrono::system_clock::time_point pods_listed_at;
  auto listed_pods = co_await list_pages<kube::PodState>(pods, kube::parse_pod_list, &pods_listed_at);
  if (!listed_pods) co_return listed_pods.error();
  co_return ManagedObjects{std::move(*listed_services), std::move(*listed_pods), pods_listed_at};
}

asio::awaitable<RuntimeResult<std::vector<core::ContainerStatus>>> KubernetesRuntime::list_managed() {
  auto listed = co_await list_managed_objects();
  if (!listed) co_return listed.error();
  auto statuses = kube::join(listed->services.items, listed->pods.items);
  std::erase_if(statuses, [](const core::ContainerStatus& status) { return !status.managed; });
  co_return std::move(statuses);
}

asio::awaitable<RuntimeResult<void>> KubernetesRuntime::watch(std::function<void()> on_subscribed, EventHandler on_event) {
  if (watch_tracker_) co_return RuntimeError{core::CallError::refused, 0, "a watch of this runtime is running already"};
  const std::string selector = "labelSelector=" + url_encode(kube::managed_selector());
  // The listings: where each watch starts, and what the tracker knows before it.
  auto listed = co_await list_managed_objects();
  if (!listed) co_return listed.error();
  stuck_pods_listed(listed->pods.items, listed->pods_listed_at);
  // A member, not a local: await_watch_told_gone reads it while this watch runs.
  auto& tracker = watch_tracker_.emplace();
  tracker.seed(listed->services.items, listed->pods.items);

  // Both streams deliver here; until both are accepted, events wait (on_subscribed comes first).
  int accepted = 0;
  bool subscribed = false;
  std::vector<core::ContainerEvent> held;
  bool overflow = false;
  const auto deliver = [&](std::vector<core::ContainerEvent> events) {
    for (auto& event : events) {
      if (subscribed) {
        on_event(event);
      } else if (held.size() < max_held_events) {
        held.push_back(std::move(event));
      } else {
        overflow = true;
      }
    }
  };
  const auto accept = [&] {
    if (++accepted != 2) return;
    subscribed = true;
    if (on_subscribed) on_subscribed();
    for (const auto& event : held) on_event(event);
    held.clear();
  };

  // One resource's watch, resumed from its last resourceVersion whenever it ends cleanly;
  // returns only with an error.
  const auto follow = [&](std::string_view resource, std::string resource_version) -> asio::awaitable<RuntimeError> {
    bool first = true;
    for (;;) {
      const auto began = Clock::now();
      auto token = bearer_token();
      if (!token) co_return token.error();
      auto request = authorized_request(Verb::get,
                                        path(resource) + "?watch=1&allowWatchBookmarks=true&" + selector +
                                            "&timeoutSeconds=" + std::to_string(watch_timeout_seconds) +
                                            "&resourceVersion=" + url_encode(resource_version),
                                        *token);
      LineSplitter lines(max_line);
      unsigned status = 0;
      std::string refusal_body;
      std::optional<kube::ApiStatus> error_event;
      bool too_long = false;
      asio::steady_timer lost(co_await asio::this_coro::executor,
                              std::chrono::seconds(watch_timeout_seconds) + watch_slack);
      auto outcome = co_await (
          http::stream(
              settings_.api, std::move(request),
              [&](const http::StreamHead& head) {
                status = head.result_int();
                if (status == 200 && first) {
                  first = false;
                  accept();
                }
              },
              [&](std::string_view data) {
                if (status != 200) {
                  refusal_body.append(data.substr(0, max_line - std::min(max_line, refusal_body.size())));
                  return true;
                }
                too_long = !lines.feed(data, [&](std::string_view line) {
                  if (error_event) return;
                  auto event = kube::parse_watch_event(line);
                  if (!event) return;
                  if (event->type == kube::WatchType::error) {
                    error_event = std::move(event->status);
                    return;
                  }
                  if (!event->resource_version.empty()) resource_version = event->resource_version;
                  if (event->pod) pod_seen(event->pod->status.name, event->type == kube::WatchType::deleted ? nullptr : &*event->pod);
                  deliver(tracker.on_event(*event));
                });
                return !too_long && !error_event && !overflow;
              },
              {.timeout = settings_.timeout, .body_limit = max_line}) ||
          lost.async_wait(net::nothrow_awaitable));
      const std::string where = http::to_string(settings_.api) + path(resource);
      if (outcome.index() == 0) {
        auto& head = std::get<0>(outcome);
        // A stream that was accepted and broke is resumed like one that ended (the API server
        // restarting, a proxy's idle timeout); one that never was is the caller's to retry.
        if (!head && status != 200) co_return unavailable(head.error().message);
        if (head && status != 200) {
          if (status == 401) token_.clear();  // the next call reads the token file again
          auto failure = refusal(status, refusal_body);
          if (status == 410) failure.error = core::CallError::unavailable;  // too old: the caller lists again
          co_return failure;
        }
        if (error_event) {
          const unsigned code = error_event->code;
          co_return RuntimeError{code == 410 ? core::CallError::unavailable : kube::classify(code), code,
                                 "the watch of " + where + " ended: " + error_event->message +
                                     (code == 410 ? " (list again)" : "")};
        }
        if (too_long) co_return unavailable("a line of the watch of " + where + " is longer than " + std::to_string(max_line) + " bytes");
        if (overflow) co_return unavailable("more than " + std::to_string(max_held_events) + " events before the watches were accepted");
      }
      // Ended cleanly (timeoutSeconds, the server closing), broken or lost: resumed from where
      // it was (a version too old for the server then ends it with 410); not when the caller
      // cancelled (a cancelled stream ends as a broken one), before or during the pause (the
      // pause ends at once then; checked after it, as the next co_await would throw).
      const auto lasted = Clock::now() - began;
      if (lasted < watch_resume_pause) {
        co_await sleep_for(std::chrono::duration_cast<std::chrono::milliseconds>(watch_resume_pause - lasted));
      }
      if ((co_await asio::this_coro::cancellation_state).cancelled() != asio::cancellation_type::none) {
        co_return unavailable("the watch of " + where + " was cancelled");
      }
    }
  };

  // However the watch ends: with an error, or by the operation_aborted a co_await throws once
  // the caller cancelled it.
  try {
    auto ended = co_await (follow(services, std::move(listed->services.resource_version)) ||
                           follow(pods, std::move(listed->pods.resource_version)));
    watch_tracker_.reset();
    co_return std::visit([](RuntimeError error) { return RuntimeResult<void>(std::move(error)); }, std::move(ended));
  } catch (...) {
    watch_tracker_.reset();
    throw;
  }
}

}  // namespace director::spawner::runtime
