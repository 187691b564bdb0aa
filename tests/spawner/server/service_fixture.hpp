// A SpawnService over the fake runtime (fake_runtime.hpp), with a real dnsmasq answering
// "vscode-alice" with 127.0.0.1 and a real loopback listener as alice's container port.
#pragma once

#include "server/spawn_service.hpp"

#include "../../common/net/dns_fixture.hpp"
#include "fake_runtime.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <memory>
#include <string>

namespace director::spawner::test {

struct ServiceFixture {
  boost::asio::io_context io;
  director::test::Dnsmasq dns{director::test::Dnsmasq::Options{0, true, "127.0.0.1 vscode-alice\n"}};
  net::Resolver resolver{io.get_executor(), net::ResolverOptions{{dns.endpoint()}}};
  metrics::Metrics metrics{"test"};
  FakeRuntime runtime;
  // The "container": a listener on a free loopback port; the service connects to it.
  boost::asio::ip::tcp::acceptor container{io, {boost::asio::ip::address_v4::loopback(), 0}};
  core::LifecycleSettings lifecycle;
  server::SpawnSettings settings;
  std::unique_ptr<server::SpawnService> service;

  ServiceFixture() {
    lifecycle.container_template.image = "localhost/test:latest";
    lifecycle.ready_timeout = std::chrono::milliseconds(3000);
    lifecycle.retry_after = std::chrono::milliseconds(0);
    settings.container_port = container.local_endpoint().port();
    settings.poll_interval = std::chrono::milliseconds(20);
    settings.inspect_interval = std::chrono::milliseconds(50);
  }

  // The service, with lifecycle and settings as the test left them.
  server::SpawnService& make_service() {
    service = std::make_unique<server::SpawnService>(io.get_executor(), lifecycle, settings, runtime, resolver, metrics);
    return *service;
  }

  core::Phase phase(const std::string& label) const { return service->view(label).phase; }
};

}  // namespace director::spawner::test
