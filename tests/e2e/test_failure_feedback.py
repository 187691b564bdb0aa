#!/usr/bin/env python3
"""Failure feedback (haproxy.cfg step 2, pages/container-*.http): a container that refuses
the connection gets the user the self-reloading 503 page, which sets the cookie
container_director_retry; the next request carrying it skips HAProxy's fast path and reaches the
agent with retry=true, which checks again and sends it to the spawner at once, although HAProxy
held an alive answer with a long hold; the response deletes the cookie.

The agent is tools/fake_agent.py: it probes the container on every request it gets (no cache)
and grants alive answers a hold of a minute, so only the retry makes HAProxy ask it."""

import http.client

from common import main
from stack import IDENTITY, REPO
from test_fast_path import ScriptedAgent

COOKIE = "container_director_retry"
SET = f"{COOKIE}=1; Max-Age=30; Path=/; HttpOnly; SameSite=Lax"
DELETE = f"{COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax"


class FailureFeedback(ScriptedAgent):
    fake_agent_args = ["--hold-ms", "60000"]

    def test_pages_set_the_cookie(self):
        for page in ("container-unavailable.http", "container-failed.http"):
            head = (REPO / "haproxy" / "pages" / page).read_text().split("\n\n", 1)[0]
            self.assertIn(f"Set-Cookie: {SET}", head.splitlines(), page)

    def test_a_refusing_container_sends_the_next_request_to_the_agent(self):
        stack = self.stack
        stack.add_container("rita")
        self.assert_routed("rita")
        self.assert_routed("rita")
        self.assertEqual(len(self.notifications("rita")), 1, "control: the hold is not used")

        # The container stops but keeps its name (it crashed): HAProxy still holds "alive".
        stack.stop_container("rita", forget=False)
        status, headers, _ = stack.request("rita")
        self.assertEqual((status, headers.get("refresh"), headers.get("set-cookie")),
                         (503, "2", SET))
        self.assertEqual(len(self.notifications("rita")), 1, "the refused request asked")
        # Without the cookie, HAProxy keeps its answer: the same page again.
        self.assertEqual(stack.request("rita")[0], 503)

        # With it: the agent is asked, with retry, and the user goes to the spawner at once.
        status, headers, _ = stack.request("rita", headers=[("Cookie", f"{COOKIE}=1")])
        self.assertEqual(headers.get("x-served-by"), "spawner")
        self.assertEqual(headers.get("set-cookie"), DELETE)
        asked = self.notifications("rita")
        self.assertEqual(len(asked), 2)
        self.assertIs(asked[-1]["retry"], True)
        self.assertIsNone(asked[0]["retry"], "retry sent without the cookie")

        # The agent's not-alive answer zeroed HAProxy's entry: no more 503 pages.
        self.assertEqual(stack.served_by("rita"), "spawner")
        self.assertEqual(len(self.notifications("rita")), 3)
        stack.containers.forget_dead(stack.host_for("rita"))

    def set_cookies(self, user, cookie=True):
        """(status, every Set-Cookie value) of one request."""
        conn = http.client.HTTPConnection(*self.stack.http, timeout=10)
        try:
            headers = {IDENTITY: user, "Accept": "text/html"}
            if cookie:
                headers["Cookie"] = f"{COOKIE}=1"
            conn.request("GET", "/", headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status, response.msg.get_all("Set-Cookie") or []
        finally:
            conn.close()

    def test_b_the_cookie_is_deleted_unless_the_response_sets_it_again(self):
        # Routed: deleted.
        self.stack.add_container("sara")
        self.assertEqual(self.set_cookies("sara"), (200, [DELETE]))
        self.assertIs(self.notifications("sara")[-1]["retry"], True)
        # The agent still says alive, at an address that refuses: set again, not deleted.
        self.set_rule("tina", alive=True, reason="ok", addr=f"{self.stack.subnet}.250",
                      port=self.stack.container_port, hold=0)
        self.assertEqual(self.set_cookies("tina"), (503, [SET]))
        # Without the cookie, nothing is deleted.
        self.assertEqual(self.set_cookies("sara", cookie=False), (200, []))


if __name__ == "__main__":
    main()
