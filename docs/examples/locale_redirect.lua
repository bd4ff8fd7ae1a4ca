-- access_by_lua_file: header-based redirects.
--   * Phones (by User-Agent) go to the mobile site, same path and query.
--   * A request for "/" goes to the visitor's language, from a "lang" cookie or else the first
--     supported language in Accept-Language, defaulting to English.

local MOBILE_HOST = "m.example.com"
local SUPPORTED = { en = true, de = true, fr = true }

local ua = ngx.var.http_user_agent or ""
if ngx.var.host ~= MOBILE_HOST and ngx.re.find(ua, [[(iphone|android.+mobile|windows phone)]], "ijo") then
  return ngx.redirect(ngx.var.scheme .. "://" .. MOBILE_HOST .. ngx.var.request_uri, ngx.HTTP_MOVED_TEMPORARILY)
end

if ngx.var.uri ~= "/" then
  return
end

local lang = ngx.var.cookie_lang
if not (lang and SUPPORTED[lang]) then
  lang = "en"
  local accept = ngx.var.http_accept_language or ""
  for tag in string.gmatch(accept, "([%a-]+)[^,]*") do
    local primary = string.lower(string.sub(tag, 1, 2))
    if SUPPORTED[primary] then
      lang = primary
      break
    end
  end
end

local target = "/" .. lang .. "/"
if ngx.var.args then
  target = target .. "?" .. ngx.var.args
end
ngx.header["Vary"] = "Accept-Language, Cookie"
return ngx.redirect(target, ngx.HTTP_MOVED_TEMPORARILY)
