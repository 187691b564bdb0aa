#include "core/wake_policy.hpp"

#include <cctype>
#include <cstddef>

namespace director::spawner::core {

namespace {

bool equals_ignoring_case(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

bool ends_with_ignoring_case(std::string_view text, std::string_view suffix) noexcept {
  return text.size() >= suffix.size() && equals_ignoring_case(text.substr(text.size() - suffix.size()), suffix);
}

std::string_view trim(std::string_view text) noexcept {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// Whether a media range's parameters say q=0 ("not acceptable"): "q=0", "q=0.", "q=0.000".
bool refused_by_quality(std::string_view parameters) noexcept {
  while (!parameters.empty()) {
    const auto semicolon = parameters.find(';');
    const auto parameter = trim(parameters.substr(0, semicolon));
    parameters = semicolon == std::string_view::npos ? std::string_view{} : parameters.substr(semicolon + 1);
    const auto equals = parameter.find('=');
    if (equals == std::string_view::npos || !equals_ignoring_case(trim(parameter.substr(0, equals)), "q")) continue;
    auto value = trim(parameter.substr(equals + 1));
    if (value.empty() || value.front() != '0') return false;
    value.remove_prefix(1);
    if (value.empty()) return true;
    if (value.front() != '.') return false;
    value.remove_prefix(1);
    return value.find_first_not_of('0') == std::string_view::npos;
  }
  return false;
}

// Calls `visit(type)` for each media range of an Accept value that is not refused by q=0, the
// type without parameters and spaces; stops when it returns true, and returns that.
template <typename Visit>
bool any_media_range(std::string_view accept, Visit visit) noexcept {
  while (true) {
    const auto comma = accept.find(',');
    const auto range = accept.substr(0, comma);
    const auto semicolon = range.find(';');
    const auto type = trim(range.substr(0, semicolon));
    const bool refused = semicolon != std::string_view::npos && refused_by_quality(range.substr(semicolon + 1));
    if (!type.empty() && !refused && visit(type)) return true;
    if (comma == std::string_view::npos) return false;
    accept.remove_prefix(comma + 1);
  }
}

bool accepts_html(std::string_view accept) noexcept {
  return any_media_range(accept, [](std::string_view type) { return equals_ignoring_case(type, "text/html"); });
}

}  // namespace

WakeVerdict decide_wake(const RequestSignals& request) noexcept {
  if (request.method != "GET" && request.method != "HEAD") return WakeVerdict::refuse;
  if (request.upgrade) return WakeVerdict::refuse;
  if (request.sec_fetch_mode || request.sec_fetch_dest) {
    if (!request.sec_fetch_mode || !equals_ignoring_case(trim(*request.sec_fetch_mode), "navigate")) {
      return WakeVerdict::refuse;
    }
    if (!request.sec_fetch_dest) return WakeVerdict::wake;
    const auto dest = trim(*request.sec_fetch_dest);
    return equals_ignoring_case(dest, "document") || equals_ignoring_case(dest, "iframe") ? WakeVerdict::wake
                                                                                           : WakeVerdict::refuse;
  }
  if (request.other_sec_fetch) return WakeVerdict::refuse;
  return request.accept && accepts_html(*request.accept) ? WakeVerdict::wake : WakeVerdict::refuse;
}

bool prefers_json(std::optional<std::string_view> accept) noexcept {
  if (!accept || accepts_html(*accept)) return false;
  return any_media_range(*accept, [](std::string_view type) {
    return equals_ignoring_case(type, "application/json") || ends_with_ignoring_case(type, "+json");
  });
}

}  // namespace director::spawner::core
