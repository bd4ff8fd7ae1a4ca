"""Regression tests, one per bug found in review (each failed before its fix)."""

import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (ParapetCase, Reply, Stream, build_request, connect, demo_config,  # noqa: E402
                     read_response, send_raw)

MIB = 1024 * 1024


class Regressions(ParapetCase):

    def test_drain_does_not_cut_a_response_a_slow_client_is_still_reading(self):
        # The response (200 KiB) is complete on parapet's side, but most of it still waits in
        # parapet's queue because the client has a tiny receive buffer and does not read yet.
        body = bytes(range(256)) * 800
        origin = self.start_origin(lambda req: Reply(body=body))
        parapet = self.start_parapet(demo_config(origin))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(5)
        sock.connect(("127.0.0.1", parapet.port("http")))
        sock.sendall(build_request("GET", "/big"))
        time.sleep(0.5)
        stopper = threading.Thread(target=parapet.stop)  # SIGTERM: drain
        stopper.start()
        time.sleep(0.3)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        sock.close()
        stopper.join(15)
        head, _, got = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertEqual(len(got), len(body))
        self.assertEqual(got, body)
        self.assertEqual(parapet.returncode, 0)

    def test_local_answer_to_a_request_with_a_body_announces_the_close(self):
        self.start_parapet(demo_config(self.start_origin()))
        data = send_raw(self.parapet.port("http"),
                        build_request("POST", "/", host="unknown.example", body=b"abc"))
        self.assertTrue(data.startswith(b"HTTP/1.1 421"), data)
        self.assertIn(b"\r\nConnection: close\r\n", data)

    def test_request_transfer_coding_other_than_chunked_is_refused(self):
        origin = self.start_origin()
        self.start_parapet(demo_config(origin))
        data = send_raw(self.parapet.port("http"),
                        b"POST / HTTP/1.1\r\nHost: demo.local\r\n"
                        b"Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 400"), data)
        self.assertOriginUntouched(origin)

    def test_response_content_coding_is_kept_when_rechunked(self):
        origin = self.start_origin(lambda req: Reply.raw(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n", after="keep"))
        self.start_parapet(demo_config(origin))
        resp = self.get("/")
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header("Transfer-Encoding"), "gzip, chunked")
        self.assertEqual(resp.body, b"abc")

    def test_absolute_form_http10_without_host_gets_a_host_upstream(self):
        origin = self.start_origin()
        self.start_parapet(demo_config(origin))
        data = send_raw(self.parapet.port("http"),
                        b"GET http://demo.local/x HTTP/1.0\r\n\r\n")
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data)
        self.assertEqual(origin.requests[0].header_all("Host"), ["demo.local"])

    def test_too_many_connection_tokens_are_refused(self):
        origin = self.start_origin()
        self.start_parapet(demo_config(origin))
        tokens = ", ".join(f"x-hop-{i}" for i in range(17))
        data = send_raw(self.parapet.port("http"),
                        build_request("GET", "/", headers=[("Connection", tokens),
                                                           ("X-Hop-16", "secret")]))
        self.assertTrue(data.startswith(b"HTTP/1.1 400"), data)
        self.assertOriginUntouched(origin)

    def test_an_idle_tunnel_times_out(self):
        origin = self.start_origin(lambda req: Reply.upgrade_echo())
        self.start_parapet(demo_config(origin, origin={"response_timeout": "1s"}))
        sock = connect(self.parapet.port("http"))
        sock.sendall(build_request("GET", "/ws", headers=[("Connection", "Upgrade"),
                                                          ("Upgrade", "websocket")]))
        stream = Stream(sock, idle_timeout=5.0)
        self.assertEqual(read_response(stream).status, 101)
        sock.sendall(b"ping")
        self.assertEqual(stream.read_exact(4), b"ping")
        start = time.monotonic()
        sock.settimeout(5)
        self.assertEqual(sock.recv(1), b"")  # closed by the idle timeout, not by us
        self.assertLess(time.monotonic() - start, 3.5)
        sock.close()

    def test_steady_upload_longer_than_response_timeout_is_not_a_504(self):
        origin = self.start_origin()
        self.start_parapet(demo_config(origin, origin={"response_timeout": "1s"}))
        sock = connect(self.parapet.port("http"))
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: demo.local\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(4):  # 2 s in all, never idle for a whole second
            sock.sendall(b"5\r\nhello\r\n")
            time.sleep(0.5)
        sock.sendall(b"0\r\n\r\n")
        resp = read_response(Stream(sock, idle_timeout=5.0))
        sock.close()
        self.assertEqual(resp.status, 200)
        self.assertEqual(origin.requests[0].body, b"hello" * 4)


if __name__ == "__main__":
    unittest.main()
