#include "runtime/docker_runtime.hpp"

#include "net/awaitable.hpp"
#include "runtime/api_call.hpp"
#include "runtime/docker_api.hpp"
#include "runtime/line_splitter.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/http/field.hpp>

#include <stdexcept>
#include <utility>

namespace director::spawner::runtime {
namespace {

namespace asio = boost::asio;
namespace http = net::http;
using Verb = boost::beast::http::verb;
using namespace asio::experimental::awaitable_operators;

// The failure of an answer with a non-2xx status.
RuntimeError refusal(docker::Call call, const http::ClientResponse& response) {
  const unsigned status = response.result_int();
  std::string message = error_message(response.body());
  if (message.empty()) message = "answered " + std::to_string(status);
  return RuntimeError{docker::classify(call, status, message), status, std::move(message)};
}

// stream() with a deadline over the whole exchange, body included (pulls and logs end; the
// event stream does not and has none).
asio::awaitable<RuntimeResult<http::StreamHead>> bounded_stream(const http::ClientEndpoint& endpoint,
                                                                http::ClientRequest request,
                                                                std::function<void(const http::StreamHead&)> on_head,
                                                                http::OnData on_data, std::chrono::milliseconds timeout,
                                                                std::size_t body_limit) {
  asio::steady_timer deadline(co_await asio::this_coro::executor, timeout);
  auto outcome = co_await (http::stream(endpoint, std::move(request), std::move(on_head), std::move(on_data),
                                        {.timeout = timeout, .body_limit = body_limit}) ||
                           deadline.async_wait(net::nothrow_awaitable));
  using Result = RuntimeResult<http::StreamHead>;  // Beast's header constructs from anything: name the error
  if (outcome.index() == 1) {
    co_return Result(boost::system::in_place_error, unavailable("no complete answer from " + http::to_string(endpoint) +
                                                                " within " + std::to_string(timeout.count()) + " ms"));
  }
  auto& result = std::get<0>(outcome);
  if (!result) co_return Result(boost::system::in_place_error, unavailable(result.error().message));
  co_return Result(boost::system::in_place_value, std::move(*result));
}

// "repo[:tag]" -> fromImage and tag (a digest reference is pulled by name alone).
std::pair<std::string, std::string> split_image(const std::string& image) {
  if (image.find('@') != std::string::npos) return {image, ""};
  const auto colon = image.rfind(':');
  const auto slash = image.rfind('/');
  if (colon == std::string::npos || (slash != std::string::npos && colon < slash)) return {image, "latest"};
  return {image.substr(0, colon), image.substr(colon + 1)};
}

}  // namespace

void throw_exception_from_error(const RuntimeError& error, const boost::source_location&) {
  throw std::runtime_error(error.message);
}

DockerRuntime::DockerRuntime(DockerRuntimeSettings settings) : settings_(std::move(settings)) {}

http::ClientRequest DockerRuntime::make_request(Verb method, std::string_view target, std::string body) const {
  http::ClientRequest request(method, "/v" + api_version_ + std::string(target), 11);
  request.set(boost::beast::http::field::user_agent, "director-spawner");
  if (!body.empty()) {
    request.set(boost::beast::http::field::content_type, "application/json");
    request.body() = std::move(body);
  }
  return request;
}

asio::awaitable<RuntimeResult<void>> DockerRuntime::ensure_version() {
  if (!api_version_.empty()) co_return RuntimeResult<void>{};
  auto pinged = co_await ping();
  if (!pinged) co_return pinged.error();
  co_return RuntimeResult<void>{};
}

asio::awaitable<RuntimeResult<http::ClientResponse>> DockerRuntime::call(Verb method, std::string target,
                                                                         std::string body,
                                                                         std::chrono::milliseconds timeout) {
  if (auto ready = co_await ensure_version(); !ready) co_return ready.error();
  auto response = co_await http::request(settings_.endpoint, make_request(method, target, std::move(body)),
                                         {.timeout = timeout.count() > 0 ? timeout : settings_.timeout,
                                          .body_limit = max_body});
  if (!response) co_return unavailable(response.error().message);
  co_return std::move(*response);
}

asio::awaitable<RuntimeResult<RuntimeInfo>> DockerRuntime::ping() {
  http::ClientRequest request(Verb::get, "/_ping", 11);
  auto response = co_await http::request(settings_.endpoint, std::move(request),
                                         {.timeout = settings_.timeout, .body_limit = 64 * 1024});
  if (!response) co_return unavailable(response.error().message);
  if (!succeeded(response->result_int())) co_return refusal(docker::Call::other, *response);
  const std::string daemon_version((*response)["Api-Version"]);
  const auto version = docker::negotiate_api_version(daemon_version);
  if (!version) {
    co_return RuntimeError{core::CallError::refused, response->result_int(),
                           "the runtime at " + http::to_string(settings_.endpoint) + " speaks Docker API " +
                               (daemon_version.empty() ? std::string("(no Api-Version header)") : daemon_version) +
                               "; director-spawner needs " + std::string(docker::oldest_api_version) + " or later"};
  }
  api_version_ = *version;
  const std::string podman((*response)["Libpod-Api-Version"]);
  RuntimeInfo info;
  info.api_version = api_version_;
  info.name = podman.empty() ? "Docker Engine API " + daemon_version
                             : "Podman " + podman + " (Docker API " + daemon_version + ")";
  co_return info;
}

asio::awaitable<RuntimeResult<std::optional<core::ContainerStatus>>> DockerRuntime::inspect(std::string name_or_id) {
  auto response = co_await call(Verb::get, "/containers/" + url_encode(name_or_id) + "/json");
  if (!response) co_return response.error();
  if (response->result_int() == 404) co_return std::optional<core::ContainerStatus>{};
  if (!succeeded(response->result_int())) co_return refusal(docker::Call::other, *response);
  auto status = docker::parse_inspect(response->body());
  if (!status) co_return unavailable("the runtime's inspect of " + name_or_id + " is not a container");
  co_return std::optional<core::ContainerStatus>(std::move(*status));
}

asio::awaitable<RuntimeResult<bool>> DockerRuntime::image_has_health_check(std::string image) {
  // Image references are [a-z0-9./:_@-]: they go into the path as they are.
  auto response = co_await call(Verb::get, "/images/" + image + "/json");
  if (!response) co_return response.error();
  if (response->result_int() == 404) {
    co_return RuntimeError{core::CallError::image_missing, 404, error_message(response->body())};
  }
  if (!succeeded(response->result_int())) co_return refusal(docker::Call::other, *response);
  const auto has_check = docker::parse_image_has_health_check(response->body());
  if (!has_check) co_return unavailable("the runtime's inspect of image " + image + " is not an image");
  co_return *has_check;
}

asio::awaitable<RuntimeResult<void>> DockerRuntime::pull(std::string image) {
  if (auto ready = co_await ensure_version(); !ready) co_return ready.error();
  const auto reference = split_image(image);  // repository, tag
  std::string target = "/images/create?fromImage=" + url_encode(reference.first);
  if (!reference.second.empty()) target += "&tag=" + url_encode(reference.second);
  // The progress stream: one JSON object a line, until the pull ends; an error line fails it.
  LineSplitter lines(max_line);
  std::optional<std::string> error;
  std::string refusal_body;
  unsigned status = 0;
  bool too_long = false;
  auto head = co_await bounded_stream(
      settings_.endpoint, make_request(Verb::post, target, {}),
      [&](const http::StreamHead& stream_head) { status = stream_head.result_int(); },
      [&](std::string_view data) {
        if (status / 100 != 2) {
          refusal_body.append(data);
          return true;
        }
        too_long = !lines.feed(data, [&](std::string_view line) {
          if (!error) error = docker::pull_error(line);
        });
        return !too_long;
      },
      settings_.pull_timeout, max_body);
  if (!head) co_return head.error();
  if (status / 100 != 2) {
    http::ClientResponse response(head->result(), 11, std::move(refusal_body));
    auto failure = refusal(docker::Call::other, response);
    if (status == 404 || failure.error == core::CallError::not_found) failure.error = core::CallError::image_missing;
    co_return failure;
  }
  if (!error) error = docker::pull_error(lines.rest());
  if (too_long) error = "a line of the pull's progress is longer than " + std::to_string(max_line) + " bytes";
  if (error) co_return RuntimeError{core::CallError::image_missing, status, "cannot pull " + image + ": " + *error};
  co_return RuntimeResult<void>{};
}

asio::awaitable<RuntimeResult<std::string>> DockerRuntime::create(core::ContainerSpec spec) {
  if (!spec.volume_name.empty()) {
    // Labelled like the container, created before it; one that exists already is the user's.
    auto volume = co_await call(Verb::post, "/volumes/create", docker::volume_create_body(spec));
    if (!volume) co_return volume.error();
    if (!succeeded(volume->result_int()) && volume->result_int() != 409) {
      auto failure = refusal(docker::Call::other, *volume);
      if (failure.message.find("already exists") == std::string::npos) co_return failure;
    }
  }
  auto response =
      co_await call(Verb::post, "/containers/create?name=" + url_encode(spec.name), docker::create_body(spec));
  if (!response) co_return response.error();
  if (!succeeded(response->result_int())) co_return refusal(docker::Call::create, *response);
  auto id = docker::parse_created_id(response->body());
  if (id.empty()) co_return unavailable("the runtime created " + spec.name + " but named no Id");
  co_return std::move(id);
}

asio::awaitable<RuntimeResult<void>> DockerRuntime::start(std::string id, core::UserIdentity) {
  auto response = co_await call(Verb::post, "/containers/" + url_encode(id) + "/start");
  if (!response) co_return response.error();
  // 304: already running.
  if (!succeeded(response->result_int()) && response->result_int() != 304) co_return refusal(docker::Call::other, *response);
  co_return RuntimeResult<void>{};
}

asio::awaitable<RuntimeResult<void>> DockerRuntime::stop(std::string id, std::chrono::seconds grace) {
  auto response = co_await call(Verb::post, "/containers/" + url_encode(id) + "/stop?t=" + std::to_string(grace.count()),
                                {}, settings_.timeout + grace);
  if (!response) co_return response.error();
  // 304: already stopped.
  if (!succeeded(response->result_int()) && response->result_int() != 304) co_return refusal(docker::Call::other, *response);
  co_return RuntimeResult<void>{};
}

asio::awaitable<RuntimeResult<void>> DockerRuntime::remove(std::string id) {
  // force: a running container too; no v=1: volumes stay (named ones are never removed anyway).
  auto response = co_await call(Verb::delete_, "/containers/" + url_encode(id) + "?force=1");
  if (!response) co_return response.error();
  if (!succeeded(response->result_int())) co_return refusal(docker::Call::other, *response);
  co_return RuntimeResult<void>{};
}

asio::awaitable<RuntimeResult<std::string>> DockerRuntime::logs(std::string id, unsigned lines, std::size_t max_bytes) {
  if (auto ready = co_await ensure_version(); !ready) co_return ready.error();
  const std::string target =
      "/containers/" + url_encode(id) + "/logs?stdout=1&stderr=1&tail=" + std::to_string(lines);
  // The frames of `lines` lines: read at most twice what is kept (frame headers, long lines),
  // keeping the end.
  const std::size_t read_limit = 2 * max_bytes + 8 * static_cast<std::size_t>(lines) + 4096;
  std::string body;
  unsigned status = 0;
  auto head = co_await bounded_stream(
      settings_.endpoint, make_request(Verb::get, target, {}),
      [&](const http::StreamHead& stream_head) { status = stream_head.result_int(); },
      [&](std::string_view data) {
        body.append(data.substr(0, read_limit - body.size()));
        return body.size() < read_limit;
      },
      settings_.timeout, read_limit);
  if (!head) co_return head.error();
  if (status / 100 != 2) {
    co_return refusal(docker::Call::other, http::ClientResponse(head->result(), 11, std::move(body)));
  }
  std::string output = docker::demultiplex_logs(body);
  if (output.size() > max_bytes) output.erase(0, output.size() - max_bytes);
  co_return std::move(output);
}

asio::awaitable<RuntimeResult<std::vector<core::ContainerStatus>>> DockerRuntime::list_managed() {
  auto response =
      co_await call(Verb::get, "/containers/json?all=1&filters=" + url_encode(docker::managed_containers_filter()));
  if (!response) co_return response.error();
  if (!succeeded(response->result_int())) co_return refusal(docker::Call::other, *response);
  auto rows = docker::parse_list(response->body());
  if (!rows) co_return unavailable("the runtime's container list is not a JSON array");
  // The runtime filtered already; a row without the label is dropped all the same.
  std::erase_if(*rows, [](const core::ContainerStatus& row) { return !row.managed; });
  co_return std::move(*rows);
}

asio::awaitable<RuntimeResult<void>> DockerRuntime::watch(std::function<void()> on_subscribed, EventHandler on_event) {
  if (auto ready = co_await ensure_version(); !ready) co_return ready.error();
  LineSplitter lines(max_line);
  std::string refusal_body;
  unsigned status = 0;
  bool too_long = false;
  auto head = co_await http::stream(
      settings_.endpoint,
      make_request(Verb::get, "/events?filters=" + url_encode(docker::managed_events_filter()), {}),
      [&](const http::StreamHead& stream_head) {
        status = stream_head.result_int();
        if (status == 200 && on_subscribed) on_subscribed();
      },
      [&](std::string_view data) {
        if (status != 200) {
          refusal_body.append(data);
          return true;
        }
        too_long = !lines.feed(data, [&](std::string_view line) {
          if (auto event = docker::parse_event(line)) on_event(*event);
        });
        return !too_long;
      },
      {.timeout = settings_.timeout, .body_limit = max_line});
  if (!head) co_return unavailable(head.error().message);
  if (status != 200) {
    co_return refusal(docker::Call::other, http::ClientResponse(head->result(), 11, std::move(refusal_body)));
  }
  if (too_long) {
    co_return unavailable("a line of the event stream from " + http::to_string(settings_.endpoint) +
                          " is longer than " + std::to_string(max_line) + " bytes");
  }
  co_return unavailable("the runtime at " + http::to_string(settings_.endpoint) + " ended the event stream");
}

}  // namespace director::spawner::runtime
