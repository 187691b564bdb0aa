#include "server/pages.hpp"

#include <nlohmann/json.hpp>

#include <boost/beast/http/field.hpp>

#include <utility>

namespace director::spawner::server {
namespace {

using net::http::Status;
using Json = nlohmann::ordered_json;

constexpr std::string_view html_type = "text/html; charset=utf-8";

// The page's frame: one style sheet for every page, no external resources.
constexpr std::string_view page_head = R"(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
)";

constexpr std::string_view page_style = R"(<style>
body { font-family: system-ui, sans-serif; margin: 0; padding: 2rem; color: #1a1a1a; background: #fafafa; }
main { max-width: 46rem; margin: 0 auto; }
h1 { font-size: 1.5rem; }
.status { font-size: 1.15rem; font-weight: 600; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
dt { font-weight: 600; }
pre { background: #fff; border: 1px solid #ccc; padding: .75rem; overflow-x: auto; white-space: pre-wrap; }
a.button { display: inline-block; padding: .5rem 1rem; border: 2px solid #1a4f8b; border-radius: .25rem; color: #1a4f8b; text-decoration: none; font-weight: 600; }
</style>
</head>
)";

// Polls the status endpoint every second and shows the phase; reloads the page (a navigation:
// HAProxy routes it to the container once it is ready) when the phase is ready or failed, or
// when the answer is not the spawner's JSON (the director routed the path to the container).
// A 503 (HAProxy answering for the spawner) stops the polling: the meta refresh goes on.
constexpr std::string_view loading_script = R"(<script>
(function () {
  var phase = document.getElementById("phase");
  function poll() {
    fetch("/.container-director/status", {headers: {"Accept": "application/json"}, cache: "no-store", credentials: "same-origin"})
      .then(function (response) {
        if (response.status === 503) return null;
        var type = response.headers.get("Content-Type") || "";
        if (!response.ok || type.indexOf("application/json") !== 0) throw new Error("not the spawner");
        return response.json();
      })
      .then(function (status) {
        if (status === null) return;
        if (typeof status.phase !== "string") throw new Error("not the spawner");
        if (status.phase === "ready" || status.phase === "failed") { location.reload(); return; }
        if (typeof status.message === "string") phase.textContent = status.message;
        setTimeout(poll, 1000);
      })
      .catch(function () { location.reload(); });
  }
  setTimeout(poll, 1000);
})();
</script>
)";

std::string document(std::string_view title, std::string_view head_extra, std::string_view main,
                     std::string_view script = {}) {
  std::string html;
  html.reserve(4096);
  html += page_head;
  html += head_extra;
  html += "<title>";
  html += html_escape(title);
  html += "</title>\n";
  html += page_style;
  html += "<body>\n<main>\n<h1>";
  html += html_escape(title);
  html += "</h1>\n";
  html += main;
  html += "</main>\n";
  html += script;
  html += "</body>\n</html>\n";
  return html;
}

// A link target safe to put in href: the request's own path and query; never a
// protocol-relative URL ("//host/...") that would lead elsewhere.
std::string retry_target(std::string_view target) {
  if (target.empty() || target.front() != '/' || target.starts_with("//") || target.starts_with("/\\")) return "/";
  return std::string(target);
}

std::string retry_link(const PageContext& context) {
  return "<p><a class=\"button\" href=\"" + html_escape(retry_target(context.target)) + "\">Try again</a></p>\n";
}

// What the runtime last said about the container, as a definition list; empty when it said nothing.
std::string container_details(const std::optional<core::ContainerStatus>& container) {
  if (!container) return "<p>The container runtime reported no container.</p>\n";
  std::string html = "<dl>\n";
  const auto item = [&html](std::string_view term, std::string_view value) {
    html += "<dt>";
    html += term;
    html += "</dt><dd>";
    html += html_escape(value);
    html += "</dd>\n";
  };
  item("Container", container->name.empty() ? container->id.substr(0, 12) : container->name);
  item("State", core::to_string(container->state));
  item("Health check", container->health == core::Health::none ? std::string_view("none") : core::to_string(container->health));
  if (container->state == core::ContainerState::exited || container->state == core::ContainerState::dead) {
    item("Exit code", std::to_string(container->exit_code));
  }
  if (container->oom_killed) item("Out of memory", "yes: the kernel killed it for exceeding its memory limit");
  if (!container->error.empty()) item("Runtime error", container->error);
  html += "</dl>\n";
  return html;
}

std::string log_section(std::string_view logs) {
  if (logs.empty()) return "<p>No log lines from the container.</p>\n";
  return "<h2>Its last log lines</h2>\n<pre>" + html_escape(logs) + "</pre>\n";
}

struct FailureText {
  Status status;
  std::string_view title;
  std::string_view explanation;
  std::optional<unsigned> retry_after;
};

FailureText failure_text(core::FailureKind kind) {
  switch (kind) {
    case core::FailureKind::runtime_unavailable:
      return {Status::service_unavailable, "The container runtime is not answering",
              "The spawner could not reach the container runtime (Docker or Podman) to start your container. "
              "This is usually brief: try again in a moment.",
              10};
    case core::FailureKind::image_missing:
      return {Status::bad_gateway, "Your container's image is missing",
              "The image your container is made from is not on the host and could not be pulled. "
              "An administrator has to make it available.",
              std::nullopt};
    case core::FailureKind::name_taken:
      return {Status::conflict, "Your container's name is taken",
              "A container with your container's name exists that the director did not create. The spawner "
              "never touches such a container: an administrator has to rename or remove it.",
              std::nullopt};
    case core::FailureKind::limits_refused:
      return {Status::bad_gateway, "The container runtime refused your container",
              "The container runtime refused to create or start your container (its limits or its template). "
              "An administrator has to look at the message below.",
              std::nullopt};
    case core::FailureKind::exited:
      return {Status::bad_gateway, "Your container stopped before it was ready",
              "Your container started, then exited before it was ready to serve. Its last log lines below "
              "may say why.",
              std::nullopt};
    case core::FailureKind::unhealthy:
      return {Status::bad_gateway, "Your container is unhealthy",
              "Your container is running, but its health check reports it unhealthy.", std::nullopt};
    case core::FailureKind::not_ready:
      return {Status::gateway_timeout, "Your container did not become ready in time",
              "Your container is running, but it was not ready to serve within the time allowed.", std::nullopt};
  }
  return {Status::service_unavailable, "Your container could not be started", "", std::nullopt};
}

Page html_page(Status status, metrics::PageName name, std::string reason, std::optional<unsigned> retry_after,
               std::string body) {
  return Page{status, name, std::move(reason), retry_after, std::string(html_type), std::move(body)};
}

Page json_page(Status status, metrics::PageName name, std::string reason, std::optional<unsigned> retry_after,
               const Json& body) {
  return Page{status, name, std::move(reason), retry_after, std::string(net::http::json_type), body.dump() + "\n"};
}

// A refusal: JSON {"error": reason, "message": explanation, "retry_after"} (the shape of
// haproxy/pages/not-a-navigation.json) or a short page saying what happened.
Page refusal(Status status, metrics::PageName name, std::string reason, std::optional<unsigned> retry_after,
             bool json, std::string_view title, std::string_view explanation) {
  if (json) {
    Json body;
    body["error"] = reason;
    body["message"] = explanation;
    if (retry_after) body["retry_after"] = *retry_after;
    return json_page(status, name, std::move(reason), retry_after, body);
  }
  std::string main = "<p role=\"status\">" + html_escape(explanation) + "</p>\n";
  return html_page(status, name, std::move(reason), retry_after, document(title, {}, main));
}

}  // namespace

net::http::Response to_response(const Page& page) {
  auto response = net::http::make_response(page.status, page.content_type, page.body);
  response.set(boost::beast::http::field::cache_control, "no-store");
  response.set("X-Director-Reason", page.reason);
  if (page.retry_after) response.set(boost::beast::http::field::retry_after, std::to_string(*page.retry_after));
  return response;
}

std::string html_escape(std::string_view text) {
  std::string escaped;
  escaped.reserve(text.size() + text.size() / 8);
  for (const char c : text) {
    switch (c) {
      case '&': escaped += "&amp;"; break;
      case '<': escaped += "&lt;"; break;
      case '>': escaped += "&gt;"; break;
      case '"': escaped += "&quot;"; break;
      case '\'': escaped += "&#39;"; break;
      default: escaped += c;
    }
  }
  return escaped;
}

std::string phase_message(const core::UserView& view, std::uint16_t container_port) {
  switch (view.phase) {
    case core::Phase::absent: return "Preparing your container";
    case core::Phase::inspecting: return "Looking for your container";
    case core::Phase::pulling: return "Pulling the image";
    case core::Phase::creating: return "Creating your container";
    case core::Phase::starting: return "Starting it";
    case core::Phase::waiting_for_ready:
      if (view.readiness == core::Readiness::health_check) return "Waiting for its health check";
      return "Waiting for it to listen on port " + std::to_string(container_port);
    case core::Phase::ready: return "Your container is ready";
    case core::Phase::failed:
      return view.failure ? std::string(failure_text(view.failure->kind).title) : "Your container could not be started";
  }
  return "Preparing your container";
}

std::string failure_reason(core::FailureKind kind) { return std::string(core::to_string(kind)); }

Page loading_page(const core::UserView& view, const PageContext& context) {
  const auto refresh = "<meta http-equiv=\"refresh\" content=\"" + std::to_string(context.refresh_interval.count()) + "\">\n";
  std::string main;
  main += "<p id=\"phase\" class=\"status\" role=\"status\" aria-live=\"polite\">" +
          html_escape(phase_message(view, context.container_port)) + "</p>\n";
  main += "<p>Your own container is being prepared. This page reloads every " +
          std::to_string(context.refresh_interval.count()) +
          " seconds and takes you there as soon as it is ready.</p>\n";
  main += "<p><a href=\"" + html_escape(retry_target(context.target)) + "\">Reload now</a></p>\n";
  return html_page(Status::ok, metrics::PageName::loading, "spawning", std::nullopt,
                   document("Starting your container", refresh, main, loading_script));
}

Page failure_page(const core::UserView& view, std::string_view logs, const PageContext& context) {
  const auto kind = view.failure ? view.failure->kind : core::FailureKind::runtime_unavailable;
  auto text = failure_text(kind);
  const auto& container = view.failure && view.failure->container ? view.failure->container : view.container;
  if (kind == core::FailureKind::exited && container && !container->error.empty()) {
    // It may never have run (a Pod whose image cannot be pulled): no "started", no log lines.
    text.explanation = "The container runtime could not run your container, or it stopped before it was ready "
                       "to serve. The runtime's error is below.";
  }
  std::string main;
  main += "<p class=\"status\" role=\"status\" aria-live=\"polite\">" + html_escape(text.explanation) + "</p>\n";
  if (view.failure && !view.failure->detail.empty()) {
    main += "<h2>What the container runtime said</h2>\n<pre>" + html_escape(view.failure->detail) + "</pre>\n";
  }
  if (kind != core::FailureKind::runtime_unavailable && kind != core::FailureKind::image_missing) {
    main += container_details(container);
    if (kind != core::FailureKind::name_taken) main += log_section(logs);  // never another's logs
  }
  main += "<p>Reason: <code>" + html_escape(failure_reason(kind)) + "</code></p>\n";
  main += retry_link(context);
  return html_page(text.status, metrics::PageName::failed, failure_reason(kind), text.retry_after,
                   document(text.title, {}, main));
}

Page unreachable_page(const core::UserView& view, std::string_view logs, const PageContext& context) {
  std::string main;
  main += "<p class=\"status\" role=\"status\" aria-live=\"polite\">The container runtime says your container is "
          "running, yet the director cannot reach it: it does not answer on port " +
          std::to_string(context.container_port) + ", or its name does not resolve.</p>\n";
  if (!context.director_reason.empty()) {
    main += "<p>The director's reason: <code>" + html_escape(context.director_reason) + "</code></p>\n";
  }
  main += container_details(view.container);
  main += log_section(logs);
  main += retry_link(context);
  return html_page(Status::bad_gateway, metrics::PageName::unreachable, "container_unreachable", std::nullopt,
                   document("Your container is running but cannot be reached", {}, main));
}

Page refused_page(bool json) {
  return refusal(Status::service_unavailable, metrics::PageName::refused, "not-a-navigation",
                 refusal_retry_after_seconds, json, "Your container is not running",
                 "your container is not running; only a page load starts it");
}

Page forbidden_page(bool json, std::string_view why) {
  return refusal(Status::forbidden, metrics::PageName::forbidden, "not-through-the-director", std::nullopt, json,
                 "Not through the director",
                 "this request did not come through the director: " + std::string(why));
}

Page no_label_page(bool json) {
  return refusal(Status::service_unavailable, metrics::PageName::no_label, "no-label", refusal_retry_after_seconds,
                 json, "The director cannot place you right now",
                 "the director cannot place you right now; try again in a moment");
}

Page status_page(const core::UserView& view, core::TimePoint now, std::uint16_t container_port) {
  Json body;
  body["phase"] = core::to_string(view.phase);
  const auto since = view.phase_since == core::TimePoint{} ? std::chrono::milliseconds(0)
                                                           : std::chrono::duration_cast<std::chrono::milliseconds>(now - view.phase_since);
  body["since_ms"] = since.count() < 0 ? 0 : since.count();
  body["message"] = phase_message(view, container_port);
  if (view.phase == core::Phase::failed && view.failure) body["reason"] = failure_reason(view.failure->kind);
  return json_page(Status::ok, metrics::PageName::status, std::string(core::to_string(view.phase)), std::nullopt, body);
}

}  // namespace director::spawner::server
