-- access_by_lua_file: a typical edge access check (bench/lua_cost.sh runs it unchanged in
-- parapet and in nginx with lua-nginx-module): header checks, a regex, an ngx.shared counter.
local h = ngx.req.get_headers()
local ua = h["user-agent"]
if not ua or ua:find("sqlmap", 1, true) then return ngx.exit(403) end
if h["x-forwarded-host"] and h["x-forwarded-host"] ~= ngx.var.host then return ngx.exit(400) end
if ngx.re.find(ngx.var.uri, [[^/(?:wp-admin|phpmyadmin|\.git)]], "jo") then return ngx.exit(404) end
local hits = ngx.shared.hits:incr(ngx.var.remote_addr, 1, 0)
if hits and hits > 1e12 then return ngx.exit(429) end
ngx.req.set_header("X-Edge-Checked", "1")
