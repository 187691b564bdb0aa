#include "runtime/kubernetes_runtime.hpp"

#include <utility>

namespace director::spawner::runtime {
namespace {

namespace asio = boost::asio;

RuntimeError not_built() { return RuntimeError{core::CallError::unavailable, 0, "the Kubernetes runtime is not built yet"}; }

}  // namespace

KubernetesRuntime::KubernetesRuntime(KubernetesRuntimeSettings settings) : settings_(std::move(settings)) {}

asio::awaitable<RuntimeResult<RuntimeInfo>> KubernetesRuntime::ping() { co_return not_built(); }
asio::awaitable<RuntimeResult<std::optional<core::ContainerStatus>>> KubernetesRuntime::inspect(std::string) {
  co_return not_built();
}
asio::awaitable<RuntimeResult<bool>> KubernetesRuntime::image_has_health_check(std::string) { co_return false; }
asio::awaitable<RuntimeResult<void>> KubernetesRuntime::pull(std::string) { co_return RuntimeResult<void>{}; }
asio::awaitable<RuntimeResult<std::string>> KubernetesRuntime::create(core::ContainerSpec) { co_return not_built(); }
asio::awaitable<RuntimeResult<void>> KubernetesRuntime::start(std::string) { co_return not_built(); }
asio::awaitable<RuntimeResult<void>> KubernetesRuntime::stop(std::string, std::chrono::seconds) { co_return not_built(); }
asio::awaitable<RuntimeResult<void>> KubernetesRuntime::remove(std::string) { co_return not_built(); }
asio::awaitable<RuntimeResult<std::string>> KubernetesRuntime::logs(std::string, unsigned, std::size_t) {
  co_return not_built();
}
asio::awaitable<RuntimeResult<std::vector<core::ContainerStatus>>> KubernetesRuntime::list_managed() {
  co_return not_built();
}
asio::awaitable<RuntimeResult<void>> KubernetesRuntime::watch(std::function<void()>, EventHandler) {
  co_return not_built();
}

}  // namespace director::spawner::runtime
