-- access_by_lua_file: a JSON API front door. Writes must send JSON; the body is not read here
-- (that is the origin's job), but the method, the Content-Type and a JSON query filter are
-- checked, and every refusal is a JSON document.

local cjson = require "cjson"

local function fail(status, code, detail)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json; charset=utf-8"
  ngx.print(cjson.encode({ error = { status = status, code = code, detail = detail } }))
  return ngx.exit(status)
end

local method = ngx.req.get_method()
local allowed = { GET = true, HEAD = true, POST = true, PUT = true, DELETE = true }
if not allowed[method] then
  ngx.header["Allow"] = "GET, HEAD, POST, PUT, DELETE"
  return fail(ngx.HTTP_NOT_ALLOWED, "method_not_allowed", method .. " is not allowed")
end

if method == "POST" or method == "PUT" then
  local ctype = ngx.var.http_content_type or ""
  if not ngx.re.find(ctype, [[^application/(?:[a-z.+-]+\+)?json\b]], "ijo") then
    return fail(415, "unsupported_media_type", "send application/json")
  end
end

-- ?filter={"field":"value"} must be a JSON object of strings.
local args = ngx.req.get_uri_args()
if args.filter then
  local ok, filter = pcall(cjson.decode, args.filter)
  if not ok or type(filter) ~= "table" then
    return fail(ngx.HTTP_BAD_REQUEST, "bad_filter", "filter must be a JSON object")
  end
  local n = 0
  for k, v in pairs(filter) do
    if type(v) ~= "string" then
      return fail(ngx.HTTP_BAD_REQUEST, "bad_filter", "filter." .. tostring(k) .. " must be a string")
    end
    n = n + 1
  end
  ngx.req.set_header("X-Filter-Fields", n)
end
