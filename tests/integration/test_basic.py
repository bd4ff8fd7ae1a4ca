"""Proxying basics: routing by Host and path, what the origin receives, how responses come
back (HEAD, 100-continue, chunked, close-delimited), the error format, the admin listener."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (DEFAULT_HOST, Client, ParapetCase, Reply, build_request,  # noqa: E402
                     demo_config, error_fields)


class Routing(ParapetCase):

    def test_get_is_proxied_to_the_origin(self):
        origin = self.start_origin()
        self.start_parapet(demo_config(origin))

        resp = self.get("/hello")

        self.assertStatus(resp, 200)
        self.assertEqual(resp.body, b"hello from origin")
        self.assertEqual(origin.request_count, 1)
        self.assertEqual(origin.requests[0].target, "/hello")

    def test_host_port_is_stripped_and_case_ignored(self):
        origin = self.start_origin()
        self.start_parapet(demo_config(origin))

        for host in ("demo.local:8080", "DEMO.Local", "Demo.LOCAL:80"):
            with self.subTest(host=host):
                self.assertStatus(self.get("/", host=host), 200)
        self.assertEqual(origin.request_count, 3)

    def test_wildcard_host_selects_the_tenant(self):
        origin = self.start_origin()
        self.start_parapet(demo_config(origin))

        self.assertStatus(self.get("/", host="api.demo.local"), 200)
        self.assertEqual(origin.request_count, 1)

    def test_wildcard_does_not_match_a_bare_suffix(self):
        origin = self.start_origin()
        self.start_parapet(demo_config(origin))

        self.assertError(self.get("/", host="evildemo.local"), 421, "route.unknown_host")
        self.assertOriginUntouched(origin)

    def test_unknown_host_is_421_in_the_error_format(self):
        origin = self.start_origin()
        self.start_parapet(demo_config(origin))

        resp = self.get("/", host="unknown.example")

        self.assertError(resp, 421, "route.unknown_host")
        request_id = resp.header("X-Request-Id")
        self.assertEqual(resp.body.decode(), f"421 {resp.reason}\nreason: route.unknown_host\n"
                                             f"request_id: {request_id}\n")
        self.assertOriginUntouched(origin)

    def test_no_matching_route_is_404(self):
        origin = self.start_origin()
        config = demo_config(origin)
        config["tenants"][0]["routes"] = [{"path": "/api", "origin": "app"}]
        self.start_parapet(config)

        self.assertError(self.get("/other"), 404, "route.no_route")
        self.assertOriginUntouched(origin)
        self.assertStatus(self.get("/api/users"), 200)
        self.assertEqual(origin.request_count, 1)

    def test_longest_prefix_wins(self):
        root = self.start_origin(Reply(body=b"root"))
        api = self.start_origin(Reply(body=b"api"))
        v2 = self.start_origin(Reply(body=b"v2"))
        config = demo_config(root)
        tenant = config["tenants"][0]
        tenant["origins"] += [{"name": "api", "servers": [api.address]},
                              {"name": "v2", "servers": [v2.address]}]
        tenant["routes"] = [{"path": "/", "origin": "app"},
                            {"path": "/api/v2", "origin": "v2"},
                            {"path": "/api", "origin": "api"}]
        self.start_parapet(config)

        expected = {"/": b"root", "/index.html": b"root", "/api/users": b"api",
                    "/api/v2/items": b"v2", "/api/v2": b"v2"}
        for target, body in expected.items():
            with self.subTest(target=target):
                resp = self.get(target)
                self.assertStatus(resp, 200)
                self.assertEqual(resp.body, body)
        self.assertEqual([r.target for r in root.requests], ["/", "/index.html"])
        self.assertEqual([r.target for r in api.requests], ["/api/users"])
        self.assertEqual([r.target for r in v2.requests], ["/api/v2/items", "/api/v2"])


class ForwardedRequest(ParapetCase):

    def setUp(self):
        self.origin = self.start_origin()
        self.start_parapet(demo_config(self.origin))

    def forward(self, method="GET", target="/", **kwargs):
        """Sends one request through parapet; returns what the origin received."""
        with Client(self.parapet.port()) as conn:
            resp = conn.roundtrip(method, target, **kwargs)
        self.assertStatus(resp, 200)
        requests = self.origin.wait_requests(1)
        self.assertEqual(len(requests), 1, requests)
        return requests[0]

    def test_method_target_and_version(self):
        req = self.forward("PATCH", "/a/b;p?x=1&y=%20z&empty=", body=b"{}")
        self.assertEqual((req.method, req.target, req.version),
                         ("PATCH", "/a/b;p?x=1&y=%20z&empty=", "HTTP/1.1"))

    def test_http10_client_is_forwarded_as_http11(self):
        req = self.forward("GET", "/old", version="HTTP/1.0")
        self.assertEqual(req.version, "HTTP/1.1")
        self.assertEqual(req.target, "/old")

    def test_header_order_and_case_are_kept(self):
        sent = [("X-Zeta", "1"), ("x-alpha", "2"), ("X-MiXeD-CaSe", "3"), ("X-Zeta", "4"),
                ("accept", "*/*"), ("Cookie", "a=1; b=2")]
        req = self.forward(headers=sent)
        names = {name.lower() for name, _ in sent}
        received = [(name, value) for name, value in req.headers if name.lower() in names]
        self.assertEqual(received, sent)
        self.assertEqual(req.header_all("Host"), [DEFAULT_HOST])

    def test_hop_by_hop_headers_are_removed(self):
        req = self.forward(headers=[
            ("Connection", "keep-alive, X-Hop-A, x-hop-b"),
            ("X-Hop-A", "a"),
            ("X-Hop-B", "b"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Upgrade", "h2c"),
            ("Proxy-Connection", "keep-alive"),
            ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
            ("X-Kept", "yes"),
        ])
        for name in ("X-Hop-A", "X-Hop-B", "Keep-Alive", "TE", "Trailer", "Upgrade",
                     "Proxy-Connection", "Proxy-Authorization"):
            self.assertEqual(req.header_all(name), [], f"{name} forwarded: {req.headers}")
        self.assertEqual(req.header("X-Kept"), "yes")
        for value in req.header_all("Connection"):  # parapet may set its own
            self.assertNotIn("hop", value.lower(), req.headers)

    def test_forwarding_headers_are_added(self):
        req = self.forward()
        self.assertEqual(req.header_all("X-Forwarded-For"), ["127.0.0.1"])
        self.assertEqual(req.header_all("X-Forwarded-Proto"), ["http"])
        self.assertEqual(req.header_all("X-Forwarded-Host"), [DEFAULT_HOST])
        self.assertEqual(req.header_all("Via"), ["1.1 parapet"])
        self.assertEqual(len(req.header_all("X-Request-Id")), 1, req.headers)
        self.assertTrue(req.header("X-Request-Id").strip())

    def test_existing_forwarded_for_and_via_are_appended_to(self):
        req = self.forward(headers=[("X-Forwarded-For", "203.0.113.7"),
                                    ("Via", "1.0 edge")])
        self.assertEqual(req.header_all("X-Forwarded-For"), ["203.0.113.7, 127.0.0.1"])
        self.assertEqual(req.header_all("Via"), ["1.0 edge, 1.1 parapet"])

    def test_request_id_is_passed_through_unchanged(self):
        req = self.forward(headers=[("X-Request-Id", "client-chosen-id-42")])
        self.assertEqual(req.header_all("X-Request-Id"), ["client-chosen-id-42"])

    def test_generated_request_ids_differ(self):
        with Client(self.parapet.port()) as conn:
            for _ in range(3):
                self.assertStatus(conn.roundtrip("GET", "/"), 200)
        ids = [r.header("X-Request-Id") for r in self.origin.wait_requests(3)]
        self.assertEqual(len(set(ids)), 3, ids)

    def test_content_length_body_keeps_its_length(self):
        body = b"name=parapet&kind=proxy" * 100
        req = self.forward("POST", "/form", body=body,
                           headers=[("Content-Type", "application/x-www-form-urlencoded")])
        self.assertEqual(req.header_all("Content-Length"), [str(len(body))])
        self.assertFalse(req.chunked)
        self.assertEqual(req.body, body)

    def test_chunked_body_reaches_the_origin_chunked(self):
        chunks = [b"hello ", b"chunked " * 1000, b"world"]
        req = self.forward("POST", "/upload", chunks=chunks)
        self.assertTrue(req.chunked, req.headers)
        self.assertEqual(req.header_all("Content-Length"), [])
        self.assertEqual(req.body, b"".join(chunks))
        self.assertTrue(req.raw_body.endswith(b"0\r\n\r\n"), req.raw_body[-20:])


class Responses(ParapetCase):

    def test_status_headers_and_body_are_relayed(self):
        origin = self.start_origin(Reply(201, body=b"created", headers=[
            ("X-Origin", "yes"), ("Content-Type", "text/x-test")]))
        self.start_parapet(demo_config(origin))

        resp = self.get("/items")

        self.assertStatus(resp, 201)
        self.assertEqual(resp.header("X-Origin"), "yes")
        self.assertEqual(resp.header("Content-Type"), "text/x-test")
        self.assertEqual(resp.body, b"created")

    def test_head_has_the_length_and_no_body(self):
        origin = self.start_origin()
        self.start_parapet(demo_config(origin))
        conn = self.client()

        head = conn.roundtrip("HEAD", "/")
        self.assertStatus(head, 200)
        self.assertEqual(head.header("Content-Length"), str(len(b"hello from origin")))
        self.assertEqual(head.body, b"")

        # The connection is still usable: no stray body bytes before the next response.
        get = conn.roundtrip("GET", "/")
        self.assertStatus(get, 200)
        self.assertEqual(get.body, b"hello from origin")
        self.assertEqual(bytes(conn.stream.buf), b"")
        self.assertEqual([r.method for r in origin.requests], ["HEAD", "GET"])

    def test_expect_100_continue(self):
        origin = self.start_origin(lambda req: Reply(body=b"got %d bytes" % len(req.body)))
        self.start_parapet(demo_config(origin))
        conn = self.client()

        conn.send(build_request("POST", "/upload", headers=[("Content-Length", "11"),
                                                             ("Expect", "100-continue")]))
        interim = conn.response("POST")
        self.assertStatus(interim, 100)
        conn.send(b"hello world")
        final = conn.response("POST")
        for _ in range(3):  # a client must tolerate an extra 1xx; skip any
            if final.status >= 200:
                break
            final = conn.response("POST")

        self.assertStatus(final, 200)
        self.assertEqual(final.body, b"got 11 bytes")
        self.assertEqual(origin.requests[0].body, b"hello world")

    def test_chunked_response_is_relayed(self):
        pieces = [b"first,", b"second," * 500, b"third"]
        origin = self.start_origin(lambda req: Reply(body=iter(pieces), framing="chunked"))
        self.start_parapet(demo_config(origin))
        conn = self.client()

        resp = conn.roundtrip("GET", "/")
        self.assertStatus(resp, 200)
        self.assertEqual(resp.body, b"".join(pieces))
        self.assertStatus(conn.roundtrip("GET", "/again"), 200)

    def test_close_delimited_response_reaches_http11_client_chunked(self):
        origin = self.start_origin(lambda req: Reply(body=b"no length: " + req.target.encode(),
                                                     framing="close"))
        self.start_parapet(demo_config(origin))
        conn = self.client()

        resp = conn.roundtrip("GET", "/one")
        self.assertStatus(resp, 200)
        self.assertTrue(resp.chunked, resp.headers)
        self.assertIsNone(resp.header("Content-Length"))
        self.assertEqual(resp.body, b"no length: /one")

        again = conn.roundtrip("GET", "/two")  # the client connection stays usable
        self.assertStatus(again, 200)
        self.assertEqual(again.body, b"no length: /two")

    def test_204_has_no_body_and_keeps_the_connection(self):
        origin = self.start_origin(lambda req: Reply(204, body=b"") if req.path == "/empty"
                                   else Reply())
        self.start_parapet(demo_config(origin))
        conn = self.client()

        self.assertStatus(conn.roundtrip("GET", "/empty"), 204)
        resp = conn.roundtrip("GET", "/full")
        self.assertStatus(resp, 200)
        self.assertEqual(resp.body, b"hello from origin")


class ErrorFormat(ParapetCase):

    def test_bad_request_closes_the_connection(self):
        origin = self.start_origin()
        self.start_parapet(demo_config(origin))
        conn = self.client()

        conn.send(b"THIS IS NOT HTTP\r\n\r\n")
        resp = conn.response()

        self.assertError(resp, 400, "http.bad_request")
        self.assertClosedAfter(conn)
        self.assertOriginUntouched(origin)

    def test_error_request_id_looks_like_an_id(self):
        origin = self.start_origin()
        self.start_parapet(demo_config(origin))
        first = self.get("/", host="nope.example")
        second = self.get("/", host="nope.example")
        self.assertError(first, 421, "route.unknown_host")
        self.assertError(second, 421, "route.unknown_host")
        ids = [error_fields(r.body)["request_id"] for r in (first, second)]
        self.assertNotEqual(ids[0], ids[1])
        for request_id in ids:
            self.assertRegex(request_id, r"^[\x21-\x7e]+$")


class Admin(ParapetCase):

    def test_healthz(self):
        origin = self.start_origin()
        proxy = self.start_parapet(demo_config(origin))

        with Client(proxy.admin_port) as conn:
            resp = conn.roundtrip("GET", "/healthz", host="localhost")

        self.assertStatus(resp, 200)
        self.assertEqual(resp.body, b"ok\n")
        self.assertOriginUntouched(origin)


if __name__ == "__main__":
    unittest.main()
