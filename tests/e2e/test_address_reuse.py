#!/usr/bin/env python3
"""Security: an address released by one user's container and taken at once by another user's
container must never receive the first user's requests (with their session cookies).

A TCP probe cannot tell two containers apart, so what keeps users apart is that every check
resolves the user's host afresh: a cached DNS answer would send olga's check to pavel's
container, find it answering, and route olga there. DNS here answers with TTL 600, as
Docker's embedded DNS does."""

import time

from common import StackTest, main, poll

# Longer than the agent's alive TTL (800 ms): the cached "alive" answer has expired.
AFTER_ALIVE_TTL = 1.2


class AddressReuse(StackTest):
    def test_reused_address_never_serves_the_previous_owner(self):
        olga = self.stack.add_container("olga")
        poll(lambda: self.stack.served_by("olga"), lambda s: s == self.backend_of("olga"), 3)

        self.stack.stop_container("olga")  # docker rm: the process and its name are gone
        pavel = self.stack.add_container("pavel", addr=olga["addr"])
        self.assertEqual(pavel["addr"], olga["addr"])
        self.assertEqual(self.stack.served_by("pavel"), self.backend_of("pavel"))

        time.sleep(AFTER_ALIVE_TTL)
        for _ in range(5):
            self.assertEqual(self.stack.served_by("olga"), "spawner")
        # Everything pavel's container ever received was pavel's.
        identities = [request["user"] for request in self.stack.backend_requests("pavel")]
        self.assertTrue(identities)
        self.assertEqual([i for i in identities if i != ["pavel"]], [])


if __name__ == "__main__":
    main()
