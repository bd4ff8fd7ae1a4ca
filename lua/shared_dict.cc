#include "lua/shared_dict.h"

#include <cmath>

namespace parapet::lua {

bool SharedDict::get(std::string_view key, DictValue* out, bool* stale) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(std::string(key));
  if (stale) *stale = false;
  if (it == map_.end()) return false;
  if (expired(it->second, Clock::now())) {
    erase_locked(it);
    return false;
  }
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  *out = it->second.value;
  return true;
}

void SharedDict::erase_locked(std::unordered_map<std::string, Entry>::iterator it) {
  used_ -= it->second.bytes;
  lru_.erase(it->second.lru);
  map_.erase(it);
}

SharedDict::SetResult SharedDict::store_locked(std::string_view key, const DictValue& v, double ttl,
                                               bool* forcible, bool may_evict) {
  if (forcible) *forcible = false;
  auto it = map_.find(std::string(key));
  if (v.type == DictValue::Type::Nil) {
    if (it != map_.end()) erase_locked(it);
    return SetResult::Stored;
  }
  size_t need = cost(key, v);
  if (need > capacity_) return SetResult::NoMemory;
  const size_t replaced = it != map_.end() ? it->second.bytes : 0;
  // Make room: expired entries first, then least recently used.
  Clock::time_point now = Clock::now();
  if (used_ - replaced + need > capacity_) {
    for (auto i = map_.begin(); i != map_.end();) {
      auto next = std::next(i);
      if (expired(i->second, now) && i != it) erase_locked(i);
      i = next;
    }
  }
  // safe_set / safe_add: no live entry is evicted (the old value of the key stays on failure).
  if (!may_evict && used_ - replaced + need > capacity_) return SetResult::NoMemory;
  if (it != map_.end()) erase_locked(it);
  while (used_ + need > capacity_ && !lru_.empty()) {
    erase_locked(map_.find(lru_.back()));
    if (forcible) *forcible = true;
  }
  lru_.emplace_front(key);
  Entry e;
  e.value = v;
  e.bytes = need;
  e.lru = lru_.begin();
  if (ttl > 0) {
    e.expires =
        now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(ttl));
  }
  map_.emplace(std::string(key), std::move(e));
  used_ += need;
  return SetResult::Stored;
}

SharedDict::SetResult SharedDict::set(std::string_view key, const DictValue& v, double ttl,
                                      bool* forcible) {
  std::lock_guard<std::mutex> lock(mu_);
  return store_locked(key, v, ttl, forcible, true);
}

SharedDict::SetResult SharedDict::safe_set(std::string_view key, const DictValue& v, double ttl,
                                           bool* forcible) {
  std::lock_guard<std::mutex> lock(mu_);
  return store_locked(key, v, ttl, forcible, false);
}

SharedDict::SetResult SharedDict::add_locked(std::string_view key, const DictValue& v, double ttl,
                                             bool* forcible, bool may_evict) {
  if (forcible) *forcible = false;
  auto it = map_.find(std::string(key));
  if (it != map_.end()) {
    if (!expired(it->second, Clock::now())) return SetResult::Exists;
    erase_locked(it);
  }
  return store_locked(key, v, ttl, forcible, may_evict);
}

SharedDict::SetResult SharedDict::add(std::string_view key, const DictValue& v, double ttl,
                                      bool* forcible) {
  std::lock_guard<std::mutex> lock(mu_);
  return add_locked(key, v, ttl, forcible, true);
}

SharedDict::SetResult SharedDict::safe_add(std::string_view key, const DictValue& v, double ttl,
                                           bool* forcible) {
  std::lock_guard<std::mutex> lock(mu_);
  return add_locked(key, v, ttl, forcible, false);
}

SharedDict::SetResult SharedDict::replace(std::string_view key, const DictValue& v, double ttl,
                                          bool* forcible) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(std::string(key));
  if (it == map_.end()) return SetResult::NotFound;
  if (expired(it->second, Clock::now())) {
    erase_locked(it);
    return SetResult::NotFound;
  }
  return store_locked(key, v, ttl, forcible, true);
}

SharedDict::SetResult SharedDict::incr(std::string_view key, double delta, const double* init,
                                       double init_ttl, double* result, bool* forcible) {
  std::lock_guard<std::mutex> lock(mu_);
  if (forcible) *forcible = false;
  auto it = map_.find(std::string(key));
  if (it != map_.end() && expired(it->second, Clock::now())) {
    erase_locked(it);
    it = map_.end();
  }
  if (it == map_.end()) {
    if (!init) return SetResult::NotFound;
    DictValue v;
    v.type = DictValue::Type::Number;
    v.number = *init + delta;
    *result = v.number;
    return store_locked(key, v, init_ttl, forcible, true);
  }
  if (it->second.value.type != DictValue::Type::Number) return SetResult::Exists;
  it->second.value.number += delta;
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  *result = it->second.value.number;
  return SetResult::Stored;
}

void SharedDict::remove(std::string_view key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = map_.find(std::string(key));
  if (it != map_.end()) erase_locked(it);
}

void SharedDict::flush_all() {
  std::lock_guard<std::mutex> lock(mu_);
  map_.clear();
  lru_.clear();
  used_ = 0;
}

size_t SharedDict::bytes_used() const {
  std::lock_guard<std::mutex> lock(mu_);
  return used_;
}

size_t SharedDict::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return map_.size();
}

SharedDict* SharedDictStore::define(std::string_view tenant, std::string_view name,
                                    size_t capacity_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  auto key = std::make_pair(std::string(tenant), std::string(name));
  auto it = dicts_.find(key);
  if (it != dicts_.end()) return it->second.get();
  auto d = std::make_unique<SharedDict>(capacity_bytes);
  SharedDict* p = d.get();
  dicts_.emplace(std::move(key), std::move(d));
  return p;
}

SharedDict* SharedDictStore::find(std::string_view tenant, std::string_view name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = dicts_.find(std::make_pair(std::string(tenant), std::string(name)));
  return it == dicts_.end() ? nullptr : it->second.get();
}

}  // namespace parapet::lua
