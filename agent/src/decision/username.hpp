// Username -> DNS label, one documented and versioned scheme (docs/architecture.md, "Username
// scheme v1"). Changing the mapping changes which container a user reaches: never change it
// silently; add a new mode instead.
#pragma once

#include <boost/system/result.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace director::decision {

enum class UsernameMode : std::uint8_t {
  strict,  // v1 strict: accepted as is or refused
  escape,  // v1 escape: any non-empty name maps to a safe label, hash-suffixed when changed
};

enum class UsernameError : std::uint8_t {
  empty,             // empty string
  invalid,           // contains characters or a shape the strict scheme refuses
  too_long,          // the host would exceed 63 characters
};
std::string_view to_string(UsernameError error) noexcept;

// Maps a raw username (bytes as HAProxy sent them) to a DNS label such that
// "<prefix>-<label>" is a valid DNS label of at most 63 characters.
boost::system::result<std::string, UsernameError>
map_username(std::string_view username, UsernameMode mode, std::string_view host_prefix);

}  // namespace director::decision
