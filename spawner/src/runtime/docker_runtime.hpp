// runtime::Runtime over the Docker Engine API (Docker, and Podman's compatible service), on a
// unix socket or TCP, through net::http's client: one connection per call. The JSON is
// docker_api.hpp's (pure); this class does the HTTP and maps its failures onto RuntimeError:
// no connection, a timeout or 5xx -> unavailable; 404 -> not_found (create: image_missing);
// 409 -> conflict (also Podman's 500 "name already in use" on create); other 4xx -> refused.
// The runtime's own "message" is kept for pages and logs.
//
// ping() fixes the API version (docker_api.hpp's negotiation) and every later call is prefixed
// /v<version>/; a call before any ping pings first. Not thread-safe: await it from one strand.
#pragma once

#include "net/http_client.hpp"
#include "runtime/runtime.hpp"

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

namespace director::spawner::runtime {

// Built from config::Config (main.cpp): no defaults of its own.
struct DockerRuntimeSettings {
  net::http::ClientEndpoint endpoint;       // SPAWNER_RUNTIME
  std::chrono::milliseconds timeout{};      // each call (a stop adds its grace period)
  std::chrono::milliseconds pull_timeout{}; // a whole pull, progress stream included
};

class DockerRuntime final : public Runtime {
 public:
  // The longest line of the event stream (and of a pull's progress); a longer one ends watch()
  // with an error.
  static constexpr std::size_t max_line = 64 * 1024;
  // The largest answer of any call but logs (a listing of many containers included).
  static constexpr std::size_t max_body = 8 * 1024 * 1024;

  explicit DockerRuntime(DockerRuntimeSettings settings);

  boost::asio::awaitable<RuntimeResult<RuntimeInfo>> ping() override;
  boost::asio::awaitable<RuntimeResult<std::optional<core::ContainerStatus>>> inspect(std::string name_or_id) override;
  boost::asio::awaitable<RuntimeResult<bool>> image_has_health_check(std::string image) override;
  boost::asio::awaitable<RuntimeResult<void>> pull(std::string image) override;
  boost::asio::awaitable<RuntimeResult<std::string>> create(core::ContainerSpec spec) override;
  boost::asio::awaitable<RuntimeResult<void>> start(std::string id, core::UserIdentity user) override;
  boost::asio::awaitable<RuntimeResult<void>> stop(std::string id, std::chrono::seconds grace) override;
  boost::asio::awaitable<RuntimeResult<void>> remove(std::string id) override;
  boost::asio::awaitable<RuntimeResult<std::string>> logs(std::string id, unsigned lines, std::size_t max_bytes) override;
  boost::asio::awaitable<RuntimeResult<std::vector<core::ContainerStatus>>> list_managed() override;
  // GET /events?filters={"type":["container"],"label":["io.container-director.managed=true"]}
  // (URL-encoded), filtered by the runtime and again here: only events parse_event accepts
  // reach on_event. Why a `filters` query once "returned nothing" on Podman 4.3 (checked
  // here, 2026-11): a label filter naming the key alone matches nothing there (podman#26702:
  // key=value is required); key=value works, in the array form and in the older map form,
  // with or without the /v1.41 prefix; the query must be URL-encoded. (`curl` writing the
  // stream to a file without -N also shows nothing for a while: it buffers.) Podman's health
  // events carry the status before the check (docker_api.hpp): inspect on a health event.
  boost::asio::awaitable<RuntimeResult<void>> watch(std::function<void()> on_subscribed,
                                                    EventHandler on_event) override;

  // The version calls use: empty before the first successful ping.
  const std::string& api_version() const noexcept { return api_version_; }

 private:
  // One call: `target` after the /v<version> prefix; the answer whatever its status, or
  // unavailable when there is none.
  boost::asio::awaitable<RuntimeResult<net::http::ClientResponse>> call(boost::beast::http::verb method,
                                                                         std::string target, std::string body = {},
                                                                         std::chrono::milliseconds timeout = {});
  // Pings when no version is fixed yet.
  boost::asio::awaitable<RuntimeResult<void>> ensure_version();
  net::http::ClientRequest make_request(boost::beast::http::verb method, std::string_view target,
                                        std::string body) const;

  DockerRuntimeSettings settings_;
  std::string api_version_;
};

}  // namespace director::spawner::runtime
