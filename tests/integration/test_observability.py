"""Operations: /metrics in Prometheus text with counters that match the traffic sent, the JSON
access log (one valid line per request), log reopening on SIGUSR1, and W3C trace context
propagation to the origin."""

import json
import os
import re
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (Client, ParapetCase, Reply, Stream, build_request, connect,  # noqa: E402
                     demo_config)

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.e+]+|\+Inf|NaN)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> dict:
    """Strict enough parser of the text exposition format: every sample line parses, every
    family has its TYPE before its samples. Returns {(name, frozenset(labels)): value}."""
    typed = {}
    samples = {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram"), line
            typed[name] = kind
            continue
        if line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"bad sample line: {line!r}"
        name, labels = m.group(1), m.group(3) or ""
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or family in typed, f"sample before its TYPE: {line!r}"
        parsed = frozenset(LABEL_RE.findall(labels))
        samples[(name, parsed)] = float(m.group(4))
    return samples


def metric(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class Metrics(ParapetCase):

    def scrape(self) -> dict:
        with Client(self.parapet.admin_port) as c:
            c.send(build_request("GET", "/metrics", host="admin"))
            resp = c.response()
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.header("Content-Type").startswith("text/plain"))
        return parse_prometheus(resp.body.decode())

    def test_counters_match_the_requests_sent(self):
        origin = self.start_origin()
        self.start_parapet(demo_config(origin))
        with self.client() as conn:
            for i in range(5):
                self.assertStatus(conn.roundtrip("GET", f"/ok/{i}", body=b"abc"), 200)
        self.assertEqual(self.get("/", host="unknown.example").status, 421)
        time.sleep(0.1)
        m = self.scrape()
        self.assertEqual(metric(m, "parapet_requests_total"), 6)
        self.assertEqual(metric(m, "parapet_responses_total", **{"class": "2xx"}), 5)
        self.assertEqual(metric(m, "parapet_responses_total", **{"class": "4xx"}), 1)
        self.assertEqual(metric(m, "parapet_tenant_responses_total", tenant="demo",
                                **{"class": "2xx"}), 5)
        self.assertEqual(metric(m, "parapet_route_responses_total", tenant="demo", route="/",
                                **{"class": "2xx"}), 5)
        self.assertEqual(metric(m, "parapet_request_duration_seconds_count", tenant="demo"), 5)
        self.assertEqual(metric(m, "parapet_request_duration_seconds_bucket", tenant="demo",
                                le="+Inf"), 5)
        self.assertEqual(metric(m, "parapet_upstream_response_seconds_count", tenant="demo"), 5)
        self.assertGreaterEqual(metric(m, "parapet_tenant_received_bytes_total", tenant="demo"),
                                5 * 3)
        self.assertGreater(metric(m, "parapet_tenant_sent_bytes_total", tenant="demo"), 0)
        self.assertEqual(metric(m, "parapet_upstream_connects_total"), 1)
        self.assertEqual(metric(m, "parapet_upstream_reused_total"), 4)
        self.assertEqual(metric(m, "parapet_upstream_connections_idle"), 1)
        self.assertEqual(metric(m, "parapet_config_generation"), 1)

    def test_upstream_failures_per_server(self):
        dead = self.dead_port()
        self.start_parapet(demo_config(dead, origin={"health": {"max_fails": 1,
                                                                 "fail_timeout": "30s"}}))
        self.assertEqual(self.get("/").status, 502)
        m = self.scrape()
        labels = {"tenant": "demo", "origin": "app", "server": f"127.0.0.1:{dead.port}"}
        self.assertEqual(metric(m, "parapet_upstream_server_failures_total", kind="connect",
                                **labels), 1)
        self.assertEqual(metric(m, "parapet_upstream_server_resting_workers", **labels), 1)


class AdminIdle(ParapetCase):

    def test_an_idle_admin_connection_is_closed(self):
        config = demo_config(self.start_origin())
        config["admin"]["idle_timeout"] = "1s"
        self.start_parapet(config)
        sock = connect(self.parapet.admin_port)
        sock.sendall(b"GET /heal")  # and nothing more
        start = time.monotonic()
        sock.settimeout(5)
        self.assertEqual(sock.recv(1), b"")
        self.assertLess(time.monotonic() - start, 3.0)
        sock.close()


class AccessLogTests(ParapetCase):

    def config(self, origin, fmt="json"):
        config = demo_config(origin)
        self.log_path = os.path.join(self._tmp(), "access.log")
        config["access_log"] = {"path": self.log_path, "format": fmt}
        return config

    def _tmp(self):
        import tempfile
        d = tempfile.TemporaryDirectory(prefix="parapet-log-")
        self.addCleanup(d.cleanup)
        return d.name

    def read_lines(self, path=None, want=1, timeout=3.0):
        path = path or self.log_path
        deadline = time.monotonic() + timeout
        lines = []
        while time.monotonic() < deadline:
            if os.path.exists(path):
                with open(path) as f:
                    lines = [line for line in f.read().splitlines() if line]
                if len(lines) >= want:
                    break
            time.sleep(0.05)
        return lines

    def test_one_json_line_per_request(self):
        origin = self.start_origin()
        self.start_parapet(self.config(origin))
        with self.client() as conn:
            conn.roundtrip("GET", "/a?q=1", headers=[("X-Request-Id", "abc-123")])
            conn.roundtrip("POST", "/b", body=b"hello")
        self.assertEqual(self.get("/", host="nope.example").status, 421)
        lines = self.read_lines(want=3)
        self.assertEqual(len(lines), 3, lines)
        recs = [json.loads(line) for line in lines]
        for rec in recs:
            for key in ("time", "request_id", "trace_id", "tenant", "client", "method", "host",
                        "path", "status", "bytes_in", "bytes_out", "duration_ms", "upstream",
                        "upstream_connect_ms", "upstream_first_byte_ms", "ended_by"):
                self.assertIn(key, rec)
        a, b, c = recs
        self.assertEqual((a["method"], a["path"], a["status"]), ("GET", "/a?q=1", 200))
        self.assertEqual(a["request_id"], "abc-123")
        self.assertEqual(a["tenant"], "demo")
        self.assertEqual(a["client"], "127.0.0.1")
        self.assertEqual(a["upstream"], f"127.0.0.1:{origin.port}")
        self.assertEqual(a["ended_by"], "origin")
        self.assertRegex(a["trace_id"], r"^[0-9a-f]{32}$")
        self.assertEqual(origin.requests[0].header("X-Request-Id"), "abc-123")
        self.assertIn(a["trace_id"], origin.requests[0].header("traceparent"))
        self.assertEqual((b["method"], b["status"]), ("POST", 200))
        self.assertGreaterEqual(b["bytes_in"], len(b"hello"))
        self.assertEqual((c["status"], c["reason"], c["tenant"]), (421, "route.unknown_host", ""))

    def test_refused_hostile_request_is_logged_as_valid_json(self):
        origin = self.start_origin()
        self.start_parapet(self.config(origin))
        with self.client() as conn:
            conn.send(b'GET /"\\\x7f\xff%00 HTTP/1.1\r\nHost: demo.local\r\n\r\n')
            self.assertEqual(conn.response().status, 400)
        rec = json.loads(self.read_lines(want=1)[0])
        self.assertEqual((rec["status"], rec["reason"], rec["method"]),
                         (400, "http.bad_request", "-"))
        self.assertEqual(origin.requests, [])

    def test_reopen_on_sigusr1(self):
        origin = self.start_origin()
        self.start_parapet(self.config(origin))
        self.assertStatus(self.get("/before"), 200)
        self.assertEqual(len(self.read_lines(want=1)), 1)
        rotated = self.log_path + ".1"
        os.rename(self.log_path, rotated)
        os.kill(self.parapet.pid, signal.SIGUSR1)
        self.assertIsNotNone(self.parapet.wait_for_stderr(r"access log reopened"))
        time.sleep(0.2)
        self.assertStatus(self.get("/after"), 200)
        new_lines = self.read_lines(want=1)
        self.assertEqual([json.loads(x)["path"] for x in new_lines], ["/after"])
        self.assertEqual([json.loads(x)["path"] for x in self.read_lines(rotated)], ["/before"])

    def test_combined_format(self):
        origin = self.start_origin()
        self.start_parapet(self.config(origin, fmt="combined"))
        self.get("/c", headers=[("User-Agent", "tester/1"), ("Referer", "http://r/")])
        line = self.read_lines(want=1)[0]
        self.assertRegex(line, r'^127\.0\.0\.1 - - \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] '
                               r'"GET /c HTTP/1\.1" 200 \d+ "http://r/" "tester/1"$')


class LiveTail(ParapetCase):

    def two_tenants(self, origin):
        config = demo_config(origin)
        other = dict(config["tenants"][0])
        other.update({"name": "other", "hosts": ["other.example"]})
        config["tenants"].append(other)
        return config

    def open_tail(self, query: str):
        sock = connect(self.parapet.admin_port)
        sock.sendall(build_request("GET", "/tail?" + query, host="admin"))
        stream = Stream(sock, idle_timeout=3.0)
        head = stream.read_until(b"\r\n\r\n", 65536)
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertIn(b"chunked", head.lower())
        self.addCleanup(sock.close)
        time.sleep(0.1)  # subscribed
        return stream

    def read_tail(self, stream, n):
        recs = []
        while len(recs) < n:
            size = int(stream.read_line().strip(), 16)
            chunk = stream.read_exact(size)
            stream.read_line()
            recs.append(json.loads(chunk))
        return recs

    def test_tail_shows_only_the_tenants_own_requests(self):
        origin = self.start_origin()
        self.start_parapet(self.two_tenants(origin))
        stream = self.open_tail("tenant=demo")
        self.get("/other-1", host="other.example")
        self.get("/mine-1")
        self.get("/other-2", host="other.example")
        self.get("/mine-2")
        recs = self.read_tail(stream, 2)
        self.assertEqual([r["path"] for r in recs], ["/mine-1", "/mine-2"])
        self.assertEqual({r["tenant"] for r in recs}, {"demo"})

    def test_tail_filters_by_status_and_path(self):
        origin = self.start_origin(lambda req: Reply(status=404 if "missing" in req.path else 200))
        self.start_parapet(self.two_tenants(origin))
        stream = self.open_tail("tenant=demo&status=4xx&path=/api")
        self.get("/api/ok")
        self.get("/web/missing")
        self.get("/api/missing")
        recs = self.read_tail(stream, 1)
        self.assertEqual([(r["path"], r["status"]) for r in recs], [("/api/missing", 404)])

    def test_tail_needs_a_tenant(self):
        self.start_parapet(demo_config(self.start_origin()))
        with Client(self.parapet.admin_port) as c:
            c.send(build_request("GET", "/tail?status=5xx", host="admin"))
            resp = c.response()
        self.assertEqual(resp.status, 400)
        self.assertIn(b"tenant is required", resp.body)


class TraceContextTests(ParapetCase):

    def test_incoming_traceparent_keeps_the_trace_id(self):
        origin = self.start_origin()
        self.start_parapet(demo_config(origin))
        incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        self.assertStatus(self.get("/", headers=[("traceparent", incoming),
                                                 ("tracestate", "a=b")]), 200)
        sent = origin.requests[0].header("traceparent")
        self.assertRegex(sent, r"^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$")
        self.assertNotEqual(sent, incoming)
        self.assertEqual(origin.requests[0].header("tracestate"), "a=b")
        self.assertEqual(len(origin.requests[0].header_all("traceparent")), 1)

    def test_missing_or_invalid_traceparent_starts_a_trace(self):
        origin = self.start_origin()
        self.start_parapet(demo_config(origin))
        self.get("/", headers=[("traceparent", "00-XYZ-bad")])
        self.get("/")
        for req in origin.requests:
            values = req.header_all("traceparent")
            self.assertEqual(len(values), 1)
            self.assertRegex(values[0], r"^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$")
        self.assertNotEqual(origin.requests[0].header("traceparent")[3:35],
                            origin.requests[1].header("traceparent")[3:35])


if __name__ == "__main__":
    unittest.main()
