// SHA-256 (FIPS 180-4) for the username scheme's hash suffix. Internal to decision/: a small,
// self-contained implementation so that the scheme does not depend on a crypto library.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace director::decision::detail {

using Sha256Digest = std::array<std::uint8_t, 32>;

// The SHA-256 digest of `data` (raw bytes).
Sha256Digest sha256(std::string_view data) noexcept;

}  // namespace director::decision::detail
