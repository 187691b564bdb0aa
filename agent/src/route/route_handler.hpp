// Translation between SPOP messages and the decision core (see docs/architecture.md, "The SPOE
// contract"). Pure functions: no I/O, no state.
#pragma once

#include "decision/director.hpp"
#include "spop/session.hpp"

#include <optional>
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
// HAProxy may reuse the answer (hold > 0), hold (ms from now, INT32).
std::vector<spop::Action> to_actions(const decision::Answer& answer);

}  // namespace director::route
