#include "config/config.hpp"

#include "config/in_cluster.hpp"

#include "config/option_table.hpp"
#include "config/values.hpp"

#include <algorithm>
#include <array>
#include <utility>

namespace director::spawner::config {
namespace {

using config_table::accepted;
using config_table::Failure;
using config_table::format_duration;
using config_table::parse_integer;
using config_table::set_duration;
using Json = nlohmann::ordered_json;
using Option = config_table::Option<Config>;
using Table = config_table::OptionTable<Config>;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

constexpr std::string_view config_key = "config";

// An enumerated option: the values it takes, in the order messages list them, each named by
// `name` (for the core's types, the core's own to_string: Docker's restart policy names).
template <typename Value, std::size_t count>
struct OneOf {
  std::array<Value, count> values;
  std::string_view (*name)(Value) noexcept;

  // "a, b or c".
  std::string listed() const {
    std::string out;
    for (std::size_t i = 0; i < count; ++i) {
      if (i > 0) out += i + 1 == count ? " or " : ", ";
      out += name(values[i]);
    }
    return out;
  }

  Failure set(Value& target, std::string_view text) const {
    for (const auto value : values) {
      if (name(value) == text) {
        target = value;
        return accepted;
      }
    }
    return listed();
  }
};

constexpr OneOf<core::RestartPolicy, 4> restart_policies{
    {core::RestartPolicy::no, core::RestartPolicy::on_failure, core::RestartPolicy::unless_stopped,
     core::RestartPolicy::always},
    core::to_string};
constexpr OneOf<core::IdleAction, 2> idle_actions{{core::IdleAction::stop, core::IdleAction::remove}, core::to_string};
// pull_missing_images: true is "missing" (pull what the runtime does not have), false "never".
std::string_view pull_name(bool pull_missing) noexcept { return pull_missing ? "missing" : "never"; }
constexpr OneOf<bool, 2> pull_policies{{true, false}, pull_name};

// --- the runtime's address ------------------------------------------------------------------------

using config_table::is_socket_path;

constexpr std::string_view kubernetes_runtime = "kubernetes";

Failure set_runtime(RuntimeEndpoint& target, std::string_view text) {
  constexpr std::string_view expected =
      "unix:///ABSOLUTE/PATH (at most 107 characters) or tcp://IP:PORT ([IPv6]:PORT) for a Docker Engine API, e.g. "
      "unix:///var/run/docker.sock or tcp://127.0.0.1:2375, or kubernetes";
  constexpr std::string_view unix_scheme = "unix://";
  constexpr std::string_view tcp_scheme = "tcp://";
  if (text == kubernetes_runtime) {
    target = RuntimeEndpoint{};
    target.kind = RuntimeEndpoint::Kind::kubernetes;
    target.path.clear();
    return accepted;
  }
  if (text.starts_with(unix_scheme) && is_socket_path(text.substr(unix_scheme.size()))) {
    target = RuntimeEndpoint{};
    target.path = text.substr(unix_scheme.size());
    return accepted;
  }
  if (text.starts_with(tcp_scheme)) {
    if (const auto endpoint = config_table::parse_endpoint(text.substr(tcp_scheme.size()))) {
      target = RuntimeEndpoint{};
      target.kind = RuntimeEndpoint::Kind::tcp;
      target.path.clear();
      target.host = endpoint->address().to_string();
      target.port = endpoint->port();
      return accepted;
    }
  }
  return std::string(expected);
}

std::string format_runtime(const RuntimeEndpoint& runtime) {
  if (runtime.kind == RuntimeEndpoint::Kind::kubernetes) return std::string(kubernetes_runtime);
  if (runtime.kind == RuntimeEndpoint::Kind::unix_socket) return "unix://" + runtime.path;
  const bool v6 = runtime.host.find(':') != std::string::npos;
  return "tcp://" + (v6 ? "[" + runtime.host + "]" : runtime.host) + ":" + std::to_string(runtime.port);
}

// --- the container template -----------------------------------------------------------------------

// An image reference as Docker writes it: [REGISTRY[:PORT]/]NAME[:TAG][@DIGEST].
Failure set_image(std::string& target, std::string_view text) {
  const auto allowed = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-' || c == '/' || c == ':' || c == '@';
  };
  const auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
  if (text.empty() || text.size() > 255 || !std::all_of(text.begin(), text.end(), allowed) || !alnum(text.front()) ||
      !alnum(text.back()))
    return "an image reference of at most 255 characters, [REGISTRY/]NAME[:TAG][@DIGEST] of letters, digits and . _ "
           "- / : @, starting and ending with a letter or digit, e.g. codercom/code-server:latest";
  target = text;
  return accepted;
}

// A JSON array of strings, as text: the environment's and the command line's spelling of a
// command. std::nullopt when it is not one.
std::optional<std::vector<std::string>> parse_string_array(std::string_view text) {
  const auto document = Json::parse(text, nullptr, false);
  if (document.is_discarded() || !document.is_array()) return std::nullopt;
  std::vector<std::string> strings;
  for (const auto& element : document) {
    if (!element.is_string()) return std::nullopt;
    strings.push_back(element.get<std::string>());
  }
  return strings;
}

bool has_nul(std::string_view text) { return text.find('\0') != std::string_view::npos; }

constexpr std::size_t longest_command = 64 * 1024;

Failure set_command(std::vector<std::string>& target, std::string_view text) {
  constexpr std::string_view expected =
      "a JSON array of strings (at most 65536 characters), e.g. [\"code-server\",\"--bind-addr\",\"0.0.0.0:8080\"], "
      "or empty for the image's own command";
  if (text.empty()) {
    target.clear();
    return accepted;
  }
  auto command = text.size() <= longest_command ? parse_string_array(text) : std::nullopt;
  if (!command || command->empty() ||
      std::any_of(command->begin(), command->end(), [](const std::string& s) { return has_nul(s); }))
    return std::string(expected);
  target = std::move(*command);
  return accepted;
}

// A health check command: a JSON array of strings (run as CMD), or any other text as one shell
// command (CMD-SHELL); empty for none.
Failure set_health_command(std::vector<std::string>& target, std::string_view text) {
  constexpr std::string_view expected =
      "a JSON array of strings run as is (e.g. [\"curl\",\"-f\",\"http://localhost:8080/\"]), a shell command "
      "(text not starting with [, without control characters, e.g. curl -f http://localhost:8080/), at most 65536 "
      "characters, or empty for none";
  if (text.size() > longest_command || has_nul(text)) return std::string(expected);
  if (text.empty()) {
    target.clear();
    return accepted;
  }
  if (!text.starts_with('[')) {
    if (!config_table::is_plain_text(text, longest_command)) return std::string(expected);
    target = {std::string(text)};
    return accepted;
  }
  auto command = parse_string_array(text);
  if (!command || command->empty()) return std::string(expected);
  target = std::move(*command);
  return accepted;
}

// A health command as the file and --check-config spell it: one string for a shell command.
Json show_health_command(const std::vector<std::string>& command) {
  if (command.size() == 1) return command.front();
  return command;
}

bool is_environment_name(std::string_view name) {
  const auto start = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  const auto rest = [&](char c) { return start(c) || (c >= '0' && c <= '9'); };
  return !name.empty() && name.size() <= 255 && start(name.front()) && std::all_of(name.begin(), name.end(), rest);
}

// NAME=VALUE entries: comma-separated, or a JSON array of strings (values may then hold commas).
Failure set_environment(std::vector<std::string>& target, std::string_view text) {
  constexpr std::string_view expected =
      "NAME=VALUE entries (NAME of [A-Za-z0-9_], not starting with a digit) separated by commas, e.g. "
      "TZ=UTC,HOME_USER={username}, or a JSON array of such strings for values with commas (in the file: an array "
      "of strings), at most 65536 characters, or empty for none";
  if (text.size() > longest_command || has_nul(text)) return std::string(expected);
  std::vector<std::string> entries;
  if (text.starts_with('[')) {
    auto parsed = parse_string_array(text);
    if (!parsed) return std::string(expected);
    entries = std::move(*parsed);
  } else {
    for (const auto entry : config_table::split_list(text)) entries.emplace_back(entry);
  }
  for (const auto& entry : entries) {
    const auto equals = entry.find('=');
    if (equals == std::string::npos || !is_environment_name(std::string_view(entry).substr(0, equals)) || has_nul(entry))
      return std::string(expected);
  }
  target = std::move(entries);
  return accepted;
}

// A Docker object name (network, volume prefix): [a-zA-Z0-9][a-zA-Z0-9_.-]*.
bool is_object_name(std::string_view text, std::size_t longest) {
  const auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
  return !text.empty() && text.size() <= longest && alnum(text.front()) &&
         std::all_of(text.begin(), text.end(), [&](char c) { return alnum(c) || c == '_' || c == '.' || c == '-'; });
}

Failure set_network(std::string& target, std::string_view text) {
  if (!text.empty() && !is_object_name(text, 64))
    return "a network name of 1 to 64 characters of [a-zA-Z0-9_.-] starting with a letter or digit (e.g. "
           "director, host or none), or empty for the runtime's default";
  target = text;
  return accepted;
}

Failure set_volume_mount(std::string& target, std::string_view text) {
  const bool valid = text.starts_with('/') && config_table::is_plain_text(text, 4096) &&
                     text.find(':') == std::string_view::npos && text.find(',') == std::string_view::npos;
  if (!text.empty() && !valid)
    return "an absolute path in the container without : or , (at most 4096 characters), e.g. /home/coder, or "
           "empty for no volume";
  target = text;
  return accepted;
}

Failure set_volume_prefix(std::string& target, std::string_view text) {
  if (!is_object_name(text, 64))
    return "1 to 64 characters of [a-zA-Z0-9_.-] starting with a letter or digit (the volume is PREFIX-<label>)";
  target = text;
  return accepted;
}

// Memory: a number of bytes with an optional unit b, k, m or g (1024-based, as Docker's
// --memory); 0 for none (`zero` says what none means: no limit, no request), else at least 6m
// (Docker's minimum). The grammar of the limit and of the request.
constexpr std::array<std::pair<char, std::uint64_t>, 4> memory_units{{
    {'g', 1ULL << 30}, {'m', 1ULL << 20}, {'k', 1ULL << 10}, {'b', 1}}};

Failure set_memory(std::uint64_t& target, std::string_view text, std::string_view zero) {
  const std::string expected =
      "0 for " + std::string(zero) +
      ", or from 6m to 1024g: an integer with an optional unit b, k, m or g (1024-based), e.g. 2g or 512m";
  std::string_view digits = text;
  std::uint64_t unit = 1;
  if (!text.empty()) {
    const auto last = static_cast<char>(std::tolower(static_cast<unsigned char>(text.back())));
    for (const auto& [name, size] : memory_units) {
      if (last == name) {
        unit = size;
        digits.remove_suffix(1);
      }
    }
  }
  const auto count = parse_integer<std::uint64_t>(digits, 0, (1024ULL << 30) / unit);
  if (!count) return std::string(expected);
  const auto bytes = *count * unit;
  if (bytes != 0 && bytes < (6ULL << 20)) return std::string(expected);
  target = bytes;
  return accepted;
}

// The largest unit that shows the value exactly: "2g", "512m", "0".
std::string format_memory(std::uint64_t bytes) {
  if (bytes == 0) return "0";
  for (const auto& [name, size] : memory_units)
    if (bytes % size == 0) return std::to_string(bytes / size) + (name == 'b' ? std::string() : std::string(1, name));
  return std::to_string(bytes);
}

constexpr std::uint64_t nanos_per_cpu = 1'000'000'000;

// CPUs: a decimal number with at most 9 decimals, 0 for none (`zero`: no limit, no request),
// else from 0.01 to 1024. The grammar of the limit and of the request.
Failure set_cpus(std::uint64_t& target, std::string_view text, std::string_view zero) {
  const std::string expected =
      "0 for " + std::string(zero) + ", or a number of CPUs from 0.01 to 1024 with at most 9 decimals, e.g. 1.5";
  const auto dot = text.find('.');
  const auto whole_text = text.substr(0, dot);
  const auto fraction_text = dot == std::string_view::npos ? std::string_view{} : text.substr(dot + 1);
  const auto whole = parse_integer<std::uint64_t>(whole_text, 0, 1024);
  if (!whole || (dot != std::string_view::npos && (fraction_text.empty() || fraction_text.size() > 9)))
    return std::string(expected);
  std::uint64_t fraction = 0;
  if (!fraction_text.empty()) {
    const auto digits = parse_integer<std::uint64_t>(fraction_text, 0, 999'999'999);
    if (!digits) return std::string(expected);
    fraction = *digits;
    for (auto i = fraction_text.size(); i < 9; ++i) fraction *= 10;
  }
  const auto nanos = *whole * nanos_per_cpu + fraction;
  if (nanos != 0 && (nanos < nanos_per_cpu / 100 || nanos > 1024 * nanos_per_cpu)) return std::string(expected);
  target = nanos;
  return accepted;
}

// "1.5", "2", "0".
std::string format_cpus(std::uint64_t nano_cpus) {
  auto text = std::to_string(nano_cpus / nanos_per_cpu);
  if (const auto fraction = nano_cpus % nanos_per_cpu; fraction != 0) {
    auto digits = std::to_string(fraction);
    digits.insert(0, 9 - digits.size(), '0');
    digits.erase(digits.find_last_not_of('0') + 1);
    text += "." + digits;
  }
  return text;
}

// --- the Kubernetes runtime -----------------------------------------------------------------------

Failure set_serviceaccount_dir(std::string& target, std::string_view text) {
  if (!text.starts_with('/') || !config_table::is_plain_text(text, 4096))
    return "an absolute directory path (at most 4096 characters), e.g. /var/run/secrets/kubernetes.io/serviceaccount";
  target = text;
  return accepted;
}

// A namespace's name is a DNS label (RFC 1123), as the API validates it.
Failure set_namespace(std::string& target, std::string_view text) {
  if (!text.empty() && !config_table::is_dns_label(text))
    return "empty for the service account's own namespace (the namespace file of kubernetes_serviceaccount_dir), or a "
           "namespace name: 1 to 63 characters of [a-z0-9-], starting and ending with a letter or digit";
  target = text;
  return accepted;
}

// A storage size as Kubernetes writes quantities (resource.Quantity), in the part of its grammar
// that sizes volumes: a positive integer without a sign, a fraction or an exponent, and an
// optional suffix, binary (Ki Mi Gi Ti Pi Ei, powers of 1024) or decimal (k M G T P E).
Failure set_storage_quantity(std::string& target, std::string_view text) {
  constexpr std::array<std::string_view, 13> suffixes{"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
                                                      "k", "M",  "G",  "T",  "P",  "E"};
  const auto digits_end = std::min(text.find_first_not_of("0123456789"), text.size());
  const auto digits = text.substr(0, digits_end);
  const bool positive = !digits.empty() && digits.size() <= 18 && digits.front() != '0';
  if (!positive || std::find(suffixes.begin(), suffixes.end(), text.substr(digits_end)) == suffixes.end())
    return "a Kubernetes storage quantity: a positive integer of at most 18 digits (no leading zero, sign, fraction or "
           "exponent) with an optional suffix Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024) or k, M, G, T, P, E (powers of "
           "1000), e.g. 10Gi or 500M";
  target = text;
  return accepted;
}

// A storage class's name is a DNS subdomain (RFC 1123): at most 253 characters.
Failure set_storage_class(std::string& target, std::string_view text) {
  if (!text.empty() && (text.size() > 253 || !config_table::is_dns_name(text)))
    return "empty for the cluster's default storage class, or a storage class name: a DNS subdomain of at most 253 "
           "characters (dot-separated labels of [a-z0-9-], each starting and ending with a letter or digit)";
  target = text;
  return accepted;
}

// --- idle retirement inputs -----------------------------------------------------------------------

bool is_agent_url(std::string_view text) { return parse_agent_url(text).has_value(); }

// The longest idle timeout: 30 days.
constexpr milliseconds longest_idle_timeout = std::chrono::hours(24 * 30);

Failure set_idle_timeout(milliseconds& target, std::string_view text) {
  if (config_table::parse_duration(text) == milliseconds(0)) {
    target = milliseconds(0);
    return accepted;
  }
  if (set_duration(target, text, minutes(1), longest_idle_timeout))
    return "0s for never, or " + config_table::duration_accepted(minutes(1), longest_idle_timeout);
  return accepted;
}

// refresh_interval is whole seconds: the page's <meta http-equiv="refresh" content="N">.
Failure set_refresh_interval(seconds& target, std::string_view text) {
  constexpr std::string_view expected = "whole seconds from 1s to 60s, e.g. 2s";
  milliseconds value{};
  if (set_duration(value, text, seconds(1), seconds(60)) || value.count() % 1000 != 0) return std::string(expected);
  target = std::chrono::duration_cast<seconds>(value);
  return accepted;
}

Json duration(milliseconds value) { return format_duration(value); }

std::vector<Option> options() {
  return {
      {"config", "SPAWNER_CONFIG", "--config",
       "JSON file of options (keys as printed by --check-config); the environment and flags override it. Default none",
       [](Config& c, std::string_view v) { return config_table::set_config_path(c.config_file, v); },
       [](const Config& c) -> Json { return c.config_file; }},
      {"listen", "SPAWNER_LISTEN", "--listen",
       "Listen address of the pages (the loading and error pages, /.container-director/status) for HAProxy's spawner "
       "backend, IP:PORT ([IPv6]:PORT); only HAProxy should reach it. Default 127.0.0.1:9180",
       [](Config& c, std::string_view v) { return config_table::set_listen_address(c.listen, v, "127.0.0.1:9180"); },
       [](const Config& c) -> Json { return config_table::format_endpoint(c.listen); }},
      {"http_listen", "SPAWNER_HTTP_LISTEN", "--http-listen",
       "HTTP listen address for /metrics, /healthz, /readyz, /status, /users and /events (the agents' feed), IP:PORT "
       "([IPv6]:PORT). Default 127.0.0.1:9181",
       [](Config& c, std::string_view v) { return config_table::set_listen_address(c.http_listen, v, "127.0.0.1:9181"); },
       [](const Config& c) -> Json { return config_table::format_endpoint(c.http_listen); }},
      {"threads", "SPAWNER_THREADS", "--threads", "I/O threads; 0 = one per core. Default 0",
       [](Config& c, std::string_view v) { return config_table::set_threads(c.threads, v); },
       [](const Config& c) -> Json { return c.threads; }},
      {"container_host_prefix", "CONTAINER_HOST_PREFIX", "--container-host-prefix",
       "Container name and host = PREFIX-<label>, as the agent and HAProxy name it. Default vscode",
       [](Config& c, std::string_view v) {
         return config_table::set_container_host_prefix(c.container_template.host_prefix, v);
       },
       [](const Config& c) -> Json { return c.container_template.host_prefix; }},
      {"container_port", "CONTAINER_PORT", "--container-port",
       "Port the user containers listen on (readiness waits for it). Default 8080",
       [](Config& c, std::string_view v) { return config_table::set_port(c.container_port, v); },
       [](const Config& c) -> Json { return c.container_port; }},
      {"container_domain", "CONTAINER_DOMAIN", "--container-domain",
       "Optional domain of the container host (PREFIX-<label>.DOMAIN), as the agent's. Default none",
       [](Config& c, std::string_view v) { return config_table::set_container_domain(c.container_domain, v); },
       [](const Config& c) -> Json { return c.container_domain; }},
      {"dns_servers", "SPAWNER_DNS_SERVER", "--dns-server",
       "Comma-separated DNS servers for the readiness check: IP, IPv4:PORT, [IPv6] or [IPv6]:PORT (port 53 when "
       "absent). Default: the system's resolv.conf",
       [](Config& c, std::string_view v) { return config_table::set_dns_servers(c.dns_servers, v); },
       [](const Config& c) -> Json { return c.dns_servers; }},
      {"runtime", "SPAWNER_RUNTIME", "--runtime",
       "The container runtime: a Docker Engine API (Docker or Podman) at unix:///PATH or tcp://IP:PORT, or kubernetes "
       "(the API server of the cluster the spawner runs in, found as a pod finds it: KUBERNETES_SERVICE_HOST, "
       "KUBERNETES_SERVICE_PORT and the service account; docs/spawner.md). Default unix:///var/run/docker.sock",
       [](Config& c, std::string_view v) { return set_runtime(c.runtime, v); },
       [](const Config& c) -> Json { return format_runtime(c.runtime); }},
      {"kubernetes_serviceaccount_dir", "SPAWNER_KUBERNETES_SERVICEACCOUNT_DIR", "--kubernetes-serviceaccount-dir",
       "With runtime kubernetes: the service account's directory, its token (read again when it changes), ca.crt "
       "and namespace. Default /var/run/secrets/kubernetes.io/serviceaccount",
       [](Config& c, std::string_view v) { return set_serviceaccount_dir(c.kubernetes.serviceaccount_dir, v); },
       [](const Config& c) -> Json { return c.kubernetes.serviceaccount_dir; }},
      {"kubernetes_namespace", "SPAWNER_KUBERNETES_NAMESPACE", "--kubernetes-namespace",
       "With runtime kubernetes: the namespace of every user's Pod, Service and PersistentVolumeClaim. Default: the "
       "service account's (its namespace file)",
       [](Config& c, std::string_view v) { return set_namespace(c.kubernetes.namespace_name, v); },
       [](const Config& c) -> Json { return c.kubernetes.namespace_name; }},
      {"kubernetes_share_namespace", "SPAWNER_KUBERNETES_SHARE_NAMESPACE", "--kubernetes-share-namespace",
       "With runtime kubernetes: true lets kubernetes_namespace be the spawner's own namespace (its service account's), "
       "where its right to create Pods would reach the director's Secrets; false refuses to start then "
       "(docs/kubernetes.md). Default false",
       [](Config& c, std::string_view v) -> Failure {
         const auto value = config_table::parse_boolean(v);
         if (!value) return "true or false";
         c.kubernetes.share_namespace = *value;
         return accepted;
       },
       [](const Config& c) -> Json { return c.kubernetes.share_namespace; }},
      {"kubernetes_volume_size", "SPAWNER_KUBERNETES_VOLUME_SIZE", "--kubernetes-volume-size",
       "With runtime kubernetes: the storage each user's PersistentVolumeClaim requests. Default 10Gi",
       [](Config& c, std::string_view v) { return set_storage_quantity(c.kubernetes.volume_size, v); },
       [](const Config& c) -> Json { return c.kubernetes.volume_size; }},
      {"kubernetes_storage_class", "SPAWNER_KUBERNETES_STORAGE_CLASS", "--kubernetes-storage-class",
       "With runtime kubernetes: the storage class of each user's PersistentVolumeClaim. Default: the cluster's "
       "default class",
       [](Config& c, std::string_view v) { return set_storage_class(c.kubernetes.storage_class, v); },
       [](const Config& c) -> Json { return c.kubernetes.storage_class; }},
      {"kubernetes_fs_group", "SPAWNER_KUBERNETES_FS_GROUP", "--kubernetes-fs-group",
       "With runtime kubernetes: the group that owns each user's volume (the Pods' securityContext.fsGroup), e.g. "
       "1000 for code-server, whose user cannot write a new volume whose root directory is root's (as provisioners commonly make it). Default 0 (none)",
       [](Config& c, std::string_view v) -> Failure {
         const auto value = parse_integer<std::uint32_t>(v, 0, 2'147'483'647);
         if (!value) return "a group id from 1 to 2147483647, or 0 for none";
         c.kubernetes.fs_group = *value;
         return accepted;
       },
       [](const Config& c) -> Json { return c.kubernetes.fs_group; }},
      {"kubernetes_pod_security", "SPAWNER_KUBERNETES_POD_SECURITY", "--kubernetes-pod-security",
       "With runtime kubernetes: the Pod Security Standard the users' Pods meet. baseline: no securityContext but "
       "kubernetes_fs_group (the image's user, capabilities and sudo, as with Docker); restricted: runAsNonRoot, "
       "seccompProfile RuntimeDefault, allowPrivilegeEscalation false, capabilities drop ALL (the image must run as a "
       "numeric non-root USER, e.g. code-server's 1000; no sudo). Default baseline",
       [](Config& c, std::string_view v) -> Failure {
         if (v == "baseline") {
           c.kubernetes.pod_security = KubernetesOptions::PodSecurity::baseline;
         } else if (v == "restricted") {
           c.kubernetes.pod_security = KubernetesOptions::PodSecurity::restricted;
         } else {
           return "baseline or restricted";
         }
         return accepted;
       },
       [](const Config& c) -> Json {
         return c.kubernetes.pod_security == KubernetesOptions::PodSecurity::restricted ? "restricted" : "baseline";
       }},
      {"runtime_timeout", "SPAWNER_RUNTIME_TIMEOUT", "--runtime-timeout",
       "Timeout of one runtime API call (not pulls, not the event stream). Default 10s",
       [](Config& c, std::string_view v) { return set_duration(c.runtime_timeout, v, milliseconds(100), minutes(10)); },
       [](const Config& c) -> Json { return duration(c.runtime_timeout); }},
      {"pull_timeout", "SPAWNER_PULL_TIMEOUT", "--pull-timeout", "Timeout of an image pull. Default 10m",
       [](Config& c, std::string_view v) { return set_duration(c.pull_timeout, v, seconds(1), minutes(120)); },
       [](const Config& c) -> Json { return duration(c.pull_timeout); }},
      {"image", "SPAWNER_IMAGE", "--image", "Image of every user's container. Default codercom/code-server:latest",
       [](Config& c, std::string_view v) { return set_image(c.container_template.image, v); },
       [](const Config& c) -> Json { return c.container_template.image; }},
      {"command", "SPAWNER_COMMAND", "--command",
       "Command of the container, a JSON array; {username} and {label} in an entry are replaced by the user's. "
       "Default: the image's own",
       [](Config& c, std::string_view v) { return set_command(c.container_template.command, v); },
       [](const Config& c) -> Json { return c.container_template.command; }, false, true},
      {"environment", "SPAWNER_ENV", "--env",
       "Environment of the container, NAME=VALUE entries; {username} and {label} in a VALUE are replaced by the "
       "user's. Shown as \"(redacted)\" once set (--check-config, the startup log, /status). Default none",
       [](Config& c, std::string_view v) { return set_environment(c.container_template.environment, v); },
       [](const Config& c) -> Json { return c.container_template.environment; }, true, true},
      {"network", "SPAWNER_NETWORK", "--network",
       "Network the container joins, with the alias PREFIX-<label> (the agent's DNS must resolve it there); not with "
       "runtime kubernetes. Default: the runtime's",
       [](Config& c, std::string_view v) { return set_network(c.container_template.network, v); },
       [](const Config& c) -> Json { return c.container_template.network; }},
      {"volume_mount", "SPAWNER_VOLUME_MOUNT", "--volume-mount",
       "Where each user's own volume (PREFIX-<label> of volume_prefix) is mounted in their container. Default: no "
       "volume",
       [](Config& c, std::string_view v) { return set_volume_mount(c.container_template.volume_mount, v); },
       [](const Config& c) -> Json { return c.container_template.volume_mount; }},
      {"volume_prefix", "SPAWNER_VOLUME_PREFIX", "--volume-prefix",
       "Name of each user's volume = PREFIX-<label>. Default director-home",
       [](Config& c, std::string_view v) { return set_volume_prefix(c.container_template.volume_prefix, v); },
       [](const Config& c) -> Json { return c.container_template.volume_prefix; }},
      {"memory", "SPAWNER_MEMORY", "--memory", "Memory limit of each container, e.g. 2g. Default 0 (no limit)",
       [](Config& c, std::string_view v) { return set_memory(c.container_template.memory_bytes, v, "no limit"); },
       [](const Config& c) -> Json { return format_memory(c.container_template.memory_bytes); }},
      {"cpus", "SPAWNER_CPUS", "--cpus", "CPU limit of each container, e.g. 1.5. Default 0 (no limit)",
       [](Config& c, std::string_view v) { return set_cpus(c.container_template.nano_cpus, v, "no limit"); },
       [](const Config& c) -> Json { return format_cpus(c.container_template.nano_cpus); }},
      {"memory_request", "SPAWNER_MEMORY_REQUEST", "--memory-request",
       "Memory the scheduler reserves for each container (Kubernetes' resources.requests; Docker has none and "
       "ignores it), at most the limit. Default 0 (none: Kubernetes takes the limit, if any)",
       [](Config& c, std::string_view v) {
         return set_memory(c.container_template.memory_request_bytes, v, "no request");
       },
       [](const Config& c) -> Json { return format_memory(c.container_template.memory_request_bytes); }},
      {"cpus_request", "SPAWNER_CPUS_REQUEST", "--cpus-request",
       "CPUs the scheduler reserves for each container (Kubernetes' resources.requests; Docker has none and ignores "
       "it), at most the limit. Default 0 (none: Kubernetes takes the limit, if any)",
       [](Config& c, std::string_view v) { return set_cpus(c.container_template.nano_cpus_request, v, "no request"); },
       [](const Config& c) -> Json { return format_cpus(c.container_template.nano_cpus_request); }},
      {"pids_limit", "SPAWNER_PIDS_LIMIT", "--pids-limit",
       "Process limit of each container; not with runtime kubernetes. Default 0 (no limit)",
       [](Config& c, std::string_view v) -> Failure {
         const auto value = parse_integer<std::int64_t>(v, 0, 4'194'304);
         if (!value) return "an integer from 0 (no limit) to 4194304";
         c.container_template.pids_limit = *value;
         return accepted;
       },
       [](const Config& c) -> Json { return c.container_template.pids_limit; }},
      {"restart", "SPAWNER_RESTART", "--restart", "Restart policy of each container. Default no",
       [](Config& c, std::string_view v) {
         return restart_policies.set(c.container_template.restart, v);
       },
       [](const Config& c) -> Json { return core::to_string(c.container_template.restart); }},
      {"health_command", "SPAWNER_HEALTH_CMD", "--health-cmd",
       "Health check run in each container (the spawner waits for healthy); a JSON array runs as is, other text "
       "with the shell. Default none (the image's own check, if any; else the spawner waits for the port)",
       [](Config& c, std::string_view v) { return set_health_command(c.container_template.health_check.command, v); },
       [](const Config& c) -> Json { return show_health_command(c.container_template.health_check.command); }, false,
       true},
      {"health_interval", "SPAWNER_HEALTH_INTERVAL", "--health-interval", "Time between health checks. Default 5s",
       [](Config& c, std::string_view v) {
         return set_duration(c.container_template.health_check.interval, v, seconds(1), minutes(10));
       },
       [](const Config& c) -> Json { return duration(c.container_template.health_check.interval); }},
      {"health_timeout", "SPAWNER_HEALTH_TIMEOUT", "--health-timeout", "Timeout of one health check. Default 3s",
       [](Config& c, std::string_view v) {
         return set_duration(c.container_template.health_check.timeout, v, seconds(1), minutes(10));
       },
       [](const Config& c) -> Json { return duration(c.container_template.health_check.timeout); }},
      {"health_retries", "SPAWNER_HEALTH_RETRIES", "--health-retries",
       "Consecutive failed health checks that make a container unhealthy. Default 3",
       [](Config& c, std::string_view v) -> Failure {
         const auto value = parse_integer<int>(v, 1, 100);
         if (!value) return "an integer from 1 to 100";
         c.container_template.health_check.retries = *value;
         return accepted;
       },
       [](const Config& c) -> Json { return c.container_template.health_check.retries; }},
      {"health_start_period", "SPAWNER_HEALTH_START_PERIOD", "--health-start-period",
       "Time after start during which failed health checks do not count. Default 0s",
       [](Config& c, std::string_view v) {
         return set_duration(c.container_template.health_check.start_period, v, milliseconds(0), minutes(60));
       },
       [](const Config& c) -> Json { return duration(c.container_template.health_check.start_period); }},
      {"pull", "SPAWNER_PULL", "--pull",
       "missing (pull the image when the runtime does not have it) or never; with runtime kubernetes the Pods' "
       "imagePullPolicy, IfNotPresent or Never (the kubelet pulls). Default missing",
       [](Config& c, std::string_view v) { return pull_policies.set(c.pull_missing_images, v); },
       [](const Config& c) -> Json { return pull_name(c.pull_missing_images); }},
      {"ready_timeout", "SPAWNER_READY_TIMEOUT", "--ready-timeout",
       "How long a started container may take to listen (or become healthy) before its page says it failed. "
       "Default 2m",
       [](Config& c, std::string_view v) { return set_duration(c.ready_timeout, v, seconds(1), minutes(60)); },
       [](const Config& c) -> Json { return duration(c.ready_timeout); }},
      {"stop_grace", "SPAWNER_STOP_GRACE", "--stop-grace",
       "Time between SIGTERM and SIGKILL when a container is stopped. Default 10s",
       [](Config& c, std::string_view v) { return set_duration(c.stop_grace, v, milliseconds(0), minutes(10)); },
       [](const Config& c) -> Json { return duration(c.stop_grace); }},
      {"refresh_interval", "SPAWNER_REFRESH_INTERVAL", "--refresh-interval",
       "The loading page's refresh interval (for browsers without JavaScript). Default 2s",
       [](Config& c, std::string_view v) { return set_refresh_interval(c.refresh_interval, v); },
       [](const Config& c) -> Json { return duration(c.refresh_interval); }},
      {"log_lines", "SPAWNER_LOG_LINES", "--log-lines",
       "Last lines of the container's log shown on its error page (0: none). Default 20",
       [](Config& c, std::string_view v) -> Failure {
         const auto value = parse_integer<unsigned>(v, 0, 1000);
         if (!value) return "an integer from 0 to 1000";
         c.log_lines = *value;
         return accepted;
       },
       [](const Config& c) -> Json { return c.log_lines; }},
      {"idle_timeout", "SPAWNER_IDLE_TIMEOUT", "--idle-timeout",
       "A container whose user sent no request for this long and has no open connection is retired; 0s: never. "
       "Default 60m",
       [](Config& c, std::string_view v) { return set_idle_timeout(c.idle.timeout, v); },
       [](const Config& c) -> Json { return duration(c.idle.timeout); }},
      {"idle_action", "SPAWNER_IDLE_ACTION", "--idle-action",
       "stop (keep the container for a fast restart) or remove an idle container (its volume stays). Default stop",
       [](Config& c, std::string_view v) { return idle_actions.set(c.idle.action, v); },
       [](const Config& c) -> Json { return core::to_string(c.idle.action); }},
      {"idle_check_interval", "SPAWNER_IDLE_CHECK_INTERVAL", "--idle-check-interval",
       "Time between idle checks. Default 1m",
       [](Config& c, std::string_view v) { return set_duration(c.idle_check_interval, v, seconds(1), minutes(60)); },
       [](const Config& c) -> Json { return duration(c.idle_check_interval); }},
      {"agents", "SPAWNER_AGENTS", "--agents",
       "Comma-separated HTTP listeners of every agent, read for who was seen when (GET /users) and for the open "
       "connections per user in the agent's HAProxy (GET /connections): http://IP:PORT, or "
       "http://NAME:PORT with a DNS name resolved at every idle round (through SPAWNER_DNS_SERVER), each address "
       "one agent (a headless Service). Default none",
       [](Config& c, std::string_view v) {
         return config_table::set_list(c.agent_urls, v, config_table::ListSeparators::commas, is_agent_url,
                                       "entries of http://IP:PORT (http://[IPv6]:PORT) or http://NAME:PORT (a DNS "
                                       "name) separated by commas, e.g. http://127.0.0.1:9102 or "
                                       "http://director-replicas.container-director.svc.cluster.local:9102 (in the file: an "
                                       "array of strings), or empty for none");
       },
       [](const Config& c) -> Json { return c.agent_urls; }},
      {"log_level", "SPAWNER_LOG_LEVEL", "--log-level", "error, warn, info or debug. Default info",
       [](Config& c, std::string_view v) { return config_table::set_log_level(c.log_level, v); },
       [](const Config& c) -> Json { return to_string(c.log_level); }},
      {"log_format", "SPAWNER_LOG_FORMAT", "--log-format",
       "text (timestamp level message key=value...) or json (one JSON object per line). Default text",
       [](Config& c, std::string_view v) { return config_table::set_log_format(c.log_format, v); },
       [](const Config& c) -> Json { return to_string(c.log_format); }},
  };
}

const Table& table() {
  static const Table table(config_table::Program{.name = "director-spawner",
                                                 .description = "Creates, starts and retires each user's container through the Docker Engine API (Docker or\n"
                         "Podman) or the Kubernetes API, and serves the loading and error pages while a container\n"
                         "is not ready.",
                                                 .commands = config_table::standard_commands("spawner"),
                                                 .config_key = config_key},
                           options());
  return table;
}

// "inconsistent options: A, B; why", naming both options with their values and sources.
std::string inconsistent(const Config& c, std::string_view a, std::string_view b, std::string_view why) {
  return "inconsistent options: " + table().described(c, a) + ", " + table().described(c, b) + "; " + std::string(why);
}

// Checks that hold between options.
Failure check_consistency(const Config& c) {
  if (auto conflict = table().check_bindable(c, "listen", c.listen, "http_listen", c.http_listen)) return conflict;
  const auto& t = c.container_template;
  if (!t.health_check.command.empty() && t.health_check.timeout > t.health_check.interval)
    return inconsistent(c, "health_timeout", "health_interval", "health_timeout must not be longer than health_interval");
  if (t.memory_bytes != 0 && t.memory_request_bytes > t.memory_bytes)
    return inconsistent(c, "memory_request", "memory", "a request cannot be above its limit");
  if (t.nano_cpus != 0 && t.nano_cpus_request > t.nano_cpus)
    return inconsistent(c, "cpus_request", "cpus", "a request cannot be above its limit");
  if (c.runtime.kind == RuntimeEndpoint::Kind::kubernetes) {
    if (!t.network.empty())
      return inconsistent(c, "network", "runtime",
                          "Kubernetes has no Docker networks: each user's Pod is reached through its Service "
                          "PREFIX-<label> (CONTAINER_DOMAIN=<namespace>.svc.cluster.local); leave network unset");
    if (t.pids_limit != 0)
      return inconsistent(c, "pids_limit", "runtime",
                          "Kubernetes has no process limit per Pod (the kubelet's podPidsLimit sets one per node); "
                          "leave pids_limit at 0");
    // Service names are DNS-1035 labels (a letter first); the agent keeps <prefix>-<label>
    // within 63 characters of [a-z0-9-]. Claim names are DNS-1123 subdomains.
    if (const char first = t.host_prefix.empty() ? '0' : t.host_prefix.front(); first < 'a' || first > 'z')
      return inconsistent(c, "container_host_prefix", "runtime",
                          "a Kubernetes Service's name (PREFIX-<label>) must start with a letter");
    if (!t.volume_mount.empty() && !config_table::is_dns_name(t.volume_prefix + "-a"))
      return inconsistent(c, "volume_prefix", "runtime",
                          "a PersistentVolumeClaim's name (PREFIX-<label>) is lowercase [a-z0-9.-], each "
                          "dot-separated part starting and ending with a letter or digit");
    // Reads the service account's namespace file (in_cluster.hpp), so that --check-config
    // refuses what the spawner would refuse at startup.
    if (auto shared = shared_namespace_problem(c.kubernetes)) return shared;
  } else if (c.kubernetes.pod_security != KubernetesOptions::PodSecurity::baseline) {
    return inconsistent(c, "kubernetes_pod_security", "runtime",
                        "the Pods' securityContext exists only with runtime kubernetes; leave it at baseline");
  }
  return accepted;
}

// Variables that are no longer read, and what replaced them: set (even empty), they stop the
// spawner at startup rather than be ignored silently.
struct RetiredVariable {
  std::string_view variable;
  std::string_view instead;
};
constexpr std::array retired_variables{
    RetiredVariable{"SPAWNER_HAPROXY_SOCKETS",
                    "the spawner reads each HAProxy's open connections from its agent (GET /connections on the agents "
                    "of SPAWNER_AGENTS, which read their own HAProxy through DIRECTOR_HAPROXY_SOCKETS). Unset it, and "
                    "HAProxy's TCP runtime API (DIRECTOR_HAPROXY_STATS_BIND) with it (docs/spawner.md)"},
    RetiredVariable{"SPAWNER_CONNECTIONS_TABLE",
                    "the agents read haproxy.cfg's table user_connections (GET /connections). Unset it "
                    "(docs/spawner.md)"},
};

}  // namespace

std::optional<config_table::EndpointOrName> parse_agent_url(std::string_view url) {
  constexpr std::string_view scheme = "http://";
  if (!url.starts_with(scheme)) return std::nullopt;
  return config_table::parse_endpoint_or_name(url.substr(scheme.size()));
}

unsigned Config::effective_threads() const noexcept { return config_table::effective_threads(threads); }

std::variant<Invocation, std::string> parse(std::span<const std::string_view> arguments,
                                            const EnvironmentLookup& environment) {
  for (const auto& [variable, instead] : retired_variables) {
    if (environment(variable)) return std::string(variable) + " is no longer read: " + std::string(instead);
  }
  return table().parse(arguments, environment, check_consistency);
}

void print_help(std::ostream& out) { table().print_help(out); }

void print_markdown(std::ostream& out) { table().print_markdown(out); }

std::string to_json(const Config& config) { return table().to_json(config, version()); }

std::string_view version() noexcept { return DIRECTOR_VERSION; }

}  // namespace director::spawner::config
