// Translation between SPOP messages and the decision core (see docs/architecture.md, "The SPOE
// contract"). Pure functions: no I/O, no state.
#pragma once

#include "decision/director.hpp"
#include "spop/session.hpp"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace director::route {

// What a NOTIFY's `route` message asks.
struct RouteRequest {
  // std::nullopt when HAProxy sent NULL (no header) or a value that is not a STRING.
  std::optional<std::string_view> username;
  // The `retry` argument (failure feedback: the user's last connection failed): true only when
  // it is the BOOL true; absent, NULL or any other value is false.
  bool retry = false;
};

// Finds the `route` message (names matched in full). std::nullopt when the NOTIFY has none.
// The returned view points into `notify`.
std::optional<RouteRequest> find_route_request(const spop::Notify& notify);

// The variables that answer a route request (docs/architecture.md): alive, reason, label and
// host when mapped, and for an alive answer addr, port, age (ms since its check, INT32) and, when
// HAProxy may reuse the answer (hold > 0), hold (ms from now, INT32). An invalid-username answer
// to `username` also carries refused_username (shown_username of it), which HAProxy's 400 page
// shows; the core decides such answers at once, never through a check.
std::vector<spop::Action> to_actions(const decision::Answer& answer,
                                     std::optional<std::string_view> username = std::nullopt);

// How a refused username is shown to its user (the 400 page): the bytes that are printable ASCII
// and plain in HTML as they are; every other byte, and each of & < > " ' \, as \xHH
// (lowercase hex); names longer than kShownUsernameBytes are cut there and end in "...". The
// result is printable ASCII without markup or quote characters: safe in HTML text and attribute
// values, in a header and in a log line, and unambiguous (\x5c is a backslash).
inline constexpr std::size_t kShownUsernameBytes = 64;
std::string shown_username(std::string_view username);

}  // namespace director::route
