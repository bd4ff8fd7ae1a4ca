"""Hot reload (SIGHUP and POST /reload on the admin listener) and graceful shutdown: a new
config takes effect for new requests, a bad one is refused while the old one keeps serving,
traffic under continuous reloads loses nothing, and SIGTERM drains an in-flight request."""

import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (Client, ParapetCase, Reply, build_request, connect, demo_config,  # noqa: E402
                     read_response, Stream, to_yaml)


def admin_post(port: int, path: str) -> tuple[int, str]:
    with Client(port) as c:
        c.send(build_request("POST", path, host="admin", headers=[("Content-Length", "0")]))
        resp = c.response()
    return resp.status, resp.body.decode(errors="replace")


def with_host(config: dict, host: str) -> dict:
    config["tenants"][0]["hosts"] = config["tenants"][0]["hosts"] + [host]
    return config


class Reload(ParapetCase):

    def rewrite(self, config: dict) -> None:
        self.parapet.config_path.write_text(to_yaml(config))

    def test_new_config_applies_to_new_requests(self):
        origin = self.start_origin()
        self.parapet = self.start_parapet(demo_config(origin))
        self.assertError(self.get("/", host="new.example"), 421, "route.unknown_host")

        self.rewrite(with_host(demo_config(origin), "new.example"))
        status, body = admin_post(self.parapet.admin_port, "/reload")
        self.assertEqual(status, 200, body)
        self.assertIn("generation 2", body)
        self.assertStatus(self.get("/", host="new.example"), 200)

    def test_sighup_reloads(self):
        origin = self.start_origin()
        self.parapet = self.start_parapet(demo_config(origin))
        self.rewrite(with_host(demo_config(origin), "hup.example"))
        os.kill(self.parapet.pid, signal.SIGHUP)
        self.assertIsNotNone(self.parapet.wait_for_stderr(r"reload: generation 2 active"))
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # workers adopt it on their next loop turn
            if self.get("/", host="hup.example").status == 200:
                break
            time.sleep(0.05)
        self.assertStatus(self.get("/", host="hup.example"), 200)

    def test_bad_config_is_refused_and_the_old_one_keeps_serving(self):
        origin = self.start_origin()
        self.parapet = self.start_parapet(demo_config(origin))
        conn = self.client()
        self.assertStatus(conn.roundtrip("GET", "/before"), 200)

        self.parapet.config_path.write_text(
            self.parapet.config_text + "bogus_key: 1\n")
        status, body = admin_post(self.parapet.admin_port, "/reload")

        self.assertEqual(status, 400, body)
        self.assertIn("parapet.yaml:", body)
        self.assertIn("unknown key 'bogus_key'", body)
        # The same keep-alive connection and new ones still work on the old config.
        self.assertStatus(conn.roundtrip("GET", "/after"), 200)
        self.assertStatus(self.get("/"), 200)
        with Client(self.parapet.admin_port) as c:
            c.send(build_request("GET", "/metrics", host="admin"))
            metrics = c.response().body.decode()
        self.assertIn('parapet_config_reloads_total{result="failed"} 1', metrics)
        self.assertIn("parapet_config_generation 1", metrics)

    def test_upstream_pool_survives_a_reload_that_keeps_the_origin(self):
        origin = self.start_origin()
        self.parapet = self.start_parapet(demo_config(origin))
        self.assertStatus(self.get("/one"), 200)
        self.rewrite(with_host(demo_config(origin), "other.example"))
        self.assertEqual(admin_post(self.parapet.admin_port, "/reload")[0], 200)
        time.sleep(0.2)
        self.assertStatus(self.get("/two"), 200)
        self.assertEqual(origin.connection_count, 1)

    def test_listener_added_and_removed_by_reload(self):
        origin = self.start_origin()
        config = demo_config(origin)
        self.parapet = self.start_parapet(config)
        two = demo_config(origin)
        two["listeners"].append({"name": "extra", "address": "127.0.0.1:0"})
        self.rewrite(two)
        self.assertEqual(admin_post(self.parapet.admin_port, "/reload")[0], 200)
        m = self.parapet.wait_for_stderr(r"listening name=extra address=127\.0\.0\.1:(\d+)")
        self.assertIsNotNone(m)
        extra = int(m.group(1))
        time.sleep(0.2)
        with Client(extra) as c:
            self.assertStatus(c.roundtrip("GET", "/"), 200)

        self.rewrite(demo_config(origin))  # the same "http" listener, without "extra"
        self.assertEqual(admin_post(self.parapet.admin_port, "/reload")[0], 200)
        time.sleep(0.3)
        with self.assertRaises(OSError):
            c = connect(extra, timeout=1.0)
            c.sendall(build_request("GET", "/"))
            if not c.recv(1):
                raise ConnectionResetError("closed")
        self.assertStatus(self.get("/"), 200)

    def test_twenty_reloads_under_load_lose_no_request(self):
        origin = self.start_origin()
        self.parapet = self.start_parapet(demo_config(origin, workers=2))
        port = self.parapet.port("http")
        stop = threading.Event()
        results = {"ok": 0, "failed": []}
        lock = threading.Lock()

        def client_loop(n: int):
            sent = 0
            deadline = time.monotonic() + 30
            while not stop.is_set() and sent < 5000 and time.monotonic() < deadline:
                try:
                    with Client(port) as c:
                        for _ in range(50):
                            resp = c.roundtrip("GET", f"/load/{n}/{sent}")
                            sent += 1
                            with lock:
                                if resp.status == 200:
                                    results["ok"] += 1
                                else:
                                    results["failed"].append(resp.status)
                except Exception as e:  # noqa: BLE001: any failure counts
                    with lock:
                        results["failed"].append(repr(e))
                    sent += 1

        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        try:
            for i in range(20):
                host = f"gen{i}.example"
                self.rewrite(with_host(demo_config(origin, workers=2), host))
                status, body = admin_post(self.parapet.admin_port, "/reload")
                self.assertEqual(status, 200, body)
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join(40)
        print(f"\n  reload under load: 20 reloads, {results['ok']} requests ok, "
              f"{len(results['failed'])} failed", file=sys.stderr)
        self.assertEqual(results["failed"], [])
        self.assertGreater(results["ok"], 100)
        self.assertStatus(self.get("/", host="gen19.example"), 200)


class Shutdown(ParapetCase):

    def test_sigterm_drains_an_in_flight_slow_request(self):
        origin = self.start_origin(lambda req: Reply(body=b"slow but complete", delay=1.0))
        parapet = self.start_parapet(demo_config(origin))
        sock = connect(parapet.port("http"))
        sock.sendall(build_request("GET", "/slow"))
        time.sleep(0.3)  # the request is at the origin
        stopper = threading.Thread(target=parapet.stop)  # SIGTERM, then expects exit code 0
        stopper.start()
        resp = read_response(Stream(sock, idle_timeout=5.0))
        sock.close()
        stopper.join(15)
        self.assertEqual((resp.status, resp.body), (200, b"slow but complete"))
        self.assertEqual(resp.header("Connection"), "close")
        self.assertEqual(parapet.returncode, 0)

    def test_sigterm_refuses_new_connections_while_draining(self):
        origin = self.start_origin(lambda req: Reply(body=b"ok", delay=1.0))
        parapet = self.start_parapet(demo_config(origin))
        port = parapet.port("http")
        sock = connect(port)
        sock.sendall(build_request("GET", "/slow"))
        time.sleep(0.3)
        stopper = threading.Thread(target=parapet.stop)
        stopper.start()
        time.sleep(0.2)
        with self.assertRaises(OSError):
            c = connect(port, timeout=1.0)
            c.sendall(build_request("GET", "/"))
            if not c.recv(1):
                raise ConnectionResetError("closed")
        self.assertEqual(read_response(Stream(sock, idle_timeout=5.0)).status, 200)
        sock.close()
        stopper.join(15)
        self.assertEqual(parapet.returncode, 0)


if __name__ == "__main__":
    unittest.main()
