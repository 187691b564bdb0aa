// libFuzzer target: the username scheme v1 (decision/username.hpp, docs/architecture.md).
//
// Input: byte 0 picks the host prefix and a variant; bytes 1.. are the raw username (any bytes:
// HAProxy sends the header value as it came).
// Checks, for both modes, against a reference written here from the documented contract:
// - strict: the name itself exactly when it matches ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$, fits
//   "<prefix>-<name>" in 63 characters and does not end in "-<16 hex>"; otherwise the first
//   error of empty, too_long, invalid;
// - escape: the strict label when strict accepts; otherwise "<safe>-<hash16>" where safe is the
//   name lowercased, non-[a-z0-9] runs as one "-", trimmed, cut to fit, "u" when empty, and
//   hash16 the first 16 hex digits of SHA-256 of the raw bytes;
// - "<prefix>-<label>" is always one valid DNS label of at most 63 characters;
// - the mapping is deterministic, and injective: variants of the name that differ from it
//   (case flipped, one separator replaced by another, one byte dropped or added) never map to
//   the same label, nor do any two distinct names seen during the run (a bounded table).
#include "fuzz_support.hpp"

#include "decision/sha256.hpp"
#include "decision/username.hpp"

#include <string>
#include <string_view>
#include <unordered_map>

namespace decision = director::decision;
using decision::UsernameError;
using decision::UsernameMode;

namespace {

bool alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool hex(char c) { return (c >= 'a' && c <= 'f') || (c >= '0' && c <= '9'); }

bool is_dns_label(std::string_view text) {
  if (text.empty() || text.size() > 63 || !alnum(text.front()) || !alnum(text.back())) return false;
  for (const char c : text) {
    if (!alnum(c) && c != '-') return false;
  }
  return true;
}

bool ends_in_hash(std::string_view label) {
  if (label.size() < 17 || label[label.size() - 17] != '-') return false;
  for (const char c : label.substr(label.size() - 16)) {
    if (!hex(c)) return false;
  }
  return true;
}

std::size_t room(std::string_view prefix) { return prefix.size() + 1 >= 63 ? 0 : 63 - prefix.size() - 1; }

using Mapped = boost::system::result<std::string, UsernameError>;

Mapped reference_strict(std::string_view name, std::string_view prefix) {
  if (name.empty()) return UsernameError::empty;
  if (name.size() > room(prefix)) return UsernameError::too_long;
  if (!is_dns_label(name) || ends_in_hash(name)) return UsernameError::invalid;
  return std::string(name);
}

Mapped reference_escape(std::string_view name, std::string_view prefix) {
  auto strict = reference_strict(name, prefix);
  if (strict || strict.error() == UsernameError::empty) return strict;
  if (room(prefix) < 1 + 1 + 16) return UsernameError::too_long;
  // Lowercase, map every other byte to '-', collapse, trim, then cut and trim again.
  std::string safe;
  for (const char raw : name) {
    const char c = (raw >= 'A' && raw <= 'Z') ? static_cast<char>(raw - 'A' + 'a') : raw;
    if (alnum(c)) {
      safe.push_back(c);
    } else if (!safe.empty() && safe.back() != '-') {
      safe.push_back('-');
    }
  }
  safe = safe.substr(0, room(prefix) - 17);
  while (!safe.empty() && safe.back() == '-') safe.pop_back();
  if (safe.empty()) safe = "u";
  const auto digest = decision::detail::sha256(name);
  static constexpr char digits[] = "0123456789abcdef";
  safe.push_back('-');
  for (std::size_t i = 0; i < 8; ++i) {
    safe.push_back(digits[digest[i] >> 4]);
    safe.push_back(digits[digest[i] & 0x0F]);
  }
  return safe;
}

bool same(const Mapped& a, const Mapped& b) {
  if (a.has_value() != b.has_value()) return false;
  return a ? *a == *b : a.error() == b.error();
}

Mapped check(std::string_view name, UsernameMode mode, std::string_view prefix) {
  const Mapped mapped = decision::map_username(name, mode, prefix);
  const Mapped again = decision::map_username(name, mode, prefix);
  FUZZ_CHECK(same(mapped, again));  // deterministic
  const Mapped expected = mode == UsernameMode::strict ? reference_strict(name, prefix) : reference_escape(name, prefix);
  FUZZ_CHECK(same(mapped, expected));
  if (mapped) {
    const std::string host = std::string(prefix) + "-" + *mapped;
    FUZZ_CHECK(is_dns_label(host));
    FUZZ_CHECK(is_dns_label(*mapped));
    // Identity labels never end in "-<16 hex>", escaped ones always do.
    FUZZ_CHECK(ends_in_hash(*mapped) == (*mapped != name));
  } else if (mode == UsernameMode::escape) {
    FUZZ_CHECK(name.empty() || room(prefix) < 18);  // escape refuses only these
  }
  return mapped;
}

// Labels seen in this run, escape mode with the default prefix, to the name that produced them.
// Bounded: cleared when full, so memory stays flat over long runs.
std::unordered_map<std::string, std::string>& seen() {
  static std::unordered_map<std::string, std::string> table;
  return table;
}

void check_distinct(std::string_view name, std::string_view other, std::string_view prefix) {
  if (name == other) return;
  const auto a = decision::map_username(name, UsernameMode::escape, prefix);
  const auto b = decision::map_username(other, UsernameMode::escape, prefix);
  if (a && b) FUZZ_CHECK(*a != *b);
  const auto c = decision::map_username(name, UsernameMode::strict, prefix);
  const auto d = decision::map_username(other, UsernameMode::strict, prefix);
  if (c && d) FUZZ_CHECK(*c != *d);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t control = data[0];
  const std::string name(reinterpret_cast<const char*>(data + 1), size - 1);

  // Prefixes: the default, the shortest, the longest the configuration accepts (40), and the
  // boundaries of the library's contract (44 leaves exactly room for "u-<hash16>", 45 none).
  static const std::string prefixes[] = {"vscode", "a", std::string(40, 'p'), std::string(44, 'p'),
                                         std::string(45, 'p'), "jupyter-user", "x1", "vscode"};
  const std::string& prefix = prefixes[control & 0x07];

  check(name, UsernameMode::strict, prefix);
  const auto escaped = check(name, UsernameMode::escape, prefix);

  // Variants that must not share the label.
  std::string flipped = name;
  for (auto& c : flipped) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    else if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  check_distinct(name, flipped, prefix);
  std::string one_flipped = name;
  if (!name.empty()) {
    char& c = one_flipped[(control >> 3) % name.size()];
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    else if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    check_distinct(name, one_flipped, prefix);
  }
  static constexpr std::string_view separators = ".@-_ :/+%\t";
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (alnum(name[i]) || (name[i] >= 'A' && name[i] <= 'Z')) continue;
    std::string other = name;
    other[i] = separators[(control >> 4) % separators.size()];
    if (other[i] == name[i]) other[i] = separators[((control >> 4) + 1) % separators.size()];
    check_distinct(name, other, prefix);
    break;
  }
  if (!name.empty()) check_distinct(name, name.substr(0, name.size() - 1), prefix);
  check_distinct(name, name + "-", prefix);
  check_distinct(name, name + "a", prefix);

  // Injective over every name of the run (escape mode; the prefix only bounds the length).
  if (escaped && prefix == "vscode") {
    auto& table = seen();
    if (table.size() >= 50'000) table.clear();
    const auto [entry, inserted] = table.try_emplace(*escaped, name);
    if (!inserted) FUZZ_CHECK(entry->second == name);
  }
  return 0;
}
