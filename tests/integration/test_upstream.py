"""Upstream selection: retry past a dead server, round robin, least_conn, hash, passive health
(a failing server rests for fail_timeout), and the errors when no origin can answer."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Client, DeadPort, ParapetCase, Reply, demo_config  # noqa: E402


def named(name: str, delays: dict | None = None):
    """Handler answering with its own name, after an optional per-path delay."""
    return lambda req: Reply(body=name.encode(), delay=(delays or {}).get(req.path, 0.0))


class Retry(ParapetCase):

    def test_get_reaches_the_live_server_when_the_first_is_down(self):
        live = self.start_origin()
        self.start_parapet(demo_config(DeadPort(), live))

        for i in range(4):
            with self.subTest(request=i):
                resp = self.get(f"/r{i}")
                self.assertStatus(resp, 200)
                self.assertEqual(resp.body, b"hello from origin")
        self.assertEqual(live.request_count, 4)

    def test_post_to_a_dead_first_server_does_not_hang(self):
        live = self.start_origin()
        self.start_parapet(demo_config(DeadPort(), live))
        body = b"payload" * 1000

        for i in range(2):
            with self.subTest(request=i), Client(self.parapet.port(), timeout=5) as conn:
                started = time.monotonic()
                resp = conn.roundtrip("POST", "/submit", body=body)
                self.assertIn(resp.status, (200, 502), f"{resp!r}\n{self.diag()}")
                self.assertLess(time.monotonic() - started, 5.0)
        for req in live.requests:  # whatever was forwarded arrived whole
            self.assertEqual(req.body, body)


class Balancing(ParapetCase):

    def test_round_robin_splits_evenly(self):
        a = self.start_origin(named("a"))
        b = self.start_origin(named("b"))
        self.start_parapet(demo_config(a, b, origin={"balance": "round_robin"}))
        conn = self.client()

        bodies = [conn.roundtrip("GET", f"/r{i}").body for i in range(10)]

        self.assertEqual((bodies.count(b"a"), bodies.count(b"b")), (5, 5), bodies)
        self.assertEqual((a.request_count, b.request_count), (5, 5))

    def test_least_conn_avoids_the_busy_server(self):
        a = self.start_origin(named("a", {"/slow": 1.5}))
        b = self.start_origin(named("b", {"/slow": 1.5}))
        self.start_parapet(demo_config(a, b, origin={"balance": "least_conn"}))
        slow = self.client(timeout=6)
        slow.request("GET", "/slow")
        deadline = time.monotonic() + 2.0
        while a.request_count + b.request_count < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        busy, idle = (a, b) if a.request_count else (b, a)
        self.assertEqual(busy.request_count, 1, "the slow request never reached an origin")

        fast = self.client()
        for i in range(4):
            self.assertStatus(fast.roundtrip("GET", f"/fast{i}"), 200)

        self.assertEqual(idle.request_count, 4)
        self.assertEqual(busy.request_count, 1)
        self.assertStatus(slow.response(), 200)

    def test_hash_on_a_header_is_sticky(self):
        a = self.start_origin(named("a"))
        b = self.start_origin(named("b"))
        self.start_parapet(demo_config(a, b, origin={"balance": "hash",
                                                     "hash_key": "header:X-User"}))
        conn = self.client()
        seen: dict[str, set] = {}

        for _ in range(3):
            for user in range(20):
                resp = conn.roundtrip("GET", "/", headers=[("X-User", f"user-{user}")])
                self.assertStatus(resp, 200)
                seen.setdefault(f"user-{user}", set()).add(resp.body)

        moved = {user: servers for user, servers in seen.items() if len(servers) != 1}
        self.assertEqual(moved, {}, "these users changed server")
        used = set().union(*seen.values())
        self.assertEqual(used, {b"a", b"b"}, "20 users all hashed to one server")

    def test_hash_on_the_uri_is_sticky(self):
        a = self.start_origin(named("a"))
        b = self.start_origin(named("b"))
        self.start_parapet(demo_config(a, b, origin={"balance": "hash", "hash_key": "uri"}))
        conn = self.client()
        seen: dict[str, set] = {}

        for _ in range(3):
            for page in range(20):
                target = f"/page/{page}"
                seen.setdefault(target, set()).add(conn.roundtrip("GET", target).body)

        self.assertEqual({t: s for t, s in seen.items() if len(s) != 1}, {})
        self.assertEqual(set().union(*seen.values()), {b"a", b"b"})


class PassiveHealth(ParapetCase):

    HEALTH = {"health": {"max_fails": 1, "fail_timeout": "10s"}}

    def test_a_failing_server_rests(self):
        bad = self.start_origin(Reply.close_without_answer())
        good = self.start_origin(named("good"))
        self.start_parapet(demo_config(bad, good, origin=self.HEALTH))

        statuses = []
        for i in range(6):
            resp = self.get(f"/r{i}")
            statuses.append(resp.status)
            self.assertIn(resp.status, (200, 502), f"{resp!r}\n{self.diag()}")

        self.assertEqual(bad.request_count, 1, "the failing server was tried again too soon")
        self.assertEqual(statuses[2:], [200] * 4, statuses)

    def test_a_rested_server_comes_back_after_fail_timeout(self):
        state = {"healthy": False}
        flaky = self.start_origin(lambda req: Reply(body=b"flaky") if state["healthy"]
                                  else Reply.close_without_answer())
        steady = self.start_origin(named("steady"))
        self.start_parapet(demo_config(flaky, steady, origin={
            "balance": "round_robin", "health": {"max_fails": 1, "fail_timeout": "1s"}}))

        for i in range(4):  # round robin reaches the flaky one within two requests
            self.get(f"/warm{i}")
            if flaky.request_count:
                break
        self.assertEqual(flaky.request_count, 1)
        state["healthy"] = True
        for i in range(4):  # resting: everything goes to steady
            self.assertEqual(self.get(f"/resting{i}").body, b"steady")
        self.assertEqual(flaky.request_count, 1)

        time.sleep(1.5)
        bodies = [self.get(f"/back{i}").body for i in range(6)]
        self.assertIn(b"flaky", bodies, "the server did not come back after fail_timeout")

    def test_every_server_resting_is_503(self):
        self.start_parapet(demo_config(DeadPort(), origin=self.HEALTH))

        self.assertError(self.get("/first"), 502, "upstream.connect_failed")
        self.assertError(self.get("/second"), 503, "upstream.unavailable")


class OriginErrors(ParapetCase):

    def test_every_server_down_is_502(self):
        self.start_parapet(demo_config(DeadPort(), DeadPort()))
        self.assertError(self.get("/"), 502, "upstream.connect_failed")
        for i in range(3):  # later requests may find them resting
            resp = self.get(f"/again{i}")
            self.assertIn(resp.status, (502, 503), resp)

    def test_garbage_from_the_origin_is_502(self):
        origin = self.start_origin(Reply.raw(b"NOT HTTP AT ALL\r\n\r\n"))
        self.start_parapet(demo_config(origin))
        self.assertError(self.get("/"), 502, "upstream.bad_response")

    def test_origin_closing_without_an_answer_is_502(self):
        origin = self.start_origin(Reply.close_without_answer())
        self.start_parapet(demo_config(origin))
        self.assertError(self.get("/"), 502, {"upstream.reset", "upstream.bad_response"})

    def test_invalid_content_length_from_the_origin_is_502(self):
        origin = self.start_origin(Reply(headers=[("Content-Length", "abc")], body=b"x"))
        self.start_parapet(demo_config(origin))
        self.assertError(self.get("/"), 502, "upstream.bad_response")


if __name__ == "__main__":
    unittest.main()
