-- header_filter_by_lua_file: security headers on every response, and no server banners.

local h = ngx.header

h["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
h["X-Content-Type-Options"] = "nosniff"
h["Referrer-Policy"] = "strict-origin-when-cross-origin"
h["Server"] = nil
h["X-Powered-By"] = nil

local ctype = h["Content-Type"] or ""
if string.find(ctype, "text/html", 1, true) then
  h["X-Frame-Options"] = "DENY"
  h["Content-Security-Policy"] = "default-src 'self'; frame-ancestors 'none'"
end

-- Error pages from the origin must not be cached by shared caches.
if ngx.status >= 500 then
  h["Cache-Control"] = "no-store"
end
