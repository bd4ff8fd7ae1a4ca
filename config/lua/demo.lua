-- The demo tenant's script (config/parapet.yaml): OpenResty-style phases, run in parapet's
-- sandbox (docs/lua.md). Try:
--   curl -i -H 'Host: demo.local' http://127.0.0.1:8080/hello/world
--   curl -i -H 'Host: demo.local' http://127.0.0.1:8080/          # X-Visits grows
return {
  access = function()
    -- Answer /hello/NAME from the edge, without the origin.
    local m = ngx.re.match(ngx.var.uri, "^/hello/([a-z0-9-]+)$")
    if m then
      ngx.header["Content-Type"] = "text/plain"
      ngx.say("hello, ", m[1], ", from parapet's Lua")
      return ngx.exit(200)
    end
    -- Count visits in a dictionary shared by every worker, tell the origin and the client.
    local visits = ngx.shared.visits:incr("all", 1, 0)
    ngx.req.set_header("X-Visits", tostring(visits))
    ngx.ctx.visits = visits
  end,
  header_filter = function()
    if ngx.ctx.visits then
      ngx.header["X-Visits"] = tostring(ngx.ctx.visits)
    end
  end,
}
