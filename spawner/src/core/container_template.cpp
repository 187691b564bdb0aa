#include "core/container_template.hpp"

#include "core/container.hpp"

namespace director::spawner::core {

namespace {

// Replaces every "{username}" and "{label}" in `text`, left to right; replaced text is not
// scanned again (a username containing "{label}" stays as it is).
std::string substitute(std::string_view text, const UserIdentity& user) {
  static constexpr std::string_view username_field = "{username}";
  static constexpr std::string_view label_field = "{label}";
  std::string out;
  out.reserve(text.size());
  std::size_t at = 0;
  while (at < text.size()) {
    if (text.substr(at).starts_with(username_field)) {
      out += user.username;
      at += username_field.size();
    } else if (text.substr(at).starts_with(label_field)) {
      out += user.label;
      at += label_field.size();
    } else {
      out += text[at++];
    }
  }
  return out;
}

// Docker gives network-scoped aliases only on user-defined networks: not on the default bridge,
// the host's network, none, or another container's.
bool takes_aliases(std::string_view network) {
  return !network.empty() && network != "host" && network != "none" && network != "bridge" &&
         network != "default" && !network.starts_with("container:");
}

}  // namespace

std::string_view to_string(RestartPolicy policy) noexcept {
  switch (policy) {
    case RestartPolicy::no: break;
    case RestartPolicy::on_failure: return "on-failure";
    case RestartPolicy::unless_stopped: return "unless-stopped";
    case RestartPolicy::always: return "always";
  }
  return "no";
}

std::string container_name(const ContainerTemplate& container_template, std::string_view label) {
  std::string name = container_template.host_prefix;
  name += '-';
  name += label;
  return name;
}

ContainerSpec render(const ContainerTemplate& container_template, const UserIdentity& user) {
  ContainerSpec spec;
  spec.name = container_name(container_template, user.label);
  spec.image = container_template.image;
  spec.command.reserve(container_template.command.size());
  for (const auto& entry : container_template.command) spec.command.push_back(substitute(entry, user));
  spec.environment.reserve(container_template.environment.size());
  for (const auto& entry : container_template.environment) {
    const auto equals = entry.find('=');
    if (equals == std::string::npos) {
      spec.environment.push_back(entry);  // NAME alone: the runtime passes the name through
    } else {
      spec.environment.push_back(entry.substr(0, equals + 1) +
                                 substitute(std::string_view(entry).substr(equals + 1), user));
    }
  }
  spec.labels.emplace(std::string(managed_label), "true");
  spec.labels.emplace(std::string(user_label), user.username);
  spec.labels.emplace(std::string(label_label), user.label);
  spec.network = container_template.network;
  if (takes_aliases(spec.network)) spec.network_aliases.push_back(spec.name);
  if (!container_template.volume_mount.empty()) {
    spec.volume_name = container_template.volume_prefix + "-" + user.label;
    spec.volume_mount = container_template.volume_mount;
  }
  spec.memory_bytes = container_template.memory_bytes;
  spec.nano_cpus = container_template.nano_cpus;
  spec.memory_request_bytes = container_template.memory_request_bytes;
  spec.nano_cpus_request = container_template.nano_cpus_request;
  spec.pids_limit = container_template.pids_limit;
  spec.restart = container_template.restart;
  spec.health_check = container_template.health_check;
  return spec;
}

}  // namespace director::spawner::core
