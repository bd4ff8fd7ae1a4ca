"""HTTP cache (RFC 9111) through the real binary, against an origin that counts its requests:
hits after misses, expiry and revalidation (304 updates the stored head), no-store / private /
Authorization / Set-Cookie never stored, Vary variants, conditional and Range requests answered
from the cache, stale-if-error, coalesced misses, invalidation by unsafe methods, purges by URL,
prefix, tag and tenant, tenant isolation, cache rules, and the byte bound."""

import email.utils
import os
import re
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Client, Origin, ParapetCase, Reply, build_request, demo_config  # noqa: E402


class Routes:
    """An origin handler: path -> function(request) -> Reply; records each request."""

    def __init__(self):
        self.routes = {}

    def __call__(self, req):
        path = req.target.split("?")[0]
        fn = self.routes.get(path)
        if fn is None:
            return Reply(404, body=b"no such path")
        return fn(req)


def cacheable(body=b"stored body", max_age=60, extra=()):
    return lambda req: Reply(200, body=body,
                             headers=[("Cache-Control", f"max-age={max_age}"), *extra])


class CacheCase(ParapetCase):

    def start(self, cache=None, store=None, tenants=None, origin_kwargs=None):
        self.routes = Routes()
        self.origin = self.start_origin(self.routes, **(origin_kwargs or {}))
        config = demo_config(self.origin)
        config["tenants"][0]["cache"] = cache or {"enabled": True}
        if store:
            config["cache"] = store
        for t in tenants or []:
            config["tenants"].append(t)
        self.start_parapet(config)

    def get(self, path="/", host="demo.local", headers=(), method="GET", body=None):
        with Client(self.parapet.port("http")) as c:
            return c.roundtrip(method, path, host=host, headers=list(headers), body=body)

    def hits(self, path):
        return sum(1 for r in self.origin.requests if r.target == path)

    def admin(self, method, target):
        with Client(self.parapet.admin_port) as c:
            c.send(build_request(method, target, host="admin"))
            return c.response()

    def metric(self, name, **labels):
        text = self.admin("GET", "/metrics").body.decode()
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in text.splitlines():
            if line.startswith(name + ("{" + want + "}" if want else " ")):
                return float(line.rsplit(" ", 1)[1])
        return None


class Basics(CacheCase):

    def test_hit_after_miss_with_age_and_cache_status(self):
        self.start()
        self.routes.routes["/a"] = cacheable(b"A" * 1000)
        first = self.get("/a")
        self.assertStatus(first, 200)
        self.assertEqual(first.header("Cache-Status"), "parapet; fwd=uri-miss; stored")
        for _ in range(3):
            r = self.get("/a")
            self.assertStatus(r, 200)
            self.assertEqual(r.body, b"A" * 1000)
            self.assertRegex(r.header("Cache-Status"), r"^parapet; hit; ttl=\d+$")
            self.assertIsNotNone(r.header("Age"))
            self.assertEqual(r.header("Content-Length"), "1000")
        self.assertEqual(self.hits("/a"), 1)
        self.assertEqual(self.metric("parapet_cache_lookups_total", tenant="demo",
                                     result="hit"), 3)

    def test_keep_alive_mixes_hits_and_misses(self):
        self.start()
        self.routes.routes["/k"] = cacheable(b"k")
        with Client(self.parapet.port("http")) as c:
            for i in range(5):
                r = c.roundtrip("GET", "/k" if i % 2 == 0 else "/nope", host="demo.local")
                self.assertEqual(r.status, 200 if i % 2 == 0 else 404)
        self.assertEqual(self.hits("/k"), 1)

    def test_no_store_private_authorization_and_set_cookie_are_not_stored(self):
        self.start()
        self.routes.routes["/ns"] = lambda req: Reply(200, headers=[("Cache-Control", "no-store")])
        self.routes.routes["/pv"] = lambda req: Reply(
            200, headers=[("Cache-Control", "private, max-age=60")])
        self.routes.routes["/au"] = cacheable()
        self.routes.routes["/sc"] = cacheable(extra=[("Set-Cookie", "a=b")])
        for path in ("/ns", "/pv", "/sc"):
            self.get(path)
            self.get(path)
            self.assertEqual(self.hits(path), 2, path)
        for _ in range(2):
            self.get("/au", headers=[("Authorization", "Bearer x")])
        self.assertEqual(self.hits("/au"), 2)

    def test_expiry_then_revalidation_with_304_updates_headers(self):
        self.start()

        def handler(req):
            if req.header("If-None-Match") == '"v1"':
                return Reply(304, body=b"", headers=[("Cache-Control", "max-age=60"),
                                                     ("ETag", '"v1"'), ("X-Version", "2")])
            return Reply(200, body=b"version one", headers=[
                ("Cache-Control", "max-age=1"), ("ETag", '"v1"'), ("X-Version", "1")])
        self.routes.routes["/r"] = handler
        self.assertEqual(self.get("/r").header("X-Version"), "1")
        self.assertEqual(self.get("/r").header("Cache-Status").split(";")[1].strip(), "hit")
        time.sleep(2.2)
        r = self.get("/r")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, b"version one")
        self.assertEqual(r.header("X-Version"), "2")
        self.assertIn("fwd=stale", r.header("Cache-Status"))
        reqs = [q for q in self.origin.requests if q.target == "/r"]
        self.assertEqual(len(reqs), 2)
        self.assertEqual(reqs[1].header("If-None-Match"), '"v1"')
        # Fresh again for 60 s: no more origin requests.
        r = self.get("/r")
        self.assertEqual(r.header("X-Version"), "2")
        self.assertIn("hit", r.header("Cache-Status"))
        self.assertEqual(self.hits("/r"), 2)

    def test_expired_entry_replaced_by_a_new_200(self):
        self.start()
        n = {"v": 0}

        def handler(req):
            n["v"] += 1
            return Reply(200, body=f"v{n['v']}".encode(), headers=[("Cache-Control", "max-age=1")])
        self.routes.routes["/e"] = handler
        self.assertEqual(self.get("/e").body, b"v1")
        self.assertEqual(self.get("/e").body, b"v1")
        time.sleep(2.2)
        self.assertEqual(self.get("/e").body, b"v2")
        self.assertEqual(self.get("/e").body, b"v2")
        self.assertEqual(self.hits("/e"), 2)

    def test_vary_keeps_two_variants(self):
        self.start()
        self.routes.routes["/v"] = lambda req: Reply(
            200, body=(req.header("Accept-Encoding") or "none").encode(),
            headers=[("Cache-Control", "max-age=60"), ("Vary", "Accept-Encoding")])
        for _ in range(2):
            self.assertEqual(self.get("/v", headers=[("Accept-Encoding", "gzip")]).body, b"gzip")
            self.assertEqual(self.get("/v", headers=[("Accept-Encoding", "br")]).body, b"br")
        self.assertEqual(self.hits("/v"), 2)

    def test_conditional_range_and_head_answered_from_the_cache(self):
        self.start()
        self.routes.routes["/c"] = cacheable(b"0123456789", extra=[("ETag", '"e1"')])
        self.get("/c")
        r = self.get("/c", headers=[("If-None-Match", '"e1"')])
        self.assertStatus(r, 304)
        self.assertEqual(r.body, b"")
        r = self.get("/c", headers=[("Range", "bytes=2-5")])
        self.assertStatus(r, 206)
        self.assertEqual(r.body, b"2345")
        self.assertEqual(r.header("Content-Range"), "bytes 2-5/10")
        r = self.get("/c", headers=[("Range", "bytes=-3")])
        self.assertEqual(r.body, b"789")
        r = self.get("/c", headers=[("Range", "bytes=50-")])
        self.assertStatus(r, 416)
        self.assertEqual(r.header("Content-Range"), "bytes */10")
        with Client(self.parapet.port("http")) as c:
            r = c.roundtrip("HEAD", "/c", host="demo.local")
        self.assertStatus(r, 200)
        self.assertEqual(r.header("Content-Length"), "10")
        self.assertEqual(self.hits("/c"), 1)

    def test_range_request_on_a_miss_fills_the_whole_object(self):
        self.start()
        self.routes.routes["/rm"] = cacheable(b"abcdefghij")
        r = self.get("/rm", headers=[("Range", "bytes=0-1")])
        self.assertIn(r.status, (200, 206))
        self.assertIsNone(self.origin.requests[-1].header("Range"))
        r = self.get("/rm", headers=[("Range", "bytes=0-1")])
        self.assertStatus(r, 206)
        self.assertEqual(r.body, b"ab")
        self.assertEqual(self.hits("/rm"), 1)

    def test_large_chunked_body_streams_and_is_stored(self):
        self.start()
        big = os.urandom(2 * 1024 * 1024)
        self.routes.routes["/big"] = lambda req: Reply(
            200, body=[big[i:i + 65536] for i in range(0, len(big), 65536)], framing="chunked",
            headers=[("Cache-Control", "max-age=60")])
        for _ in range(2):
            with Client(self.parapet.port("http"), timeout=30) as c:
                r = c.roundtrip("GET", "/big", host="demo.local")
            self.assertStatus(r, 200)
            self.assertEqual(r.body, big)
        self.assertEqual(self.hits("/big"), 1)

    def test_object_over_max_object_size_passes_through(self):
        self.start(store={"max_size": "4MiB", "max_object_size": "64KiB"})
        self.routes.routes["/huge"] = cacheable(b"x" * (200 * 1024))
        for _ in range(2):
            self.assertEqual(len(self.get("/huge").body), 200 * 1024)
        self.assertEqual(self.hits("/huge"), 2)


class StaleAndCoalescing(CacheCase):

    def test_stale_if_error_serves_the_stored_response(self):
        self.start()
        state = {"fail": False}

        def handler(req):
            if state["fail"]:
                return Reply(503, body=b"down")
            return Reply(200, body=b"good copy",
                         headers=[("Cache-Control", "max-age=1, stale-if-error=60")])
        self.routes.routes["/s"] = handler
        self.assertEqual(self.get("/s").body, b"good copy")
        time.sleep(2.2)
        state["fail"] = True
        r = self.get("/s")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, b"good copy")
        self.assertIn("stale-if-error", r.header("Cache-Status"))
        # The origin is gone entirely: still served.
        self.origin.stop()
        r = self.get("/s")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, b"good copy")

    def test_stale_while_revalidate_answers_at_once_and_refreshes_once(self):
        self.start()
        n = {"v": 0}

        def handler(req):
            n["v"] += 1
            first = n["v"] == 1  # the refreshed copy stays fresh for the rest of the test
            return Reply(200, body=f"v{n['v']}".encode(), delay=0.0 if first else 1.0,
                         headers=[("Cache-Control", "max-age=%d, stale-while-revalidate=30"
                                   % (1 if first else 60))])
        self.routes.routes["/swr"] = handler
        self.assertEqual(self.get("/swr").body, b"v1")
        time.sleep(2.2)
        # Stale within the window: the stale copy at once (the refresh takes 1 s at the origin).
        t0 = time.monotonic()
        r = self.get("/swr")
        self.assertLess(time.monotonic() - t0, 0.8)
        self.assertEqual(r.body, b"v1")
        self.assertIn("stale-while-revalidate", r.header("Cache-Status"))
        # More requests while the refresh runs: stale answers, no second refresh.
        for _ in range(3):
            self.assertEqual(self.get("/swr").body, b"v1")
        time.sleep(1.5)
        self.assertEqual(self.hits("/swr"), 2)
        r = self.get("/swr")
        self.assertEqual(r.body, b"v2")
        self.assertRegex(r.header("Cache-Status"), r"^parapet; hit")
        self.assertEqual(self.hits("/swr"), 2)

    def test_without_stale_if_error_the_failure_reaches_the_client(self):
        self.start()
        state = {"fail": False}

        def handler(req):
            if state["fail"]:
                return Reply(503, body=b"down")
            return Reply(200, body=b"copy", headers=[("Cache-Control", "max-age=1")])
        self.routes.routes["/f"] = handler
        self.get("/f")
        time.sleep(2.2)
        state["fail"] = True
        self.assertStatus(self.get("/f"), 503)

    def test_concurrent_misses_make_one_origin_request(self):
        self.start()
        self.routes.routes["/slow"] = lambda req: Reply(
            200, body=b"S" * 5000, delay=0.5, headers=[("Cache-Control", "max-age=60")])
        results = []
        lock = threading.Lock()

        def fetch():
            try:
                with Client(self.parapet.port("http"), timeout=10) as c:
                    r = c.roundtrip("GET", "/slow", host="demo.local")
                    out = (r.status, r.body)
            except Exception as e:  # noqa: BLE001
                out = (0, repr(e).encode())
            with lock:
                results.append(out)
        threads = [threading.Thread(target=fetch) for _ in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(len(results), 100)
        self.assertEqual([s for s, _ in results if s != 200], [])
        self.assertTrue(all(b == b"S" * 5000 for _, b in results))
        self.assertEqual(self.hits("/slow"), 1)


class Invalidation(CacheCase):

    def test_post_invalidates_the_url_and_its_location(self):
        self.start()
        self.routes.routes["/item"] = lambda req: (
            Reply(201, body=b"made", headers=[("Location", "/item/2")])
            if req.method == "POST" else Reply(200, body=b"item",
                                               headers=[("Cache-Control", "max-age=60")]))
        self.routes.routes["/item/2"] = cacheable(b"two")
        self.get("/item")
        self.get("/item/2")
        self.get("/item")
        self.get("/item/2")
        self.assertEqual(self.hits("/item"), 1)
        self.assertStatus(self.get("/item", method="POST", body=b"new"), 201)
        self.get("/item")
        self.get("/item/2")
        self.assertEqual(self.hits("/item"), 3)  # GET, POST, GET again
        self.assertEqual(self.hits("/item/2"), 2)

    def test_failed_post_does_not_invalidate(self):
        self.start()
        self.routes.routes["/keep"] = lambda req: (
            Reply(500, body=b"no") if req.method == "POST"
            else Reply(200, body=b"k", headers=[("Cache-Control", "max-age=60")]))
        self.get("/keep")
        self.get("/keep", method="POST", body=b"x")
        self.get("/keep")
        self.assertEqual(self.hits("/keep"), 2)

    def test_purge_by_url_prefix_tag_and_tenant(self):
        self.start()
        for p in ("/p/1", "/p/2", "/q/1", "/t/1", "/t/2"):
            tag = [("Cache-Tag", "red, blue")] if p.startswith("/t/") else []
            self.routes.routes[p] = cacheable(p.encode(), extra=tag)
            self.get(p)
        purge = self.admin("POST", "/cache/purge?tenant=demo&url=http://demo.local/p/1")
        self.assertEqual(purge.status, 200)
        self.assertEqual(purge.body, b'{"purged":1}\n')
        self.get("/p/1")
        self.get("/p/2")
        self.assertEqual((self.hits("/p/1"), self.hits("/p/2")), (2, 1))
        self.assertEqual(self.admin("POST", "/cache/purge?tenant=demo&prefix=http%3A%2F%2Fdemo"
                                            ".local%2Fp%2F").body, b'{"purged":2}\n')
        self.assertEqual(self.admin("POST", "/cache/purge?tenant=demo&tag=blue").body,
                         b'{"purged":2}\n')
        self.get("/t/1")
        self.assertEqual(self.hits("/t/1"), 2)
        self.assertEqual(self.admin("POST", "/cache/purge?tenant=demo").body,
                         b'{"purged":2}\n')  # /q/1 and /t/1
        self.get("/q/1")
        self.assertEqual(self.hits("/q/1"), 2)
        self.assertEqual(self.admin("POST", "/cache/purge?tenant=nobody").status, 404)
        self.assertEqual(self.admin("POST", "/cache/purge?url=x").status, 400)
        self.assertEqual(self.admin("GET", "/cache/purge?tenant=demo").status, 404)


def http_date(offset=0.0):
    """An IMF-fixdate `offset` seconds from now."""
    return email.utils.formatdate(time.time() + offset, usegmt=True)


def concurrently(fn, n):
    """Runs fn() in n threads at once; returns their results (bounded joins)."""
    results = []
    lock = threading.Lock()

    def run():
        try:
            out = fn()
        except Exception as e:  # noqa: BLE001
            out = e
        with lock:
            results.append(out)
    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


class Rfc9111(CacheCase):
    """MUSTs of RFC 9111 (and RFC 9211 for Cache-Status) on the wire, each against a counting
    origin."""

    def reqs(self, path):
        return [r for r in self.origin.requests if r.target == path]

    # ---- 4.4 invalidation ----

    def test_extension_method_invalidates_like_post(self):
        # A method whose safety is unknown is unsafe: its success invalidates the URL.
        self.start()
        self.routes.routes["/ext"] = lambda req: (
            Reply(200, body=b"done") if req.method == "M-SEARCH"
            else Reply(200, body=b"ext", headers=[("Cache-Control", "max-age=60")]))
        self.get("/ext")
        self.get("/ext")
        self.assertEqual(self.hits("/ext"), 1)
        self.assertStatus(self.get("/ext", method="M-SEARCH"), 200)
        self.assertIn("fwd=uri-miss", self.get("/ext").header("Cache-Status"))
        self.assertEqual(self.hits("/ext"), 3)

    def test_relative_location_references_are_resolved_and_invalidated(self):
        self.start()
        self.routes.routes["/dir/x"] = lambda req: Reply(
            201, body=b"made", headers=[("Location", "item/3"),
                                        ("Content-Location", "../other?v=1")])
        self.routes.routes["/dir/y"] = lambda req: Reply(
            201, body=b"made", headers=[("Location", "http://a.demo.local/dir/item/3")])
        for p in ("/dir/item/3", "/other"):
            self.routes.routes[p] = cacheable(p.encode())
        paths = ("/dir/item/3", "/other?v=1")
        for p in paths:
            self.get(p)
            self.get(p)
        self.get("/dir/item/3", host="a.demo.local")
        self.assertEqual([self.hits(p) for p in paths], [2, 1])  # one was for a.demo.local
        self.assertStatus(self.get("/dir/x", method="POST", body=b"n"), 201)
        for p in paths:
            self.assertIn("fwd=uri-miss", self.get(p).header("Cache-Status"), p)
        self.assertEqual([self.hits(p) for p in paths], [3, 2])
        # Another host's URL is never invalidated by a response for this one.
        self.assertStatus(self.get("/dir/y", method="POST", body=b"n"), 201)
        self.assertRegex(self.get("/dir/item/3", host="a.demo.local").header("Cache-Status"),
                         r"^parapet; hit")

    # ---- 4.3.3 / 4.3.4 validation ----

    def validating_origin(self, path, first_etag, first_extra=()):
        """GET without If-None-Match: 200 "v2" (ETag "v2", max-age=60); the very first request
        gets 200 "v1" (ETag first_etag, max-age=0, first_extra). If-None-Match "v1": a 304
        that names "v2" (selects nothing stored); If-None-Match "v2": 304 "v2"."""
        count = {"n": 0}

        def handler(req):
            count["n"] += 1
            inm = req.header("If-None-Match")
            if count["n"] == 1:
                return Reply(200, body=b"v1", headers=[
                    ("Cache-Control", "max-age=0"), ("ETag", first_etag), *first_extra])
            if inm is not None and '"v2"' in inm:
                return Reply(304, body=b"", headers=[("ETag", '"v2"'),
                                                     ("Cache-Control", "max-age=60")])
            if inm == '"v1"':
                return Reply(304, body=b"", headers=[("ETag", '"v2"'),
                                                     ("Cache-Control", "max-age=60")])
            return Reply(200, body=b"v2", headers=[("ETag", '"v2"'),
                                                   ("Cache-Control", "max-age=60")])
        self.routes.routes[path] = handler

    def test_304_selecting_nothing_never_reaches_an_unconditional_client(self):
        self.start()
        self.validating_origin("/m", '"v1"')
        self.assertEqual(self.get("/m").body, b"v1")
        r = self.get("/m")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, b"v2")
        reqs = self.reqs("/m")
        self.assertEqual(len(reqs), 3)
        self.assertEqual(reqs[1].header("If-None-Match"), '"v1"')
        self.assertIsNone(reqs[2].header("If-None-Match"))  # sent again as the client sent it
        # Still one exchange: the same trace (the forwarded head was built a second time).
        self.assertIsNotNone(reqs[2].header("traceparent"))
        self.assertEqual(reqs[2].header("traceparent")[3:35], reqs[1].header("traceparent")[3:35])
        # The refetched 200 was stored.
        self.assertRegex(self.get("/m").header("Cache-Status"), r"^parapet; hit")
        self.assertEqual(self.hits("/m"), 3)

    def test_304_selecting_nothing_reaches_a_conditional_client_only_if_it_matches(self):
        self.start()
        self.validating_origin("/c1", '"v1"')
        self.get("/c1")
        r = self.get("/c1", headers=[("If-None-Match", '"v2"')])
        self.assertStatus(r, 304)  # the client's own validator matches
        self.assertEqual(self.reqs("/c1")[-1].header("If-None-Match"), '"v2"')
        self.validating_origin("/c2", '"v1"')
        self.get("/c2")
        r = self.get("/c2", headers=[("If-None-Match", '"v9"')])
        self.assertStatus(r, 200)  # its validator does not: the full response
        self.assertEqual(r.body, b"v2")
        self.assertEqual(self.reqs("/c2")[-1].header("If-None-Match"), '"v9"')

    def test_304_without_validators_does_not_freshen_a_response_that_has_one(self):
        self.start()
        count = {"n": 0}

        def handler(req):
            count["n"] += 1
            if count["n"] == 1:
                return Reply(200, body=b"one", headers=[("Cache-Control", "max-age=0"),
                                                        ("ETag", '"e1"'), ("X-Version", "1")])
            if req.header("If-None-Match") is not None:
                return Reply(304, body=b"", headers=[("Cache-Control", "max-age=60")])
            return Reply(200, body=b"two", headers=[("Cache-Control", "max-age=60"),
                                                    ("ETag", '"e2"'), ("X-Version", "2")])
        self.routes.routes["/b"] = handler
        self.get("/b")
        r = self.get("/b")
        self.assertStatus(r, 200)
        self.assertEqual((r.body, r.header("X-Version")), (b"two", "2"))
        self.assertEqual(self.hits("/b"), 3)

    def test_304_age_is_the_freshened_entrys_age(self):
        self.start()
        self.routes.routes["/age"] = lambda req: (
            Reply(304, body=b"", headers=[("ETag", '"a"'), ("Cache-Control", "max-age=100"),
                                          ("Age", "90"), ("Date", http_date())])
            if req.header("If-None-Match") else
            Reply(200, body=b"aged", headers=[("ETag", '"a"'), ("Cache-Control", "max-age=0")]))
        self.get("/age")
        for _ in range(2):  # the revalidated answer, then a hit
            r = self.get("/age")
            self.assertEqual(r.body, b"aged")
            self.assertGreaterEqual(int(r.header("Age")), 90)
            ttl = int(re.search(r"ttl=(-?\d+)", r.header("Cache-Status")).group(1))
            self.assertLessEqual(ttl, 10)
        self.assertEqual(self.hits("/age"), 2)

    def test_304_without_date_restarts_the_apparent_age(self):
        self.start()
        self.routes.routes["/nd"] = lambda req: (
            Reply(304, body=b"", headers=[("ETag", '"d"'), ("Cache-Control", "max-age=100")])
            if req.header("If-None-Match") else
            Reply(200, body=b"dated", headers=[("ETag", '"d"'), ("Cache-Control", "max-age=0"),
                                               ("Date", http_date(-1000))]))
        self.get("/nd")
        r = self.get("/nd")  # revalidated: the stale Date is gone with the 304
        self.assertEqual(r.body, b"dated")
        self.assertLess(int(r.header("Age")), 100)
        r = self.get("/nd")
        self.assertRegex(r.header("Cache-Status"), r"^parapet; hit")
        self.assertEqual(self.hits("/nd"), 2)

    # ---- 5.2.1.7 only-if-cached ----

    def test_only_if_cached_answers_504_without_contacting_the_origin(self):
        self.start()
        oic = [("Cache-Control", "only-if-cached")]
        self.routes.routes["/o"] = cacheable(b"stored")
        self.routes.routes["/stale"] = lambda req: Reply(
            200, body=b"s", headers=[("Cache-Control", "max-age=0")])
        self.routes.routes["/slow"] = lambda req: Reply(
            200, body=b"slow", delay=1.5, headers=[("Cache-Control", "max-age=60")])
        r = self.get("/o", headers=oic)
        self.assertStatus(r, 504)
        self.assertIn("only-if-cached", r.header("Cache-Status"))
        self.assertEqual(self.hits("/o"), 0)
        self.get("/o")
        r = self.get("/o", headers=oic)
        self.assertStatus(r, 200)
        self.assertEqual(r.body, b"stored")
        self.get("/stale")
        self.assertStatus(self.get("/stale", headers=oic), 504)  # stale, may not be served
        self.assertEqual(self.hits("/stale"), 1)
        # A fill in flight: not waited for.
        filler = threading.Thread(target=lambda: self.get("/slow"))
        filler.start()
        deadline = time.monotonic() + 5
        while self.hits("/slow") == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        r = self.get("/slow", headers=oic)
        filler.join(10)
        self.assertStatus(r, 504)
        self.assertEqual(self.hits("/slow"), 1)

    # ---- 5.2.1.5 request no-store ----

    def test_request_no_store_updates_nothing_on_revalidation(self):
        self.start()
        count = {"n": 0}

        def handler(req):
            count["n"] += 1
            if req.header("If-None-Match") == '"n"':
                return Reply(304, body=b"", headers=[("ETag", '"n"'),
                                                     ("Cache-Control", "max-age=60")])
            return Reply(200, body=b"v%d" % count["n"], headers=[
                ("ETag", '"n"'), ("Cache-Control", "max-age=0" if count["n"] == 1
                                  else "max-age=60")])
        self.routes.routes["/ns"] = handler
        self.get("/ns")
        r = self.get("/ns", headers=[("Cache-Control", "no-store")])
        self.assertEqual(r.body, b"v2")  # straight from the origin, as asked
        self.assertIsNone(self.reqs("/ns")[1].header("If-None-Match"))
        # Nothing of it was stored: the stored response is still stale and gets revalidated.
        r = self.get("/ns")
        self.assertIn("fwd=stale", r.header("Cache-Status"))
        self.assertEqual(r.body, b"v1")
        self.assertEqual(self.hits("/ns"), 3)

    def test_request_no_store_starts_no_stale_while_revalidate_refresh(self):
        self.start()
        self.routes.routes["/nsw"] = lambda req: Reply(200, body=b"w", headers=[
            ("Cache-Control", "max-age=5, stale-while-revalidate=600"), ("Date", http_date(-10))])
        self.get("/nsw")
        r = self.get("/nsw", headers=[("Cache-Control", "no-store")])
        self.assertIn("stale-while-revalidate", r.header("Cache-Status"))
        time.sleep(1.0)  # a refresh, had one started, would have reached the origin by now
        self.assertEqual(self.hits("/nsw"), 1)

    # ---- RFC 9211 Cache-Status and the lookup metrics ----

    def test_vary_miss_and_lookup_results(self):
        self.start()
        self.routes.routes["/vm"] = lambda req: Reply(
            200, body=b"v", headers=[("Cache-Control", "max-age=60"), ("Vary", "Accept-Encoding")])
        r = self.get("/vm", headers=[("Accept-Encoding", "gzip")])
        self.assertEqual(r.header("Cache-Status"), "parapet; fwd=uri-miss; stored")
        r = self.get("/vm", headers=[("Accept-Encoding", "br")])
        self.assertEqual(r.header("Cache-Status"), "parapet; fwd=vary-miss; stored")
        self.routes.routes["/rv"] = lambda req: (
            Reply(304, body=b"", headers=[("ETag", '"r"'), ("Cache-Control", "max-age=60")])
            if req.header("If-None-Match") else
            Reply(200, body=b"r", headers=[("ETag", '"r"'), ("Cache-Control", "max-age=0")]))
        self.get("/rv")  # miss
        r = self.get("/rv")  # stale, revalidated with a 304
        self.assertEqual(r.header("Cache-Status").split("; ttl")[0],
                         "parapet; fwd=stale; fwd-status=304")
        self.assertRegex(self.get("/rv").header("Cache-Status"), r"^parapet; hit")
        counts = {res: self.metric("parapet_cache_lookups_total", tenant="demo", result=res)
                  for res in ("hit", "miss", "revalidated", "stale")}
        self.assertEqual(counts, {"hit": 1, "miss": 3, "revalidated": 1, "stale": 0})

    # ---- 4.2.1 duplicate directives ----

    def test_conflicting_max_age_duplicates_mean_stale(self):
        self.start()
        self.routes.routes["/dup"] = lambda req: Reply(
            200, body=b"d", headers=[("Cache-Control", "max-age=60"), ("Cache-Control", "max-age=1")])
        self.get("/dup")
        self.assertIn("fwd=stale", self.get("/dup").header("Cache-Status"))
        self.assertEqual(self.hits("/dup"), 2)

    # ---- 4: collapsed requests only share a reusable response ----

    def test_waiters_do_not_share_a_no_cache_response(self):
        self.start()
        self.routes.routes["/nc"] = lambda req: Reply(
            200, body=b"nc", delay=0.5, headers=[("Cache-Control", "no-cache")])

        def fetch():
            with Client(self.parapet.port("http"), timeout=10) as c:
                return c.roundtrip("GET", "/nc", host="demo.local").status
        results = concurrently(fetch, 5)
        self.assertEqual(results, [200] * 5)
        self.assertEqual(self.hits("/nc"), 5)

    # ---- 4.3.5 HEAD ----

    def test_head_200_updates_the_stale_stored_get(self):
        self.start()
        self.routes.routes["/hd"] = lambda req: (
            Reply(200, body=b"hello", headers=[("Cache-Control", "max-age=60"), ("X-A", "2")])
            if req.method == "HEAD" else
            Reply(200, body=b"hello", headers=[("Cache-Control", "max-age=0"), ("X-A", "1")]))
        self.get("/hd")
        with Client(self.parapet.port("http")) as c:
            r = c.roundtrip("HEAD", "/hd", host="demo.local")
        self.assertEqual(r.header("X-A"), "2")
        r = self.get("/hd")
        self.assertRegex(r.header("Cache-Status"), r"^parapet; hit")
        self.assertEqual((r.body, r.header("X-A")), (b"hello", "2"))
        self.assertEqual([q.method for q in self.reqs("/hd")], ["GET", "HEAD"])

    def test_head_200_describing_another_representation_invalidates(self):
        self.start()
        self.routes.routes["/hd2"] = lambda req: (
            Reply(200, body=b"longer!", headers=[("Cache-Control", "max-age=60")])
            if req.method == "HEAD" else
            Reply(200, body=b"hello", headers=[("Cache-Control", "max-age=0")]))
        self.get("/hd2")
        with Client(self.parapet.port("http")) as c:
            self.assertEqual(c.roundtrip("HEAD", "/hd2", host="demo.local").header(
                "Content-Length"), "7")
        self.assertIn("fwd=uri-miss", self.get("/hd2").header("Cache-Status"))
        # A stored 404 is not turned into a 200 by the HEAD's answer: invalidated.
        self.routes.routes["/hd3"] = lambda req: Reply(
            200 if req.method == "HEAD" else 404, body=b"hello",
            headers=[("Cache-Control", "max-age=60" if req.method == "HEAD" else "max-age=0")])
        self.assertStatus(self.get("/hd3"), 404)
        with Client(self.parapet.port("http")) as c:
            self.assertStatus(c.roundtrip("HEAD", "/hd3", host="demo.local"), 200)
        r = self.get("/hd3")
        self.assertIn("fwd=uri-miss", r.header("Cache-Status"))
        self.assertStatus(r, 404)


class Tenancy(CacheCase):

    def test_two_tenants_with_the_same_path_never_share(self):
        self.routes = Routes()
        self.origin = self.start_origin(self.routes)
        self.routes.routes["/same"] = lambda req: Reply(
            200, body=req.header("Host").encode(), headers=[("Cache-Control", "max-age=60")])
        config = demo_config(self.origin)
        config["tenants"][0]["cache"] = {"enabled": True}
        other = dict(config["tenants"][0], name="other", hosts=["other.example"])
        config["tenants"].append(other)
        self.start_parapet(config)
        for _ in range(2):
            self.assertEqual(self.get("/same", host="demo.local").body, b"demo.local")
            self.assertEqual(self.get("/same", host="other.example").body, b"other.example")
        self.assertEqual(self.hits("/same"), 2)
        self.assertEqual(self.admin("POST", "/cache/purge?tenant=other").body, b'{"purged":1}\n')
        self.get("/same", host="demo.local")
        self.assertEqual(self.hits("/same"), 2)  # demo's entry survived other's purge

    def test_cache_rules_bypass_and_cache_everything(self):
        self.start(cache={"enabled": True, "rules": [
            {"bypass_cookie": "session"},
            {"path": "/static/", "cache_everything": True, "ttl": "1h"}]})
        self.routes.routes["/static/app.js"] = lambda req: Reply(
            200, body=b"js", headers=[("Cache-Control", "private, no-cache")])
        self.routes.routes["/page"] = cacheable(b"page")
        for _ in range(2):
            self.get("/static/app.js")
            self.get("/page", headers=[("Cookie", "session=abc")])
        self.assertEqual(self.hits("/static/app.js"), 1)
        self.assertEqual(self.hits("/page"), 2)
        r = self.get("/page", headers=[("Cookie", "session=abc")])
        self.assertIn("fwd=bypass", r.header("Cache-Status"))

    def test_uncached_tenant_has_no_cache_status(self):
        self.start(cache={"enabled": False})
        self.routes.routes["/n"] = cacheable()
        self.get("/n")
        r = self.get("/n")
        self.assertIsNone(r.header("Cache-Status"))
        self.assertEqual(self.hits("/n"), 2)


class Memory(CacheCase):

    def test_memory_stays_under_the_configured_size(self):
        self.start(store={"max_size": "1MiB", "max_object_size": "64KiB"})
        body = b"m" * 8192
        for i in range(400):  # 3.2 MB of distinct objects into a 1 MiB cache
            self.routes.routes[f"/m/{i}"] = cacheable(body)
        with Client(self.parapet.port("http")) as c:
            for i in range(400):
                r = c.roundtrip("GET", f"/m/{i}", host="demo.local")
                self.assertEqual(r.status, 200)
        used = self.metric("parapet_cache_used_bytes")
        cap = self.metric("parapet_cache_capacity_bytes")
        self.assertEqual(cap, 1024 * 1024)
        self.assertLessEqual(used, cap)
        self.assertGreater(used, cap / 4)
        self.assertGreater(self.metric("parapet_cache_events_total", tenant="demo",
                                       event="eviction"), 0)


if __name__ == "__main__":
    unittest.main()
