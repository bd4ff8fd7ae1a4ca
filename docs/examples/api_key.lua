-- access_by_lua_file: API keys signed by the platform, with a per-key request quota.
--
-- A key is "<client id>.<signature>", the signature being the base64 of
-- HMAC-SHA1(secret, client id), so no key table is needed on the edge. Each key may make
-- QUOTA requests per WINDOW seconds, counted in the shared dict "api_quota" (declared with
-- `lua_shared_dict api_quota 1m;` in nginx, `shared_dicts: {api_quota: 1MiB}` in parapet).
-- Revoked client ids are kept in the shared dict "api_revoked" by an operator.

local SECRET = "change-me: the platform's signing secret"
local QUOTA = 5
local WINDOW = 60

local function reject(status, message)
  ngx.status = status
  ngx.header["Content-Type"] = "text/plain"
  if status == ngx.HTTP_UNAUTHORIZED then
    ngx.header["WWW-Authenticate"] = 'ApiKey realm="api"'
  end
  ngx.say(message)
  return ngx.exit(status)
end

local key = ngx.var.http_x_api_key or ngx.var.arg_api_key
if not key or key == "" then
  return reject(ngx.HTTP_UNAUTHORIZED, "missing API key")
end

local client, signature = key:match("^([%w_-]+)%.([%w+/=]+)$")
if not client or ngx.encode_base64(ngx.hmac_sha1(SECRET, client)) ~= signature then
  return reject(ngx.HTTP_FORBIDDEN, "invalid API key")
end

local revoked = ngx.shared.api_revoked
if revoked and revoked:get(client) then
  return reject(ngx.HTTP_FORBIDDEN, "revoked API key")
end

-- The window starts with a key's first request and lasts WINDOW seconds (init_ttl).
local used, err = ngx.shared.api_quota:incr(client, 1, 0, WINDOW)
if not used then
  ngx.log(ngx.ERR, "api_quota: ", err)
  return ngx.exit(ngx.HTTP_INTERNAL_SERVER_ERROR)
end
if used > QUOTA then
  ngx.header["Retry-After"] = WINDOW
  return reject(ngx.HTTP_TOO_MANY_REQUESTS, "quota exceeded")
end

-- The origin learns who called; the key itself goes no further.
ngx.req.set_header("X-Api-Client", client)
ngx.req.set_header("X-Api-Remaining", QUOTA - used)
ngx.req.clear_header("X-Api-Key")
