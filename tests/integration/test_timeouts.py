"""Timeouts: slow or idle clients are cut off, a silent or slow origin gives 504, an origin
that is down or unreachable gives 502. Timings have about 2 s of slack for loaded machines."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (BlackholePort, DeadPort, ParapetCase, Reply, build_request,  # noqa: E402
                     demo_config, parse_responses)

PARTIAL_HEAD = b"GET / HTTP/1.1\r\nHost: demo.local\r\n"


class ClientTimeouts(ParapetCase):

    def start(self, **timeouts):
        self.origin = self.start_origin()
        self.start_parapet(demo_config(self.origin, timeouts=timeouts))

    def assertClosedWithOptional408(self, conn, started: float, within: float = 3.0):
        closed, data = conn.wait_closed(within + 1.0)
        elapsed = time.monotonic() - started
        self.assertTrue(closed, f"still open after {elapsed:.1f}s\n{self.diag()}")
        self.assertLess(elapsed, within, self.diag())
        if data:  # a 408 is allowed before the close
            responses, rest = parse_responses(data)
            self.assertEqual(len(responses), 1, data)
            self.assertError(responses[0], 408, "client.header_timeout")
            self.assertEqual(rest, b"")
        return elapsed

    def test_slowloris_unfinished_head(self):
        self.start(client_header="1s")
        conn = self.client()

        conn.send(PARTIAL_HEAD)
        elapsed = self.assertClosedWithOptional408(conn, time.monotonic())

        self.assertGreater(elapsed, 0.5)
        self.assertOriginUntouched(self.origin)

    def test_slowloris_dripping_one_byte_at_a_time(self):
        # The header timeout runs from the first byte to the end of the head: trickling bytes
        # must not extend it.
        self.start(client_header="1s")
        conn = self.client()
        drip = PARTIAL_HEAD + b"X-Slow: " + b"a" * 200
        started = time.monotonic()

        for byte in drip[:60]:  # 60 x 0.1 s = 6 s at most
            try:
                conn.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            closed, _ = conn.wait_closed(0.1)
            if closed:
                break
        elapsed = time.monotonic() - started

        self.assertLess(elapsed, 3.0, f"still dripping after {elapsed:.1f}s\n{self.diag()}")
        self.assertOriginUntouched(self.origin)

    def test_connection_that_sends_nothing(self):
        self.start(client_header="1s")
        conn = self.client()
        self.assertClosedWithOptional408(conn, time.monotonic())

    def test_idle_keepalive_connection_is_closed_silently(self):
        self.start(keepalive="1s")
        conn = self.client()
        self.assertStatus(conn.roundtrip("GET", "/"), 200)
        started = time.monotonic()

        closed, data = conn.wait_closed(4.0)
        elapsed = time.monotonic() - started

        self.assertTrue(closed, self.diag())
        self.assertEqual(data, b"", "an idle keep-alive close sends nothing")
        self.assertGreater(elapsed, 0.5)
        self.assertLess(elapsed, 3.0)

    def test_keepalive_connection_used_before_the_timeout(self):
        self.start(keepalive="2s")
        conn = self.client()
        self.assertStatus(conn.roundtrip("GET", "/one"), 200)
        time.sleep(0.5)
        self.assertStatus(conn.roundtrip("GET", "/two"), 200)

    def test_stalled_request_body(self):
        self.start(client_body="1s")
        conn = self.client()
        conn.send(build_request("POST", "/upload", headers=[("Content-Length", "100")])
                  + b"only ten b")
        started = time.monotonic()

        closed, data = conn.wait_closed(5.0)
        elapsed = time.monotonic() - started

        self.assertTrue(closed, self.diag())
        self.assertLess(elapsed, 3.5)
        if data:  # the status is not specified; it must be a client error if any
            responses, _ = parse_responses(data)
            self.assertTrue(responses and 400 <= responses[0].status < 500, data)
        self.assertFalse(any(r.complete for r in self.origin.requests))


class OriginTimeouts(ParapetCase):

    def test_origin_that_never_answers_is_504(self):
        origin = self.start_origin(Reply.hang())
        self.start_parapet(demo_config(origin, origin={"response_timeout": "1s"}))
        conn = self.client(timeout=6)
        started = time.monotonic()

        resp = conn.roundtrip("GET", "/")
        elapsed = time.monotonic() - started

        self.assertError(resp, 504, "upstream.response_timeout")
        self.assertGreater(elapsed, 0.8)
        self.assertLess(elapsed, 3.0)

    def test_origin_stalling_mid_body_ends_the_response(self):
        # Between response reads, the same timeout applies. The head is already sent, so the
        # client sees a truncated body and a closed connection, never a hang.
        origin = self.start_origin(Reply(body=b"x" * 10, headers=[("Content-Length", "100")],
                                         after="hang"))
        self.start_parapet(demo_config(origin, origin={"response_timeout": "1s"}))
        conn = self.client(timeout=6)
        started = time.monotonic()

        conn.request("GET", "/")
        received = conn.stream.read_until(b"\r\n\r\n", 65536)
        self.assertTrue(received.startswith(b"HTTP/1.1 200"), received)
        closed, body = conn.wait_closed(4.0)
        elapsed = time.monotonic() - started

        self.assertTrue(closed, self.diag())
        self.assertLess(len(body), 100, "a truncated body must not look complete")
        self.assertLess(elapsed, 3.5)

    def test_origin_down_is_502_quickly(self):
        dead = DeadPort()
        self.start_parapet(demo_config(dead))
        started = time.monotonic()

        resp = self.get("/")

        self.assertError(resp, 502, "upstream.connect_failed")
        self.assertLess(time.monotonic() - started, 2.0)

    def test_connect_timeout_is_502(self):
        blackhole = BlackholePort()
        self.addCleanup(blackhole.stop)
        if not blackhole.ok:
            self.skipTest("could not make a port that drops SYNs on this kernel")
        self.start_parapet(demo_config(blackhole, origin={"connect_timeout": "1s"}))
        conn = self.client(timeout=8)
        started = time.monotonic()

        resp = conn.roundtrip("GET", "/")
        elapsed = time.monotonic() - started

        self.assertError(resp, 502, "upstream.connect_timeout")
        self.assertGreater(elapsed, 0.8)
        self.assertLess(elapsed, 4.0)


if __name__ == "__main__":
    unittest.main()
