// URL path normalization and percent-decoding, shared by the proxy (http.request.uri.path is
// the normalized path) and the rules functions.
//
// Pure functions: thread-safe, no state. The `out` forms reuse the caller's buffer so a
// per-request std::string keeps its capacity.
#pragma once

#include <string>
#include <string_view>

namespace parapet::filters {

// Normalizes a URL path (no query) in this order:
//  1. percent-escapes of unreserved characters (ALPHA DIGIT - . _ ~) are decoded ("%41" -> "A");
//     every other escape is kept encoded with uppercase hex ("%2f" -> "%2F", so a "%2F" is never
//     turned into a path separator); a '%' not followed by two hex digits is kept as is;
//  2. runs of '/' are merged into one (done before dot removal, so "/a//../b" is "/b", as nginx
//     does, and an empty segment cannot hide a "..");
//  3. dot segments are removed (RFC 3986 5.2.4); ".." above the root stays at the root.
// An empty input stays empty (origin-form targets always start with '/'). Output replaces `out`.
void normalize_path(std::string_view path, std::string& out);
std::string normalize_path(std::string_view path);

// Decodes %HH escapes (and '+' as a space when `plus_as_space`); invalid escapes are copied as
// they are. Appends to `out`.
void percent_decode(std::string_view in, bool plus_as_space, std::string& out);

}  // namespace parapet::filters
