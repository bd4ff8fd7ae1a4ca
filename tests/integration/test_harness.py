"""Self-test of harness.py, without parapet: the raw client against the scripted Origin
directly, and the Parapet process wrapper against a tiny fake binary. If these fail, fix the
harness before reading anything into the other tests' results."""

import os
import socket
import stat
import sys
import tempfile
import textwrap
import threading
import time
import unittest
import zlib
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (MIB, BlackholePort, Client, DeadPort, Origin, Parapet,  # noqa: E402
                     Reply, build_request, demo_config, error_fields, parse_responses,
                     send_raw, send_raw_ex, to_yaml)


class OriginAndClient(unittest.TestCase):

    def origin(self, handler=None, **kwargs) -> Origin:
        origin = Origin(handler, **kwargs)
        self.addCleanup(origin.stop)
        return origin

    def client(self, origin: Origin, timeout: float = 3.0) -> Client:
        conn = Client(origin.port, timeout)
        self.addCleanup(conn.close)
        return conn

    def test_default_reply_and_request_record(self):
        origin = self.origin()
        conn = self.client(origin)
        resp = conn.roundtrip("GET", "/a?b=c", headers=[("X-Zeta", "1"), ("x-alpha", "2")])
        self.assertEqual((resp.status, resp.body), (200, b"hello from origin"))
        self.assertEqual(resp.header("content-length"), "17")
        req = origin.requests[0]
        self.assertEqual((req.method, req.target, req.version, req.path),
                         ("GET", "/a?b=c", "HTTP/1.1", "/a"))
        self.assertEqual(req.headers, [("Host", "demo.local"), ("X-Zeta", "1"),
                                       ("x-alpha", "2")])
        self.assertTrue(req.raw_head.endswith(b"\r\n\r\n"))

    def test_keepalive_and_connection_count(self):
        origin = self.origin()
        conn = self.client(origin)
        for _ in range(3):
            self.assertEqual(conn.roundtrip().status, 200)
        with Client(origin.port) as other:
            other.roundtrip()
        self.assertEqual(origin.connection_count, 2)
        self.assertEqual([(r.conn_id, r.index) for r in origin.requests],
                         [(0, 0), (0, 1), (0, 2), (1, 0)])

    def test_request_bodies(self):
        origin = self.origin(lambda req: Reply(body=req.body.upper()))
        conn = self.client(origin)
        self.assertEqual(conn.roundtrip("POST", "/", body=b"abc").body, b"ABC")
        self.assertEqual(conn.roundtrip("POST", "/", chunks=[b"de", b"f"]).body, b"DEF")
        chunked = origin.requests[1]
        self.assertTrue(chunked.chunked)
        self.assertEqual(chunked.raw_body, b"2\r\nde\r\n1\r\nf\r\n0\r\n\r\n")
        self.assertEqual(origin.requests[0].raw_body, b"abc")
        self.assertTrue(all(r.complete for r in origin.requests))

    def test_pipelining_and_delays(self):
        origin = self.origin(lambda req: Reply(body=req.path.encode(),
                                               delay=0.3 if req.path == "/slow" else 0))
        conn = self.client(origin)
        conn.send(build_request(target="/slow") + build_request(target="/fast"))
        self.assertEqual([conn.response().body for _ in range(2)], [b"/slow", b"/fast"])

    def test_head_and_204(self):
        origin = self.origin(lambda req: Reply(204, body=b"") if req.path == "/e" else Reply())
        conn = self.client(origin)
        head = conn.roundtrip("HEAD", "/")
        self.assertEqual((head.header("Content-Length"), head.body), ("17", b""))
        self.assertEqual(conn.roundtrip("GET", "/e").status, 204)
        self.assertEqual(conn.roundtrip("GET", "/").body, b"hello from origin")

    def test_expect_100_continue(self):
        origin = self.origin(lambda req: Reply(body=req.body))
        conn = self.client(origin)
        conn.send(build_request("POST", "/", headers=[("Content-Length", "5"),
                                                      ("Expect", "100-continue")]))
        self.assertEqual(conn.response("POST").status, 100)
        conn.send(b"hello")
        self.assertEqual(conn.response("POST").body, b"hello")
        self.assertTrue(origin.requests[0].sent_continue)

    def test_chunked_close_and_streamed_replies(self):
        def handler(req):
            if req.path == "/chunked":
                return Reply(body=iter([b"a", b"bc"]), framing="chunked")
            if req.path == "/stream":
                return Reply(body=iter([b"x" * 1000] * 5), headers=[("Content-Length", "5000")])
            return Reply(body=b"until close", framing="close")
        origin = self.origin(handler)
        conn = self.client(origin)
        resp = conn.roundtrip("GET", "/chunked")
        self.assertEqual((resp.chunked, resp.body), (True, b"abc"))
        self.assertEqual(conn.roundtrip("GET", "/stream").body, b"x" * 5000)
        resp = conn.roundtrip("GET", "/close")
        self.assertEqual((resp.close_delimited, resp.body), (True, b"until close"))

    def test_special_replies(self):
        origin = self.origin(lambda req: {
            "/close": Reply.close_without_answer(),
            "/raw": Reply.raw(b"GARBAGE\r\n\r\n"),
            "/hang": Reply.hang(),
        }[req.path])
        self.assertEqual(send_raw(origin.port, build_request(target="/close")), b"")
        self.assertEqual(send_raw(origin.port, build_request(target="/raw")), b"GARBAGE\r\n\r\n")
        result = send_raw_ex(origin.port, build_request(target="/hang"), read_timeout=0.5)
        self.assertEqual((result.data, result.closed), (b"", False))

    def test_upgrade_echo(self):
        origin = self.origin(Reply.upgrade_echo())
        conn = self.client(origin)
        resp = conn.roundtrip("GET", "/ws", headers=[("Connection", "Upgrade"),
                                                     ("Upgrade", "websocket")])
        self.assertEqual(resp.status, 101)
        conn.send(b"ping")
        self.assertEqual(conn.stream.read_exact(4), b"ping")

    def test_count_only_big_body_and_streamed_download(self):
        size = 8 * MIB + 123
        block = bytes(range(256)) * 256
        data = (block * (size // len(block) + 1))[:size]
        origin = self.origin(lambda req: Reply(body=iter([data[:MIB], data[MIB:]]),
                                               headers=[("Content-Length", str(size))]),
                             count_only=True, body_read_pause=0.2)
        conn = self.client(origin, timeout=10)
        conn.request("POST", "/", chunks=[data[i:i + 65536] for i in range(0, size, 65536)])
        resp = conn.response("POST", store_body=False)
        self.assertEqual((resp.body, resp.body_len), (b"", size))
        self.assertEqual(resp.body_crc32, zlib.crc32(data))
        req = origin.requests[0]
        self.assertEqual((req.body, req.body_len, req.body_crc32), (b"", size, zlib.crc32(data)))

    def test_parse_responses_and_error_fields(self):
        body = b"400 Bad Request\nreason: http.bad_request\nrequest_id: abc\n"
        data = (b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                % len(body)) + body + b"HTTP/1.1 200 OK\r\nContent-Len"
        responses, rest = parse_responses(data)
        self.assertEqual([r.status for r in responses], [400])
        self.assertEqual(rest, b"HTTP/1.1 200 OK\r\nContent-Len")
        self.assertEqual(error_fields(responses[0].body),
                         {"status_line": "400 Bad Request", "reason": "http.bad_request",
                          "request_id": "abc"})

    def test_wait_closed(self):
        origin = self.origin(Reply(after="close"))
        conn = self.client(origin)
        self.assertEqual(conn.roundtrip().status, 200)
        self.assertEqual(conn.wait_closed(2.0), (True, b""))

    def test_dead_and_blackhole_ports(self):
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", DeadPort().port), timeout=1).close()
        hole = BlackholePort()
        self.addCleanup(hole.stop)
        self.assertTrue(hole.ok)
        started = time.monotonic()
        with self.assertRaises(socket.timeout):
            socket.create_connection(("127.0.0.1", hole.port), timeout=0.5).close()
        self.assertGreaterEqual(time.monotonic() - started, 0.4)

    def test_stop_ends_hanging_connections(self):
        origin = Origin(Reply.hang())
        conn = Client(origin.port, timeout=5)
        conn.request()
        origin.wait_requests(1)
        started = time.monotonic()
        origin.stop()
        self.assertLess(time.monotonic() - started, 3.0)
        self.assertEqual(conn.wait_closed(2.0)[0], True)
        conn.close()
        self.assertFalse([t for t in threading.enumerate() if t.name.startswith("origin-conn")
                          and t.is_alive()])


class Yaml(unittest.TestCase):

    def test_demo_config_shape(self):
        text = to_yaml(demo_config(9000, origin={"health": {"max_fails": 1}},
                                   limits={"max_body_bytes": 0}))
        self.assertEqual(text, textwrap.dedent("""\
            workers: 1
            listeners:
              - name: "http"
                address: "127.0.0.1:0"
            admin:
              address: "127.0.0.1:0"
            limits:
              max_body_bytes: 0
            tenants:
              - name: "demo"
                hosts:
                  - "demo.local"
                  - "*.demo.local"
                origins:
                  - name: "app"
                    servers:
                      - "127.0.0.1:9000"
                    health:
                      max_fails: 1
                routes:
                  - path: "/"
                    origin: "app"
            """))


FAKE_PARAPET = r'''#!/usr/bin/env python3
# Fake parapet for the harness self-test: binds "http" (and admin), prints the ready lines,
# answers every request with 200 "fake", exits with FAKE_EXIT on SIGTERM.
import os, signal, socket, sys, threading, time
config = open(sys.argv[sys.argv.index("-c") + 1]).read()
mode = os.environ.get("FAKE_MODE", "ok")
if mode == "die":
    print("parapet: cannot start: fake failure", file=sys.stderr, flush=True)
    sys.exit(2)
def listen():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16); return s
http = listen()
print("parapet: listening name=http address=127.0.0.1:%d" % http.getsockname()[1],
      file=sys.stderr, flush=True)
if "admin:" in config:
    admin = listen()
    print("parapet: admin listening address=127.0.0.1:%d" % admin.getsockname()[1],
          file=sys.stderr, flush=True)
# The handler is in place before "ready": the harness may signal as soon as it reads that.
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *a: os._exit(int(os.environ.get("FAKE_EXIT", "0"))))
print("parapet: ready workers=1", file=sys.stderr, flush=True)
def serve():
    while True:
        c, _ = http.accept()
        c.recv(65536)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nfake")
        c.close()
threading.Thread(target=serve, daemon=True).start()
for _ in range(600):  # the harness kills us long before this ends
    time.sleep(1)
'''


class ParapetWrapper(unittest.TestCase):

    def setUp(self):
        tmp = tempfile.TemporaryDirectory(prefix="fake-parapet-")
        self.addCleanup(tmp.cleanup)
        self.fake = Path(tmp.name) / "parapet"
        self.fake.write_text(FAKE_PARAPET)
        self.fake.chmod(self.fake.stat().st_mode | stat.S_IXUSR)
        self.saved_env = dict(os.environ)
        self.addCleanup(self.restore_env)

    def restore_env(self):
        os.environ.clear()
        os.environ.update(self.saved_env)

    def test_start_ports_memory_and_stop(self):
        with Parapet(demo_config(9000), binary=self.fake) as proxy:
            self.assertEqual(proxy.workers, 1)
            self.assertIsNotNone(proxy.admin_port)
            with Client(proxy.port("http")) as conn:
                resp = conn.roundtrip()
            self.assertEqual(resp.body, b"fake")
            self.assertGreater(proxy.rss_kib(), 0)
            self.assertGreaterEqual(proxy.hwm_kib(), proxy.rss_kib())
            self.assertIn("parapet: ready workers=1", proxy.stderr_text())
        self.assertEqual(proxy.returncode, 0)

    def test_nonzero_exit_on_sigterm_fails_stop(self):
        os.environ["FAKE_EXIT"] = "3"
        proxy = Parapet(demo_config(9000), binary=self.fake)
        with self.assertRaisesRegex(AssertionError, "exited with 3"):
            proxy.stop()

    def test_early_exit_is_reported_with_stderr(self):
        os.environ["FAKE_MODE"] = "die"
        with self.assertRaisesRegex(AssertionError, "fake failure"):
            Parapet(demo_config(9000), binary=self.fake)

    def test_ignoring_sigterm_is_killed_and_reported(self):
        os.environ["FAKE_MODE"] = "ignore-term"
        proxy = Parapet(demo_config(9000), binary=self.fake)
        proxy.STOP_TIMEOUT = 1.0
        with self.assertRaisesRegex(AssertionError, "still running"):
            proxy.stop()
        self.assertIsNotNone(proxy.proc.poll())


if __name__ == "__main__":
    unittest.main()
