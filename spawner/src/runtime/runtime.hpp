// The container runtime behind one interface: Docker Engine API (Docker, Podman) today,
// Kubernetes later. Implementations do the I/O; every expected failure is a value
// (RuntimeResult), classified into core::CallError so the lifecycle can tell a runtime that is
// down from a missing image, a name conflict or refused limits. Calls may run concurrently
// (each on its own connection); they must be awaited from a strand when the io_context has
// several threads.
#pragma once

#include "core/container.hpp"
#include "core/container_template.hpp"
#include "core/lifecycle.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace director::spawner::runtime {

// A failed call: its class (what the lifecycle reacts to), the HTTP status if the runtime
// answered (0 when it did not), and the runtime's own message (for pages and logs).
struct RuntimeError {
  core::CallError error = core::CallError::unavailable;
  unsigned http_status = 0;
  std::string message;
};
// For boost::system::result's value(): throws std::runtime_error with the message.
[[noreturn]] void throw_exception_from_error(const RuntimeError& error, const boost::source_location& location);

template <typename T>
using RuntimeResult = boost::system::result<T, RuntimeError>;

struct RuntimeInfo {
  std::string name;         // e.g. "Docker Engine API 1.44" or "Podman 4.3.1 (Docker API 1.41)"
  std::string api_version;  // the version every later call uses, e.g. "1.41"
};

class Runtime {
 public:
  using EventHandler = std::function<void(const core::ContainerEvent&)>;

  virtual ~Runtime() = default;

  // Connects, learns and fixes the API version; the first call of all (and again after the
  // runtime was unavailable).
  virtual boost::asio::awaitable<RuntimeResult<RuntimeInfo>> ping() = 0;
  // nullopt: no container of that name or id.
  virtual boost::asio::awaitable<RuntimeResult<std::optional<core::ContainerStatus>>> inspect(std::string name_or_id) = 0;
  // Whether the image has a health check of its own (the template's replaces it).
  virtual boost::asio::awaitable<RuntimeResult<bool>> image_has_health_check(std::string image) = 0;
  virtual boost::asio::awaitable<RuntimeResult<void>> pull(std::string image) = 0;
  // Creates the container (and its volume, labelled, when the spec names one); returns its id.
  virtual boost::asio::awaitable<RuntimeResult<std::string>> create(core::ContainerSpec spec) = 0;
  // Success also when it is already running. `user`: whose it is (the lifecycle's record), for
  // a runtime that makes the container at start (Kubernetes); Docker's made it at create.
  virtual boost::asio::awaitable<RuntimeResult<void>> start(std::string id, core::UserIdentity user) = 0;
  virtual boost::asio::awaitable<RuntimeResult<void>> stop(std::string id, std::chrono::seconds grace) = 0;
  // Removes the container, never its volume.
  virtual boost::asio::awaitable<RuntimeResult<void>> remove(std::string id) = 0;
  // The last `lines` lines of its output (stdout and stderr interleaved), at most `max_bytes`.
  virtual boost::asio::awaitable<RuntimeResult<std::string>> logs(std::string id, unsigned lines,
                                                                  std::size_t max_bytes) = 0;
  // Every managed container (any state).
  virtual boost::asio::awaitable<RuntimeResult<std::vector<core::ContainerStatus>>> list_managed() = 0;
  // Streams events of managed containers to `on_event` until the stream ends or breaks (the
  // error says why) or the awaiting coroutine is cancelled. `on_subscribed` runs once, when the
  // runtime has accepted the subscription and before any event: the caller re-lists there, so
  // that no change falls between the listing and the stream. One attempt: reconnecting with
  // backoff is the caller's (server/).
  virtual boost::asio::awaitable<RuntimeResult<void>> watch(std::function<void()> on_subscribed,
                                                            EventHandler on_event) = 0;
};

}  // namespace director::spawner::runtime
