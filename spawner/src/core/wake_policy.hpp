// The wake policy: which requests may create or start a user's container. Only page navigations
// do: everything else a browser or a monitor sends while the container is not there (XHR and
// fetch, WebSocket upgrades, favicons, scripts, uptime checks) is answered 503 with Retry-After
// and wakes nothing. HAProxy applies the same rule before the spawner (haproxy/haproxy.cfg);
// this is the spawner's copy, the one the tests pin down. Pure: no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace director::spawner::core {

// The request headers the policy reads; std::nullopt when the header is absent.
struct RequestSignals {
  std::string_view method;                       // "GET", "HEAD", ...
  std::optional<std::string_view> sec_fetch_mode;
  std::optional<std::string_view> sec_fetch_dest;
  std::optional<std::string_view> accept;
  bool upgrade = false;                          // an Upgrade header (WebSocket) is present
  // Any other Sec-Fetch-* header (Site, User, ...) is present: the client sends fetch metadata,
  // so Accept alone does not make a navigation (the same rule as haproxy.cfg's fetch_metadata).
  bool other_sec_fetch = false;
};

enum class WakeVerdict : std::uint8_t {
  wake,    // a page navigation: show the loading page, create or start the container
  refuse,  // anything else: 503 + Retry-After, nothing created or started
};

// GET or HEAD (methods are case-sensitive), no Upgrade, and either Sec-Fetch-Mode: navigate
// with Sec-Fetch-Dest document or iframe (or no Sec-Fetch-Dest), or, when no Sec-Fetch-* header
// is present at all, an Accept that includes text/html (media ranges compared
// case-insensitively, parameters ignored except q=0, which excludes the range; "*/*" and
// "text/*" are not page loads). Sec-Fetch-Dest without Sec-Fetch-Mode is refused.
WakeVerdict decide_wake(const RequestSignals& request) noexcept;

// Whether a refused request's body should be JSON: its Accept names application/json (or any
// +json type) and not text/html (the same media-range reading as decide_wake).
bool prefers_json(std::optional<std::string_view> accept) noexcept;

}  // namespace director::spawner::core
