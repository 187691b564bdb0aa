#include "config/values.hpp"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace director::config_table;
using std::chrono::milliseconds;

namespace {
// A setter's answer as text: what it accepts when it refused, "accepted" otherwise.
std::string answer(const Failure& failure) { return failure.value_or("accepted"); }
}  // namespace

TEST_CASE("durations: digits and one unit, shown in the largest exact unit") {
  CHECK(parse_duration("250ms") == milliseconds(250));
  CHECK(parse_duration("2s") == milliseconds(2000));
  CHECK(parse_duration("1m") == milliseconds(60'000));
  CHECK(parse_duration("0s") == milliseconds(0));
  CHECK(parse_duration("999999999m") == std::chrono::minutes(999'999'999));
  for (const auto* bad : {"", "5", "1h", "1.5s", "-1s", " 1s", "1s ", "1000000000ms", "ms", "1S"}) {
    INFO(bad);
    CHECK_FALSE(parse_duration(bad));
  }
  CHECK(format_duration(milliseconds(0)) == "0s");
  CHECK(format_duration(milliseconds(250)) == "250ms");
  CHECK(format_duration(milliseconds(1500)) == "1500ms");
  CHECK(format_duration(milliseconds(120'000)) == "2m");
  CHECK(format_duration(milliseconds(90'000)) == "90s");
}

TEST_CASE("set_duration keeps the target on a refusal and converts to the target's unit") {
  std::chrono::seconds target{7};
  CHECK(answer(set_duration(target, "2m", milliseconds(0), std::chrono::minutes(5))) == "accepted");
  CHECK(target == std::chrono::seconds(120));
  CHECK(answer(set_duration(target, "6m", milliseconds(0), std::chrono::minutes(5))) ==
        "a duration from 0s to 5m (units ms, s, m; e.g. 500ms)");
  CHECK(target == std::chrono::seconds(120));
}

TEST_CASE("integers: digits only, within the range") {
  CHECK(parse_integer<int>("10", 1, 10) == 10);
  CHECK_FALSE(parse_integer<int>("11", 1, 10));
  CHECK_FALSE(parse_integer<int>("+1", 0, 10));
  CHECK_FALSE(parse_integer<unsigned>("-1", 0, 10));
  CHECK_FALSE(parse_integer<int>("1x", 0, 10));
  CHECK_FALSE(parse_integer<int>("", 0, 10));
}

TEST_CASE("booleans are true or false") {
  CHECK(parse_boolean("true") == true);
  CHECK(parse_boolean("false") == false);
  CHECK_FALSE(parse_boolean("1"));
  CHECK_FALSE(parse_boolean("TRUE"));
}

TEST_CASE("DNS labels and names") {
  CHECK(is_dns_label("vscode"));
  CHECK(is_dns_label("a-1"));
  CHECK(is_dns_label(std::string(63, 'a')));
  CHECK_FALSE(is_dns_label(std::string(64, 'a')));
  CHECK_FALSE(is_dns_label("-a"));
  CHECK_FALSE(is_dns_label("a-"));
  CHECK_FALSE(is_dns_label("A"));
  CHECK_FALSE(is_dns_label(""));
  CHECK(is_dns_name("users.example.org"));
  CHECK(is_dns_name("example"));
  CHECK_FALSE(is_dns_name(""));
  CHECK_FALSE(is_dns_name("example.org."));
  CHECK_FALSE(is_dns_name(".example"));
  CHECK_FALSE(is_dns_name("a..b"));
}

TEST_CASE("lists: each option's separators, and empty entries reach the entry parser only between commas") {
  using Entries = std::vector<std::string_view>;
  struct Row {
    ListSeparators separators;
    std::string_view text;
    Entries entries;
  };
  constexpr auto commas = ListSeparators::commas;
  constexpr auto spaces_or_commas = ListSeparators::spaces_or_commas;
  const Row rows[] = {
      {commas, "", {}},
      {commas, "a", {"a"}},
      {commas, "a,b", {"a", "b"}},
      {commas, "a,,b", {"a", "", "b"}},
      {commas, ",a", {"", "a"}},
      {commas, "a,", {"a"}},
      {commas, "a b, c", {"a b", " c"}},
      {spaces_or_commas, "", {}},
      {spaces_or_commas, " , ", {}},
      {spaces_or_commas, "a", {"a"}},
      {spaces_or_commas, "a,b", {"a", "b"}},
      {spaces_or_commas, "a b", {"a", "b"}},
      {spaces_or_commas, " a, b,,c ", {"a", "b", "c"}},
      {spaces_or_commas, "a\tb", {"a\tb"}},
  };
  for (const auto& row : rows) {
    INFO(separated_by(row.separators) << ": \"" << row.text << '"');
    CHECK(split_list(row.text, row.separators) == row.entries);
  }
  CHECK(split_list("a,b") == Entries{"a", "b"});  // commas unless the option says otherwise
  CHECK(separated_by(commas) == "commas");
  CHECK(separated_by(spaces_or_commas) == "spaces or commas");
}

TEST_CASE("set_list: every entry valid, or the target stays and the refusal says what is accepted") {
  // One to three lowercase letters.
  const auto short_word = [](std::string_view entry) {
    const auto lowercase = [](char c) { return c >= 'a' && c <= 'z'; };
    return !entry.empty() && entry.size() <= 3 && std::all_of(entry.begin(), entry.end(), lowercase);
  };
  struct Row {
    ListSeparators separators;
    std::string_view text;
    std::optional<std::vector<std::string>> entries;  // std::nullopt: refused
  };
  const Row rows[] = {
      {ListSeparators::commas, "", std::vector<std::string>{}},
      {ListSeparators::commas, "ab,cd", std::vector<std::string>{"ab", "cd"}},
      {ListSeparators::commas, "ab,,cd", std::nullopt},  // the empty entry is checked, and refused
      {ListSeparators::commas, "ab, cd", std::nullopt},  // " cd" is one entry, with its space
      {ListSeparators::commas, "ab,long", std::nullopt},
      {ListSeparators::spaces_or_commas, "", std::vector<std::string>{}},
      {ListSeparators::spaces_or_commas, "ab,,cd", std::vector<std::string>{"ab", "cd"}},
      {ListSeparators::spaces_or_commas, "ab, cd", std::vector<std::string>{"ab", "cd"}},
      {ListSeparators::spaces_or_commas, "ab long", std::nullopt},
  };
  for (const auto& row : rows) {
    INFO(separated_by(row.separators) << ": \"" << row.text << '"');
    std::vector<std::string> target{"before"};
    const auto failure = set_list(target, row.text, row.separators, short_word, "what the option accepts");
    if (row.entries) {
      CHECK(answer(failure) == "accepted");
      CHECK(target == *row.entries);
    } else {
      CHECK(answer(failure) == "what the option accepts");
      CHECK(target == std::vector<std::string>{"before"});
    }
  }
}

TEST_CASE("stats socket lists: the message names the option's separators") {
  std::vector<std::string> sockets;
  CHECK(answer(set_stats_sockets(sockets, "/run/a.sock 127.0.0.1:9999", ListSeparators::spaces_or_commas)) ==
        "accepted");
  CHECK(sockets == std::vector<std::string>{"/run/a.sock", "127.0.0.1:9999"});
  CHECK(answer(set_stats_sockets(sockets, "127.0.0.1:9999 /run/a.sock", ListSeparators::commas)) ==
        "entries separated by commas, each an absolute unix socket path (at most 107 characters) or IP:PORT "
        "([IPv6]:PORT), e.g. /run/haproxy/admin.sock (in the file: an array of strings), or empty for none");
  CHECK(answer(set_stats_sockets(sockets, "relative.sock", ListSeparators::spaces_or_commas))
            .starts_with("entries separated by spaces or commas, each an absolute unix socket path"));
  CHECK(sockets == std::vector<std::string>{"/run/a.sock", "127.0.0.1:9999"});
}

TEST_CASE("stats socket lists: no DNS names (the agent talks to the HAProxy beside it)") {
  std::vector<std::string> sockets{"before"};
  const auto refused = answer(set_stats_sockets(sockets, "/run/a.sock,haproxy:9999", ListSeparators::commas));
  CHECK(refused.starts_with("entries separated by commas"));
  CHECK(refused.find("NAME") == std::string::npos);
  CHECK(sockets == std::vector<std::string>{"before"});
  CHECK_FALSE(parse_stats_socket("haproxy.director.svc:9999"));
}

TEST_CASE("one address grammar: an endpoint or a DNS name") {
  using boost::asio::ip::tcp;
  CHECK(std::get<tcp::endpoint>(*parse_endpoint_or_name("127.0.0.1:80")).port() == 80);
  CHECK(std::get<tcp::endpoint>(*parse_endpoint_or_name("[::1]:80")).address().to_string() == "::1");
  CHECK(std::get<NamedEndpoint>(*parse_endpoint_or_name("replicas:9999")) == NamedEndpoint{"replicas", 9999});
  CHECK(std::get<NamedEndpoint>(*parse_endpoint_or_name("a-1.b.svc.cluster.local:1")) ==
        NamedEndpoint{"a-1.b.svc.cluster.local", 1});
  CHECK(std::get<NamedEndpoint>(*parse_endpoint_or_name("1.2.3.example:80")) == NamedEndpoint{"1.2.3.example", 80});
  for (const auto* bad : {"replicas", "replicas:", "replicas:0", "replicas:65536", "Replicas:80", "replicas.:80",
                          ".replicas:80", "re_plicas:80", "300.1.1.1:80", "1.2.3:80", "127.0.0.1", "::1:80",
                          "[replicas]:80", "replicas:80:80", ":80", "/run/a.sock"}) {
    INFO(bad);
    CHECK_FALSE(parse_endpoint_or_name(bad));
  }
  const std::string longest = std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') + "." +
                              std::string(61, 'd');
  CHECK(parse_endpoint_or_name(longest + ":80"));
  CHECK_FALSE(parse_endpoint_or_name(longest + "d:80"));
  CHECK(std::holds_alternative<boost::asio::ip::tcp::endpoint>(*parse_stats_socket("127.0.0.1:9999")));
  CHECK(std::holds_alternative<std::string>(*parse_stats_socket("/run/a.sock")));
}

TEST_CASE("one address grammar: endpoints") {
  CHECK(parse_endpoint("127.0.0.1:80")->port() == 80);
  CHECK(parse_endpoint("[::1]:80")->address().to_string() == "::1");
  CHECK_FALSE(parse_endpoint("127.0.0.1"));
  CHECK_FALSE(parse_endpoint("[127.0.0.1]:80"));
  CHECK_FALSE(parse_endpoint("::1:80"));
  CHECK_FALSE(parse_endpoint("localhost:80"));
  CHECK_FALSE(parse_endpoint("127.0.0.1:0"));
  CHECK(parse_endpoint("127.0.0.1:0", 0)->port() == 0);
  CHECK_FALSE(parse_endpoint("127.0.0.1:65536"));
  CHECK(format_endpoint(*parse_endpoint("[::1]:9180")) == "[::1]:9180");
  CHECK(format_endpoint(*parse_endpoint("127.0.0.1:9180")) == "127.0.0.1:9180");
}

TEST_CASE("listeners overlap when one could not be bound beside the other") {
  const auto endpoint = [](std::string_view text) { return *parse_endpoint(text, 0); };
  CHECK(overlaps(endpoint("127.0.0.1:80"), endpoint("127.0.0.1:80")));
  CHECK(overlaps(endpoint("0.0.0.0:80"), endpoint("127.0.0.1:80")));
  CHECK(overlaps(endpoint("[::]:80"), endpoint("127.0.0.1:80")));
  CHECK_FALSE(overlaps(endpoint("0.0.0.0:80"), endpoint("[::1]:80")));
  CHECK_FALSE(overlaps(endpoint("127.0.0.1:80"), endpoint("127.0.0.2:80")));
  CHECK_FALSE(overlaps(endpoint("127.0.0.1:80"), endpoint("127.0.0.1:81")));
  CHECK_FALSE(overlaps(endpoint("127.0.0.1:0"), endpoint("127.0.0.1:0")));
}

TEST_CASE("DNS server lists: every entry by parse_dns_server, or nothing changes") {
  std::vector<std::string> servers{"127.0.0.1"};
  CHECK(answer(set_dns_servers(servers, "127.0.0.1:5353,[::1]")) == "accepted");
  CHECK(servers == std::vector<std::string>{"127.0.0.1:5353", "[::1]"});
  CHECK(answer(set_dns_servers(servers, "127.0.0.1,dns.example")) == dns_server_list_accepted());
  CHECK(servers == std::vector<std::string>{"127.0.0.1:5353", "[::1]"});
  CHECK(answer(set_dns_servers(servers, "")) == "accepted");
  CHECK(servers.empty());
}

TEST_CASE("the shared setters: each refusal says everything the option accepts") {
  std::string text;
  CHECK(answer(set_container_domain(text, "")) == "accepted");
  CHECK(answer(set_container_domain(text, std::string(181, 'a'))).starts_with("empty for none, or a DNS name of at most 180"));
  CHECK(answer(set_container_host_prefix(text, std::string(41, 'a'))) ==
        "1 to 40 characters of [a-z0-9-], starting and ending with a letter or digit");
  CHECK(answer(set_config_path(text, "a\tb")) ==
 "a file path of at most 4096 characters, or empty for none");
  director::LogLevel level{};
  CHECK(answer(set_log_level(level, "warn")) == "accepted");
  CHECK(level == director::LogLevel::warn);
  CHECK(answer(set_log_level(level, "WARN")) ==
 "error, warn, info or debug");
  director::LogFormat format{};
  CHECK(answer(set_log_format(format, "json")) == "accepted");
  CHECK(format == director::LogFormat::json);
  std::uint16_t port = 0;
  CHECK(answer(set_port(port, "65536")) ==
 "an integer from 1 to 65535");
  unsigned threads = 0;
  CHECK(answer(set_threads(threads, "257")) ==
 "an integer from 0 to 256");
  CHECK(effective_threads(3) == 3);
  CHECK(effective_threads(0) >= 1);
}
