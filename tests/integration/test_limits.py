"""Request size limits: head bytes and header count (431), request target (414), body (413).
Each refusal closes the connection and never reaches the origin (a chunked body that grows
past the limit may have started upstream, but never completes there)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import ParapetCase, build_request, demo_config, send_raw_ex  # noqa: E402


class LimitCase(ParapetCase):
    limits: dict | None = None

    def setUp(self):
        self.origin = self.start_origin()
        self.start_parapet(demo_config(self.origin, limits=self.limits))

    def expect_error(self, data: bytes, status: int, reason: str):
        result = send_raw_ex(self.parapet.port(), data, read_timeout=3.0)
        responses, rest = result.responses()
        context = f"received {result.data[:500]!r}\n{self.diag()}"
        self.assertEqual(len(responses), 1, context)
        self.assertError(responses[0], status, reason)
        self.assertEqual(rest, b"", context)
        self.assertTrue(result.closed, f"connection left open\n{context}")
        return responses[0]

    def expect_ok(self, data: bytes):
        result = send_raw_ex(self.parapet.port(), data + build_request(
            "GET", "/last", headers=[("Connection", "close")]), read_timeout=3.0)
        responses, _ = result.responses()
        self.assertEqual([r.status for r in responses], [200, 200],
                         f"{result.data[:500]!r}\n{self.diag()}")


class HeaderBytes(LimitCase):
    limits = {"max_header_bytes": 1024}

    def test_one_big_header_is_431(self):
        self.expect_error(build_request(headers=[("X-Big", "a" * 2000)]),
                          431, "http.header_too_large")
        self.assertOriginUntouched(self.origin)

    def test_many_small_headers_adding_up_is_431(self):
        headers = [(f"X-H{i}", "v" * 40) for i in range(40)]  # 40 < 100 headers, ~2 KB
        self.expect_error(build_request(headers=headers), 431, "http.header_too_large")
        self.assertOriginUntouched(self.origin)

    def test_head_well_under_the_limit_passes(self):
        self.expect_ok(build_request(headers=[("X-Big", "a" * 500)]))
        self.assertEqual(len(self.origin.requests[0].header("X-Big")), 500)


class HeaderBytesDefault(LimitCase):

    def test_default_is_16384(self):
        self.expect_error(build_request(headers=[("X-Big", "a" * 17000)]),
                          431, "http.header_too_large")
        self.assertOriginUntouched(self.origin)

    def test_default_allows_12000_bytes(self):
        self.expect_ok(build_request(headers=[("X-Big", "a" * 12000)]))


class HeaderCount(LimitCase):
    limits = {"max_header_count": 10}

    def test_too_many_headers_is_431(self):
        headers = [(f"X-H{i}", "v") for i in range(20)]
        self.expect_error(build_request(headers=headers), 431, "http.too_many_headers")
        self.assertOriginUntouched(self.origin)

    def test_few_headers_pass(self):
        self.expect_ok(build_request(headers=[(f"X-H{i}", "v") for i in range(5)]))


class HeaderCountDefault(LimitCase):

    def test_default_is_100(self):
        headers = [(f"X-H{i}", "v") for i in range(150)]
        self.expect_error(build_request(headers=headers), 431, "http.too_many_headers")
        self.assertOriginUntouched(self.origin)

    def test_default_allows_50_headers(self):
        self.expect_ok(build_request(headers=[(f"X-H{i}", "v") for i in range(50)]))


class UriBytes(LimitCase):
    limits = {"max_uri_bytes": 100}

    def test_long_target_is_414(self):
        self.expect_error(build_request(target="/" + "a" * 200), 414, "http.uri_too_long")
        self.assertOriginUntouched(self.origin)

    def test_long_query_is_414(self):
        self.expect_error(build_request(target="/search?q=" + "a" * 200),
                          414, "http.uri_too_long")
        self.assertOriginUntouched(self.origin)

    def test_short_target_passes(self):
        self.expect_ok(build_request(target="/" + "a" * 50))
        self.assertEqual(self.origin.requests[0].target, "/" + "a" * 50)


class UriBytesDefault(LimitCase):

    def test_default_is_8192(self):
        self.expect_error(build_request(target="/" + "a" * 9000), 414, "http.uri_too_long")
        self.assertOriginUntouched(self.origin)

    def test_default_allows_4000_bytes(self):
        self.expect_ok(build_request(target="/" + "a" * 4000))


class BodyBytes(LimitCase):
    limits = {"max_body_bytes": 1000}

    def test_content_length_over_the_limit_is_413_before_the_body(self):
        # Only the head is sent: the declared length alone must be refused.
        head = build_request("POST", "/upload", headers=[("Content-Length", "1001")])
        self.expect_error(head, 413, "http.body_too_large")
        self.assertOriginUntouched(self.origin)

    def test_content_length_at_the_limit_passes(self):
        self.expect_ok(build_request("POST", "/upload", body=b"x" * 1000))
        self.assertEqual(self.origin.requests[0].body_len, 1000)

    def test_chunked_body_growing_past_the_limit_is_413(self):
        data = build_request("POST", "/upload", chunks=[b"y" * 400] * 4)
        self.expect_error(data, 413, "http.body_too_large")
        self.settle_and_check_nothing_complete()

    def test_chunked_body_under_the_limit_passes(self):
        self.expect_ok(build_request("POST", "/upload", chunks=[b"y" * 400] * 2))
        self.assertEqual(self.origin.requests[0].body, b"y" * 800)

    def settle_and_check_nothing_complete(self):
        self.origin.wait_requests(1, timeout=0.3)
        complete = [r for r in self.origin.requests if r.complete]
        self.assertEqual(complete, [], "a body over the limit reached the origin whole")


if __name__ == "__main__":
    unittest.main()
