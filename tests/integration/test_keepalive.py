"""Persistent connections: several requests per client connection, origin connections reused
across requests and client connections (workers: 1), pipelining answered in order."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Client, ParapetCase, Reply, build_request, demo_config  # noqa: E402

DELAYS = {"/slow": 0.6, "/medium": 0.3}


def echo_path(req):
    """Answers with the request path as body, after a per-path delay."""
    return Reply(body=req.path.encode(), delay=DELAYS.get(req.path, 0.0))


class ClientKeepAlive(ParapetCase):

    def test_two_requests_on_one_connection(self):
        origin = self.start_origin(echo_path)
        self.start_parapet(demo_config(origin))
        conn = self.client()

        first = conn.roundtrip("GET", "/one")
        second = conn.roundtrip("GET", "/two")

        self.assertEqual((first.status, first.body), (200, b"/one"))
        self.assertEqual((second.status, second.body), (200, b"/two"))

    def test_connection_close_from_the_client_is_honoured(self):
        origin = self.start_origin()
        self.start_parapet(demo_config(origin))
        conn = self.client()

        resp = conn.roundtrip("GET", "/", headers=[("Connection", "close")])

        self.assertStatus(resp, 200)
        self.assertClosedAfter(conn)

    def test_origin_that_closes_after_each_response(self):
        origin = self.start_origin(lambda req: Reply(body=req.path.encode(), after="close",
                                                     headers=[("Connection", "close")]))
        self.start_parapet(demo_config(origin))
        conn = self.client()

        bodies = [conn.roundtrip("GET", f"/r{i}").body for i in range(3)]

        self.assertEqual(bodies, [b"/r0", b"/r1", b"/r2"])
        self.assertEqual(origin.connection_count, 3)


class OriginReuse(ParapetCase):

    def test_one_origin_connection_for_sequential_requests(self):
        origin = self.start_origin()
        self.start_parapet(demo_config(origin))
        conn = self.client()

        for i in range(5):
            self.assertStatus(conn.roundtrip("GET", f"/seq/{i}"), 200)

        self.assertEqual(origin.request_count, 5)
        self.assertEqual(origin.connection_count, 1, origin.requests)

    def test_one_origin_connection_across_client_connections(self):
        origin = self.start_origin()
        self.start_parapet(demo_config(origin, workers=1))

        for i in range(4):
            with Client(self.parapet.port()) as conn:
                self.assertStatus(conn.roundtrip("GET", f"/client/{i}"), 200)

        self.assertEqual(origin.request_count, 4)
        self.assertEqual(origin.connection_count, 1, origin.requests)

    def test_post_bodies_do_not_break_reuse(self):
        origin = self.start_origin(lambda req: Reply(body=req.body[::-1]))
        self.start_parapet(demo_config(origin))
        conn = self.client()

        for i in range(3):
            body = f"body number {i}".encode() * (i + 1)
            resp = conn.roundtrip("POST", "/echo", body=body)
            self.assertEqual(resp.body, body[::-1])
        resp = conn.roundtrip("POST", "/echo", chunks=[b"abc", b"def"])
        self.assertEqual(resp.body, b"fedcba")
        self.assertEqual(origin.connection_count, 1)


class Pipelining(ParapetCase):

    def test_answers_come_in_request_order_when_the_first_is_slowest(self):
        origin = self.start_origin(echo_path)
        self.start_parapet(demo_config(origin))
        conn = self.client(timeout=10)

        conn.send(build_request("GET", "/slow") + build_request("GET", "/medium")
                  + build_request("GET", "/fast"))
        started = time.monotonic()
        bodies = [conn.response().body for _ in range(3)]

        self.assertEqual(bodies, [b"/slow", b"/medium", b"/fast"])
        self.assertLess(time.monotonic() - started, 8.0)
        self.assertEqual(sorted(r.path for r in origin.requests), ["/fast", "/medium", "/slow"])

    def test_pipelined_posts_with_bodies(self):
        origin = self.start_origin(lambda req: Reply(body=b"%s:%s" % (req.path.encode(),
                                                                       req.body)))
        self.start_parapet(demo_config(origin))
        conn = self.client()

        conn.send(build_request("POST", "/a", body=b"one")
                  + build_request("POST", "/b", chunks=[b"tw", b"o"])
                  + build_request("GET", "/c"))
        bodies = [conn.response(method).body for method in ("POST", "POST", "GET")]

        self.assertEqual(bodies, [b"/a:one", b"/b:two", b"/c:"])

    def test_pipelined_head_then_get(self):
        origin = self.start_origin()
        self.start_parapet(demo_config(origin))
        conn = self.client()

        conn.send(build_request("HEAD", "/") + build_request("GET", "/"))
        head = conn.response("HEAD")
        get = conn.response("GET")

        self.assertEqual((head.status, head.body), (200, b""))
        self.assertEqual((get.status, get.body), (200, b"hello from origin"))


if __name__ == "__main__":
    unittest.main()
