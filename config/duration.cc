#include <arpa/inet.h>
#include <netdb.h>

#include <cstring>

#include "config/config.h"

namespace parapet::config {

bool parse_duration_ms(const std::string& text, uint64_t* out_ms) {
  if (text.empty()) return false;
  size_t i = 0;
  uint64_t n = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    if (n > 1'000'000'000ull) return false;
    n = n * 10 + static_cast<uint64_t>(text[i] - '0');
    ++i;
  }
  if (i == 0) return false;
  const std::string unit = text.substr(i);
  uint64_t mult;
  if (unit.empty() || unit == "s") {
    mult = 1000;
  } else if (unit == "ms") {
    mult = 1;
  } else if (unit == "m") {
    mult = 60'000;
  } else if (unit == "h") {
    mult = 3'600'000;
  } else {
    return false;
  }
  *out_ms = n * mult;
  return true;
}

bool parse_size(const std::string& text, uint64_t* out) {
  size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  if (i == 0 || i > 15) return false;
  uint64_t n = std::stoull(text.substr(0, i));
  std::string unit = text.substr(i);
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  uint64_t mult = 1;
  if (unit.empty() || unit == "b") {
    mult = 1;
  } else if (unit == "k" || unit == "kb" || unit == "kib") {
    mult = 1ull << 10;
  } else if (unit == "m" || unit == "mb" || unit == "mib") {
    mult = 1ull << 20;
  } else if (unit == "g" || unit == "gb" || unit == "gib") {
    mult = 1ull << 30;
  } else {
    return false;
  }
  *out = n * mult;
  return true;
}

bool parse_address(const std::string& input, Address* out, std::string* why) {
  std::string text = input;
  const char* default_port = nullptr;
  out->tls = false;
  if (text.rfind("https://", 0) == 0) {
    text = text.substr(8);
    out->tls = true;
    default_port = "443";
  } else if (text.rfind("http://", 0) == 0) {
    text = text.substr(7);
    default_port = "80";
  }
  if (!text.empty() && text.back() == '/') text.pop_back();
  std::string host, port;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos || (close + 1 < text.size() && text[close + 1] != ':') ||
        (close + 1 >= text.size() && default_port == nullptr)) {
      *why = "expected [ipv6]:port";
      return false;
    }
    host = text.substr(1, close - 1);
    port = close + 1 < text.size() ? text.substr(close + 2) : default_port;
  } else {
    size_t colon = text.rfind(':');
    if (colon == 0 || text.empty() || (colon == std::string::npos && default_port == nullptr)) {
      *why = "expected host:port";
      return false;
    }
    host = colon == std::string::npos ? text : text.substr(0, colon);
    port = colon == std::string::npos ? default_port : text.substr(colon + 1);
  }
  if (host.find_first_of("/?#@ ") != std::string::npos) {
    *why = "expected host:port";
    return false;
  }
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) > 65535) {
    *why = "bad port '" + port + "'";
    return false;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    *why = "cannot resolve '" + host + "': " + gai_strerror(rc);
    return false;
  }
  std::memcpy(&out->sa, res->ai_addr, res->ai_addrlen);
  out->sa_len = res->ai_addrlen;
  freeaddrinfo(res);
  out->text = input;
  out->host = host;
  out->port = static_cast<uint16_t>(std::stoul(port));
  return true;
}

}  // namespace parapet::config
