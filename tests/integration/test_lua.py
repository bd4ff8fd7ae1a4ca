"""Tenant Lua over real HTTP: the OpenResty-style API as a request sees it (ngx.var, ngx.req,
ngx.header, ngx.exit/say/redirect, ngx.ctx across phases, ngx.shared across workers,
ngx.re, cjson, ngx.status in header_filter), the unchanged bench script, hostile scripts stopped
while another tenant's traffic flows, the breaker, fail-open and fail-closed tenants, scripts
refused at load with file:line while the running config keeps serving, and reloaded scripts
taking over. (Each API function over HTTP, and docs/examples/: test_lua_api.py.)"""

import hashlib
import os
import re
import signal
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (Client, ParapetCase, Reply, build_request, demo_config,  # noqa: E402
                     error_fields, run_parapet, to_yaml)

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH_LUA = os.path.join(HERE, "..", "unit", "lua", "testdata", "bench.lua")


def version_of(source: str) -> str:
    """A module's version as parapet computes it: 12 hex digits of SHA-256 of the source."""
    return hashlib.sha256(source.encode()).hexdigest()[:12]


def metric(text: str, name: str, **labels) -> int:
    """The value of the sample `name` whose labels include `labels` (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(got.get(k) == v for k, v in labels.items()):
            return int(line.rsplit(" ", 1)[1])
    return 0


class LuaCase(ParapetCase):

    def script(self, text):
        f = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        f.write(text)
        f.close()
        self.addCleanup(os.unlink, f.name)
        return f.name

    def start(self, source, handler=None, lua_extra=None, other_source=None, workers=1,
              other_extra=None):
        self.origin = self.start_origin(handler)
        config = demo_config(self.origin, workers=workers)
        self.script_path = self.script(source)
        config["tenants"][0]["lua"] = dict({"script": self.script_path}, **(lua_extra or {}))
        other = dict(config["tenants"][0], name="other", hosts=["other.example"])
        other.pop("lua")
        if other_source:
            other["lua"] = dict({"script": self.script(other_source)}, **(other_extra or {}))
        config["tenants"].append(other)
        self.start_parapet(config)

    def req(self, path="/", host="demo.local", headers=(), timeout=5.0):
        with Client(self.parapet.port("http"), timeout=timeout) as c:
            return c.roundtrip("GET", path, host=host, headers=list(headers))

    def metrics(self) -> str:
        with Client(self.parapet.admin_port) as c:
            c.send(build_request("GET", "/metrics", host="admin"))
            return c.response().body.decode()

    def reload(self) -> None:
        with Client(self.parapet.admin_port) as c:
            c.send(build_request("POST", "/reload", host="admin",
                                 headers=[("Content-Length", "0")]))
            resp = c.response()
        self.assertEqual(resp.status, 200, resp.body)

    def eventually(self, probe, want, what, tries=60):
        """Workers adopt a new snapshot on their next loop turn: polls probe() (bounded)."""
        got = None
        for _ in range(tries):
            got = probe()
            if got == want:
                return
            time.sleep(0.05)
        self.fail(f"{what}: got {got!r}, want {want!r}")


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


class Status(LuaCase):

    def test_header_filter_status_is_what_the_client_gets(self):
        def origin(req):
            if req.path.startswith("/missing"):
                return Reply(404, body=b"not here")
            if req.path.startswith("/chunked"):
                return Reply(503, body=[b"part one, ", b"part two"], framing="chunked")
            return Reply(200, body=b"fine")
        self.start(r"""
return {
  header_filter = function()
    local was = ngx.status
    ngx.header["X-Was"] = tostring(was)
    if was == 404 then ngx.status = 200 end
    if was == 503 then ngx.status = ngx.HTTP_BAD_GATEWAY end
    if ngx.var.uri == "/bodiless" then ngx.status = 204 end
    ngx.header["X-Now"] = tostring(ngx.status)
  end,
}""", handler=origin)
        with Client(self.parapet.port("http")) as c:
            # Several on one connection: the framing stays right after each change.
            r = c.roundtrip("GET", "/missing", host="demo.local")
            self.assertEqual((r.status, r.reason, r.body), (200, "OK", b"not here"))
            self.assertEqual((r.header("X-Was"), r.header("X-Now")), ("404", "200"))
            r = c.roundtrip("GET", "/chunked", host="demo.local")
            self.assertEqual((r.status, r.body), (502, b"part one, part two"))
            self.assertEqual(r.reason, "Bad Gateway")
            self.assertEqual(r.header("X-Was"), "503")
            r = c.roundtrip("HEAD", "/missing", host="demo.local")
            self.assertEqual(r.status, 200)
            # A 200 cannot become 204 (its body follows): refused, the response goes on as is.
            r = c.roundtrip("GET", "/bodiless", host="demo.local")
            self.assertEqual((r.status, r.body), (200, b"fine"))
            self.assertIsNone(r.header("X-Now"))  # the handler stopped at the refused line
            r = c.roundtrip("GET", "/fine", host="demo.local")
            self.assertEqual((r.status, r.body, r.header("X-Now")), (200, b"fine", "200"))
        self.assertIsNotNone(self.parapet.wait_for_stderr(
            r"tenant=demo .*phase=header_filter lua error: .*a 200 response cannot become 204"))

    def test_generated_bodiless_answers_keep_the_connection_in_step(self):
        self.start(r"""
return {
  access = function()
    if ngx.var.uri == "/preflight" then
      ngx.header["Access-Control-Allow-Origin"] = "*"
      return ngx.exit(ngx.HTTP_NO_CONTENT)
    end
    if ngx.var.uri == "/teapot" then
      ngx.status = 418
      ngx.say("short and stout")
      return
    end
    if ngx.var.uri == "/interim" then
      ngx.status = 103
    end
  end,
}""")
        with Client(self.parapet.port("http")) as c:
            r = c.roundtrip("OPTIONS", "/preflight", host="demo.local")
            self.assertEqual((r.status, r.body), (204, b""))
            self.assertEqual(r.header("Access-Control-Allow-Origin"), "*")
            self.assertIsNone(r.header("Content-Length"))
            r = c.roundtrip("GET", "/teapot", host="demo.local")  # the next one parses
            self.assertEqual((r.status, r.body), (418, b"short and stout\n"))
            # A 1xx cannot be generated: the run fails with the tenant's status.
            self.assertError(c.roundtrip("GET", "/interim", host="demo.local"), 500, "lua.error")
        self.assertEqual(self.origin.request_count, 0)


class Reloaded(LuaCase):

    V1 = 'return { access = function() ngx.header["X-V"] = "1" end }'
    NEXT = r"""
return {
  access = function()
    if ngx.var.uri == "/deny" then return ngx.exit(403) end
    ngx.header["X-V"] = "%s"
  end,
}"""

    def test_a_reloaded_script_is_the_one_that_runs(self):
        self.start(self.V1)
        self.assertEqual(self.req("/").header("X-V"), "1")
        self.assertStatus(self.req("/deny"), 200)

        v2 = self.NEXT % "2"
        with open(self.script_path, "w") as f:
            f.write(v2)
        self.reload()
        self.eventually(lambda: self.req("/").header("X-V"), "2", "after POST /reload")
        self.assertEqual(self.req("/deny").status, 403)
        m = self.metrics()  # the probe that saw "2", and /deny
        self.assertEqual(metric(m, "parapet_lua_runs_total", tenant="demo",
                                version=version_of(v2), result="ok"), 2)

        v3 = self.NEXT % "3"
        with open(self.script_path, "w") as f:
            f.write(v3)
        os.kill(self.parapet.pid, signal.SIGHUP)
        self.assertIsNotNone(self.parapet.wait_for_stderr(r"reload: generation 3 active"))
        self.eventually(lambda: self.req("/").header("X-V"), "3", "after SIGHUP")
        self.assertEqual(self.req("/deny").status, 403)
        self.assertEqual(self.origin.request_count, 1 + 1 + 1 + 1)  # /, /deny, then / twice
        self.assertGreaterEqual(metric(self.metrics(), "parapet_lua_runs_total", tenant="demo",
                                       version=version_of(v3), result="ok"), 1)

    def test_reloads_do_not_pile_up_lua_states(self):
        self.start(self.V1, workers=2)
        for i in range(6):
            with open(self.script_path, "w") as f:
                f.write(self.NEXT % i)
            self.reload()
            self.eventually(lambda: self.req("/").header("X-V"), str(i), f"reload {i}")
            for _ in range(6):  # new connections: both workers take some
                self.assertEqual(self.req("/").header("X-V"), str(i))
        # One state per worker for the one scripted tenant: the old scripts' states went.
        self.assertLessEqual(metric(self.metrics(), "parapet_lua_states"), 2)


class Breaker(LuaCase):

    HOSTILE = r"""
return {
  access = function()
    if ngx.var.uri == "/loop" then while true do end end
    if ngx.var.uri == "/bomb" then local t = {} for i = 1, 1e9 do t[i] = i end end
    if ngx.var.uri == "/boom" then error("just an error") end
    ngx.header["X-Ran"] = "yes"
  end,
}"""

    def counts(self):
        m = self.metrics()
        version = version_of(self.HOSTILE)
        runs = sum(metric(m, "parapet_lua_runs_total", tenant="demo", version=version, result=r)
                   for r in ("ok", "failed"))
        return (runs, metric(m, "parapet_lua_breaker_trips_total", tenant="demo"),
                metric(m, "parapet_lua_breaker_skipped_total", tenant="demo"))

    def flood(self, path, n, host="demo.local"):
        return [self.req(path, host=host, timeout=10) for _ in range(n)]

    def test_a_script_that_keeps_being_stopped_stops_being_run(self):
        self.start(self.HOSTILE, lua_extra={"max_time": "20ms", "max_memory": "4MiB",
                                            "error_status": 503,
                                            "breaker": {"failures": 3, "cooldown": "1h"}})
        other = {"statuses": [], "done": threading.Event()}

        def other_tenant():
            for _ in range(2000):
                other["statuses"].append(self.req("/", host="other.example").status)
                if other["done"].is_set():
                    break

        t = threading.Thread(target=other_tenant)
        t.start()
        try:
            # Errors are cheap and do not count; two stops do not open it yet.
            self.assertEqual([r.status for r in self.flood("/boom", 4)], [503] * 4)
            self.assertEqual([r.status for r in self.flood("/loop", 2)], [503] * 2)
            self.assertEqual(self.req("/fine").header("X-Ran"), "yes")  # resets the count
            self.assertEqual(self.counts(), (7, 0, 0))
            # Three consecutive stops (CPU budget or memory cap): open.
            first = self.flood("/loop", 2) + self.flood("/bomb", 1)
            for r in first:
                self.assertError(r, 503, "lua.error")
            self.assertEqual(self.counts(), (10, 1, 0))
            # Open: nothing runs, for any request of the tenant; the outcome is the failure one.
            for path in ("/loop", "/bomb", "/fine") * 5:
                self.assertError(self.req(path), 503, "lua.breaker_open")
            self.assertEqual(self.counts(), (10, 1, 15))
            self.assertEqual([r.path for r in self.origin.requests if r.path != "/"], ["/fine"])
        finally:
            other["done"].set()
            t.join(30)
        self.assertGreater(len(other["statuses"]), 0)
        self.assertEqual(set(other["statuses"]), {200})
        self.parapet.wait_for_stderr("lua breaker open")
        trips = [ln for ln in self.parapet.stderr_lines() if "lua breaker open" in ln]
        self.assertEqual(len(trips), 1, trips)
        self.assertRegex(trips[0], rf"tenant=demo script=\S+ version={version_of(self.HOSTILE)} "
                                   r"lua breaker open: consecutive runs stopped")

    def test_after_the_cooldown_one_run_probes(self):
        self.start(self.HOSTILE, lua_extra={"max_time": "20ms",
                                            "breaker": {"failures": 2, "cooldown": "300ms"}})
        for r in self.flood("/loop", 2):
            self.assertError(r, 500, "lua.error")
        self.assertEqual(self.counts()[:2], (2, 1))
        # Keep asking for the runaway until the probe has run (and been stopped) once more.
        for _ in range(100):
            r = self.req("/loop")
            self.assertEqual(r.status, 500)
            if self.counts()[1] == 2:
                break
            time.sleep(0.05)
        self.assertEqual(self.counts()[:2], (3, 2))  # one probe run, one more trip
        self.assertIsNotNone(self.parapet.wait_for_stderr(
            r"tenant=demo .*lua breaker open: the probe run was stopped again"))
        # A request that lets the script succeed closes it again.
        for _ in range(100):
            r = self.req("/fine")
            if r.status == 200:
                break
            self.assertError(r, 500, "lua.breaker_open")
            time.sleep(0.05)
        self.assertEqual(r.header("X-Ran"), "yes")
        self.assertIsNotNone(self.parapet.wait_for_stderr(
            r"tenant=demo .*lua breaker closed: the probe run ended ok"))
        self.assertEqual([self.req("/fine").header("X-Ran") for _ in range(3)], ["yes"] * 3)

    def test_fail_open_tenant_skips_the_script_and_goes_on(self):
        self.start(self.HOSTILE, lua_extra={"max_time": "20ms", "on_error": "fail_open",
                                            "breaker": {"failures": 1, "cooldown": "1h"}})
        self.assertStatus(self.req("/loop"), 200)  # stopped, failed open: the origin answers
        for _ in range(3):
            r = self.req("/fine")
            self.assertStatus(r, 200)
            self.assertIsNone(r.header("X-Ran"))  # the script did not run
        self.assertEqual(self.counts(), (1, 1, 3))
        self.assertEqual(self.origin.request_count, 4)


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

    def others_keep_working(self, bad_requests=3, check=None):
        """Sends `bad_requests` hostile requests while another thread sends the other tenant's
        requests the whole time (from before the first hostile one until after the last).
        Asserts that every other request succeeded (and passes `check`) and that other requests
        were in flight while hostile ones were; returns the hostile responses."""
        other_spans, problems = [], []
        started, bad_done = threading.Event(), threading.Event()

        def other():
            after = 0
            for _ in range(5000):  # bounded; ends a few requests after the hostile ones
                t0 = time.monotonic()
                try:
                    r = self.req("/", host="other.example", timeout=10)
                    if r.status != 200 or (check and not check(r)):
                        problems.append(r)
                except OSError as e:
                    problems.append(repr(e))
                other_spans.append((t0, time.monotonic()))
                started.set()
                if bad_done.is_set():
                    after += 1
                    if after >= 3:
                        break

        t = threading.Thread(target=other)
        t.start()
        bad, bad_spans = [], []
        try:
            self.assertTrue(started.wait(10), "the other tenant's traffic did not start")
            for _ in range(bad_requests):
                t0 = time.monotonic()
                bad.append(self.req("/bad", timeout=10))
                bad_spans.append((t0, time.monotonic()))
        finally:
            bad_done.set()
            t.join(60)
        self.assertFalse(t.is_alive())
        self.assertEqual(problems, [])
        overlapping = sum(1 for (o0, o1) in other_spans
                          if any(o0 < b1 and o1 > b0 for (b0, b1) in bad_spans))
        self.assertGreater(overlapping, 0, "no request of the other tenant overlapped")
        return bad

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
                statuses = [r.status for r in self.others_keep_working()]
                self.assertEqual(statuses, [500] * 3)
                self.assertLess(time.monotonic() - t0, 10)
                self.assertStatus(self.req("/fine"), 200)  # the state still serves
                self.parapet.stop()
        self.assertFalse(os.path.exists("/tmp/parapet-pwned"))

    # The other tenant: its own globals, string metatable and shared dict, all checked on every
    # one of its responses while the hostile tenant runs.
    OTHER = r"""
COUNTER = 0
return {
  access = function()
    COUNTER = COUNTER + 1
    local d = ngx.shared.cache
    if d:get("owner") == nil then d:set("owner", "other") end
    ngx.header["X-Lower"] = ("X"):lower()
    ngx.header["X-Upper"] = string.upper("y")
    ngx.header["X-Counter"] = tostring(COUNTER)
    ngx.header["X-Owner"] = tostring(d:get("owner"))
    ngx.header["X-Private"] = tostring(ngx.shared.private ~= nil)
  end,
}"""

    def test_hostile_tenant_cannot_touch_the_other_or_stall_it(self):
        cases = {
            # A huge plain find: linear, but charged to the budget.
            "huge plain find": (r"""local s = ("a"):rep(8 * 1024 * 1024)
                                 local p = ("a"):rep(4096) .. "b"
                                 while true do s:find(p, 1, true) end""", 500),
            "pathological match": (r"""string.match(("a"):rep(40), ("a*"):rep(20) .. "b")""",
                                   500),
            "other tenant's globals and string metatable": (r"""
                COUNTER = -1000000
                rawset(_G, "COUNTER", "pwned")
                getmetatable("").__index = { lower = function() return "pwned" end }
                string.upper = function() return "pwned" end
                ngx.say(("x"):lower(), " ", tostring(COUNTER))
                return ngx.exit(200)""", 200),
            "other tenant's shared dicts": (r"""
                ngx.shared.cache:flush_all()
                ngx.shared.cache:set("owner", "hostile")
                ngx.shared.private:set("owner", "hostile")""", 500),
        }
        for name, (source, want) in cases.items():
            with self.subTest(name=name):
                self.start(r"""
return {
  access = function()
    if ngx.var.uri ~= "/bad" then return end
""" + source + r"""
  end,
}""", lua_extra={"max_time": "50ms", "shared_dicts": {"cache": "64KiB"}},
                           other_source=self.OTHER,
                           other_extra={"shared_dicts": {"cache": "64KiB", "private": "64KiB"}})
                counters = []

                def check(r):
                    counters.append(int(r.header("X-Counter")))
                    return ((r.header("X-Lower"), r.header("X-Upper"), r.header("X-Owner"),
                             r.header("X-Private")) == ("x", "Y", "other", "true")
                            and counters == list(range(1, len(counters) + 1)))

                # Four: one short of the breaker (default 5), so the state is tried after.
                bad = self.others_keep_working(bad_requests=4, check=check)
                self.assertEqual([r.status for r in bad], [want] * 4)
                if want == 200:
                    self.assertEqual(bad[0].body, b"pwned pwned\n")  # its own state only
                self.assertStatus(self.req("/fine"), 200)
                self.parapet.stop()

    def test_a_stop_is_logged_with_tenant_version_and_where(self):
        source = r"""
return {
  access = function()
    if ngx.var.uri == "/loop" then
      local n = 0
      while true do n = n + 1 end
    end
    if ngx.var.uri == "/grow" then
      local t = {}
      for i = 1, 1e9 do t[i] = i end
    end
  end,
}"""
        self.start(source, lua_extra={"max_time": "20ms", "max_memory": "2MiB"})
        self.assertEqual(self.req("/loop").status, 500)
        self.assertEqual(self.req("/grow").status, 500)
        v = version_of(source)
        for status, line in (("timeout", 6), ("out_of_memory", 10)):
            with self.subTest(status=status):
                pattern = (rf"tenant=demo script=(\S+) version={v} phase=access lua {status}: "
                           rf"[^\n]*\n(?:[^\n]*\n){{0,3}}?[^\n]*\1:{line}\b")
                # The response may reach us before the harness has read the log lines: wait
                # for the traceback's last line, then match the whole entry.
                self.parapet.wait_for_stderr(rf"\.lua:{line}\b")
                text = self.parapet.stderr_text()
                self.assertIsNotNone(re.search(pattern, text), text[-3000:])

    def test_max_instructions_is_per_tenant(self):
        # A clock budget that cannot be what stops it: the instruction budget must.
        self.start("return { access = function() while true do end end }",
                   lua_extra={"max_time": "1s", "max_instructions": 200000},
                   other_source=r"""
return { access = function()
  local x = 0
  for i = 1, 100000 do x = x + i end   -- ~500k instructions: within the default budget
  ngx.header["X-Sum"] = tostring(x)
end }""")
        self.assertEqual(self.req("/").status, 500)
        self.assertIsNotNone(self.parapet.wait_for_stderr(
            r"tenant=demo .*lua timeout: cpu budget exceeded \(1000000 us or 200000 instructions"))
        self.assertEqual(self.req("/", host="other.example").header("X-Sum"), "5000050000")

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
