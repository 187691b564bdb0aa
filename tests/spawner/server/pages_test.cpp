// The pages are pure functions of a view: their status, headers and the text a user reads.
#include "server/pages.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <string>

namespace {

using namespace director::spawner;
using director::net::http::Status;

core::UserView view_in(core::Phase phase) {
  core::UserView view;
  view.label = "alice";
  view.username = "alice";
  view.phase = phase;
  view.phase_since = core::Clock::now();
  return view;
}

core::UserView failed_with(core::FailureKind kind, std::string detail = "the runtime's message") {
  auto view = view_in(core::Phase::failed);
  core::ContainerStatus container;
  container.id = "0123456789abcdef";
  container.name = "vscode-alice";
  container.managed = true;
  container.state = core::ContainerState::exited;
  container.exit_code = 137;
  view.failure = core::Failure{kind, std::move(detail), container};
  view.container = container;
  return view;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("html_escape turns every markup character into an entity") {
  CHECK(server::html_escape("<a href=\"x\" title='y'>&</a>") ==
        "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;");
  CHECK(server::html_escape("plain text") == "plain text");
}

TEST_CASE("the loading page refreshes itself, is accessible and readable without JavaScript") {
  server::PageContext context;
  context.target = "/projects/?q=1";
  context.refresh_interval = std::chrono::seconds(2);
  const auto page = server::loading_page(view_in(core::Phase::creating), context);
  CHECK(page.status == Status::ok);
  CHECK(page.content_type == "text/html; charset=utf-8");
  CHECK(contains(page.body, "<html lang=\"en\">"));
  CHECK(contains(page.body, "<title>Starting your container</title>"));
  CHECK(contains(page.body, "<meta http-equiv=\"refresh\" content=\"2\">"));
  CHECK(contains(page.body, "role=\"status\" aria-live=\"polite\">Creating your container</p>"));
  CHECK(contains(page.body, "/.container-director/status"));
  CHECK(contains(page.body, "href=\"/projects/?q=1\""));

  const auto response = server::to_response(page);
  CHECK(response[boost::beast::http::field::cache_control] == "no-store");
  CHECK(response["X-Director-Reason"] == "spawning");
}

TEST_CASE("the loading page names each phase") {
  CHECK(server::phase_message(view_in(core::Phase::pulling), 8080) == "Pulling the image");
  CHECK(server::phase_message(view_in(core::Phase::creating), 8080) == "Creating your container");
  CHECK(server::phase_message(view_in(core::Phase::starting), 8080) == "Starting it");
  auto waiting = view_in(core::Phase::waiting_for_ready);
  waiting.readiness = core::Readiness::port;
  CHECK(server::phase_message(waiting, 8443) == "Waiting for it to listen on port 8443");
  waiting.readiness = core::Readiness::health_check;
  CHECK(server::phase_message(waiting, 8443) == "Waiting for its health check");
}

TEST_CASE("a link never leads to another origin") {
  server::PageContext context;
  context.target = "//evil.example/x";
  const auto page = server::loading_page(view_in(core::Phase::creating), context);
  CHECK_FALSE(contains(page.body, "evil.example"));
  context.target = "/\"><script>x</script>";
  const auto escaped = server::loading_page(view_in(core::Phase::creating), context);
  CHECK_FALSE(contains(escaped.body, "<script>x"));
  CHECK(contains(escaped.body, "href=\"/&quot;&gt;&lt;script&gt;x&lt;/script&gt;\""));
}

TEST_CASE("each failure kind has its own page, status and reason") {
  const struct {
    core::FailureKind kind;
    Status status;
    std::string title;
  } cases[] = {
      {core::FailureKind::runtime_unavailable, Status::service_unavailable, "The container runtime is not answering"},
      {core::FailureKind::image_missing, Status::bad_gateway, "Your container&#39;s image is missing"},
      {core::FailureKind::name_taken, Status::conflict, "Your container&#39;s name is taken"},
      {core::FailureKind::limits_refused, Status::bad_gateway, "The container runtime refused your container"},
      {core::FailureKind::exited, Status::bad_gateway, "Your container stopped before it was ready"},
      {core::FailureKind::unhealthy, Status::bad_gateway, "Your container is unhealthy"},
      {core::FailureKind::not_ready, Status::gateway_timeout, "Your container did not become ready in time"},
  };
  for (const auto& expected : cases) {
    INFO(core::to_string(expected.kind));
    const auto page = server::failure_page(failed_with(expected.kind), "log line", {});
    CHECK(page.status == expected.status);
    CHECK(page.reason == core::to_string(expected.kind));
    CHECK(contains(page.body, "<title>" + expected.title + "</title>"));
    CHECK(contains(page.body, "the runtime&#39;s message"));
    CHECK(contains(page.body, ">Try again</a>"));
    CHECK_FALSE(contains(page.body, "http-equiv=\"refresh\""));
    const auto response = server::to_response(page);
    CHECK(response["X-Director-Reason"] == core::to_string(expected.kind));
    CHECK(response[boost::beast::http::field::cache_control] == "no-store");
  }
  CHECK(server::to_response(server::failure_page(failed_with(core::FailureKind::runtime_unavailable), "", {}))
            [boost::beast::http::field::retry_after] == "10");
}

TEST_CASE("the exited page shows the exit code and the escaped log lines") {
  const auto page = server::failure_page(failed_with(core::FailureKind::exited), "<b>boom</b>\n", {});
  CHECK(contains(page.body, "<dt>Exit code</dt><dd>137</dd>"));
  CHECK(contains(page.body, "&lt;b&gt;boom&lt;/b&gt;"));
  CHECK_FALSE(contains(page.body, "<b>boom"));
}

TEST_CASE("a name taken by a foreign container never shows that container's logs") {
  const auto page = server::failure_page(failed_with(core::FailureKind::name_taken), "secret output", {});
  CHECK_FALSE(contains(page.body, "secret output"));
}

TEST_CASE("the running but not reachable page shows what the runtime says and the director's reason") {
  auto view = view_in(core::Phase::ready);
  core::ContainerStatus container;
  container.id = "abc";
  container.name = "vscode-alice";
  container.managed = true;
  container.state = core::ContainerState::running;
  container.health = core::Health::healthy;
  view.container = container;
  server::PageContext context;
  context.director_reason = "connect_refused<x>";
  context.container_port = 8080;
  const auto page = server::unreachable_page(view, "listening on 127.0.0.1:9999\n", context);
  CHECK(page.status == Status::bad_gateway);
  CHECK(page.reason == "container_unreachable");
  CHECK(contains(page.body, "<dt>State</dt><dd>running</dd>"));
  CHECK(contains(page.body, "<dt>Health check</dt><dd>healthy</dd>"));
  CHECK(contains(page.body, "connect_refused&lt;x&gt;"));
  CHECK(contains(page.body, "listening on 127.0.0.1:9999"));
  CHECK(contains(page.body, "port 8080"));
  CHECK_FALSE(contains(page.body, "http-equiv=\"refresh\""));
}

TEST_CASE("refusals answer 503 with Retry-After, in JSON when the client prefers it") {
  const auto json = server::refused_page(true);
  CHECK(json.status == Status::service_unavailable);
  CHECK(json.reason == "not-a-navigation");
  const auto body = nlohmann::json::parse(json.body);
  CHECK(body["retry_after"] == 5);
  // The same shape as HAProxy's own answer (haproxy/pages/not-a-navigation.json).
  CHECK(body["error"] == "not-a-navigation");
  CHECK(body["message"].is_string());
  const auto no_label = nlohmann::json::parse(server::no_label_page(true).body);
  CHECK(no_label["error"] == "no-label");
  CHECK(no_label["message"].is_string());
  const auto response = server::to_response(json);
  CHECK(response[boost::beast::http::field::retry_after] == "5");
  CHECK(response[boost::beast::http::field::content_type] == "application/json");

  const auto html = server::refused_page(false);
  CHECK(html.content_type == "text/html; charset=utf-8");
  CHECK(contains(html.body, "<html lang=\"en\">"));

  CHECK(server::forbidden_page(false, "no headers").status == Status::forbidden);
  CHECK(server::no_label_page(true).status == Status::service_unavailable);
  CHECK(server::no_label_page(true).retry_after == 5u);
}

TEST_CASE("the status JSON gives the phase, its age and the message") {
  auto view = view_in(core::Phase::starting);
  view.phase_since = core::Clock::now() - std::chrono::milliseconds(1500);
  const auto page = server::status_page(view, core::Clock::now(), 8080);
  CHECK(page.status == Status::ok);
  const auto body = nlohmann::json::parse(page.body);
  CHECK(body["phase"] == "starting");
  CHECK(body["since_ms"].get<long>() >= 1500);
  CHECK(body["message"] == "Starting it");
  const auto failed = nlohmann::json::parse(server::status_page(failed_with(core::FailureKind::exited), core::Clock::now(), 8080).body);
  CHECK(failed["reason"] == "exited");
}

