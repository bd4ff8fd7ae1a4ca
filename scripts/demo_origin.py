#!/usr/bin/env python3
"""The demo origin behind config/parapet.yaml: answers every request with a short text that
echoes what parapet forwarded (method, path, X-Forwarded-For, X-Request-Id, Via)."""
import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        text = (
            "hello from the demo origin\n"
            f"method: {self.command}\npath: {self.path}\n"
            f"x-forwarded-for: {self.headers.get('X-Forwarded-For')}\n"
            f"x-request-id: {self.headers.get('X-Request-Id')}\n"
            f"via: {self.headers.get('Via')}\n"
            f"body bytes: {len(body)}\n"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text)))
        self.send_header("Cache-Control", "max-age=60")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(text)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
