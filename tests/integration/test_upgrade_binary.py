"""Zero-downtime binary upgrade: SIGUSR2 starts the binary again with the listening sockets
handed over; the new process tells the old one to drain. Under a bounded client load, no
request fails, and the old process exits 0. TLS session tickets issued by the old process
resume on the new one (the ticket keys are handed over too)."""

import os
import re
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Client, Origin, Parapet, build_request, demo_config, send_raw  # noqa: E402


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


class BinaryUpgrade(unittest.TestCase):

    def setUp(self):
        self.origin = Origin()
        self.addCleanup(self.origin.stop)
        self.new_pid = None

    def kill_new(self):
        if self.new_pid and pid_alive(self.new_pid):
            os.kill(self.new_pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while pid_alive(self.new_pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(self.new_pid):
                os.kill(self.new_pid, signal.SIGKILL)
                self.fail(f"upgraded parapet pid {self.new_pid} ignored SIGTERM")

    def test_upgrade_under_load_drops_nothing(self):
        old = Parapet(demo_config(self.origin, workers=2))
        self.addCleanup(old._kill)       # runs second: its output pipes close once both exited
        self.addCleanup(self.kill_new)   # runs first
        port, admin = old.port("http"), old.admin_port
        stop = threading.Event()
        results = {"ok": 0, "failed": []}
        lock = threading.Lock()

        def fresh_connections():
            n = 0
            while not stop.is_set() and n < 20000:
                n += 1
                try:
                    data = send_raw(port, build_request("GET", f"/fresh/{n}",
                                                        headers=[("Connection", "close")]))
                    ok = data.startswith(b"HTTP/1.1 200")
                except OSError as e:
                    ok, data = False, repr(e).encode()
                with lock:
                    if ok:
                        results["ok"] += 1
                    else:
                        results["failed"].append(data[:80])

        def keep_alive():
            # A well-behaved HTTP client: an idempotent request whose reused connection closed
            # before any byte of the answer is sent again on a new connection (RFC 9112 9.3.1).
            n = 0
            conn = None
            while not stop.is_set() and n < 20000:
                n += 1
                for attempt in (1, 2):
                    fresh = conn is None
                    try:
                        if conn is None:
                            conn = Client(port)
                        resp = conn.roundtrip("GET", f"/ka/{n}")
                        if (resp.header("Connection") or "").lower() == "close":
                            conn.close()
                            conn = None
                        ok = resp.status == 200
                        break
                    except Exception as e:  # noqa: BLE001
                        if conn is not None:
                            conn.close()
                        conn = None
                        if fresh or attempt == 2:
                            ok = False
                            with lock:
                                results["failed"].append(repr(e))
                            break
                with lock:
                    if ok:
                        results["ok"] += 1
            if conn is not None:
                conn.close()

        threads = [threading.Thread(target=fresh_connections), threading.Thread(target=keep_alive),
                   threading.Thread(target=keep_alive)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            os.kill(old.pid, signal.SIGUSR2)
            m = old.wait_for_stderr(r"upgrade: started \S+ pid=(\d+)", timeout=5)
            self.assertIsNotNone(m, old.diag())
            self.new_pid = int(m.group(1))
            self.assertIsNotNone(old.wait_for_stderr(r"upgrade: taking over from pid=%d" % old.pid,
                                                     timeout=10), old.diag())
            old.proc.wait(15)
            self.assertEqual(old.proc.returncode, 0, old.diag())
            time.sleep(0.5)  # the new process alone serves the load for a while
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        old.returncode = 0
        print(f"\n  binary upgrade under load: {results['ok']} requests ok, "
              f"{len(results['failed'])} failed {results['failed'][:3]}", file=sys.stderr)
        self.assertEqual(results["failed"], [])
        self.assertGreater(results["ok"], 100)
        self.assertTrue(pid_alive(self.new_pid))
        # The new process serves the same listener and the same admin listener.
        self.assertTrue(send_raw(port, build_request("GET", "/after")).startswith(b"HTTP/1.1 200"))
        with Client(admin) as c:
            c.send(build_request("GET", "/healthz", host="admin"))
            self.assertEqual(c.response().status, 200)

    def test_a_bad_new_config_leaves_the_old_process_serving(self):
        old = Parapet(demo_config(self.origin))
        self.addCleanup(old.stop)
        self.addCleanup(self.kill_new)
        old.config_path.write_text(old.config_text + "oops: [\n")
        os.kill(old.pid, signal.SIGUSR2)
        m = old.wait_for_stderr(r"upgrade: started \S+ pid=(\d+)", timeout=5)
        self.assertIsNotNone(m)
        self.new_pid = int(m.group(1))
        self.assertIsNotNone(old.wait_for_stderr(r"configuration refused", timeout=5))
        time.sleep(0.3)
        self.assertIsNone(old.proc.poll())
        self.assertIsNotNone(old.wait_for_stderr(r"upgrade: pid \d+ exited with status 1"))
        self.assertTrue(send_raw(old.port("http"),
                                 build_request("GET", "/")).startswith(b"HTTP/1.1 200"))


    def test_tls_tickets_of_the_old_process_resume_on_the_new_one(self):
        import subprocess
        import test_tls
        certs = test_tls.make_certs()
        self.addCleanup(subprocess.run, ["rm", "-rf", certs], check=False)
        test_tls.CERTS = certs
        old = Parapet(test_tls.tls_config(self.origin))
        self.addCleanup(old._kill)
        self.addCleanup(self.kill_new)
        port = old.port("https")
        ctx = test_tls.client_context()
        with test_tls.tls_connect(port, "demo.local", ctx) as s:
            self.assertEqual(test_tls.roundtrip(s, "demo.local").status, 200)
            session = s.session
        self.assertTrue(session.has_ticket)
        os.kill(old.pid, signal.SIGUSR2)
        m = old.wait_for_stderr(r"upgrade: started \S+ pid=(\d+)", timeout=5)
        self.assertIsNotNone(m, old.diag())
        self.new_pid = int(m.group(1))
        old.proc.wait(15)
        self.assertEqual(old.proc.returncode, 0, old.diag())
        old.returncode = 0
        self.assertNotIn("malformed", old.stderr_text())
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        with ctx.wrap_socket(raw, server_hostname="demo.local", session=session) as s:
            self.assertEqual(test_tls.roundtrip(s, "demo.local").status, 200)
            self.assertTrue(s.session_reused, "a ticket of the old process resumes on the new")


if __name__ == "__main__":
    unittest.main()
