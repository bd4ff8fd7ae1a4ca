"""Strict at the edge: ambiguous or malformed requests are refused with 400 (a few with 505),
the connection closes, nothing reaches the origin, and a valid request sent right after the
bad one on the same connection is neither forwarded nor answered.

Each test reads like a VTest: these bytes in, this status and reason out, origin untouched."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import ParapetCase, demo_config, send_raw_ex  # noqa: E402

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: demo.local\r\n\r\n"


def req(*lines: bytes, body: bytes = b"") -> bytes:
    """Joins request-line and header lines with CRLF, adds the blank line and the body."""
    return b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body


class Refused(ParapetCase):

    def setUp(self):
        self.origin = self.start_origin()
        self.start_parapet(demo_config(self.origin))

    def expect_refused(self, request: bytes, status=400, reason="http.bad_request"):
        """Sends `request` followed by a valid GET /smuggled on one connection. Expects one
        error response (status and reason may be sets of acceptable values), the connection
        closed, and no request at the origin."""
        result = send_raw_ex(self.parapet.port(), request + SMUGGLED, read_timeout=3.0)
        responses, rest = result.responses()
        context = f"sent {request!r}\nreceived {result.data!r}\n{self.diag()}"

        self.assertEqual(len(responses), 1, f"expected exactly one response\n{context}")
        resp = responses[0]
        if not isinstance(status, int):
            self.assertIn(resp.status, status, context)
            status = resp.status
        self.assertError(resp, status, reason)
        self.assertEqual(rest, b"", context)
        self.assertTrue(result.closed, f"connection left open\n{context}")
        self.assertOriginUntouched(self.origin)

    # -- control: the method above would see a forwarded request --------------------------------
    def test_control_valid_requests_are_both_answered(self):
        result = send_raw_ex(self.parapet.port(),
                             req(b"GET /first HTTP/1.1", b"Host: demo.local") + SMUGGLED,
                             read_timeout=1.0)
        responses, _ = result.responses()
        self.assertEqual([r.status for r in responses], [200, 200], result.data)
        self.assertEqual(sorted(r.target for r in self.origin.requests), ["/first", "/smuggled"])

    # -- framing: Content-Length / Transfer-Encoding -------------------------------------------
    def test_content_length_with_transfer_encoding(self):
        self.expect_refused(req(b"POST / HTTP/1.1", b"Host: demo.local",
                                b"Content-Length: 6", b"Transfer-Encoding: chunked",
                                body=b"0\r\n\r\nX"))

    def test_transfer_encoding_with_content_length(self):
        self.expect_refused(req(b"POST / HTTP/1.1", b"Host: demo.local",
                                b"Transfer-Encoding: chunked", b"Content-Length: 3",
                                body=b"0\r\n\r\n"))

    def test_two_different_content_lengths(self):
        self.expect_refused(req(b"POST / HTTP/1.1", b"Host: demo.local",
                                b"Content-Length: 5", b"Content-Length: 6", body=b"hello!"))

    def test_two_identical_content_lengths(self):
        self.expect_refused(req(b"POST / HTTP/1.1", b"Host: demo.local",
                                b"Content-Length: 5", b"Content-Length: 5", body=b"hello"))

    def test_content_length_with_plus_sign(self):
        self.expect_refused(req(b"POST / HTTP/1.1", b"Host: demo.local",
                                b"Content-Length: +4", body=b"abcd"))

    def test_transfer_encoding_gzip(self):
        self.expect_refused(req(b"POST / HTTP/1.1", b"Host: demo.local",
                                b"Transfer-Encoding: gzip", body=b"abcd"))

    def test_transfer_encoding_chunked_then_gzip(self):
        self.expect_refused(req(b"POST / HTTP/1.1", b"Host: demo.local",
                                b"Transfer-Encoding: chunked, gzip", body=b"0\r\n\r\n"))

    def test_transfer_encoding_xchunked(self):
        self.expect_refused(req(b"POST / HTTP/1.1", b"Host: demo.local",
                                b"Transfer-Encoding: xchunked", body=b"0\r\n\r\n"))

    def test_two_transfer_encoding_headers(self):
        self.expect_refused(req(b"POST / HTTP/1.1", b"Host: demo.local",
                                b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked",
                                body=b"0\r\n\r\n"))

    def test_space_before_colon(self):
        self.expect_refused(req(b"POST / HTTP/1.1", b"Host: demo.local",
                                b"Content-Length: 5", b"Transfer-Encoding : chunked",
                                body=b"0\r\n\r\n"))

    def test_chunked_on_http10(self):
        self.expect_refused(req(b"POST / HTTP/1.0", b"Host: demo.local",
                                b"Transfer-Encoding: chunked", body=b"5\r\nhello\r\n0\r\n\r\n"),
                            reason="http.chunked_on_http10")

    # -- chunked body ---------------------------------------------------------------------------
    def test_invalid_chunk_size(self):
        self.expect_refused(req(b"POST / HTTP/1.1", b"Host: demo.local",
                                b"Transfer-Encoding: chunked",
                                body=b"zz\r\nhello\r\n0\r\n\r\n"))

    def test_chunk_size_overflow(self):
        self.expect_refused(req(b"POST / HTTP/1.1", b"Host: demo.local",
                                b"Transfer-Encoding: chunked",
                                body=b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"))

    # -- header syntax --------------------------------------------------------------------------
    def test_obs_fold_with_space(self):
        self.expect_refused(req(b"GET / HTTP/1.1", b"Host: demo.local", b"X-Folded: first",
                                b" second"),
                            reason="http.obs_fold")

    def test_obs_fold_with_tab(self):
        self.expect_refused(req(b"GET / HTTP/1.1", b"Host: demo.local", b"X-Folded: first",
                                b"\tsecond"),
                            reason="http.obs_fold")

    def test_obs_fold_hiding_transfer_encoding(self):
        self.expect_refused(req(b"POST / HTTP/1.1", b"Host: demo.local", b"Content-Length: 5",
                                b"Transfer-Encoding:", b" chunked", body=b"0\r\n\r\n"),
                            reason={"http.obs_fold", "http.bad_request"})

    def test_bare_lf_line_endings(self):
        self.expect_refused(b"GET / HTTP/1.1\nHost: demo.local\nX-A: b\n\n")

    def test_bare_lf_after_one_header(self):
        self.expect_refused(b"GET / HTTP/1.1\r\nHost: demo.local\nX-A: b\r\n\r\n")

    def test_bare_cr_in_header_value(self):
        self.expect_refused(req(b"GET / HTTP/1.1", b"Host: demo.local", b"X-A: one\rtwo"))

    def test_nul_in_header_value(self):
        self.expect_refused(req(b"GET / HTTP/1.1", b"Host: demo.local", b"X-A: one\x00two"))

    def test_control_byte_in_header_value(self):
        self.expect_refused(req(b"GET / HTTP/1.1", b"Host: demo.local", b"X-A: one\x01two"))

    def test_invalid_character_in_header_name(self):
        self.expect_refused(req(b"GET / HTTP/1.1", b"Host: demo.local", b"X(A): b"))

    def test_non_ascii_byte_in_header_name(self):
        self.expect_refused(req(b"GET / HTTP/1.1", b"Host: demo.local", b"X-\xffA: b"))

    def test_space_inside_request_target(self):
        self.expect_refused(req(b"GET /a b HTTP/1.1", b"Host: demo.local"))

    # -- Host -----------------------------------------------------------------------------------
    def test_http11_without_host(self):
        self.expect_refused(req(b"GET / HTTP/1.1", b"X-A: b"), reason="http.missing_host")

    def test_two_different_hosts(self):
        self.expect_refused(req(b"GET / HTTP/1.1", b"Host: demo.local", b"Host: evil.example"),
                            reason="http.duplicate_host")

    def test_two_identical_hosts(self):
        self.expect_refused(req(b"GET / HTTP/1.1", b"Host: demo.local", b"Host: demo.local"),
                            reason="http.duplicate_host")

    # -- version --------------------------------------------------------------------------------
    def test_http09_version(self):
        self.expect_refused(req(b"GET / HTTP/0.9", b"Host: demo.local"),
                            reason="http.bad_version")

    def test_http20_version(self):
        self.expect_refused(req(b"GET / HTTP/2.0", b"Host: demo.local"), status={400, 505},
                            reason={"http.bad_version", "http.bad_request"})

    def test_http12_version(self):
        self.expect_refused(req(b"GET / HTTP/1.2", b"Host: demo.local"), status={400, 505},
                            reason={"http.bad_version", "http.bad_request"})


if __name__ == "__main__":
    unittest.main()
