#!/usr/bin/env python3
"""200 users at once: 200 containers on 200 addresses, requests for all of them concurrently
(first visits, so every decision needs a DNS lookup and a probe); each user reaches their own."""

from concurrent.futures import ThreadPoolExecutor

from common import StackTest, main

USERS = [f"user{i:03d}" for i in range(200)]


class Scale(StackTest):
    def test_200_users_each_reach_their_own_container(self):
        states = self.stack.add_containers(USERS)
        self.assertEqual(len({s["addr"] for s in states}), len(USERS))
        expected = {s["user"]: f"backend {s['host']} {s['addr']}" for s in states}

        def visit(user):
            try:
                status, headers, _ = self.stack.request(user, timeout=10)
                return user, (status, headers.get("x-served-by"))
            except OSError as error:
                return user, repr(error)

        with ThreadPoolExecutor(max_workers=50) as pool:
            answers = list(pool.map(visit, USERS + USERS))  # first visits, then cached ones
        wrong = [(user, answer) for user, answer in answers if answer != (200, expected[user])]
        self.assertEqual(len(wrong), 0,
                         f"{len(wrong)} of {len(answers)} requests misrouted, e.g. {wrong[:5]}")


if __name__ == "__main__":
    main()
