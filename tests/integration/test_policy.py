"""Policies over real HTTP: every request-phase action (block, allow, skip, log, redirect,
rewrite, set_cache_settings, rate_limit), response-phase header rewrites, shadow mode, a shared
policy attached to two tenants with an override in one, lists, per-rule metrics, and bad rules
refused at load with line and column while the running config keeps serving."""

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (Client, ParapetCase, Reply, build_request, demo_config,  # noqa: E402
                     run_parapet, to_yaml)


def config_with(origin, rules=None, policies=None, tenant_policies=None, overrides=None,
                lists=None, cache=None, extra_tenant=None):
    config = demo_config(origin)
    t = config["tenants"][0]
    if rules is not None:
        t["rules"] = rules
    if tenant_policies is not None:
        t["policies"] = tenant_policies
    if overrides is not None:
        t["policy_overrides"] = overrides
    if cache is not None:
        t["cache"] = cache
    if policies is not None:
        config["policies"] = policies
    if lists is not None:
        config["lists"] = lists
    if extra_tenant is not None:
        config["tenants"].append(extra_tenant)
    return config


class PolicyCase(ParapetCase):

    def start(self, handler=None, **kwargs):
        self.origin = self.start_origin(handler)
        self.start_parapet(config_with(self.origin, **kwargs))

    def req(self, path="/", host="demo.local", headers=(), method="GET", body=None):
        with Client(self.parapet.port("http")) as c:
            return c.roundtrip(method, path, host=host, headers=list(headers), body=body)

    def metrics(self):
        with Client(self.parapet.admin_port) as c:
            c.send(build_request("GET", "/metrics", host="admin"))
            return c.response().body.decode()


class RequestActions(PolicyCase):

    def test_block_default_and_custom(self):
        self.start(rules=[
            {"id": "no-sqlmap", "expression": 'http.user_agent contains "sqlmap"',
             "action": "block"},
            {"id": "teapot", "expression": 'http.request.uri.path eq "/tea"', "action": "block",
             "action_parameters": {"status": 418, "content_type": "application/json",
                                   "body": '{"error":"teapot"}'}}])
        r = self.req(headers=[("User-Agent", "sqlmap/1.7")])
        self.assertError(r, 403, "policy.blocked")
        r = self.req("/tea")
        self.assertEqual(r.status, 418)
        self.assertEqual(r.header("Content-Type"), "application/json")
        self.assertEqual(r.body, b'{"error":"teapot"}')
        self.assertOriginUntouched(self.origin)
        self.assertStatus(self.req(headers=[("User-Agent", "curl/8")]), 200)

    def test_allow_skips_the_rest_of_the_phase(self):
        self.start(rules=[
            {"id": "office", "expression": 'http.request.headers["x-office"][0] eq "1"',
             "action": "allow"},
            {"id": "all", "expression": "true", "action": "block"}])
        self.assertStatus(self.req(headers=[("X-Office", "1")]), 200)
        self.assertError(self.req(), 403, "policy.blocked")

    def test_skip_named_rules_and_the_cache(self):
        def handler(req):
            return Reply(200, body=b"fresh", headers=[("Cache-Control", "max-age=60")])
        self.start(handler, cache={"enabled": True}, rules=[
            {"id": "trusted", "expression": 'http.request.headers["x-trusted"][0] eq "yes"',
             "action": "skip", "action_parameters": {"rules": ["blocker"], "products": ["cache"]}},
            {"id": "blocker", "expression": 'http.request.uri.path eq "/x"', "action": "block"}])
        self.assertError(self.req("/x"), 403, "policy.blocked")
        for _ in range(2):
            r = self.req("/x", headers=[("X-Trusted", "yes")])
            self.assertStatus(r, 200)
            self.assertIsNone(r.header("Cache-Status"))
        self.assertEqual(self.origin.request_count, 2)  # the cache was skipped both times

    def test_log_and_shadow_mode_record_without_acting(self):
        self.start(rules=[
            {"id": "watch", "expression": 'http.request.uri.path eq "/w"', "action": "log"},
            {"id": "would-block", "expression": 'http.request.uri.path eq "/w"',
             "action": "block", "log_only": True}])
        for _ in range(3):
            self.assertStatus(self.req("/w"), 200)
        m = self.metrics()
        self.assertIn('parapet_rule_matches_total{tenant="demo",rule="watch",action="log",'
                      'mode="enforce"} 3', m)
        self.assertIn('parapet_rule_matches_total{tenant="demo",rule="would-block",'
                      'action="block",mode="log_only"} 3', m)

    def test_redirect_static_and_computed(self):
        self.start(rules=[
            {"id": "old", "expression": 'starts_with(http.request.uri.path, "/old/")',
             "action": "redirect", "action_parameters": {
                 "target_url": {"expression":
                                'concat("https://new.example", substring(http.request.uri.path, 4))'},
                 "status_code": 301, "preserve_query_string": True}},
            {"id": "home", "expression": 'http.request.uri.path eq "/home"',
             "action": "redirect", "action_parameters": {"target_url": "/"}}])
        r = self.req("/old/page?a=1")
        self.assertEqual(r.status, 301)
        self.assertEqual(r.header("Location"), "https://new.example/page?a=1")
        r = self.req("/home")
        self.assertEqual(r.status, 302)
        self.assertEqual(r.header("Location"), "/")
        self.assertOriginUntouched(self.origin)

    def test_rewrite_path_query_and_headers(self):
        self.start(rules=[{
            "id": "v2", "expression": 'starts_with(http.request.uri.path, "/api/")',
            "action": "rewrite", "action_parameters": {
                "uri": {"path": {"expression":
                                 'regex_replace(http.request.uri.path, "^/api/", "/v2/")'},
                        "query": {"value": "source=edge"}},
                "headers": {"X-Edge": {"operation": "set", "value": "parapet"},
                            "X-Country": {"operation": "set",
                                          "expression": 'lower(http.request.headers["x-cc"][0])'},
                            "X-Secret": {"operation": "remove"}}}}])
        self.assertStatus(self.req("/api/users?x=1", headers=[("X-Secret", "s"), ("X-CC", "FR")]),
                          200)
        got = self.origin.wait_requests(1)[0]
        self.assertEqual(got.target, "/v2/users?source=edge")
        self.assertEqual(got.header("X-Edge"), "parapet")
        self.assertEqual(got.header("X-Country"), "fr")
        self.assertIsNone(got.header("X-Secret"))

    def test_set_cache_settings_bypass(self):
        def handler(req):
            return Reply(200, body=b"c", headers=[("Cache-Control", "max-age=60")])
        self.start(handler, cache={"enabled": True}, rules=[
            {"id": "nocache", "expression": 'http.request.uri.path eq "/live"',
             "action": "set_cache_settings", "action_parameters": {"cache": False}}])
        for _ in range(2):
            self.req("/live")
            self.req("/static")
        self.assertEqual(sum(1 for r in self.origin.requests if r.target == "/live"), 2)
        self.assertEqual(sum(1 for r in self.origin.requests if r.target == "/static"), 1)

    def test_redirect_307_and_308(self):
        self.start(rules=[
            {"id": "temp", "expression": 'http.request.uri.path eq "/t"', "action": "redirect",
             "action_parameters": {"target_url": "/t2", "status_code": 307}},
            {"id": "perm", "expression": 'http.request.uri.path eq "/p"', "action": "redirect",
             "action_parameters": {"target_url": "https://p.example/",
                                   "status_code": 308}}])
        for method in ("GET", "POST"):
            with self.subTest(method=method):
                body = b"x" if method == "POST" else None
                r = self.req("/t", method=method, body=body)
                self.assertEqual((r.status, r.header("Location")), (307, "/t2"))
                r = self.req("/p", method=method, body=body)
                self.assertEqual((r.status, r.header("Location")), (308, "https://p.example/"))
        self.assertOriginUntouched(self.origin)

    def test_set_cache_settings_edge_ttl(self):
        # The origin allows 5 s; the rule stores /long for an hour.
        def handler(req):
            return Reply(200, body=b"c", headers=[("Cache-Control", "max-age=5")])
        self.start(handler, cache={"enabled": True}, rules=[
            {"id": "long", "expression": 'http.request.uri.path eq "/long"',
             "action": "set_cache_settings", "action_parameters": {"edge_ttl": "1h"}}])
        self.req("/long")
        self.req("/short")
        r = self.req("/long")
        m = re.fullmatch(r"parapet; hit; ttl=(\d+)", r.header("Cache-Status") or "")
        self.assertIsNotNone(m, r.header("Cache-Status"))
        self.assertTrue(3590 <= int(m.group(1)) <= 3600, m.group(1))
        r = self.req("/short")
        m = re.fullmatch(r"parapet; hit; ttl=(\d+)", r.header("Cache-Status") or "")
        self.assertIsNotNone(m, r.header("Cache-Status"))
        self.assertLessEqual(int(m.group(1)), 5)
        self.assertEqual(self.origin.request_count, 2)

    def test_skip_the_rest_of_the_ruleset(self):
        self.start(rules=[
            {"id": "trusted", "expression": 'http.request.headers["x-trusted"][0] eq "1"',
             "action": "skip", "action_parameters": {"ruleset": "current"}},
            {"id": "b1", "expression": 'http.request.uri.path eq "/x"', "action": "block"},
            {"id": "b2", "expression": "true", "action": "block",
             "action_parameters": {"status": 451}}])
        self.assertStatus(self.req("/x", headers=[("X-Trusted", "1")]), 200)
        self.assertStatus(self.req("/y", headers=[("X-Trusted", "1")]), 200)
        self.assertError(self.req("/x"), 403, "policy.blocked")
        self.assertEqual(self.req("/y").status, 451)

    def test_skip_the_response_phase(self):
        self.start(rules=[
            {"id": "quiet", "expression": 'starts_with(http.request.uri.path, "/raw")',
             "action": "skip", "action_parameters": {"phases": ["response"]}},
            {"id": "mark", "phase": "response", "expression": "true", "action": "rewrite",
             "action_parameters": {"headers": {"X-Marked": {"operation": "set",
                                                            "value": "1"}}}}])
        self.assertEqual(self.req("/page").header("X-Marked"), "1")
        r = self.req("/raw/page")
        self.assertStatus(r, 200)
        self.assertIsNone(r.header("X-Marked"))

    def test_rate_limit_counting_expression(self):
        self.start(rules=[
            # Only POSTs count; once over, every request to /login is refused.
            {"id": "login", "expression": 'http.request.uri.path eq "/login"',
             "action": "rate_limit", "action_parameters": {
                 "period": "10s", "requests_per_period": 2, "mitigation_timeout": "30s",
                 "counting_expression":
                     'http.request.uri.path eq "/login" and http.request.method eq "POST"'}},
            # Counts /signup, refuses /api: the counting expression is evaluated on its own.
            {"id": "api", "expression": 'http.request.uri.path eq "/api"',
             "action": "rate_limit", "action_parameters": {
                 "period": "10s", "requests_per_period": 2,
                 "counting_expression": 'http.request.uri.path eq "/signup"'}}])
        for _ in range(5):
            self.assertStatus(self.req("/login"), 200)  # GETs: not counted
        self.assertStatus(self.req("/login", method="POST", body=b"a"), 200)
        self.assertStatus(self.req("/login", method="POST", body=b"a"), 200)
        self.assertError(self.req("/login", method="POST", body=b"a"), 429,
                         "policy.rate_limited")
        r = self.req("/login")  # not counted, but refused while the key is over
        self.assertError(r, 429, "policy.rate_limited")
        self.assertTrue(25 <= int(r.header("Retry-After")) <= 30, r.header("Retry-After"))
        self.assertStatus(self.req("/api"), 200)
        self.assertStatus(self.req("/api"), 200)
        self.assertStatus(self.req("/api"), 200)  # /api itself is never counted
        for _ in range(3):
            self.assertStatus(self.req("/signup"), 200)  # counted; this rule does not act here
        self.assertError(self.req("/api"), 429, "policy.rate_limited")
        self.assertEqual(self.origin.request_count, 5 + 2 + 3 + 3)

    def test_rate_limit_across_connections(self):
        self.start(rules=[{
            "id": "rl", "expression": 'starts_with(http.request.uri.path, "/login")',
            "action": "rate_limit", "action_parameters": {
                "characteristics": ["ip.src", 'http.request.headers["x-user"][0]'],
                "period": "10s", "requests_per_period": 5, "mitigation_timeout": "30s"}}])
        statuses = [self.req("/login", headers=[("X-User", "alice")]).status for _ in range(5)]
        self.assertEqual(statuses, [200] * 5)
        r = self.req("/login", headers=[("X-User", "alice")])
        self.assertError(r, 429, "policy.rate_limited")
        self.assertTrue(25 <= int(r.header("Retry-After")) <= 30, r.header("Retry-After"))
        # Another characteristic value has its own counter; other paths are not counted.
        self.assertStatus(self.req("/login", headers=[("X-User", "bob")]), 200)
        self.assertStatus(self.req("/other", headers=[("X-User", "alice")]), 200)
        self.assertEqual(self.origin.request_count, 7)

    def test_ip_list(self):
        self.start(lists=[{"name": "blocked", "kind": "ip",
                           "items": ["127.0.0.0/8", "2001:db8::/32"]},
                          {"name": "bad_agents", "kind": "string", "items": ["evil", "worse"]}],
                   rules=[{"id": "agents", "expression": "http.user_agent in $bad_agents",
                           "action": "block"},
                          {"id": "ips", "expression": "ip.src in $blocked and "
                                                      'http.request.uri.path eq "/private"',
                           "action": "block"}])
        self.assertError(self.req(headers=[("User-Agent", "evil")]), 403, "policy.blocked")
        self.assertStatus(self.req(headers=[("User-Agent", "nice")]), 200)
        self.assertError(self.req("/private"), 403, "policy.blocked")


class TenantLists(PolicyCase):

    def test_a_tenant_list_serves_its_rules(self):
        origin = self.start_origin()
        config = demo_config(origin)
        t = config["tenants"][0]
        t["lists"] = [{"name": "staff", "kind": "string", "items": ["alice", "bob"]}]
        t["rules"] = [{"id": "staff-only",
                       "expression": 'starts_with(http.request.uri.path, "/admin") and '
                                     'not http.request.headers["x-user"][0] in $staff',
                       "action": "block"}]
        self.start_parapet(config)
        with Client(self.parapet.port("http")) as c:
            self.assertStatus(c.roundtrip("GET", "/admin", host="demo.local",
                                          headers=[("X-User", "alice")]), 200)
            self.assertError(c.roundtrip("GET", "/admin", host="demo.local",
                                         headers=[("X-User", "eve")]), 403, "policy.blocked")

    def test_another_tenants_list_is_refused_at_load(self):
        origin = self.start_origin()
        config = demo_config(origin)
        a = config["tenants"][0]
        a["lists"] = [{"name": "staff", "kind": "string", "items": ["alice"]}]
        config["tenants"].append({
            "name": "b", "hosts": ["b.example"], "origins": a["origins"], "routes": a["routes"],
            "rules": [{"id": "borrow", "expression": 'http.user_agent in $staff'}]})
        text = to_yaml(config)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(text)
        self.addCleanup(os.unlink, f.name)
        r = run_parapet(["--check", "-c", f.name])
        self.assertEqual(r.returncode, 1, r.stderr)
        lines = text.split("\n")
        lineno = next(i for i, l in enumerate(lines) if "$staff" in l) + 1
        column = lines[lineno - 1].index("$staff") + 1
        self.assertIn(f'{f.name}:{lineno}:{column}: rule \'borrow\': unknown list "$staff"',
                      r.stderr)


class AccessLogTrail(PolicyCase):

    def test_rules_trail_in_the_access_log(self):
        origin = self.start_origin()
        config = config_with(origin, policies=[{"name": "base", "rules": [
            {"id": "tag", "expression": 'starts_with(http.request.uri.path, "/t")',
             "action": "log"}]}], tenant_policies=["base"], rules=[
            {"id": "would-block", "expression": 'http.request.uri.path eq "/t"',
             "action": "block", "log_only": True},
            {"id": "deny", "expression": 'http.request.uri.path eq "/deny"', "action": "block"},
            {"id": "hdr", "phase": "response", "expression": "http.response.code eq 200",
             "action": "rewrite", "action_parameters": {
                 "headers": {"X-Seen": {"operation": "set", "value": "1"}}}}])
        log_dir = tempfile.TemporaryDirectory(prefix="parapet-log-")
        self.addCleanup(log_dir.cleanup)
        log_path = os.path.join(log_dir.name, "access.log")
        config["access_log"] = {"path": log_path}
        self.start_parapet(config)
        self.assertStatus(self.req("/t"), 200)
        self.assertError(self.req("/deny"), 403, "policy.blocked")
        self.assertStatus(self.req("/plain"), 200)
        recs = {}
        deadline = time.monotonic() + 5
        while len(recs) < 3 and time.monotonic() < deadline:
            if os.path.exists(log_path):
                with open(log_path) as f:
                    recs = {r["path"]: r for r in map(json.loads, f.read().splitlines())}
            time.sleep(0.05)
        self.assertEqual(set(recs), {"/t", "/deny", "/plain"})
        self.assertEqual(recs["/t"]["rules"], [
            {"id": "base/tag", "action": "log", "log_only": False},
            {"id": "would-block", "action": "block", "log_only": True},
            {"id": "hdr", "action": "rewrite", "log_only": False}])
        self.assertEqual(recs["/deny"]["rules"],
                         [{"id": "deny", "action": "block", "log_only": False}])
        self.assertEqual(recs["/plain"]["rules"],
                         [{"id": "hdr", "action": "rewrite", "log_only": False}])


class Challenge(PolicyCase):

    def test_challenge_page_then_cookie_passes_forged_and_expired_do_not(self):
        self.start(rules=[{"id": "ch", "expression": 'starts_with(http.request.uri.path, "/app")',
                           "action": "challenge", "action_parameters": {"ttl": "10m"}}])
        r = self.req("/app")
        self.assertEqual(r.status, 403)
        self.assertTrue(r.header("Content-Type").startswith("text/html"))
        self.assertEqual(r.header("Cache-Control"), "no-store")
        m = re.search(rb'document.cookie="__parapet_challenge=(\d+)\.([0-9a-f]{64});', r.body)
        self.assertIsNotNone(m, r.body)
        expiry, mac = int(m.group(1)), m.group(2).decode()
        self.assertTrue(590 <= expiry - time.time() <= 601)
        self.assertEqual(self.origin.request_count, 0)
        good = f"__parapet_challenge={expiry}.{mac}"
        self.assertStatus(self.req("/app", headers=[("Cookie", "a=b; " + good)]), 200)
        self.assertEqual(self.origin.request_count, 1)
        forged_mac = ("0" if mac[0] != "0" else "1") + mac[1:]
        for bad in (f"__parapet_challenge={expiry}.{forged_mac}",   # forged MAC
                    f"__parapet_challenge={expiry + 60}.{mac}",     # another expiry
                    f"__parapet_challenge=1000.{mac}",              # expired and not signed
                    "__parapet_challenge=garbage"):
            with self.subTest(cookie=bad):
                self.assertEqual(self.req("/app", headers=[("Cookie", bad)]).status, 403)
        self.assertEqual(self.origin.request_count, 1)
        self.assertStatus(self.req("/other"), 200)  # the rule does not apply there

    def test_a_genuine_pass_stops_working_when_it_expires(self):
        # A pass parapet signed itself, kept until its expiry is over: only the expiry check
        # can refuse it.
        self.start(rules=[{"id": "ch", "expression": 'http.request.uri.path eq "/app"',
                           "action": "challenge", "action_parameters": {"ttl": "3s"}}])
        r = self.req("/app")
        m = re.search(rb'document.cookie="(__parapet_challenge=(\d+)\.[0-9a-f]{64});', r.body)
        self.assertIsNotNone(m, r.body)
        cookie, expiry = m.group(1).decode(), int(m.group(2))
        self.assertTrue(2 <= expiry - time.time() <= 4, expiry - time.time())
        self.assertStatus(self.req("/app", headers=[("Cookie", cookie)]), 200)
        # The pass is valid through its expiry second; wait until that second is over.
        deadline = time.monotonic() + 10
        while time.time() < expiry + 1.1 and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertGreater(time.time(), expiry + 1)
        r = self.req("/app", headers=[("Cookie", cookie)])
        self.assertEqual(r.status, 403)
        self.assertIn(b"__parapet_challenge=", r.body)  # a new page, with a new pass
        self.assertEqual(self.origin.request_count, 1)


class ResponsePhase(PolicyCase):

    def test_response_header_rewrite(self):
        def handler(req):
            st = 404 if req.target == "/missing" else 200
            return Reply(st, body=b"x", headers=[("Server", "origin/1.0")])
        self.start(handler, rules=[
            {"id": "hide", "phase": "response", "expression": "true", "action": "rewrite",
             "action_parameters": {"headers": {"Server": {"operation": "remove"}}}},
            {"id": "mark404", "phase": "response", "expression": "http.response.code eq 404",
             "action": "rewrite", "action_parameters": {
                 "headers": {"X-Missing": {"operation": "set", "expression":
                                           "http.request.uri.path"}}}}])
        r = self.req("/ok")
        self.assertIsNone(r.header("Server"))
        self.assertIsNone(r.header("X-Missing"))
        r = self.req("/missing")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.header("X-Missing"), "/missing")


    def test_response_rules_run_on_cache_hits(self):
        def handler(req):
            return Reply(200, body=b"cached", headers=[("Cache-Control", "max-age=60"),
                                                        ("ETag", '"v1"'),
                                                        ("Server", "origin/1.0")])
        self.start(handler, cache={"enabled": True}, rules=[
            {"id": "hide", "phase": "response", "expression": "true", "action": "rewrite",
             "action_parameters": {"headers": {
                 "Server": {"operation": "remove"},
                 "X-Code": {"operation": "set",
                            "expression": "to_string(http.response.code)"}}}}])
        first, second = self.req("/c"), self.req("/c")
        self.assertRegex(second.header("Cache-Status") or "", r"^parapet; hit")
        self.assertEqual(self.origin.request_count, 1)
        for r in (first, second):
            self.assertEqual(r.body, b"cached")
            self.assertIsNone(r.header("Server"))
            self.assertEqual(r.header("X-Code"), "200")
        # A conditional request answered 304 from the cache: the rules see the 304.
        r = self.req("/c", headers=[("If-None-Match", '"v1"')])
        self.assertEqual((r.status, r.header("X-Code")), (304, "304"))
        self.assertIsNone(r.header("Server"))
        self.assertEqual(self.origin.request_count, 1)

    def test_response_rules_run_on_local_answers(self):
        self.start(rules=[
            {"id": "deny", "expression": 'http.request.uri.path eq "/deny"', "action": "block"},
            {"id": "go", "expression": 'http.request.uri.path eq "/go"', "action": "redirect",
             "action_parameters": {"target_url": "/there"}},
            {"id": "tag", "phase": "response", "expression": "http.response.code ge 300",
             "action": "rewrite", "action_parameters": {"headers": {
                 "X-Answer": {"operation": "set", "expression":
                              'concat(to_string(http.response.code), " ", '
                              'http.response.headers["location"][0])'},
                 "Content-Length": {"operation": "remove"},
                 "X-Request-Id": {"operation": "remove"}}}},
            {"id": "ok", "phase": "response", "expression": "http.response.code eq 403",
             "action": "rewrite", "action_parameters": {"headers": {
                 "X-Blocked": {"operation": "set", "value": "yes"}}}}])
        r = self.req("/deny")
        self.assertEqual(r.status, 403)
        self.assertEqual(r.header("X-Blocked"), "yes")
        self.assertIsNone(r.header("X-Answer"))  # no Location: the concat has no value
        self.assertIsNone(r.header("X-Request-Id"))
        self.assertEqual(r.header("Content-Length"), str(len(r.body)))  # framing stays
        self.assertIn(b"reason: policy.blocked", r.body)
        r = self.req("/go")
        self.assertEqual((r.status, r.header("Location")), (302, "/there"))
        self.assertEqual(r.header("X-Answer"), "302 /there")
        self.assertIsNone(r.header("X-Blocked"))
        r = self.req("/fine")  # from the origin: 200, neither rule
        self.assertStatus(r, 200)
        self.assertIsNone(r.header("X-Answer"))
        self.assertIsNone(r.header("X-Blocked"))
        self.assertEqual(self.origin.request_count, 1)


class SharedPolicies(PolicyCase):

    def test_shared_policy_on_two_tenants_with_an_override(self):
        origin = self.start_origin()
        config = demo_config(origin)
        base = config["tenants"][0]
        base["policies"] = ["baseline"]
        other = dict(base, name="other", hosts=["other.example"], policies=["baseline"],
                     policy_overrides=[{"id": "scanners", "action": "log"},
                                       {"id": "admin", "enabled": False}])
        config["tenants"].append(other)
        config["policies"] = [{"name": "baseline", "rules": [
            {"id": "scanners", "expression": 'http.user_agent contains "nikto"',
             "action": "block"},
            {"id": "admin", "expression": 'starts_with(http.request.uri.path, "/admin")',
             "action": "block"}]}]
        self.start_parapet(config)

        def get(host, path="/", ua="nikto"):
            with Client(self.parapet.port("http")) as c:
                return c.roundtrip("GET", path, host=host, headers=[("User-Agent", ua)])
        self.assertError(get("demo.local"), 403, "policy.blocked")
        self.assertStatus(get("other.example"), 200)  # overridden to log
        self.assertError(get("demo.local", "/admin", "ok"), 403, "policy.blocked")
        self.assertStatus(get("other.example", "/admin", "ok"), 200)  # disabled
        with Client(self.parapet.admin_port) as c:
            c.send(build_request("GET", "/metrics", host="admin"))
            m = c.response().body.decode()
        self.assertIn('parapet_rule_matches_total{tenant="other",rule="baseline/scanners",'
                      'action="log",mode="enforce"} 1', m)
        self.assertIn('parapet_rule_matches_total{tenant="demo",rule="baseline/scanners",'
                      'action="block",mode="enforce"} 1', m)

    def shared_pair(self, overrides):
        """Tenant demo with `overrides` and tenant other without, both on policy baseline."""
        origin = self.start_origin()
        config = demo_config(origin)
        base = config["tenants"][0]
        config["tenants"].append(dict(base, name="other", hosts=["other.example"],
                                      policies=["baseline"]))
        base["policies"] = ["baseline"]
        base["policy_overrides"] = overrides
        config["policies"] = [{"name": "baseline", "rules": [
            {"id": "watch", "expression": 'http.request.uri.path eq "/w"', "action": "log"},
            {"id": "moved", "expression": 'http.request.uri.path eq "/m"', "action": "redirect",
             "action_parameters": {"target_url": "/new"}},
            {"id": "teapot", "expression": 'http.request.uri.path eq "/t"', "action": "block",
             "action_parameters": {"status": 418, "body": "short and stout"}}]}]
        self.start_parapet(config)
        return origin

    def get_on(self, host, path):
        with Client(self.parapet.port("http")) as c:
            return c.roundtrip("GET", path, host=host)

    # Regression: an override turning a log or redirect rule into block answered with status 0
    # (log) or the redirect's 302: the block status was only set for rules that were blocks.
    def test_override_to_block_answers_with_the_block_defaults(self):
        origin = self.shared_pair([{"id": "watch", "action": "block"},
                                   {"id": "moved", "action": "block"},
                                   {"id": "teapot", "action": "block"}])
        self.assertError(self.get_on("demo.local", "/w"), 403, "policy.blocked")
        r = self.get_on("demo.local", "/m")
        self.assertError(r, 403, "policy.blocked")
        self.assertIsNone(r.header("Location"))
        r = self.get_on("demo.local", "/t")  # a block stays the block it was
        self.assertEqual((r.status, r.body), (418, b"short and stout"))
        self.assertOriginUntouched(origin)
        # The tenant without overrides keeps the policy's actions.
        self.assertStatus(self.get_on("other.example", "/w"), 200)
        r = self.get_on("other.example", "/m")
        self.assertEqual((r.status, r.header("Location")), (302, "/new"))

    def test_override_to_block_with_its_own_answer(self):
        self.shared_pair([{"id": "watch", "action": "block",
                           "action_parameters": {"status": 451, "content_type": "text/html",
                                                 "body": "<p>gone</p>"}},
                          {"id": "teapot", "action": "block",
                           "action_parameters": {"status": 429}}])
        r = self.get_on("demo.local", "/w")
        self.assertEqual((r.status, r.header("Content-Type"), r.body),
                         (451, "text/html", b"<p>gone</p>"))
        self.assertError(self.get_on("demo.local", "/t"), 429, "policy.blocked")
        self.assertEqual(self.get_on("other.example", "/t").status, 418)


class BadRules(ParapetCase):

    def check(self, config):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(to_yaml(config))
        self.addCleanup(os.unlink, f.name)
        r = run_parapet(["--check", "-c", f.name])
        return f.name, r

    def test_bad_rules_refused_with_line_and_column(self):
        origin = self.start_origin()
        cases = [
            ('http.request.urii eq "/"', 'unknown field'),
            ('http.request.uri.path matches "(a"', "missing )"),
            ('http.request.uri.path eq 5', "String literal"),
            ('ip.src in $nosuchlist', "nosuchlist"),
        ]
        for expr, reason in cases:
            with self.subTest(expr=expr):
                name, r = self.check(config_with(origin, rules=[
                    {"id": "bad", "expression": expr, "action": "block"}]))
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertRegex(r.stderr,
                                 rf"{re.escape(name)}:\d+:\d+: rule 'bad': .*{re.escape(reason)}")
                self.assertRegex(r.stderr, r"\(expression 1:\d+\)")
        name, r = self.check(config_with(origin, overrides=[{"id": "ghost", "action": "log"}]))
        self.assertEqual(r.returncode, 1)
        self.assertIn("no rule with this id", r.stderr)

    def check_text(self, text):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(text)
        self.addCleanup(os.unlink, f.name)
        return f.name, run_parapet(["--check", "-c", f.name])

    def rules_yaml(self, origin, rule_lines):
        """The demo config as YAML text, with the tenant's rules written by hand."""
        return to_yaml(demo_config(origin)) + "    rules:\n" + "".join(
            "      " + line + "\n" for line in rule_lines)

    # Regression (quoted scalar): the column of an error inside a quoted expression was one off
    # (the opening quote was counted as part of the expression), and escapes shifted it more.
    def test_exact_file_line_and_column_in_plain_and_quoted_scalars(self):
        origin = self.start_origin()
        cases = {
            "plain": 'expression: http.request.uri.path eq "/" and http.nope eq "x"',
            "double": r'expression: "http.request.uri.path eq \"/\" and http.nope eq \"x\""',
            "single": "expression: 'http.request.uri.path eq \"it''s\" and http.nope eq \"x\"'",
        }
        for style, expression_line in cases.items():
            with self.subTest(style=style):
                lines = [f"- id: {style}", f"  {expression_line}", "  action: block"]
                text = self.rules_yaml(origin, lines)
                name, r = self.check_text(text)
                self.assertEqual(r.returncode, 1, r.stderr)
                # Where http.nope sits in the file, found independently of parapet.
                file_lines = text.split("\n")
                lineno = next(i for i, l in enumerate(file_lines) if "http.nope" in l) + 1
                column = file_lines[lineno - 1].index("http.nope") + 1
                self.assertIn(f"{name}:{lineno}:{column}: rule '{style}': unknown field "
                              f'"http.nope"', r.stderr)
        # The plain case in numbers: the rule's second line, 6 + 2 + len("expression: ") + 33.
        name, r = self.check_text(self.rules_yaml(origin, [
            "- id: plain", '  expression: http.request.uri.path eq "/" and http.nope eq "x"']))
        lineno = len(to_yaml(demo_config(origin)).split("\n")) + 2  # after "rules:", "- id"
        self.assertIn(f"{name}:{lineno}:54: rule 'plain': unknown field \"http.nope\" "
                      "(expression 1:34)", r.stderr)

    def test_a_bad_rule_on_reload_keeps_the_old_rules(self):
        origin = self.start_origin()
        config = config_with(origin, rules=[
            {"id": "b", "expression": 'http.request.uri.path eq "/b"', "action": "block"}])
        p = self.start_parapet(config)
        self.assertEqual(self.get("/b").status, 403)
        config["tenants"][0]["rules"][0]["expression"] = 'http.nope eq "/b"'
        p.config_path.write_text(to_yaml(config))
        with Client(p.admin_port) as c:
            c.send(build_request("POST", "/reload", host="admin"))
            resp = c.response()
        self.assertEqual(resp.status, 400, resp.body)
        self.assertIn(b"unknown field", resp.body)
        self.assertEqual(self.get("/b").status, 403)


if __name__ == "__main__":
    unittest.main()
