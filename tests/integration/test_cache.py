"""HTTP cache (RFC 9111) through the real binary, against an origin that counts its requests:
hits after misses, expiry and revalidation (304 updates the stored head), no-store / private /
Authorization / Set-Cookie never stored, Vary variants, conditional and Range requests answered
from the cache, stale-if-error, coalesced misses, invalidation by unsafe methods, purges by URL,
prefix, tag and tenant, tenant isolation, cache rules, and the byte bound."""

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
