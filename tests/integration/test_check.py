"""Command line: --check validates a config (exit 0, or 1 with `file:line: reason` on stderr),
--version and --help exit 0, and a bad config never starts serving."""

import os
import re
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import run_parapet  # noqa: E402

GOOD = """\
workers: 1
listeners:
  - name: http
    address: 127.0.0.1:0
admin:
  address: 127.0.0.1:0
limits:
  max_body_bytes: 1048576
timeouts:
  client_header: 5s
  keepalive: 1m
tenants:
  - name: demo
    hosts: [demo.local, "*.demo.local"]
    origins:
      - name: app
        servers: ["127.0.0.1:9000", "127.0.0.1:9001"]
        balance: round_robin
        connect_timeout: 500ms
        response_timeout: 60
        keepalive: {max_idle: 32, idle_timeout: 60s}
        health: {max_fails: 3, fail_timeout: 10s}
    routes:
      - path: /
        origin: app
"""


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def line_of(text: str, marker: str) -> int:
    """1-based number of the first line containing `marker`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if marker in line:
            return number
    raise AssertionError(f"{marker!r} not in config")


class Check(unittest.TestCase):

    def setUp(self):
        tmp = tempfile.TemporaryDirectory(prefix="parapet-check-")
        self.addCleanup(tmp.cleanup)
        self.dir = Path(tmp.name)

    def write(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.write_text(text)
        return path

    def check(self, path: Path):
        return run_parapet(["--check", "-c", str(path)], timeout=10)

    def assertRefusedAt(self, name: str, text: str, marker: str, slack: int = 0):
        """--check exits 1 and stderr names the file and the line holding `marker` (up to
        `slack` lines later is accepted), followed by a reason."""
        path = self.write(name, text)
        result = self.check(path)
        context = f"rc={result.returncode}\nstderr:\n{result.stderr}\nconfig:\n{text}"
        self.assertEqual(result.returncode, 1, context)
        match = re.search(re.escape(name) + r":(\d+):(?:\d+:)?\s*(\S.*)", result.stderr)
        self.assertIsNotNone(match, f"no '{name}:<line>: reason' on stderr\n{context}")
        expected = line_of(text, marker)
        self.assertTrue(expected <= int(match.group(1)) <= expected + slack,
                        f"reported line {match.group(1)}, expected {expected}\n{context}")
        self.assertTrue(match.group(2).strip(), f"no reason given\n{context}")

    # -- valid ----------------------------------------------------------------------------------
    def test_good_config_passes(self):
        result = self.check(self.write("good.yaml", GOOD))
        self.assertEqual(result.returncode, 0, result.stderr)

    def test_workers_auto_passes(self):
        result = self.check(self.write("auto.yaml", edit(GOOD, "workers: 1", "workers: auto")))
        self.assertEqual(result.returncode, 0, result.stderr)

    # -- invalid --------------------------------------------------------------------------------
    def test_unknown_key(self):
        text = edit(GOOD, "    address: 127.0.0.1:0\n",
                    "    address: 127.0.0.1:0\n    bogus_option: 1\n")
        self.assertRefusedAt("unknown-key.yaml", text, "bogus_option")

    def test_unknown_top_level_key(self):
        self.assertRefusedAt("unknown-top.yaml", GOOD + "colour: blue\n", "colour")

    def test_route_to_unknown_origin(self):
        text = edit(GOOD, "        origin: app", "        origin: nope")
        self.assertRefusedAt("unknown-origin.yaml", text, "origin: nope")

    def test_bad_listener_address(self):
        text = edit(GOOD, "    address: 127.0.0.1:0", "    address: not-an-address")
        self.assertRefusedAt("bad-address.yaml", text, "not-an-address")

    def test_port_out_of_range(self):
        text = edit(GOOD, "    address: 127.0.0.1:0", "    address: 127.0.0.1:70000")
        self.assertRefusedAt("bad-port.yaml", text, "70000")

    def test_bad_server_address(self):
        text = edit(GOOD, '"127.0.0.1:9001"', '"127.0.0.1:port"')
        self.assertRefusedAt("bad-server.yaml", text, "127.0.0.1:port")

    def test_unknown_balance(self):
        text = edit(GOOD, "balance: round_robin", "balance: random_please")
        self.assertRefusedAt("bad-balance.yaml", text, "random_please")

    def test_bad_duration(self):
        text = edit(GOOD, "client_header: 5s", "client_header: ten seconds")
        self.assertRefusedAt("bad-duration.yaml", text, "ten seconds")

    def test_yaml_syntax_error(self):
        text = edit(GOOD, "    address: 127.0.0.1:0\nadmin:",
                    "   address: 127.0.0.1:0\nadmin:")  # 3 spaces: breaks the mapping
        self.assertRefusedAt("syntax.yaml", text, "   address: 127.0.0.1:0", slack=2)

    def test_missing_file(self):
        result = self.check(self.dir / "does-not-exist.yaml")
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("does-not-exist.yaml", result.stderr)

    def test_serving_a_bad_config_fails_to_start(self):
        path = self.write("serve-bad.yaml", edit(GOOD, "        origin: app",
                                                  "        origin: nope"))
        result = run_parapet(["-c", str(path)], timeout=10)
        self.assertNotEqual(result.returncode, 0)
        self.assertRegex(result.stderr, r"serve-bad\.yaml:\d+:")
        self.assertNotIn("parapet: ready", result.stderr)

    # -- other flags ----------------------------------------------------------------------------
    def test_version(self):
        result = run_parapet(["--version"], timeout=10)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout + result.stderr, r"\d+\.\d+")

    def test_help(self):
        result = run_parapet(["--help"], timeout=10)
        self.assertEqual(result.returncode, 0, result.stderr)
        output = result.stdout + result.stderr
        self.assertIn("--check", output)
        self.assertIn("-c", output)


if __name__ == "__main__":
    unittest.main()
