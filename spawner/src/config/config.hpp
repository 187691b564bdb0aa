// The spawner's effective configuration: defaults, then an optional JSON file (--config,
// SPAWNER_CONFIG), then environment variables, then command-line flags (later sources win),
// read by the option-table machinery the agent shares (common/src/config). Every option is
// described once, in the table in config.cpp.
#pragma once

#include "config/option_types.hpp"
#include "config/values.hpp"
#include "core/container_template.hpp"
#include "core/idle.hpp"
#include "log/log.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace director::spawner::config {

// Which container runtime, and where its API is: the Docker Engine API in DOCKER_HOST's grammar,
// "unix:///path" or "tcp://IP:PORT" (an address, not a host name: `host` is its text, IPv6
// without brackets), or "kubernetes": the Kubernetes API of the cluster the spawner runs in
// (in-cluster configuration, in_cluster.hpp; the options in KubernetesOptions).
struct RuntimeEndpoint {
  enum class Kind : std::uint8_t { unix_socket, tcp, kubernetes } kind = Kind::unix_socket;
  std::string path = "/var/run/docker.sock";  // kind == unix_socket
  std::string host;                           // kind == tcp
  std::uint16_t port = 0;                     // kind == tcp
};

// The Kubernetes runtime's own options (runtime kind kubernetes; docs/spawner.md, "Kubernetes").
struct KubernetesOptions {
  // What the pod's service account mounts: token, ca.crt and namespace.
  std::string serviceaccount_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
  std::string namespace_name;          // where every user's objects live; empty: serviceaccount_dir/namespace
  std::string volume_size = "10Gi";    // each PersistentVolumeClaim's storage request (a quantity)
  std::string storage_class;           // the claims' storageClassName; empty: the cluster's default class
  // The Pods' securityContext.fsGroup: the group the kubelet gives each user's volume, so that
  // an image running as a non-root user can write its empty home (Docker copies the image's
  // files and owners into a new volume; Kubernetes does not). 0: none.
  std::uint32_t fs_group = 0;
  // The users' Pods' securityContext, named after the Pod Security Standard they meet: baseline
  // (none beyond fs_group: the image's user, its capabilities, sudo, as with Docker) or
  // restricted (runAsNonRoot, seccompProfile RuntimeDefault, and in the container
  // allowPrivilegeEscalation false and capabilities drop ALL: an image that runs as a numeric
  // non-root USER, without sudo).
  enum class PodSecurity : std::uint8_t { baseline, restricted } pod_security = PodSecurity::baseline;
  // Whether namespace_name may be the service account's own namespace (the director's): off, the
  // spawner refuses to start there, since its right to create Pods would reach the director's
  // Secrets (in_cluster.hpp, shared_namespace_problem).
  bool share_namespace = false;
};

// The image used when SPAWNER_IMAGE is not set: the original director's code-server.
inline constexpr std::string_view default_image = "codercom/code-server:latest";

struct Config {
  // Pages for HAProxy's spawner backend: must be reachable only by HAProxy (loopback in HAProxy's
  // network namespace in compose). Requests without the director's headers are refused.
  boost::asio::ip::tcp::endpoint listen{boost::asio::ip::address_v4::loopback(), 9180};
  // /metrics, /healthz, /readyz, /status, /users, /events (the agents' feed).
  boost::asio::ip::tcp::endpoint http_listen{boost::asio::ip::address_v4::loopback(), 9181};
  unsigned threads = 0;  // 0 = one per core

  // The director's naming, the same values as the agent's and HAProxy's.
  // CONTAINER_HOST_PREFIX is container_template.host_prefix (one value, one default).
  std::uint16_t container_port = 8080;             // CONTAINER_PORT
  std::string container_domain;                    // CONTAINER_DOMAIN; empty: none
  // DNS servers for the port readiness check (same grammar as the agent's); empty: resolv.conf.
  std::vector<std::string> dns_servers;

  RuntimeEndpoint runtime;
  KubernetesOptions kubernetes;  // used when runtime.kind is kubernetes
  std::chrono::milliseconds runtime_timeout{10'000};  // one runtime API call (not pulls, not the event stream)
  std::chrono::milliseconds pull_timeout{600'000};

  // Defaults: image codercom/code-server:latest (the original director's), no command (the
  // image's own), no limits and no requests, restart no, volume prefix director-home, host
  // prefix vscode (CONTAINER_HOST_PREFIX).
  core::ContainerTemplate container_template = [] {
    core::ContainerTemplate defaults;
    defaults.image = default_image;
    return defaults;
  }();
  bool pull_missing_images = true;
  std::chrono::milliseconds ready_timeout{120'000};
  std::chrono::milliseconds stop_grace{10'000};

  // Pages.
  std::chrono::seconds refresh_interval{2};  // the loading page's meta refresh
  unsigned log_lines = 20;                   // container log lines on the error page

  // Idle retirement.
  core::IdleSettings idle;
  std::chrono::milliseconds idle_check_interval{60'000};
  // http://IP:PORT or http://NAME:PORT of the agents' HTTP listeners (for /users and
  // /connections), each as
  // parse_agent_url reads it; a NAME is resolved at every idle round, every address one agent.
  std::vector<std::string> agent_urls;

  LogLevel log_level = LogLevel::info;
  LogFormat log_format = LogFormat::text;
  std::string config_file;  // the JSON file read (--config, SPAWNER_CONFIG); empty = none
  // Where each value came from, by option key; an option absent here has its default.
  config_table::Sources sources;

  // The number of I/O threads to run (threads, or the core count when 0).
  unsigned effective_threads() const noexcept;
};

// The one parser of an agent_urls entry: "http://IP:PORT" ("http://[IPv6]:PORT") or
// "http://NAME:PORT" (config_table::parse_endpoint_or_name after the scheme), no path; the
// agents' HTTP listener. std::nullopt for anything else (the option refuses it).
std::optional<config_table::EndpointOrName> parse_agent_url(std::string_view url);

using config_table::Command;
using Invocation = config_table::Invocation<Config>;
using config_table::EnvironmentLookup;
using config_table::process_environment;

// Parses arguments (without argv[0]), the environment and the configuration file they name, as
// the agent's configuration does (common/src/config). On failure, the message names the
// offending flag, variable or file key, the value, and what is accepted. Commands: --help,
// --help-markdown, --version, --check-config, and --health (ask the spawner running with this
// configuration for GET /readyz on http_listen; main.cpp runs it).
std::variant<Invocation, std::string> parse(std::span<const std::string_view> arguments,
                                            const EnvironmentLookup& environment);

void print_help(std::ostream& out);
// The option reference as a Markdown table (docs/spawner.md embeds it).
void print_markdown(std::ostream& out);
// The effective configuration as JSON: one key per option, then effective_threads, version and
// sources. Without "config", "effective_threads", "version" and "sources" it is a valid
// configuration file.
std::string to_json(const Config& config);
std::string_view version() noexcept;

}  // namespace director::spawner::config
