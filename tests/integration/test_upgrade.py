"""Upgrade: a websocket-like GET /ws is answered 101 by the origin, then parapet tunnels raw
bytes both ways (the origin echoes them)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import ParapetCase, Reply, build_request, demo_config  # noqa: E402

UPGRADE_HEADERS = [("Connection", "Upgrade"), ("Upgrade", "websocket"),
                   ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                   ("Sec-WebSocket-Version", "13")]


def ws_or_hello(req):
    return Reply.upgrade_echo() if req.path == "/ws" else Reply()


class Upgrade(ParapetCase):

    def open_tunnel(self):
        conn = self.client(timeout=5)
        conn.request("GET", "/ws", headers=UPGRADE_HEADERS)
        resp = conn.response()
        self.assertStatus(resp, 101)
        self.assertEqual((resp.header("Upgrade") or "").lower(), "websocket")
        self.assertIn("upgrade", (resp.header("Connection") or "").lower())
        self.assertEqual(bytes(conn.stream.buf), b"", "bytes after the 101 before we sent any")
        return conn

    def echo(self, conn, payload: bytes) -> bytes:
        conn.send(payload)
        return conn.stream.read_exact(len(payload))

    def test_bytes_are_echoed_through_the_tunnel(self):
        origin = self.start_origin(ws_or_hello)
        self.start_parapet(demo_config(origin))
        conn = self.open_tunnel()

        for i in range(5):
            message = b"\x81\x05ping%d" % i
            self.assertEqual(self.echo(conn, message), message)

        req = origin.requests[0]
        self.assertEqual(req.header("Upgrade"), "websocket")
        self.assertIn("upgrade", (req.header("Connection") or "").lower())
        self.assertEqual(req.header("Sec-WebSocket-Key"), "dGhlIHNhbXBsZSBub25jZQ==")

    def test_large_payload_through_the_tunnel(self):
        origin = self.start_origin(ws_or_hello)
        self.start_parapet(demo_config(origin))
        conn = self.open_tunnel()

        payload = bytes(range(256)) * 1024  # 256 KiB: more than one socket buffer
        self.assertEqual(self.echo(conn, payload), payload)

    def test_two_tunnels_do_not_mix(self):
        origin = self.start_origin(ws_or_hello)
        self.start_parapet(demo_config(origin))
        first, second = self.open_tunnel(), self.open_tunnel()

        for i in range(3):
            self.assertEqual(self.echo(first, b"first-%d" % i), b"first-%d" % i)
            self.assertEqual(self.echo(second, b"second-%d" % i), b"second-%d" % i)

        self.assertEqual(origin.connection_count, 2)

    def test_http_before_the_upgrade_on_the_same_connection(self):
        origin = self.start_origin(ws_or_hello)
        self.start_parapet(demo_config(origin))
        conn = self.client()

        self.assertStatus(conn.roundtrip("GET", "/plain"), 200)
        conn.request("GET", "/ws", headers=UPGRADE_HEADERS)
        self.assertStatus(conn.response(), 101)
        self.assertEqual(self.echo(conn, b"after upgrade"), b"after upgrade")

    def test_origin_declining_the_upgrade_keeps_http(self):
        origin = self.start_origin()  # answers 200 to everything, /ws included
        self.start_parapet(demo_config(origin))
        conn = self.client()

        conn.send(build_request("GET", "/ws", headers=UPGRADE_HEADERS))
        resp = conn.response()
        self.assertStatus(resp, 200)
        self.assertEqual(resp.body, b"hello from origin")
        # The spec leaves open whether parapet keeps this connection; if it does, it must
        # still speak HTTP on it (no tunnel left half-open).
        try:
            conn.request("GET", "/next")
            again = conn.response()
        except (EOFError, ConnectionError):
            return  # closed cleanly: acceptable
        self.assertStatus(again, 200)
        self.assertEqual(again.body, b"hello from origin")


if __name__ == "__main__":
    unittest.main()
