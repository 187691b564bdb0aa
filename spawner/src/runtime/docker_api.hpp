// The Docker Engine API's wire format (Docker and Podman's compatible service), translated to
// and from the spawner's core types. Pure: no I/O; DockerRuntime (docker_runtime.hpp) does the
// HTTP. Every parser takes what the runtime sent, bounded by the caller, and never throws on
// bad input: it returns nullopt (or skips the row).
#pragma once

#include "core/container.hpp"
#include "core/container_template.hpp"
#include "core/lifecycle.hpp"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace director::spawner::runtime::docker {

// The API version this client speaks, and the oldest it accepts from a daemon. Docker 29
// refuses clients below 1.44; Podman 4.3 reports 1.41.
inline constexpr std::string_view client_api_version = "1.44";
inline constexpr std::string_view oldest_api_version = "1.41";

// The version every call uses: min(client_api_version, the daemon's /_ping Api-Version).
// nullopt when the daemon's version is not "<major>.<minor>" or is older than
// oldest_api_version (the caller says so, naming both).
std::optional<std::string> negotiate_api_version(std::string_view daemon_version);

// The `filters` query value that selects managed containers, for listing:
// {"label":["io.container-director.managed=true"]}. The label filter names key AND value:
// Podman (4.3 here; podman#26702) matches nothing for a key alone.
std::string managed_containers_filter();
// The same for /events, with {"type":["container"]} too.
std::string managed_events_filter();

// POST /containers/create?name=<spec.name>: the JSON body.
std::string create_body(const core::ContainerSpec& spec);
// POST /volumes/create: {"Name": spec.volume_name, "Labels": the spec's labels}.
std::string volume_create_body(const core::ContainerSpec& spec);

// POST /containers/create's answer {"Id": ...} -> the id; empty when it names none.
std::string parse_created_id(std::string_view json);

// GET /containers/{id}/json -> the container.
std::optional<core::ContainerStatus> parse_inspect(std::string_view json);
// GET /containers/json?all=1 -> one status per row (rows that are not objects are skipped;
// health comes from the row's Status text, e.g. "Up 3 minutes (healthy)").
std::optional<std::vector<core::ContainerStatus>> parse_list(std::string_view json);
// GET /images/{name}/json -> whether its Config has a health check (a Test other than NONE).
std::optional<bool> parse_image_has_health_check(std::string_view json);

// One line of GET /events -> the event, when it is about a managed container and one of the
// kinds the spawner follows: create, start, stop, die (with Actor.Attributes.exitCode),
// health ("health_status: <status>" from Docker; "health_status" with a top-level
// HealthStatus from Podman), destroy (Docker) or remove (Podman). nullopt for anything else.
// Podman 4.3's HealthStatus is the status before the check that emitted the event: treat a
// health event as "look again" (inspect) rather than as the new status.
std::optional<core::ContainerEvent> parse_event(std::string_view line);

// POST /images/create's progress stream (one JSON object a line): the first error it reports
// ("error" or "errorDetail.message"), or nullopt when it reports none.
std::optional<std::string> pull_error(std::string_view progress);

// Which call an HTTP failure came from: create's 404 is the image; Podman answers a name
// conflict on create with 500 "that name is already in use" where Docker says 409.
enum class Call : std::uint8_t { other, create };

// The class of a runtime's non-2xx answer: 5xx -> unavailable, 404 -> not_found (create:
// image_missing when the message names an image), 409 -> conflict, other 4xx -> refused.
core::CallError classify(Call call, unsigned http_status, std::string_view message);

// GET /containers/{id}/logs: without a TTY the body is frames (an 8-byte header: stream 0/1/2,
// three zero bytes, the payload's length big-endian in four) which this undoes; a TTY's body
// is raw and returned as is. A frame cut short at the end keeps what it has.
std::string demultiplex_logs(std::string_view body);

}  // namespace director::spawner::runtime::docker
