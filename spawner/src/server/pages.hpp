// The pages the spawner serves on HAProxy's spawner backend, as pure functions of what the
// lifecycle says about one user (core::UserView): the loading page, one failure page per
// core::FailureKind, the "running but not reachable" page, the refusals, and the status JSON the
// loading page polls. No I/O: the endpoints (server/endpoints.hpp) pick the page.
//
// Every page: a complete HTML document (lang, title, a role="status" aria-live region for what
// changes), readable without JavaScript, `Cache-Control: no-store`, and an `X-Director-Reason`
// header naming the situation; every 5xx has a page (never a bare error). Everything that comes
// from the user (the request target) or the runtime (messages, logs) is HTML-escaped.
#pragma once

#include "core/lifecycle.hpp"
#include "metrics/metrics.hpp"
#include "net/http_server.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace director::spawner::server {

// Retry-After of the refusals (the same 5 s HAProxy's spawner backend sends).
inline constexpr unsigned refusal_retry_after_seconds = 5;
// The status endpoint, on the user's own origin (plan: the only reserved prefix).
inline constexpr std::string_view reserved_prefix = "/.container-director/";
inline constexpr std::string_view status_path = "/.container-director/status";

// What the pages need besides the user's view.
struct PageContext {
  std::string target = "/";  // the request target: the retry link and the reload go there
  std::chrono::seconds refresh_interval{2};
  std::uint16_t container_port = 8080;
  std::string director_reason;  // X-Director-Reason from HAProxy (the agent's reason), may be empty
};

struct Page {
  net::http::Status status = net::http::Status::ok;
  metrics::PageName name = metrics::PageName::loading;
  std::string reason;                  // X-Director-Reason; never empty
  std::optional<unsigned> retry_after;  // seconds
  std::string content_type;
  std::string body;
};

// The response for `page` (Content-Type, Cache-Control: no-store, X-Director-Reason,
// Retry-After). (The HTTP server drops the body of an answer to HEAD.)
net::http::Response to_response(const Page& page);

// &, <, >, " and ' as entities; other bytes unchanged.
std::string html_escape(std::string_view text);

// The phase as a sentence for the page and the status JSON ("Creating your container", ...).
std::string phase_message(const core::UserView& view, std::uint16_t container_port);

// The X-Director-Reason of a failure page: core::to_string(kind).
std::string failure_reason(core::FailureKind kind);

// 200: the user's container is on its way (any phase but failed).
Page loading_page(const core::UserView& view, const PageContext& context);
// The failure page of view.failure's kind (a view without failure is treated as
// runtime_unavailable): its status, explanation, the runtime's message, the container's state
// and last log lines, and a retry link.
Page failure_page(const core::UserView& view, std::string_view logs, const PageContext& context);
// 502: the runtime says the container is ready (running, healthy or without a check) for longer
// than the grace period, yet the director sent the user here: what the runtime says, the last
// log lines, the director's reason, and a retry link; no automatic refresh.
Page unreachable_page(const core::UserView& view, std::string_view logs, const PageContext& context);
// 503 + Retry-After: a request the wake policy refused (not a page navigation).
Page refused_page(bool json);
// 403: a request without the director's headers (it did not come through HAProxy).
Page forbidden_page(bool json, std::string_view why);
// 503 + Retry-After: the director had no label for the user (agent down, name not a label).
Page no_label_page(bool json);
// 200 JSON {"phase","since_ms","message"} (+ "reason" when failed): what the loading page polls.
Page status_page(const core::UserView& view, core::TimePoint now, std::uint16_t container_port);

}  // namespace director::spawner::server
