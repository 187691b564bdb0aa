// What both runtimes' HTTP API calls share (DockerRuntime, KubernetesRuntime): the failure of a
// call that got no usable answer, a 2xx status, the encoding of a name or value in a target, and
// the message of an error answer. Pure: no I/O.
#pragma once

#include "runtime/runtime.hpp"

#include <string>
#include <string_view>

namespace director::spawner::runtime {

// The failure of a call without a usable answer (no connection, a timeout, a body that is not
// what the call returns): CallError::unavailable, http_status 0.
RuntimeError unavailable(std::string message);

// Whether an HTTP status is a success (2xx).
bool succeeded(unsigned http_status);

// Percent-encoding of a path segment or a query parameter value (RFC 3986 unreserved characters
// kept).
std::string url_encode(std::string_view value);

// The message of an error answer: its JSON "message" (Docker's and Podman's error body, a
// Kubernetes Status); else the body itself, shortened to one line of at most 300 characters.
std::string error_message(std::string_view body);

}  // namespace director::spawner::runtime
