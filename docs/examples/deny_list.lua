-- access_by_lua_file: refuse known scanners by User-Agent and blocked client addresses, with
-- a JSON error body that names the request.

local cjson = require "cjson"

local BLOCKED_AGENTS = [[(?:sqlmap|nikto|masscan|zgrab|nmap scripting engine)]]
local BLOCKED_ADDRS = {
  ["192.0.2.10"] = "abuse report 2024-113",
  ["198.51.100.7"] = "credential stuffing",
}
local BLOCKED_NETS = { "^203%.0%.113%." }  -- a whole /24, as a Lua pattern

local function deny(reason)
  ngx.log(ngx.WARN, "denied ", ngx.var.remote_addr, ": ", reason)
  ngx.status = ngx.HTTP_FORBIDDEN
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Cache-Control"] = "no-store"
  ngx.say(cjson.encode({
    error = "forbidden",
    reason = reason,
    request = ngx.var.request_id,
  }))
  return ngx.exit(ngx.HTTP_FORBIDDEN)
end

local ua = ngx.var.http_user_agent
if not ua or ua == "" then
  return deny("a User-Agent is required")
end

local m = ngx.re.match(ua, BLOCKED_AGENTS, "ijo")
if m then
  return deny("scanner: " .. string.lower(m[0]))
end

local addr = ngx.var.remote_addr
-- Behind a trusted load balancer the client is the last X-Forwarded-For entry.
local xff = ngx.req.get_headers()["x-forwarded-for"]
if type(xff) == "table" then
  xff = xff[#xff]
end
if xff then
  local last = ngx.re.match(xff, [[([0-9a-f.:]+)\s*$]], "jo")
  if last then
    addr = last[1]
  end
end

if BLOCKED_ADDRS[addr] then
  return deny("address blocked: " .. BLOCKED_ADDRS[addr])
end
for _, net in ipairs(BLOCKED_NETS) do
  if string.find(addr, net) then
    return deny("network blocked")
  end
end
