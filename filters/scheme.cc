#include "filters/scheme.h"

#include <arpa/inet.h>

#include <cstring>

namespace parapet::filters {
namespace {

constexpr FieldInfo kFields[kFieldCount] = {
    {"http.host", Type::String, Phase::Request},
    {"http.request.method", Type::String, Phase::Request},
    {"http.request.uri", Type::String, Phase::Request},
    {"http.request.uri.path", Type::String, Phase::Request},
    {"http.request.uri.path.extension", Type::String, Phase::Request},
    {"http.request.uri.query", Type::String, Phase::Request},
    {"http.request.uri.args", Type::MapString, Phase::Request},
    {"http.request.uri.args.names", Type::ArrayString, Phase::Request},
    {"http.request.uri.args.values", Type::ArrayString, Phase::Request},
    {"http.request.full_uri", Type::String, Phase::Request},
    {"http.request.headers", Type::MapString, Phase::Request},
    {"http.request.headers.names", Type::ArrayString, Phase::Request},
    {"http.request.headers.values", Type::ArrayString, Phase::Request},
    {"http.request.cookies", Type::MapString, Phase::Request},
    {"http.cookie", Type::String, Phase::Request},
    {"http.user_agent", Type::String, Phase::Request},
    {"http.referer", Type::String, Phase::Request},
    {"http.x_forwarded_for", Type::String, Phase::Request},
    {"http.request.version", Type::String, Phase::Request},
    {"http.request.timestamp.sec", Type::Int, Phase::Request},
    {"ip.src", Type::Ip, Phase::Request},
    {"ssl", Type::Bool, Phase::Request},
    {"raw.http.request.uri", Type::String, Phase::Request},
    {"raw.http.request.uri.path", Type::String, Phase::Request},
    {"raw.http.request.uri.query", Type::String, Phase::Request},
    {"http.response.code", Type::Int, Phase::Response},
    {"http.response.headers", Type::MapString, Phase::Response},
    {"http.response.headers.names", Type::ArrayString, Phase::Response},
    {"http.response.headers.values", Type::ArrayString, Phase::Response},
    {"parapet.tenant", Type::String, Phase::Request},
};

}  // namespace

const char* type_name(Type t) {
  switch (t) {
    case Type::Bool:
      return "Bool";
    case Type::Int:
      return "Int";
    case Type::String:
      return "String";
    case Type::Ip:
      return "IP";
    case Type::ArrayString:
      return "Array<String>";
    case Type::MapString:
      return "Map<Array<String>>";
  }
  return "?";
}

const FieldInfo& field_info(Field f) { return kFields[static_cast<size_t>(f)]; }

std::optional<Field> find_field(std::string_view name) {
  for (size_t i = 0; i < kFieldCount; ++i) {
    if (kFields[i].name == name) return static_cast<Field>(i);
  }
  return std::nullopt;
}

bool IpAddr::parse(std::string_view text, IpAddr* out) {
  if (text.empty() || text.size() > 45) return false;
  char buf[64];
  if (!text.empty()) std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  IpAddr a;
  if (text.find(':') == std::string_view::npos) {
    if (inet_pton(AF_INET, buf, a.bytes.data()) != 1) return false;
    a.v4 = true;
  } else {
    if (inet_pton(AF_INET6, buf, a.bytes.data()) != 1) return false;
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(a.bytes.data(), kMapped, 12) == 0) {
      std::memmove(a.bytes.data(), a.bytes.data() + 12, 4);
      std::memset(a.bytes.data() + 4, 0, 12);
      a.v4 = true;
    }
  }
  *out = a;
  return true;
}

IpAddr IpAddr::from_v4(uint32_t v) {
  IpAddr a;
  a.v4 = true;
  a.bytes[0] = static_cast<uint8_t>(v >> 24);
  a.bytes[1] = static_cast<uint8_t>(v >> 16);
  a.bytes[2] = static_cast<uint8_t>(v >> 8);
  a.bytes[3] = static_cast<uint8_t>(v);
  return a;
}

uint32_t IpAddr::v4_value() const {
  return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) |
         uint32_t{bytes[3]};
}

unsigned __int128 IpAddr::v6_value() const {
  unsigned __int128 v = 0;
  for (uint8_t b : bytes) v = (v << 8) | b;
  return v;
}

std::string IpAddr::to_string() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(v4 ? AF_INET : AF_INET6, bytes.data(), buf, sizeof(buf));
  return buf;
}

}  // namespace parapet::filters
