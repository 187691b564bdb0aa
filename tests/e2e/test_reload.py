#!/usr/bin/env python3
"""Seamless reload: five reloads (SIGUSR2 to the master) under continuous traffic, and not one
request fails or goes anywhere but the user's container."""

import threading
import time

from common import StackTest, main

CLIENTS = 4
RELOADS = 5


class Reload(StackTest):
    def test_reloads_under_traffic(self):
        stack = self.stack
        stack.add_container("alice")
        expected = self.backend_of("alice")
        stop = threading.Event()
        answers, failures, lock = [], [], threading.Lock()

        def client():
            while not stop.is_set():
                try:
                    status, headers, _ = stack.request("alice", timeout=5)
                    answer = (status, headers.get("x-served-by"))
                except OSError as error:
                    answer = repr(error)
                with lock:
                    answers.append(answer)
                    if answer != (200, expected):
                        failures.append(answer)

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        try:
            for _ in range(RELOADS):
                time.sleep(0.5)
                stack.reload_haproxy()
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join()

        self.assertEqual(len(failures), 0,
                         f"{len(failures)} of {len(answers)} requests failed, e.g. {failures[:5]}")
        self.assertGreater(len(answers), 100)
        master = stack.haproxy_cli("show proc", master=True).splitlines()[1].split()
        self.assertEqual(master[1:3], ["master", str(RELOADS)], "reload count")


if __name__ == "__main__":
    main()
