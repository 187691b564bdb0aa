// Username -> DNS label, one documented and versioned scheme (docs/architecture.md, "Username
// scheme v1"). Changing the mapping changes which container a user reaches: never change it
// silently; add a new mode instead.
#pragma once

#include <boost/assert/source_location.hpp>
#include <boost/system/result.hpp>

#include <cstdint>
#include <iosfwd>
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
// Writes to_string(error); also makes result<std::string, UsernameError> printable.
std::ostream& operator<<(std::ostream& out, UsernameError error);

// Lets result<std::string, UsernameError>::value() throw on an error (found by ADL from
// boost::system::result); throws std::invalid_argument naming the error.
[[noreturn]] void throw_exception_from_error(UsernameError error,
                                             const boost::source_location& location);

// Maps a raw username (bytes as HAProxy sent them) to a DNS label such that
// "<prefix>-<label>" is a valid DNS label of at most 63 characters.
//
// strict: accepted iff the name matches ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$, "<prefix>-<name>" fits
//   in 63 characters, and the name does not end in "-" + 16 lowercase hex digits (reserved for
//   escaped labels). Errors, first that applies: empty, too_long, invalid.
// escape: a name strict accepts maps to itself; any other non-empty name maps to
//   "<safe>-<hash16>": safe is the name ASCII-lowercased, other bytes as "-", runs collapsed,
//   trimmed, cut to fit ("u" when nothing remains); hash16 is the first 16 hex digits of SHA-256
//   of the raw bytes. Fails only on an empty name, or with too_long when the prefix leaves no
//   room for an escaped label (a prefix longer than 44 characters).
// Identity labels never end in "-<16 hex>" and escaped labels always do, so an identity label
// never equals an escaped one; two escaped labels are equal only on a 64-bit hash collision.
boost::system::result<std::string, UsernameError>
map_username(std::string_view username, UsernameMode mode, std::string_view host_prefix);

}  // namespace director::decision
