#!/usr/bin/env python3
"""Several HAProxy + agent replicas and one director-spawner (issue 12), on loopback as two Pods
behind a headless Service would have them: replica 1 on 127.0.<r>.1, replica 2 on 127.0.<r>.2
(127.0.1.x unless another test holds that /24), each a real HAProxy with its own real agent, the
same ports on both addresses; one director-spawner with Podman (tools/podman.py) whose
SPAWNER_AGENTS names the replicas by one DNS name (`director-replicas`, in the stack's dnsmasq:
one A record per replica): each agent serves its last requests (/users) and its own HAProxy's
open connections (/connections, read on its local runtime socket, DIRECTOR_HAPROXY_SOCKETS);
HAProxy's runtime API is on no TCP port. Both agents follow the spawner's /events and clear
their own HAProxy's fast_path table.

(a) a user is routed into their container through either replica;
(b) a container stopped through Podman is revoked in both HAProxys' tables within 1 s;
(c) idle retirement (SPAWNER_IDLE_TIMEOUT 1m, the shortest accepted, checked every second)
    stops ivan, idle on both replicas, and keeps rita, whose only recent requests go through
    replica 2 (replica 1 last saw her as long ago as ivan), and wendy, whose only open
    WebSocket goes through replica 1's HAProxy (no request since);
(d) then, with zoe idle for longer than the timeout too: the name resolving to a third address
    where nothing answers, and later replica 2's agent killed, make every round retire nobody
    (the spawner logs which address it could not read); replica 2's agent started again, the
    next rounds retire zoe.

It takes about 80 s per HAProxy version: the idle timeout cannot be shorter than a minute."""

import signal
import sys
import time
from pathlib import Path

from common import SpawnerStackTest, main, metric, poll, wait_entry_cleared, wait_settled_long_hold
from test_spawner_idle import open_connections, open_websocket, wait_open_connections

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from containers import claim_subnet  # noqa: E402
from loopback import free_port  # noqa: E402
from stack import Stack  # noqa: E402
from testing import test_failed  # noqa: E402

IDLE_TIMEOUT = 60  # seconds: SPAWNER_IDLE_TIMEOUT's minimum
BOUND = 1.0  # seconds: the event feed's convergence bound (issue 11), for each HAProxy
NAME = "director-replicas"


class SpawnerReplicas(SpawnerStackTest):
    users = ("ivan", "rita", "wendy", "zoe", "sam")
    replica2 = None
    subnet_lock = None

    @classmethod
    def setUpClass(cls):
        # The replicas' own /24 (the stack's containers get another one).
        subnet, cls.subnet_lock = claim_subnet(1)
        cls.replica_addresses = [f"{subnet}.{n}" for n in (1, 2, 3)]
        first = cls.replica_addresses[0]
        cls.ports = {"spop": free_port(first), "agent_http": free_port(first)}
        cls.spawner_settings = {
            "SPAWNER_IDLE_TIMEOUT": f"{IDLE_TIMEOUT}s", "SPAWNER_IDLE_CHECK_INTERVAL": "1s",
            "SPAWNER_AGENTS": f"http://{NAME}:{cls.ports['agent_http']}"}
        cls.stack_options = cls.replica_options(first, http=f"{first}:0", metrics=f"{first}:0")
        cls.stack_options["event_feeds"] = "spawner"
        try:
            super().setUpClass()
            stack = cls.stack
            second = cls.replica_addresses[1]
            options = cls.replica_options(second, http=f"{second}:{stack.http[1]}",
                                          metrics=f"{second}:{stack.metrics[1]}")
            cls.replica2 = Stack(
                run_dir=stack.run_dir / "replica2", dns=f"{stack.dns[0]}:{stack.dns[1]}",
                spawner_listen=f"{stack.spawner[0]}:{stack.spawner[1]}",
                container_port=stack.container_port,
                event_feeds=[f"http://{stack.spawner_http[0]}:{stack.spawner_http[1]}/events"], **options)
            cls.replica2.run_dir.mkdir(parents=True)
            cls.replica2.start_agent()
            cls.replica2.start_haproxy()
            cls.publish_replicas(2)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.replica2 is not None:
            cls.replica2.stop()
        super().tearDownClass()
        if cls.subnet_lock is not None:
            cls.subnet_lock.close()

    @classmethod
    def replica_options(cls, address, **listeners):
        """Stack options of the replica on `address`: HAProxy and its agent, the agent clearing
        that HAProxy's table and reading its open connections (local runtime socket only)."""
        return dict(listeners, agent=f"{address}:{cls.ports['spop']}",
                    agent_http=f"{address}:{cls.ports['agent_http']}", haproxy_sockets=True)

    @classmethod
    def publish_replicas(cls, count):
        """NAME resolves to the first `count` replica addresses (a third one: nothing there)."""
        hosts_dir = cls.stack.containers.hosts_dir
        staged = hosts_dir / f".{NAME}.tmp"
        staged.write_text("".join(f"{address} {NAME}\n" for address in cls.replica_addresses[:count]))
        staged.replace(hosts_dir / NAME)

    def tearDown(self):
        super().tearDown()
        if self.replica2 is not None and test_failed(self):
            print("\n--- replica 2 ---\n" + self.replica2.diagnostics(), file=sys.stderr)

    # --- helpers ---------------------------------------------------------------------------

    def replicas(self):
        return {"replica 1": self.stack, "replica 2": self.replica2}

    def routed(self, replica, user):
        status, _, body = replica.request(user)
        return status == 200 and body == self.stack.container_page(user)

    def running(self, label):
        return [c["State"] for c in self.managed_containers(label)] == ["running"]

    def spawner_log_lines(self, text):
        return [line for line in self.stack.components["spawner"].log_path.read_text(errors="replace")
                .splitlines() if text in line]

    def unreadable(self, source):
        return metric(self.stack.spawner_metrics(), "director_spawner_idle_unreadable_total", source=source)

    def retirements(self):
        return metric(self.stack.spawner_metrics(), "director_spawner_retirements_total")

    def failures_at(self, what, address):
        """How many times the spawner logged that it could not read `what` (the "agent") of the
        replica at `address`: once per round that found it."""
        marker = {"agent": "cannot read an agent's users"}[what]
        needle = f"{address}:{self.ports['agent_http']}"
        return sum(needle in line for line in self.spawner_log_lines(marker))

    def wait_failures_at(self, what, address, more, timeout=15):
        """Waits until `more` further rounds could not read `what` at `address`."""
        before = self.failures_at(what, address)
        poll(lambda: self.failures_at(what, address), lambda n: n >= before + more, timeout, 0.2)

    # --- the scenario ----------------------------------------------------------------------

    def test_replicas_found_by_name(self):
        stack, replica2 = self.stack, self.replica2
        # (a) every user's container is created (page loads through replica 1) and routed
        # through both replicas.
        for user in self.users:
            self.visit(user)
        for user in self.users:
            stack.wait_routed(user, timeout=60)
            for replica in self.replicas().values():
                poll(lambda: self.routed(replica, user), bool, 10, 0.1)
        ivan_seen = time.monotonic()  # ivan's and rita's last requests through replica 1
        print(f"\nrouted through both replicas: {', '.join(self.users)}", file=sys.stderr, end=" ")

        # (b) sam's container stopped through Podman: both HAProxys' entries revoked.
        for replica in self.replicas().values():
            wait_settled_long_hold(replica, "sam")
        [sam] = self.managed_containers("sam")
        self.assertEqual(stack.podman_stop(sam["Id"]), 204)
        stopped_at = time.monotonic()
        for name, replica in self.replicas().items():
            wait_entry_cleared(replica, "sam", 3)
            took = time.monotonic() - stopped_at
            print(f"sam's entry cleared in {name}'s HAProxy {took * 1000:.0f} ms after podman stop",
                  file=sys.stderr, end="; ")
            self.assertLessEqual(took, BOUND, name)

        # (c) wendy's WebSocket through replica 1 only; rita's requests through replica 2 only.
        sock, head, _ = open_websocket(stack, "wendy")
        try:
            self.assertTrue(head.startswith("HTTP/1.1 101"), head)
            self.assertEqual(wait_open_connections(stack, "wendy", 1), 1)
            self.assertIsNone(open_connections(replica2).get("wendy"))  # only replica 1 carries it
            zoe_seen = None
            while self.running("ivan"):
                elapsed = time.monotonic() - ivan_seen
                self.assertLess(elapsed, IDLE_TIMEOUT + 20, "ivan never retired")
                self.assertTrue(self.routed(replica2, "rita"))
                if zoe_seen is None and elapsed > 5:
                    self.assertTrue(self.routed(stack, "zoe"))  # zoe's last request
                    zoe_seen = time.monotonic()
                time.sleep(1)
            retired_after = time.monotonic() - ivan_seen
            self.assertGreaterEqual(retired_after, IDLE_TIMEOUT - 1)
            self.assertTrue(self.running("rita"), "rita was retired: replica 2's requests not counted")
            self.assertTrue(self.running("wendy"), "wendy was retired: replica 1's WebSocket not counted")
            self.assertTrue(self.running("zoe"), "zoe retired before her timeout")
            self.assertEqual(wait_open_connections(stack, "wendy", 1), 1)
            print(f"ivan retired {retired_after:.1f} s after his last request; rita and wendy kept",
                  file=sys.stderr, end="; ")

            # (d) missing data: nobody is retired, zoe included once she is past the timeout.
            retired, _, _ = poll(self.retirements, lambda n: n >= 1, 5, 0.1)  # counted after the stop
            unreadable_agents = self.unreadable("agent")
            self.publish_replicas(3)
            third = self.replica_addresses[2]
            self.wait_failures_at("agent", third, 1)
            while time.monotonic() - zoe_seen < IDLE_TIMEOUT + 2:
                time.sleep(0.5)
            self.wait_failures_at("agent", third, 2)  # two more rounds past zoe's timeout
            self.assertTrue(self.running("zoe"), "zoe retired while the third address answered nothing")
            self.assertEqual(self.retirements(), retired)
            self.assertGreater(self.unreadable("agent"), unreadable_agents)

            replica2.kill_agent(signal.SIGKILL)
            self.publish_replicas(2)
            second = self.replica_addresses[1]
            self.wait_failures_at("agent", second, 2)
            third_failures = self.failures_at("agent", third)
            self.wait_failures_at("agent", second, 2)
            self.assertEqual(self.failures_at("agent", third), third_failures, "the name still gives 3 addresses")
            self.assertTrue(self.running("zoe"), "zoe retired while replica 2's agent was down")
            self.assertEqual(self.retirements(), retired)
            print("nobody retired with a third address answering nothing, nor with replica 2's "
                  "agent down", file=sys.stderr, end="; ")

            replica2.start_agent()
            started = time.monotonic()
            poll(lambda: self.running("zoe"), lambda running: not running, 15, 0.5)
            print(f"zoe retired {time.monotonic() - started:.1f} s after replica 2's agent was back",
                  file=sys.stderr, end=" ")
            self.assertTrue(self.running("wendy"))
        finally:
            sock.close()


if __name__ == "__main__":
    main(director_spawner=True, event_feeds=True)
