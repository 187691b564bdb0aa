#include "decision/username.hpp"

#include "decision/sha256.hpp"

#include <boost/throw_exception.hpp>

#include <algorithm>
#include <cstddef>
#include <ostream>
#include <stdexcept>

namespace director::decision {
namespace {

constexpr std::size_t kMaxDnsLabelLength = 63;
constexpr std::size_t kHashHexLength = 16;  // 64 bits of SHA-256
// Stands in for the readable part of an escaped label when the name has no ASCII letter or
// digit at all, so that every escaped label ends in "-<16 hex>" (a bare "<16 hex>" could equal
// a name strict mode accepts).
constexpr std::string_view kEmptyReadablePart = "u";
// "<readable>-<hash>" with the shortest readable part.
constexpr std::size_t kMinEscapedLabelLength = kEmptyReadablePart.size() + 1 + kHashHexLength;

bool is_label_char(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

bool is_lower_hex(char c) noexcept { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

char ascii_lower(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// The longest label for which "<prefix>-<label>" is at most 63 characters (0: none fits).
std::size_t max_label_length(std::string_view host_prefix) noexcept {
  const std::size_t used = host_prefix.size() + 1;
  return used < kMaxDnsLabelLength ? kMaxDnsLabelLength - used : 0;
}

// ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$
bool has_strict_shape(std::string_view name) noexcept {
  return !name.empty() && is_label_char(name.front()) && is_label_char(name.back()) &&
         std::all_of(name.begin(), name.end(), [](char c) { return is_label_char(c) || c == '-'; });
}

// The shape reserved for escaped labels: ends in "-" followed by exactly 16 lowercase hex digits.
bool has_escaped_suffix(std::string_view label) noexcept {
  if (label.size() < kHashHexLength + 1) {
    return false;
  }
  const std::string_view suffix = label.substr(label.size() - kHashHexLength - 1);
  return suffix.front() == '-' && std::all_of(suffix.begin() + 1, suffix.end(), is_lower_hex);
}

// The first 16 hex digits (lowercase) of SHA-256 of the raw bytes.
std::string hash_hex(std::string_view username) {
  static constexpr std::string_view kDigits = "0123456789abcdef";
  const detail::Sha256Digest digest = detail::sha256(username);
  std::string hex;
  hex.reserve(kHashHexLength);
  for (std::size_t i = 0; i < kHashHexLength / 2; ++i) {
    hex.push_back(kDigits[digest[i] >> 4]);
    hex.push_back(kDigits[digest[i] & 0x0f]);
  }
  return hex;
}

// ASCII lowercased; every other byte becomes '-'; runs of '-' collapsed; no '-' at either end;
// at most `max_length` (>= 1) characters; kEmptyReadablePart when nothing remains.
std::string readable_part(std::string_view username, std::size_t max_length) {
  std::string readable;
  readable.reserve(std::min(username.size(), max_length));
  for (const char raw : username) {
    if (readable.size() == max_length) {
      break;
    }
    const char c = ascii_lower(raw);
    if (is_label_char(c)) {
      readable.push_back(c);
    } else if (!readable.empty() && readable.back() != '-') {
      readable.push_back('-');
    }
  }
  if (!readable.empty() && readable.back() == '-') {
    readable.pop_back();
  }
  if (readable.empty()) {
    return std::string(kEmptyReadablePart);
  }
  return readable;
}

boost::system::result<std::string, UsernameError> map_strict(std::string_view username,
                                                             std::string_view host_prefix) {
  if (username.empty()) {
    return UsernameError::empty;
  }
  if (username.size() > max_label_length(host_prefix)) {
    return UsernameError::too_long;
  }
  if (!has_strict_shape(username) || has_escaped_suffix(username)) {
    return UsernameError::invalid;
  }
  return std::string(username);
}

boost::system::result<std::string, UsernameError> map_escaped(std::string_view username,
                                                              std::string_view host_prefix) {
  auto identity = map_strict(username, host_prefix);
  if (identity || identity.error() == UsernameError::empty) {
    return identity;
  }
  const std::size_t max_length = max_label_length(host_prefix);
  if (max_length < kMinEscapedLabelLength) {
    return UsernameError::too_long;
  }
  std::string label = readable_part(username, max_length - 1 - kHashHexLength);
  label.push_back('-');
  label += hash_hex(username);
  return label;
}

}  // namespace

std::string_view to_string(UsernameError error) noexcept {
  switch (error) {
    case UsernameError::empty:
      return "empty";
    case UsernameError::invalid:
      return "invalid";
    case UsernameError::too_long:
      return "too-long";
  }
  return "invalid";
}

std::ostream& operator<<(std::ostream& out, UsernameError error) {
  return out << to_string(error);
}

void throw_exception_from_error(UsernameError error, const boost::source_location& location) {
  boost::throw_exception(std::invalid_argument("username: " + std::string(to_string(error))),
                         location);
}

boost::system::result<std::string, UsernameError>
map_username(std::string_view username, UsernameMode mode, std::string_view host_prefix) {
  switch (mode) {
    case UsernameMode::strict:
      return map_strict(username, host_prefix);
    case UsernameMode::escape:
      return map_escaped(username, host_prefix);
  }
  return UsernameError::invalid;
}

}  // namespace director::decision
