"""Tenant Lua over real HTTP: the OpenResty-style API as a request sees it (ngx.var, ngx.req,
ngx.header, ngx.exit/say/redirect, ngx.ctx across phases, ngx.shared across workers,
ngx.re, cjson), the unchanged bench script, hostile scripts stopped while another tenant's
traffic flows, fail-open and fail-closed tenants, and scripts refused at load with file:line
while the running config keeps serving."""

import os
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (Client, ParapetCase, Reply, build_request, demo_config,  # noqa: E402
                     run_parapet, to_yaml)

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH_LUA = os.path.join(HERE, "..", "unit", "lua", "testdata", "bench.lua")


class LuaCase(ParapetCase):

    def script(self, text):
        f = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        f.write(text)
        f.close()
        self.addCleanup(os.unlink, f.name)
        return f.name

    def start(self, source, handler=None, lua_extra=None, other_source=None, workers=1):
        self.origin = self.start_origin(handler)
        config = demo_config(self.origin, workers=workers)
        config["tenants"][0]["lua"] = dict({"script": self.script(source)}, **(lua_extra or {}))
        other = dict(config["tenants"][0], name="other", hosts=["other.example"])
        other.pop("lua")
        if other_source:
            other["lua"] = {"script": self.script(other_source)}
        config["tenants"].append(other)
        self.start_parapet(config)

    def req(self, path="/", host="demo.local", headers=(), timeout=5.0):
        with Client(self.parapet.port("http"), timeout=timeout) as c:
            return c.roundtrip("GET", path, host=host, headers=list(headers))


class Api(LuaCase):

    def test_bench_script_runs_unchanged(self):
        self.origin = self.start_origin()
        config = demo_config(self.origin)
        config["tenants"][0]["lua"] = {"script": os.path.abspath(BENCH_LUA)}
        self.start_parapet(config)
        r = self.req("/lua")
        self.assertStatus(r, 200)
        self.assertEqual(r.header("X-Script"), "bench")
        self.assertEqual(r.header("Content-Type"), "text/plain")
        self.assertEqual(len(r.body), 1024)
        self.assertEqual(self.req("/lua", headers=[("User-Agent", "sqlmap/1.0")]).status, 403)
        self.assertEqual(self.origin.request_count, 0)

    def test_vars_request_changes_and_redirect(self):
        self.start(r'''
return {
  access = function()
    local v = ngx.var
    if v.uri == "/vars" then
      ngx.header["X-Uri"] = v.uri
      ngx.header["X-Args"] = v.args
      ngx.header["X-Host"] = v.host
      ngx.header["X-Method"] = v.request_method
      ngx.header["X-Scheme"] = v.scheme
      ngx.header["X-Remote"] = v.remote_addr
      ngx.header["X-Ua"] = v.http_user_agent
      ngx.say("vars")
      return ngx.exit(200)
    end
    if v.uri == "/go" then
      return ngx.redirect("https://example.com/there", 301)
    end
    if v.uri == "/deny" then
      return ngx.exit(403)
    end
    ngx.req.set_header("X-From-Lua", "yes")
    ngx.req.clear_header("X-Secret")
    local args = ngx.req.get_uri_args()
    if args.rewrite then
      ngx.req.set_uri("/rewritten")
      ngx.req.set_uri_args({a = "1"})
    end
  end,
}''')
        r = self.req("/vars?x=1", headers=[("User-Agent", "tester")])
        self.assertStatus(r, 200)
        self.assertEqual(r.body, b"vars\n")
        self.assertEqual((r.header("X-Uri"), r.header("X-Args"), r.header("X-Host"),
                          r.header("X-Method"), r.header("X-Scheme"), r.header("X-Remote"),
                          r.header("X-Ua")),
                         ("/vars", "x=1", "demo.local", "GET", "http", "127.0.0.1", "tester"))
        r = self.req("/go")
        self.assertEqual(r.status, 301)
        self.assertEqual(r.header("Location"), "https://example.com/there")
        self.assertEqual(self.req("/deny").status, 403)
        self.assertEqual(self.origin.request_count, 0)
        self.assertStatus(self.req("/pass?rewrite=1", headers=[("X-Secret", "s")]), 200)
        got = self.origin.wait_requests(1)[0]
        self.assertEqual(got.target, "/rewritten?a=1")
        self.assertEqual(got.header("X-From-Lua"), "yes")
        self.assertIsNone(got.header("X-Secret"))

    def test_ctx_header_filter_and_log_phases(self):
        self.start(r'''
return {
  access = function()
    ngx.ctx.started = "at-access"
  end,
  header_filter = function()
    ngx.header["X-Ctx"] = ngx.ctx.started
    ngx.header["X-Origin-Status"] = tostring(ngx.status)
    ngx.header["Server"] = nil
  end,
  log = function()
    ngx.log(ngx.WARN, "logged " .. ngx.var.uri .. " " .. tostring(ngx.ctx.started))
  end,
}''', handler=lambda req: Reply(201, body=b"made", headers=[("Server", "origin")]))
        r = self.req("/p")
        self.assertEqual(r.status, 201)
        self.assertEqual(r.header("X-Ctx"), "at-access")
        self.assertEqual(r.header("X-Origin-Status"), "201")
        self.assertIsNone(r.header("Server"))
        self.assertIsNotNone(self.parapet.wait_for_stderr(r"logged /p at-access", timeout=5))

    def test_shared_dict_counts_across_workers_and_re_and_cjson(self):
        self.start(r'''
return {
  access = function()
    local n = ngx.shared.hits:incr("count", 1, 0)
    local m = ngx.re.match(ngx.var.uri, "^/item/(\\d+)$")
    local body = cjson.encode({n = n, id = m and m[1] or cjson.null})
    ngx.header["Content-Type"] = "application/json"
    ngx.print(body)
    return ngx.exit(200)
  end,
}''', lua_extra={"shared_dicts": {"hits": "1MiB"}}, workers=2)
        counts = []
        for i in range(10):  # new connections: SO_REUSEPORT spreads them over both workers
            r = self.req(f"/item/{i}")
            self.assertEqual(r.header("Content-Type"), "application/json")
            body = r.body.decode()
            self.assertIn(f'"id":"{i}"', body)
            counts.append(int(body.split('"n":')[1].split(",")[0].split("}")[0]))
        self.assertEqual(sorted(counts), list(range(1, 11)))


class WithPolicies(LuaCase):

    def test_a_rule_can_skip_the_script(self):
        self.origin = self.start_origin()
        config = demo_config(self.origin)
        config["tenants"][0]["lua"] = {"script": self.script(
            'return { access = function() return ngx.exit(403) end }')}
        config["tenants"][0]["rules"] = [{
            "id": "health", "expression": 'http.request.uri.path eq "/health"',
            "action": "skip", "action_parameters": {"products": ["lua"]}}]
        self.start_parapet(config)
        self.assertEqual(self.req("/other").status, 403)
        self.assertStatus(self.req("/health"), 200)


class Hostile(LuaCase):

    def hostile(self, source, lua_extra=None):
        self.start(r'''
return {
  access = function()
    if ngx.var.uri ~= "/bad" then return end
''' + source + r'''
  end,
}''', lua_extra=lua_extra)

    def others_keep_working(self, bad_requests=3):
        results = {"other": [], "bad": []}

        def other():
            for _ in range(20):
                results["other"].append(self.req("/", host="other.example").status)

        t = threading.Thread(target=other)
        t.start()
        for _ in range(bad_requests):
            results["bad"].append(self.req("/bad", timeout=10).status)
        t.join(30)
        self.assertEqual(results["other"], [200] * 20)
        return results["bad"]

    def test_scripts_that_never_end_or_explode_fail_only_their_request(self):
        cases = {
            "loop": "while true do end",
            "jit": "pcall(function() jit.on() end) while true do end",
            "numeric": "local x = 0 for i = 1, 1e12 do x = x + i end",
            "pattern": 'string.find(("a"):rep(28), ("a*"):rep(12) .. "b")',
            "recursion": "local function f(n) return f(n + 1) + 1 end f(1)",
            "rep": 'local s = string.rep("x", 1e9)',
            "table": "local t = {} for i = 1, 1e9 do t[i] = i end",
            "os": 'os.execute("touch /tmp/parapet-pwned")',
            "io": 'io.open("/etc/passwd")',
            "ffi": 'require("ffi")',
            "bytecode": 'load("\\27LJ\\2\\0")()',
            "debug": "debug.getregistry()",
        }
        for name, source in cases.items():
            with self.subTest(name=name):
                self.hostile(source)
                t0 = time.monotonic()
                statuses = self.others_keep_working()
                self.assertEqual(statuses, [500] * 3)
                self.assertLess(time.monotonic() - t0, 10)
                self.assertStatus(self.req("/fine"), 200)  # the state still serves
                self.parapet.stop()
        self.assertFalse(os.path.exists("/tmp/parapet-pwned"))

    def test_fail_open_tenant_lets_the_request_through(self):
        self.hostile("error('boom')", lua_extra={"on_error": "fail_open"})
        self.assertStatus(self.req("/bad"), 200)
        self.assertEqual(self.origin.request_count, 1)
        self.assertIsNotNone(self.parapet.wait_for_stderr(r"lua error: .*boom", timeout=5))

    def test_custom_error_status_and_metrics(self):
        self.hostile("error('boom')", lua_extra={"error_status": 503})
        self.assertError(self.req("/bad"), 503, "lua.error")
        self.assertStatus(self.req("/ok"), 200)
        with Client(self.parapet.admin_port) as c:
            c.send(build_request("GET", "/metrics", host="admin"))
            m = c.response().body.decode()
        self.assertRegex(m, r'parapet_lua_runs_total\{tenant="demo",version="[0-9a-f]{12}",'
                            r'result="failed"\} 1')
        self.assertRegex(m, r'parapet_lua_runs_total\{tenant="demo",version="[0-9a-f]{12}",'
                            r'result="ok"\} 1')

    def test_a_tenant_cannot_reach_another_tenants_globals_or_dicts(self):
        self.start(r'''
SECRET = "demo-secret"
return { access = function() end }''',
                   lua_extra={"shared_dicts": {"private": "64KiB"}},
                   other_source=r'''
return {
  access = function()
    local d = ngx.shared.private
    ngx.header["X-Global"] = tostring(SECRET)
    ngx.header["X-Dict"] = tostring(d)
    ngx.say("ok")
    return ngx.exit(200)
  end,
}''')
        r = self.req("/", host="other.example")
        self.assertEqual(r.header("X-Global"), "nil")
        self.assertEqual(r.header("X-Dict"), "nil")


class Loading(LuaCase):

    def test_syntax_error_refused_with_file_and_line(self):
        origin = self.start_origin()
        config = demo_config(origin)
        path = self.script("return {\n  access = function()\n    if then\n  end,\n}\n")
        config["tenants"][0]["lua"] = {"script": path}
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(to_yaml(config))
        self.addCleanup(os.unlink, f.name)
        r = run_parapet(["--check", "-c", f.name])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertRegex(r.stderr, rf"{path}:3: .*")

    def test_a_bad_script_on_reload_keeps_the_old_one_serving(self):
        self.start('return { access = function() ngx.header["X-V"] = "1" end }')
        self.assertEqual(self.req("/").header("X-V"), "1")
        config_text = self.parapet.config_path.read_text()
        script = [ln.split("script:")[1].strip().strip("'\"") for ln in config_text.splitlines()
                  if "script:" in ln][0]
        with open(script, "w") as f:
            f.write("return { access = function( }")
        with Client(self.parapet.admin_port) as c:
            c.send(build_request("POST", "/reload", host="admin"))
            resp = c.response()
        self.assertEqual(resp.status, 400, resp.body)
        self.assertIn(script.encode(), resp.body)
        self.assertEqual(self.req("/").header("X-V"), "1")


if __name__ == "__main__":
    unittest.main()
