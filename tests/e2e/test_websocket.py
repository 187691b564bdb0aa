#!/usr/bin/env python3
"""WebSockets: the upgrade goes through the user's route, and frames flow both ways."""

from common import StackTest, WebSocket, main


class WebSockets(StackTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack.add_containers(["alice", "bob"])

    def test_upgrade_and_echo(self):
        for user in ("alice", "bob"):
            ws = WebSocket(self.stack, user)
            try:
                self.assertTrue(ws.accepted, f"status {ws.status}, headers {ws.headers}")
                self.assertEqual(ws.headers.get("x-served-by"), self.backend_of(user))
                for text in ("hello", "é" * 300, f"from {user}"):
                    ws.send(text)
                    self.assertEqual(ws.receive(), (1, text))
                ws.send("", opcode=8)
                self.assertEqual(ws.receive(), (8, ""))
            finally:
                ws.close()

    def test_user_without_container_gets_no_upgrade(self):
        """HAProxy's wake policy answers: a WebSocket never wakes the spawner."""
        ws = WebSocket(self.stack, "nobody-here")
        try:
            self.assertFalse(ws.accepted)
            self.assertEqual((ws.status, ws.headers.get("x-director-reason")),
                             (503, "not-a-navigation"))
            self.assertEqual(ws.headers.get("retry-after"), "5")
        finally:
            ws.close()
        self.assertEqual(self.stack.spawner_requests(), [])
        self.assertIsNone(self.stack.container("nobody-here"))


if __name__ == "__main__":
    main()
