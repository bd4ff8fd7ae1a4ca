"""Shared helpers for parapet's integration tests (Python 3.11 standard library only).

The pieces:
  Parapet          the binary under test, started on a YAML config with every listener on port 0
  Origin, Reply    a scripted HTTP/1.1 origin on raw sockets that records everything it receives
  DeadPort         a loopback port on which nothing listens ("origin down")
  BlackholePort    a loopback port whose SYNs are dropped (connect hangs: "connect timeout")
  Client           a raw-socket HTTP/1.1 client: send any bytes, read responses one at a time
  send_raw, parse_responses, build_request, error_fields
  ParapetCase      unittest.TestCase with cleanups and assertions shared by the test files

House rules: all traffic on 127.0.0.1, every socket has a timeout, every loop is bounded in
count and in time, every child process dies with the test run (PR_SET_PDEATHSIG) and is
stopped by its pid.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
import zlib
from pathlib import Path
from typing import Callable, Iterable

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCALHOST = "127.0.0.1"
DEFAULT_HOST = "demo.local"
MIB = 1024 * 1024

# Reason phrases parapet may use; 413 was renamed by RFC 9110, both are fine.
REASON_PHRASES = {
    400: {"Bad Request"},
    404: {"Not Found"},
    408: {"Request Timeout"},
    413: {"Content Too Large", "Payload Too Large"},
    414: {"URI Too Long"},
    421: {"Misdirected Request"},
    431: {"Request Header Fields Too Large"},
    502: {"Bad Gateway"},
    503: {"Service Unavailable"},
    504: {"Gateway Timeout"},
    505: {"HTTP Version Not Supported"},
}
# Errors after which the connection must close (spec: "Connection: close").
CLOSING_ERRORS = {400, 408, 413, 414, 431}


def parapet_bin() -> Path:
    value = os.environ.get("PARAPET_BIN", "build/parapet")
    path = Path(value)
    return path if path.is_absolute() else REPO_ROOT / path


def big_mib() -> int:
    """Size in MiB of the big upload/download tests (PARAPET_TEST_BIG_MB, default 1024)."""
    return int(os.environ.get("PARAPET_TEST_BIG_MB", "1024"))


# --------------------------------------------------------------------------------------------
# Child processes: die with us.

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int


def _die_with_parent() -> None:
    # Runs in the child between fork and exec. Note: the signal fires when the *thread* that
    # forked exits, so start parapet from the test's main thread (unittest does).
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def run_parapet(args: list[str], timeout: float = 10.0, cwd: str | None = None):
    """Runs parapet to completion (CLI tests). Returns subprocess.CompletedProcess (text)."""
    binary = parapet_bin()
    if not binary.exists():
        raise AssertionError(f"parapet binary not found at {binary} (set PARAPET_BIN)")
    return subprocess.run([str(binary), *args], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, errors="replace", timeout=timeout, cwd=cwd,
                          preexec_fn=_die_with_parent)


# --------------------------------------------------------------------------------------------
# YAML emitter for config dicts (block style, strings double-quoted).

def _yaml_scalar(value) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar
    raise TypeError(f"cannot write {type(value).__name__} to YAML")


def _yaml_lines(obj, indent: int) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, (dict, list)) and value:
                lines.append(f"{pad}{key}:")
                lines.extend(_yaml_lines(value, indent + 1))
            elif isinstance(value, dict):
                lines.append(f"{pad}{key}: {{}}")
            elif isinstance(value, list):
                lines.append(f"{pad}{key}: []")
            else:
                lines.append(f"{pad}{key}: {_yaml_scalar(value)}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, (dict, list)) and item:
                inner = _yaml_lines(item, indent + 1)
                inner[0] = pad + "- " + inner[0][len(pad) + 2:]
                lines.extend(inner)
            else:
                empty = "{}" if isinstance(item, dict) else "[]"
                text = empty if isinstance(item, (dict, list)) else _yaml_scalar(item)
                lines.append(f"{pad}- {text}")
    else:
        lines.append(pad + _yaml_scalar(obj))
    return lines


def to_yaml(config: dict) -> str:
    return "\n".join(_yaml_lines(config, 0)) + "\n"


def server_address(server) -> str:
    """Origin / DeadPort / BlackholePort / port number / "host:port" -> "127.0.0.1:port"."""
    if hasattr(server, "address"):
        return server.address
    if isinstance(server, int):
        return f"{LOCALHOST}:{server}"
    return str(server)


def demo_config(*servers, origin: dict | None = None, limits: dict | None = None,
                timeouts: dict | None = None, admin: bool = True, workers=1) -> dict:
    """The usual config: listener "http", tenant demo (demo.local, *.demo.local), one origin
    "app" over `servers`, one route "/" -> app. `origin` adds keys to the origin (balance,
    health, response_timeout...)."""
    app = {"name": "app", "servers": [server_address(s) for s in servers]}
    app.update(origin or {})
    config: dict = {
        "workers": workers,
        "listeners": [{"name": "http", "address": f"{LOCALHOST}:0"}],
    }
    if admin:
        config["admin"] = {"address": f"{LOCALHOST}:0"}
    if limits:
        config["limits"] = limits
    if timeouts:
        config["timeouts"] = timeouts
    config["tenants"] = [{
        "name": "demo",
        "hosts": ["demo.local", "*.demo.local"],
        "origins": [app],
        "routes": [{"path": "/", "origin": "app"}],
    }]
    return config


# --------------------------------------------------------------------------------------------
# Parapet: the process under test.

_LISTENING_RE = re.compile(r"parapet: listening name=(\S+) address=127\.0\.0\.1:(\d+)")
_ADMIN_RE = re.compile(r"parapet: admin listening address=127\.0\.0\.1:(\d+)")
_READY_RE = re.compile(r"parapet: ready workers=(\d+)")


class Parapet:
    """Starts `$PARAPET_BIN -c FILE` and waits until every listener, the admin listener (when
    configured) and the workers are ready. Use as a context manager or call stop()."""

    START_TIMEOUT = 10.0
    STOP_TIMEOUT = 10.0

    def __init__(self, config: dict | str, extra_args: list[str] | None = None,
                 binary: str | Path | None = None):
        binary = Path(binary) if binary else parapet_bin()
        if not binary.exists():
            raise AssertionError(f"parapet binary not found at {binary} (set PARAPET_BIN)")
        self.tmpdir = tempfile.TemporaryDirectory(prefix="parapet-it-")
        self.config_path = Path(self.tmpdir.name) / "parapet.yaml"
        if isinstance(config, dict):
            self.config_text = to_yaml(config)
            expected = [listener["name"] for listener in config.get("listeners", [])]
            want_admin = "admin" in config
        else:
            self.config_text = config
            expected, want_admin = [], None  # unknown: trust the ready line
        self.config_path.write_text(self.config_text)
        self.args = [str(binary), "-c", str(self.config_path), *(extra_args or [])]
        self._lines: list[str] = []
        self._stdout: list[str] = []
        self._cond = threading.Condition()
        self.ports: dict[str, int] = {}
        self.admin_port: int | None = None
        self.workers: int | None = None
        self.returncode: int | None = None
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=self.tmpdir.name,
                                     preexec_fn=_die_with_parent)
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stderr, self._lines), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stdout, self._stdout), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        try:
            self._wait_ready(expected, want_admin)
        except BaseException:
            self._kill()
            raise

    # -- output -------------------------------------------------------------------------------
    def _pump(self, pipe, sink: list[str]) -> None:
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                sink.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def stderr_lines(self) -> list[str]:
        with self._cond:
            return list(self._lines)

    def stderr_text(self) -> str:
        return "\n".join(self.stderr_lines())

    def stdout_text(self) -> str:
        with self._cond:
            return "\n".join(self._stdout)

    def diag(self, lines: int = 40) -> str:
        tail = self.stderr_lines()[-lines:]
        return "--- parapet stderr (last %d lines) ---\n%s" % (len(tail), "\n".join(tail))

    def wait_for_stderr(self, pattern: str, timeout: float = 5.0) -> re.Match | None:
        """Waits until a stderr line matches `pattern` (regex); returns the match or None."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self._lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self._lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.1))

    def _wait_ready(self, expected: list[str], want_admin: bool | None) -> None:
        deadline = time.monotonic() + self.START_TIMEOUT
        seen = 0
        with self._cond:
            while True:
                for line in self._lines[seen:]:
                    if m := _LISTENING_RE.search(line):
                        self.ports.setdefault(m.group(1), int(m.group(2)))
                    elif m := _ADMIN_RE.search(line):
                        self.admin_port = self.admin_port or int(m.group(1))
                    elif m := _READY_RE.search(line):
                        self.workers = int(m.group(1))
                seen = len(self._lines)
                listeners_ok = all(name in self.ports for name in expected)
                admin_ok = not want_admin or self.admin_port is not None
                if self.workers is not None and listeners_ok and admin_ok:
                    return
                if self.proc.poll() is not None:
                    # Let the readers drain what the process printed before dying.
                    self._cond.wait(0.2)
                    raise AssertionError(
                        f"parapet exited with {self.proc.returncode} before it was ready\n"
                        f"config:\n{self.config_text}\n{self.diag()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"parapet not ready within {self.START_TIMEOUT}s (ports={self.ports}, "
                        f"admin={self.admin_port}, workers={self.workers})\n{self.diag()}")
                self._cond.wait(min(left, 0.1))

    # -- accessors ----------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self.proc.pid

    def port(self, name: str = "http") -> int:
        if name not in self.ports:
            raise KeyError(f"no listener named {name!r}; known: {self.ports}\n{self.diag()}")
        return self.ports[name]

    def _proc_status(self, key: str) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise AssertionError(f"{key} not in /proc/{self.pid}/status")

    def rss_kib(self) -> int:
        return self._proc_status("VmRSS")

    def hwm_kib(self) -> int:
        return self._proc_status("VmHWM")

    def alive(self) -> bool:
        return self.proc.poll() is None

    # -- stopping -----------------------------------------------------------------------------
    def _kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._finish()

    def _finish(self) -> None:
        for reader in self._readers:
            reader.join(2)
        for pipe in (self.proc.stdout, self.proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass
        if os.environ.get("PARAPET_TEST_VERBOSE"):
            print(f"\n{self.diag(400)}", flush=True)
        self.tmpdir.cleanup()

    def stop(self, expect_code: int | None = 0) -> int:
        """SIGTERM, wait up to 10 s, else SIGKILL. Asserts it exited in time (and with
        `expect_code` unless None). Idempotent."""
        if self.returncode is not None:
            return self.returncode
        exited_alone = self.proc.poll() is not None
        if not exited_alone:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(self.STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            self.returncode = self.proc.returncode
            text = self.diag()
            self._finish()
            raise AssertionError(
                f"parapet (pid {self.pid}) still running {self.STOP_TIMEOUT}s after SIGTERM; "
                f"killed\n{text}")
        self.returncode = self.proc.returncode
        text = self.diag()
        self._finish()
        if exited_alone:
            raise AssertionError(
                f"parapet exited by itself during the test (code {self.returncode})\n{text}")
        if expect_code is not None and self.returncode != expect_code:
            raise AssertionError(
                f"parapet exited with {self.returncode} after SIGTERM, expected {expect_code}"
                f"\n{text}")
        return self.returncode

    def __enter__(self) -> "Parapet":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.stop()
        elif self.returncode is None:
            self._kill()  # don't hide the test's own failure behind a stop failure


# --------------------------------------------------------------------------------------------
# Buffered reading over a socket (or over fixed bytes), shared by origin and client.

class Stopped(Exception):
    """The owner asked the reader to stop."""


class Stream:
    """Buffered reader. Each read waits at most `idle_timeout` seconds for new bytes (raises
    socket.timeout), and returns early with Stopped when `stop` is set."""

    POLL = 0.25

    def __init__(self, sock: socket.socket | None, idle_timeout: float = 5.0,
                 stop: threading.Event | None = None, data: bytes = b""):
        self.sock = sock
        self.idle_timeout = idle_timeout
        self.stop = stop
        self.buf = bytearray(data)
        self.eof = sock is None
        self.bytes_read = len(data)
        if sock is not None:
            sock.settimeout(min(self.POLL, idle_timeout) if stop else idle_timeout)

    def _recv(self, size: int) -> bytes:
        deadline = time.monotonic() + self.idle_timeout
        for _ in range(int(self.idle_timeout / self.POLL) + 2 if self.stop else 1):
            try:
                data = self.sock.recv(size)
                self.bytes_read += len(data)
                return data
            except socket.timeout:
                if self.stop is None:
                    raise
                if self.stop.is_set():
                    raise Stopped()
                if time.monotonic() >= deadline:
                    raise
        raise socket.timeout("idle")

    def fill(self, size: int = 256 * 1024) -> bool:
        """Reads more bytes into the buffer; False at end of stream."""
        if self.eof:
            return False
        data = self._recv(size)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, delim: bytes, limit: int) -> bytes:
        """Bytes up to and including `delim`. EOFError at end, ValueError past `limit`."""
        start = 0
        for _ in range(limit + 2):
            index = self.buf.find(delim, start)
            if index >= 0:
                end = index + len(delim)
                out = bytes(self.buf[:end])
                del self.buf[:end]
                return out
            if len(self.buf) > limit:
                raise ValueError(f"no {delim!r} within {limit} bytes")
            start = max(0, len(self.buf) - len(delim) + 1)
            if not self.fill():
                raise EOFError(f"end of stream before {delim!r} ({len(self.buf)} bytes pending)")
        raise ValueError("read_until: too many reads")

    def read_line(self, limit: int = 65536) -> bytes:
        """One CRLF line, without the CRLF."""
        return self.read_until(b"\r\n", limit)[:-2]

    def read_exact(self, size: int) -> bytes:
        out = bytearray()
        self.consume(size, out.extend)
        return bytes(out)

    def consume(self, size: int, sink: Callable[[memoryview], object] | None) -> None:
        """Passes exactly `size` bytes to `sink` (None: drop them) without keeping them."""
        left = size
        if self.buf:
            take = min(left, len(self.buf))
            if sink:
                sink(memoryview(self.buf)[:take])
            del self.buf[:take]
            left -= take
        if left <= 0:
            return
        view = memoryview(bytearray(min(left, 1024 * 1024)))
        while left > 0:  # bounded: each pass reads >= 1 byte or raises
            if self.eof:
                raise EOFError(f"end of stream with {left} of {size} bytes missing")
            n = self._recv_into(view[:min(left, len(view))])
            if n == 0:
                self.eof = True
                continue
            if sink:
                sink(view[:n])
            left -= n

    def _recv_into(self, view: memoryview) -> int:
        deadline = time.monotonic() + self.idle_timeout
        for _ in range(int(self.idle_timeout / self.POLL) + 2 if self.stop else 1):
            try:
                n = self.sock.recv_into(view)
                self.bytes_read += n
                return n
            except socket.timeout:
                if self.stop is None:
                    raise
                if self.stop.is_set():
                    raise Stopped()
                if time.monotonic() >= deadline:
                    raise
        raise socket.timeout("idle")

    def read_to_eof(self, limit: int = 64 * MIB,
                    sink: Callable[[memoryview], object] | None = None) -> bytes:
        """Everything until the peer closes (at most `limit` bytes, else ValueError). With
        `sink`, bytes go there and b"" is returned."""
        out = bytearray()
        total = 0
        for _ in range(limit + 2):  # each pass takes >= 1 byte or ends
            if self.buf:
                total += len(self.buf)
                if total > limit:
                    raise ValueError(f"more than {limit} bytes before end of stream")
                if sink:
                    sink(memoryview(self.buf))
                else:
                    out += self.buf
                self.buf.clear()
            if not self.fill():
                return bytes(out)
        raise ValueError("read_to_eof: too many reads")


# --------------------------------------------------------------------------------------------
# HTTP/1.1 message pieces.

def parse_header_lines(lines: list[bytes]) -> list[tuple[str, str]]:
    headers = []
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ValueError(f"header line without colon: {line!r}")
        headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    return headers


def header_values(headers: list[tuple[str, str]], name: str) -> list[str]:
    lower = name.lower()
    return [value for key, value in headers if key.lower() == lower]


def header_value(headers: list[tuple[str, str]], name: str) -> str | None:
    values = header_values(headers, name)
    return values[0] if values else None


def is_chunked(headers: list[tuple[str, str]]) -> bool:
    codings = ",".join(header_values(headers, "Transfer-Encoding"))
    parts = [p.strip().lower() for p in codings.split(",") if p.strip()]
    return bool(parts) and parts[-1] == "chunked"


def read_chunked(stream: Stream, sink: Callable[[memoryview], object] | None,
                 raw: bytearray | None = None, max_chunks: int = 1 << 24
                 ) -> list[tuple[str, str]]:
    """Reads a chunked body; data goes to `sink`, the raw framing+data to `raw` (if given).
    Returns the trailers."""
    for _ in range(max_chunks):
        line = stream.read_line(4096)
        if raw is not None:
            raw += line + b"\r\n"
        size_text = line.split(b";", 1)[0].strip()
        if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
            raise ValueError(f"bad chunk size line {line!r}")
        size = int(size_text, 16)
        if size == 0:
            break

        def both(view, _raw=raw):
            if sink:
                sink(view)
            if _raw is not None:
                _raw.extend(view)
        stream.consume(size, both)
        crlf = stream.read_exact(2)
        if raw is not None:
            raw += crlf
        if crlf != b"\r\n":
            raise ValueError(f"chunk data not followed by CRLF: {crlf!r}")
    else:
        raise ValueError("too many chunks")
    trailer_lines = []
    for _ in range(1000):
        line = stream.read_line(65536)
        if raw is not None:
            raw += line + b"\r\n"
        if not line:
            return parse_header_lines(trailer_lines)
        trailer_lines.append(line)
    raise ValueError("too many trailer lines")


class HttpResponse:
    """One response as read by the client."""

    def __init__(self):
        self.version = ""
        self.status = 0
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self.raw_head = b""
        self.body = b""
        self.body_len = 0
        self.body_crc32 = 0
        self.chunked = False
        self.close_delimited = False
        self.trailers: list[tuple[str, str]] = []

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)

    def header_all(self, name: str) -> list[str]:
        return header_values(self.headers, name)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:
        body = self.body[:300]
        return f"<HttpResponse {self.status} {self.reason!r} headers={self.headers} body={body!r}>"


def read_response(stream: Stream, method: str = "GET", store_body: bool = True,
                  max_head: int = 1 * MIB, max_body: int = 256 * MIB) -> HttpResponse:
    """Reads one response (a 1xx counts as one). Body by Content-Length, chunked, or until
    close; none for HEAD, 1xx, 204, 304. With store_body=False only length and CRC-32 are
    kept."""
    resp = HttpResponse()
    head = stream.read_until(b"\r\n\r\n", max_head)
    resp.raw_head = head
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ValueError(f"bad status line {lines[0]!r}")
    resp.version = parts[0].decode("latin-1")
    resp.status = int(parts[1])
    resp.reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
    resp.headers = parse_header_lines(lines[1:])

    body = bytearray()
    crc = [0]

    def sink(view):
        resp.body_len += len(view)
        crc[0] = zlib.crc32(view, crc[0])
        if store_body:
            if resp.body_len > max_body:
                raise ValueError(f"response body over {max_body} bytes")
            body.extend(view)

    no_body = (method.upper() == "HEAD" or 100 <= resp.status < 200
               or resp.status in (204, 304))
    if no_body:
        pass
    elif is_chunked(resp.headers):
        resp.chunked = True
        resp.trailers = read_chunked(stream, sink)
    elif resp.header("Content-Length") is not None:
        stream.consume(int(resp.header("Content-Length")), sink)
    else:
        resp.close_delimited = True
        stream.read_to_eof(limit=max_body if store_body else 1 << 40, sink=sink)
    resp.body = bytes(body)
    resp.body_crc32 = crc[0]
    return resp


def parse_responses(data: bytes, methods: Iterable[str] = ()) -> tuple[list[HttpResponse], bytes]:
    """Parses consecutive responses out of `data`; returns (responses, bytes left unparsed).
    `methods` gives the request method of each response in order (default GET)."""
    stream = Stream(None, data=data)
    methods = list(methods)
    responses = []
    for index in range(1000):
        if not stream.buf:
            break
        saved = bytes(stream.buf)
        try:
            responses.append(read_response(stream, methods[index] if index < len(methods)
                                           else "GET"))
        except (EOFError, ValueError):
            return responses, saved
    return responses, bytes(stream.buf)


def build_request(method: str = "GET", target: str = "/", host: str | None = DEFAULT_HOST,
                  headers: Iterable[tuple[str, str]] = (), body: bytes | None = None,
                  version: str = "HTTP/1.1", chunks: Iterable[bytes] | None = None) -> bytes:
    """Builds request bytes. `body` adds Content-Length (unless given in `headers`); `chunks`
    sends a chunked body with Transfer-Encoding: chunked."""
    lines = [f"{method} {target} {version}"]
    headers = list(headers)
    if host is not None:
        lines.append(f"Host: {host}")
    names = {name.lower() for name, _ in headers}
    lines += [f"{name}: {value}" for name, value in headers]
    payload = b""
    if chunks is not None:
        if "transfer-encoding" not in names:
            lines.append("Transfer-Encoding: chunked")
        for chunk in chunks:
            if chunk:
                payload += b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        payload += b"0\r\n\r\n"
    elif body is not None:
        if "content-length" not in names:
            lines.append(f"Content-Length: {len(body)}")
        payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def error_fields(body: bytes) -> dict[str, str]:
    """Parses parapet's error body: "<code> <Reason>\\nreason: x\\nrequest_id: y\\n"."""
    text = body.decode("utf-8", "replace")
    lines = text.split("\n")
    fields = {"status_line": lines[0]}
    for line in lines[1:]:
        key, sep, value = line.partition(": ")
        if sep:
            fields[key] = value
    return fields


# --------------------------------------------------------------------------------------------
# Client.

def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((LOCALHOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Client:
    """One client connection. send() any bytes; response() reads the next response."""

    def __init__(self, port: int, timeout: float = 5.0):
        self.port = port
        self.timeout = timeout
        self.sock = connect(port, timeout)
        self.stream = Stream(self.sock, idle_timeout=timeout)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str = "GET", target: str = "/", **kwargs) -> None:
        self.send(build_request(method, target, **kwargs))

    def response(self, method: str = "GET", store_body: bool = True) -> HttpResponse:
        return read_response(self.stream, method, store_body=store_body)

    def roundtrip(self, method: str = "GET", target: str = "/", **kwargs) -> HttpResponse:
        self.request(method, target, **kwargs)
        return self.response(method)

    def wait_closed(self, timeout: float) -> tuple[bool, bytes]:
        """Reads until the server closes or `timeout` passes: (closed, bytes received).
        A reset counts as closed."""
        deadline = time.monotonic() + timeout
        data = bytearray(self.stream.buf)
        self.stream.buf.clear()
        try:
            for _ in range(100000):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False, bytes(data)
                self.sock.settimeout(min(left, 0.5))
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    continue
                except ConnectionResetError:
                    return True, bytes(data)
                if not chunk:
                    return True, bytes(data)
                data += chunk
            return False, bytes(data)
        finally:
            self.sock.settimeout(self.timeout)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RawResult:
    def __init__(self, data: bytes, closed: bool, reset: bool, elapsed: float):
        self.data = data
        self.closed = closed  # the server closed (FIN or RST) before the timeout
        self.reset = reset
        self.elapsed = elapsed

    def responses(self, methods: Iterable[str] = ()) -> tuple[list[HttpResponse], bytes]:
        return parse_responses(self.data, methods)


def send_raw_ex(port: int, data: bytes, read_timeout: float = 3.0,
                total_timeout: float = 15.0) -> RawResult:
    """Connects, sends `data`, reads until the server closes, `read_timeout` seconds pass
    without a byte, or `total_timeout` passes."""
    start = time.monotonic()
    out = bytearray()
    closed = reset = False
    with connect(port, read_timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may refuse early; read what it said
        sock.settimeout(read_timeout)
        for _ in range(100000):
            if time.monotonic() - start > total_timeout:
                break
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = reset = True
                break
            if not chunk:
                closed = True
                break
            out += chunk
    return RawResult(bytes(out), closed, reset, time.monotonic() - start)


def send_raw(port: int, data: bytes, read_timeout: float = 3.0) -> bytes:
    """All bytes received until the server closes or `read_timeout` passes without a byte."""
    return send_raw_ex(port, data, read_timeout).data


# --------------------------------------------------------------------------------------------
# Scripted origin.

class Request:
    """One request as received by the origin."""

    def __init__(self, conn_id: int, index: int):
        self.conn_id = conn_id        # which accepted connection (0, 1, ...)
        self.index = index            # position on that connection (0, 1, ...)
        self.raw_head = b""
        self.method = ""
        self.target = ""
        self.version = ""
        self.headers: list[tuple[str, str]] = []
        self.body = b""               # de-chunked
        self.raw_body = b""           # as received (chunk framing included)
        self.body_len = 0
        self.body_crc32 = 0
        self.chunked = False
        self.trailers: list[tuple[str, str]] = []
        self.complete = False         # the whole body arrived
        self.sent_continue = False
        self.received_at = time.monotonic()

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)

    def header_all(self, name: str) -> list[str]:
        return header_values(self.headers, name)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def __repr__(self) -> str:
        return (f"<Request conn={self.conn_id}#{self.index} {self.method} {self.target} "
                f"{self.version} headers={self.headers} body_len={self.body_len}>")


class Reply:
    """What the origin answers to one request.

    body: bytes, or an iterable of bytes (streamed as it is produced).
    framing: "length" (Content-Length added for bytes bodies unless present in headers; for
             an iterable give it in headers), "chunked", or "close" (no length: the body ends
             when the origin closes).
    delay: seconds to wait before answering.
    after: "keep" (keep-alive), "close" (close after the response), "hang" (stay silent and
           keep the connection open).
    Special replies: Reply.close_without_answer(), Reply.hang(), Reply.raw(b"..."),
    Reply.upgrade_echo()."""

    def __init__(self, status: int = 200, body=b"hello from origin",
                 headers: Iterable[tuple[str, str]] = (), reason: str | None = None,
                 framing: str = "length", delay: float = 0.0, after: str = "keep"):
        self.status = status
        self.reason = reason
        self.headers = list(headers)
        self.body = body
        self.framing = framing
        self.delay = delay
        self.after = after
        self.kind = "normal"
        self.raw_bytes = b""

    @classmethod
    def close_without_answer(cls, delay: float = 0.0) -> "Reply":
        reply = cls(delay=delay)
        reply.kind = "close"
        return reply

    @classmethod
    def hang(cls) -> "Reply":
        reply = cls()
        reply.kind = "hang"
        return reply

    @classmethod
    def raw(cls, data: bytes, after: str = "close") -> "Reply":
        reply = cls(after=after)
        reply.kind = "raw"
        reply.raw_bytes = data
        return reply

    @classmethod
    def upgrade_echo(cls, protocol: str = "websocket") -> "Reply":
        reply = cls(101, body=b"", reason="Switching Protocols",
                    headers=[("Connection", "Upgrade"), ("Upgrade", protocol)])
        reply.kind = "upgrade"
        return reply


_STATUS_TEXT = {100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created",
                204: "No Content", 304: "Not Modified", 400: "Bad Request", 404: "Not Found",
                500: "Internal Server Error", 503: "Service Unavailable"}


class Origin:
    """A scripted HTTP/1.1 origin on 127.0.0.1:0, one thread per connection.

    handler: None (200 "hello from origin"), a Reply (same answer to every request), or a
             callable(Request) -> Reply, called once the request body has been read.
    count_only: keep only the length and CRC-32 of request bodies (big uploads).
    body_read_pause: seconds to wait after the head before reading the body (backpressure).
    auto_continue: answer "100 Continue" before reading the body of an
             `Expect: 100-continue` request.
    tls:     an ssl.SSLContext (server side): serve HTTPS. Handshakes that fail are counted in
             tls_failures, resumed sessions in tls_resumed.
    """

    IDLE_TIMEOUT = 120.0      # a connection silent this long is closed
    MAX_REQUESTS_PER_CONN = 100000
    HANG_MAX = 60.0           # Reply.hang() holds the connection at most this long
    SEND_TIMEOUT = 60.0       # one write may wait this long for the peer to read
    MAX_LIFETIME = 900.0      # stop accepting after this, even if stop() is never called

    def __init__(self, handler=None, count_only: bool = False, body_read_pause: float = 0.0,
                 auto_continue: bool = True, name: str = "origin",
                 tls: ssl.SSLContext | None = None):
        self.handler = handler
        self.tls = tls
        self.tls_failures = 0
        self.tls_resumed = 0
        self.count_only = count_only
        self.body_read_pause = body_read_pause
        self.auto_continue = auto_continue
        self.name = name
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self._requests: list[Request] = []
        self.connection_count = 0
        self.errors: list[str] = []
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((LOCALHOST, 0))
        self.listener.listen(128)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.address = f"{LOCALHOST}:{self.port}"
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True,
                                          name=f"{name}-accept")
        self._accepter.start()

    # -- records ------------------------------------------------------------------------------
    @property
    def requests(self) -> list[Request]:
        with self.lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self.lock:
            return len(self._requests)

    def wait_requests(self, count: int, timeout: float = 5.0) -> list[Request]:
        """Waits (bounded) until at least `count` requests arrived; returns them all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.request_count < count:
            time.sleep(0.01)
        return self.requests

    # -- serving ------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        deadline = time.monotonic() + self.MAX_LIFETIME
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                conn_id = self.connection_count
                self.connection_count += 1
                self._socks.append(sock)
            thread = threading.Thread(target=self._serve, args=(sock, conn_id), daemon=True,
                                      name=f"{self.name}-conn{conn_id}")
            with self.lock:
                self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, conn_id: int) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            try:
                sock.settimeout(10.0)
                sock = self.tls.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError):
                with self.lock:
                    self.tls_failures += 1
                sock.close()
                return
            with self.lock:
                self._socks.append(sock)
                if sock.session_reused:
                    self.tls_resumed += 1
        stream = Stream(sock, idle_timeout=self.IDLE_TIMEOUT, stop=self.stop_event)
        try:
            for index in range(self.MAX_REQUESTS_PER_CONN):
                if not self._serve_one(sock, stream, conn_id, index):
                    break
        except (Stopped, EOFError, ConnectionError, socket.timeout):
            pass
        except (ValueError, OSError) as err:
            if not self.stop_event.is_set():
                with self.lock:
                    self.errors.append(f"conn {conn_id}: {err!r}")
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def _serve_one(self, sock: socket.socket, stream: Stream, conn_id: int, index: int) -> bool:
        # Wait for the next request; a clean close between requests is normal.
        if not stream.buf and not stream.fill():
            return False
        req = Request(conn_id, index)
        head = stream.read_until(b"\r\n\r\n", 1 * MIB)
        req.raw_head = head
        req.received_at = time.monotonic()
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            raise ValueError(f"bad request line {lines[0]!r}")
        req.method, req.target, req.version = (p.decode("latin-1") for p in parts)
        req.headers = parse_header_lines(lines[1:])
        with self.lock:
            self._requests.append(req)  # recorded as soon as the head arrives

        expect = (req.header("Expect") or "").lower()
        if expect == "100-continue" and self.auto_continue:
            self._sendall(sock, b"HTTP/1.1 100 Continue\r\n\r\n")
            req.sent_continue = True
        if self.body_read_pause:
            self.stop_event.wait(self.body_read_pause)

        body = bytearray()
        raw = None if self.count_only else bytearray()
        crc = [0]

        def sink(view):
            req.body_len += len(view)
            crc[0] = zlib.crc32(view, crc[0])
            if not self.count_only:
                body.extend(view)

        if is_chunked(req.headers):
            req.chunked = True
            req.trailers = read_chunked(stream, sink, raw)
        elif req.header("Content-Length") is not None:
            length = int(req.header("Content-Length"))
            stream.consume(length, sink)
        req.body = bytes(body)
        if self.count_only:
            req.raw_body = b""
        elif req.chunked:
            req.raw_body = bytes(raw)
        else:
            req.raw_body = req.body
        req.body_crc32 = crc[0]
        req.complete = True

        reply = self._reply_for(req)
        if reply.delay:
            self.stop_event.wait(reply.delay)
            if self.stop_event.is_set():
                return False
        if reply.kind == "close":
            return False
        if reply.kind == "hang":
            self.stop_event.wait(self.HANG_MAX)
            return False
        if reply.kind == "raw":
            self._sendall(sock, reply.raw_bytes)
            return reply.after == "keep"
        self._send_reply(sock, req, reply)
        if reply.kind == "upgrade":
            self._echo(sock, stream)
            return False
        if reply.after == "hang":
            self.stop_event.wait(self.HANG_MAX)
            return False
        if reply.after == "close" or reply.framing == "close":
            return False
        if (req.header("Connection") or "").lower() == "close":
            return False
        return True

    def _sendall(self, sock: socket.socket, data) -> None:
        # Reads poll every Stream.POLL seconds to notice stop(); a write may wait much longer
        # while the peer applies backpressure. stop() shuts the socket down, which ends it.
        sock.settimeout(self.SEND_TIMEOUT)
        try:
            sock.sendall(data)
        finally:
            sock.settimeout(Stream.POLL)

    def _reply_for(self, req: Request) -> Reply:
        if self.handler is None:
            return Reply()
        if isinstance(self.handler, Reply):
            return self.handler
        reply = self.handler(req)
        return reply if reply is not None else Reply()

    def _send_reply(self, sock: socket.socket, req: Request, reply: Reply) -> None:
        reason = reply.reason or _STATUS_TEXT.get(reply.status, "Status")
        headers = list(reply.headers)
        names = {name.lower() for name, _ in headers}
        no_body = (req.method == "HEAD" or 100 <= reply.status < 200
                   or reply.status in (204, 304))
        body = reply.body
        if reply.framing == "length" and isinstance(body, (bytes, bytearray)):
            if "content-length" not in names and reply.status not in (204, 304) \
                    and not 100 <= reply.status < 200:
                headers.append(("Content-Length", str(len(body))))
        elif reply.framing == "chunked" and "transfer-encoding" not in names:
            headers.append(("Transfer-Encoding", "chunked"))
        head = f"HTTP/1.1 {reply.status} {reason}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
        self._sendall(sock, head.encode("latin-1"))
        if no_body:
            return
        pieces = [body] if isinstance(body, (bytes, bytearray)) else body
        for piece in pieces:
            if self.stop_event.is_set():
                raise Stopped()
            if not piece:
                continue
            if reply.framing == "chunked":
                self._sendall(sock, b"%x\r\n" % len(piece))
                self._sendall(sock, piece)
                self._sendall(sock, b"\r\n")
            else:
                self._sendall(sock, piece)
        if reply.framing == "chunked":
            self._sendall(sock, b"0\r\n\r\n")

    def _echo(self, sock: socket.socket, stream: Stream) -> None:
        """After a 101: send back every byte received, until EOF or stop."""
        if stream.buf:
            self._sendall(sock, bytes(stream.buf))
            stream.buf.clear()
        deadline = time.monotonic() + self.IDLE_TIMEOUT
        while time.monotonic() < deadline and not self.stop_event.is_set():
            try:
                data = sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                return
            self._sendall(sock, data)

    def stop(self) -> None:
        self.stop_event.set()
        try:
            self.listener.close()
        except OSError:
            pass
        self._accepter.join(2)
        with self.lock:
            socks, threads = list(self._socks), list(self._threads)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in threads:
            thread.join(2)
        for sock in socks:
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self) -> "Origin":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class DeadPort:
    """A loopback port on which nothing listens (bound, read back, closed)."""

    def __init__(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOCALHOST, 0))
            self.port = sock.getsockname()[1]
        self.address = f"{LOCALHOST}:{self.port}"

    def stop(self) -> None:
        pass


class BlackholePort:
    """A loopback port where connect() hangs: a listener with backlog 0 whose accept queue is
    filled and never drained, so Linux drops further SYNs. `.ok` says whether it worked."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind((LOCALHOST, 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.address = f"{LOCALHOST}:{self.port}"
        self.fillers: list[socket.socket] = []
        self.ok = False
        for _ in range(8):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.settimeout(0.3)
            try:
                filler.connect((LOCALHOST, self.port))
            except (socket.timeout, BlockingIOError):
                filler.close()
                self.ok = True  # this SYN was dropped: the queue is full
                break
            except OSError:
                filler.close()
                break
            self.fillers.append(filler)

    def stop(self) -> None:
        for sock in self.fillers:
            sock.close()
        self.listener.close()


# --------------------------------------------------------------------------------------------
# TestCase base.

class ParapetCase(unittest.TestCase):
    """Cleanups run in reverse: clients close, then parapet stops (asserting exit 0 within
    10 s), then origins stop."""

    parapet: Parapet | None = None

    def start_parapet(self, config: dict | str, extra_args: list[str] | None = None) -> Parapet:
        proxy = Parapet(config, extra_args)
        self.parapet = proxy
        self.addCleanup(proxy.stop)
        return proxy

    def start_origin(self, handler=None, **kwargs) -> Origin:
        origin = Origin(handler, **kwargs)
        self.addCleanup(origin.stop)
        return origin

    def dead_port(self) -> DeadPort:
        return DeadPort()

    def client(self, port: int | None = None, timeout: float = 5.0) -> Client:
        if port is None:
            port = self.parapet.port("http")
        conn = Client(port, timeout)
        self.addCleanup(conn.close)
        return conn

    def get(self, target: str = "/", host: str = DEFAULT_HOST, **kwargs) -> HttpResponse:
        """One GET on a fresh connection to the "http" listener."""
        with Client(self.parapet.port("http")) as conn:
            return conn.roundtrip("GET", target, host=host, **kwargs)

    def diag(self) -> str:
        return self.parapet.diag() if self.parapet else ""

    # -- assertions ---------------------------------------------------------------------------
    def assertStatus(self, resp: HttpResponse, status: int) -> None:
        self.assertEqual(resp.status, status, f"{resp!r}\n{self.diag()}")

    def assertError(self, resp: HttpResponse, status: int, reason: str | set[str]) -> None:
        """An error response in parapet's format, with `status` and `reason:` line."""
        reasons = {reason} if isinstance(reason, str) else set(reason)
        context = f"{resp!r}\n{self.diag()}"
        self.assertEqual(resp.status, status, context)
        self.assertEqual(resp.version, "HTTP/1.1", context)
        if status in REASON_PHRASES:
            self.assertIn(resp.reason, REASON_PHRASES[status], context)
        self.assertTrue((resp.header("Content-Type") or "").startswith("text/plain"), context)
        self.assertEqual(resp.header("Content-Length"), str(len(resp.body)), context)
        request_id = resp.header("X-Request-Id")
        self.assertTrue(request_id, f"no X-Request-Id: {context}")
        fields = error_fields(resp.body)
        self.assertEqual(fields["status_line"], f"{status} {resp.reason}", context)
        self.assertIn(fields.get("reason"), reasons, context)
        self.assertEqual(fields.get("request_id"), request_id, context)
        self.assertTrue(resp.body.endswith(b"\n"), context)
        if status in CLOSING_ERRORS:
            self.assertIn("close", (resp.header("Connection") or "").lower(), context)

    def assertOriginUntouched(self, *origins: Origin, settle: float = 0.2) -> None:
        time.sleep(settle)
        for origin in origins:
            self.assertEqual(origin.request_count, 0,
                             f"origin received {origin.requests}\n{self.diag()}")

    def assertClosedAfter(self, conn: Client, timeout: float = 2.0) -> bytes:
        """The server closes `conn` within `timeout` sending nothing more."""
        closed, extra = conn.wait_closed(timeout)
        self.assertTrue(closed, f"connection still open after {timeout}s\n{self.diag()}")
        self.assertEqual(extra, b"", "bytes after the last response")
        return extra
