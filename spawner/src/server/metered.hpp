// Every runtime call the server layer makes goes through metered(): it counts the call by
// outcome and times it (director_spawner_runtime_requests_total, _request_seconds).
#pragma once

#include "metrics/metrics.hpp"
#include "runtime/runtime.hpp"

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <optional>
#include <utility>

namespace director::spawner::server {

template <typename T>
boost::asio::awaitable<runtime::RuntimeResult<T>> metered(metrics::Metrics& metrics, metrics::RuntimeCall call,
                                                          boost::asio::awaitable<runtime::RuntimeResult<T>> operation) {
  const auto started = std::chrono::steady_clock::now();
  auto result = co_await std::move(operation);
  metrics.runtime_call(call, result ? std::nullopt : std::optional<core::CallError>(result.error().error),
                       std::chrono::steady_clock::now() - started);
  co_return result;
}

}  // namespace director::spawner::server
