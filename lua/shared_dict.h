// ngx.shared.DICT: per-tenant dictionaries shared by every worker's states. Owned by the process
// (outside any lua_State), keyed by tenant + dict name, each bounded in bytes with LRU eviction
// and per-key TTL. Thread-safe (one mutex per dict; calls are short and never call out).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace parapet::lua {

struct DictValue {
  enum class Type : uint8_t { Nil, Boolean, Number, String } type = Type::Nil;
  bool boolean = false;
  double number = 0;
  std::string string;
  uint32_t flags = 0;
};

class SharedDict {
 public:
  using Clock = std::chrono::steady_clock;
  explicit SharedDict(size_t capacity_bytes) : capacity_(capacity_bytes) {}

  enum class SetResult : uint8_t { Stored, Exists, NotFound, NoMemory };
  // ttl <= 0: no expiry. `forcible` is set when live entries were evicted to make room.
  // safe_set / safe_add never evict a live entry: NoMemory instead (expired ones may go).
  bool get(std::string_view key, DictValue* out, bool* stale = nullptr);
  SetResult set(std::string_view key, const DictValue& v, double ttl_sec, bool* forcible);
  SetResult safe_set(std::string_view key, const DictValue& v, double ttl_sec, bool* forcible);
  SetResult add(std::string_view key, const DictValue& v, double ttl_sec, bool* forcible);
  SetResult safe_add(std::string_view key, const DictValue& v, double ttl_sec, bool* forcible);
  SetResult replace(std::string_view key, const DictValue& v, double ttl_sec, bool* forcible);
  // incr: NotFound when absent and no init; "not a number" reported as Exists.
  SetResult incr(std::string_view key, double delta, const double* init, double init_ttl,
                 double* result, bool* forcible);
  void remove(std::string_view key);
  void flush_all();
  size_t bytes_used() const;
  size_t capacity() const { return capacity_; }
  size_t size() const;

 private:
  struct Entry {
    DictValue value;
    Clock::time_point expires{};  // epoch: never
    std::list<std::string>::iterator lru;
    size_t bytes = 0;
  };
  static size_t cost(std::string_view key, const DictValue& v) {
    return key.size() + v.string.size() + 64;
  }
  SetResult store_locked(std::string_view key, const DictValue& v, double ttl, bool* forcible,
                         bool may_evict);
  SetResult add_locked(std::string_view key, const DictValue& v, double ttl, bool* forcible,
                       bool may_evict);
  void erase_locked(std::unordered_map<std::string, Entry>::iterator it);
  bool expired(const Entry& e, Clock::time_point now) const {
    return e.expires != Clock::time_point{} && e.expires <= now;
  }

  mutable std::mutex mu_;
  size_t capacity_;
  size_t used_ = 0;
  std::unordered_map<std::string, Entry> map_;
  std::list<std::string> lru_;  // front: most recently used
};

class SharedDictStore {
 public:
  // Defines (or keeps, when it exists: reloads keep their contents) tenant's dict `name`.
  SharedDict* define(std::string_view tenant, std::string_view name, size_t capacity_bytes);
  // The tenant's dict, or null. A tenant only ever reaches the dicts defined under its name.
  SharedDict* find(std::string_view tenant, std::string_view name) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<SharedDict>, std::less<>> dicts_;
};

}  // namespace parapet::lua
