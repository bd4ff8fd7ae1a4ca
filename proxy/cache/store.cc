#include "proxy/cache/store.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <new>

namespace parapet::cache {

// ---- Body ----

struct Body::Segment {
  std::atomic<uint32_t> len{0};
  uint32_t cap = 0;
  std::atomic<Segment*> next{nullptr};
  char* data() { return reinterpret_cast<char*>(this + 1); }
  const char* data() const { return reinterpret_cast<const char*>(this + 1); }
};

namespace {
constexpr uint32_t kMinSegment = 4096;
constexpr uint32_t kMaxSegment = 256 * 1024;
// What an entry costs beyond the bytes we can count exactly: the hash-map node, the variant
// vector slot, the queue node, the shared_ptr control block and allocator slack.
constexpr uint64_t kEntryOverhead = 256;
}  // namespace

Body::~Body() {
  Segment* s = first_.load(std::memory_order_relaxed);
  while (s != nullptr) {
    Segment* n = s->next.load(std::memory_order_relaxed);
    s->~Segment();
    ::operator delete(s);
    s = n;
  }
}

size_t Body::segment_overhead() { return sizeof(Segment); }

Body::Reader Body::reader() const {
  Reader r;
  r.body_ = this;
  return r;
}

std::string_view Body::Reader::next() {
  if (seg_ == nullptr) {
    seg_ = body_->first_.load(std::memory_order_acquire);
    off_ = 0;
    if (seg_ == nullptr) return {};
  }
  for (;;) {
    uint32_t len = seg_->len.load(std::memory_order_acquire);
    if (off_ < len) {
      std::string_view v(seg_->data() + off_, len - off_);
      pos_ += v.size();
      off_ = len;
      return v;
    }
    const Segment* nx = seg_->next.load(std::memory_order_acquire);
    if (nx == nullptr) return {};
    // The writer links a new segment only once this one is full; re-read its length after
    // seeing the link so its last bytes are not skipped.
    if (seg_->len.load(std::memory_order_acquire) > off_) continue;
    seg_ = nx;
    off_ = 0;
  }
}

bool Body::Reader::skip(uint64_t n) {
  while (n > 0) {
    if (seg_ == nullptr) {
      seg_ = body_->first_.load(std::memory_order_acquire);
      off_ = 0;
      if (seg_ == nullptr) return false;
    }
    uint32_t len = seg_->len.load(std::memory_order_acquire);
    if (off_ < len) {
      uint64_t take = std::min<uint64_t>(n, len - off_);
      off_ += static_cast<uint32_t>(take);
      pos_ += take;
      n -= take;
      continue;
    }
    const Segment* nx = seg_->next.load(std::memory_order_acquire);
    if (nx == nullptr) return false;
    if (seg_->len.load(std::memory_order_acquire) > off_) continue;
    seg_ = nx;
    off_ = 0;
  }
  return true;
}

std::string Body::to_string() const {
  std::string out;
  Reader r = reader();
  for (std::string_view v = r.next(); !v.empty(); v = r.next()) out.append(v);
  return out;
}

size_t Body::room() const {
  return last_ == nullptr ? 0 : last_->cap - last_->len.load(std::memory_order_relaxed);
}

void Body::write(const char* p, size_t n) {
  uint32_t len = last_->len.load(std::memory_order_relaxed);
  assert(n <= last_->cap - len);
  memcpy(last_->data() + len, p, n);
  last_->len.store(len + static_cast<uint32_t>(n), std::memory_order_release);
  size_.store(size_.load(std::memory_order_relaxed) + n, std::memory_order_release);
}

void Body::add_segment(uint32_t cap) {
  void* mem = ::operator new(sizeof(Segment) + cap);
  auto* s = new (mem) Segment;
  s->cap = cap;
  if (last_ == nullptr) {
    first_.store(s, std::memory_order_release);
  } else {
    last_->next.store(s, std::memory_order_release);
  }
  last_ = s;
}

const char* abort_reason_name(AbortReason r) {
  switch (r) {
    case AbortReason::None:
      return "none";
    case AbortReason::Origin:
      return "origin";
    case AbortReason::NotStorable:
      return "not-storable";
    case AbortReason::TooBig:
      return "too-big";
    case AbortReason::NoRoom:
      return "no-room";
    case AbortReason::Cancelled:
      return "cancelled";
  }
  return "?";
}

// ---- Entry ----

bool Entry::matches(const CacheKey& k, Fields req) const {
  return has_head() && k.extras == key_.extras && variant_matches(vary_, variant_, req);
}

Entry::State Entry::subscribe(FillObserver* o) const {
  std::lock_guard lk(obs_mu_);
  observers_.push_back(o);
  observer_count_.fetch_add(1, std::memory_order_release);
  return state();
}

void Entry::unsubscribe(FillObserver* o) const {
  std::lock_guard lk(obs_mu_);
  auto it = std::find(observers_.begin(), observers_.end(), o);
  if (it == observers_.end()) return;
  observers_.erase(it);
  observer_count_.fetch_sub(1, std::memory_order_release);
}

void Entry::notify() const {
  if (observer_count_.load(std::memory_order_acquire) == 0) return;
  std::lock_guard lk(obs_mu_);
  for (FillObserver* o : observers_) o->on_entry_update(*this);
}

// ---- Fill ----

Fill::~Fill() {
  if (!done_) abort(AbortReason::Cancelled);
}

bool Fill::set_head(uint16_t status, Fields headers, const EntryMeta& meta, Fields request,
                    bool filter) {
  Entry& e = *entry_;
  if (!vary_names(headers, &e.vary_)) return false;
  const CacheControl cc = parse_cache_control(headers);
  std::string date = meta.has_date ? std::string() : format_http_date(meta.date_value);
  // Size the buffer first: fields_ points into it.
  size_t total = date.size() + 4;
  size_t count = date.empty() ? 0 : 1;
  auto keep = [&](const Field& f) {
    // Without a valid Date (meta.has_date false), an invalid one is replaced, not kept beside
    // the one added below.
    if (!meta.has_date && ieq(f.name, "date")) return false;
    return !filter || !excluded_from_storage(f.name, headers, cc);
  };
  for (const Field& f : headers) {
    if (!keep(f)) continue;
    total += f.name.size() + f.value.size();
    ++count;
  }
  e.head_buf_.reserve(total);
  std::vector<std::pair<size_t, size_t>> offs;  // name offset, value offset
  offs.reserve(count);
  auto add = [&](std::string_view n, std::string_view v) {
    offs.emplace_back(e.head_buf_.size(), e.head_buf_.size() + n.size());
    e.head_buf_.append(n).append(v);
  };
  for (const Field& f : headers) {
    if (keep(f)) add(f.name, f.value);
  }
  if (!date.empty()) add("Date", date);
  e.fields_.reserve(offs.size());
  for (size_t i = 0; i < offs.size(); ++i) {
    size_t end = i + 1 < offs.size() ? offs[i + 1].first : e.head_buf_.size();
    e.fields_.push_back(
        {std::string_view(e.head_buf_).substr(offs[i].first, offs[i].second - offs[i].first),
         std::string_view(e.head_buf_).substr(offs[i].second, end - offs[i].second)});
  }
  encode_variant(e.vary_, request, &e.variant_);
  for_each_element(headers, "cache-tag", [&](std::string_view t) {
    e.tags_.emplace_back(t);
    return true;
  });
  e.meta_ = meta;
  e.meta_.status = status;
  return true;
}

namespace {
uint64_t head_estimate(const Entry& e) {
  uint64_t n = sizeof(Entry) + sizeof(Body) + kEntryOverhead;
  n += 2 * (e.key().primary.size() + e.key().extras.size());  // the entry's and the map's copy
  n += e.headers().size() * sizeof(Field);
  for (const Field& f : e.headers()) n += f.name.size() + f.value.size();
  for (const std::string& v : e.vary()) n += v.size() + sizeof(std::string);
  for (const std::string& t : e.tags()) n += t.size() + sizeof(std::string);
  return n;
}
}  // namespace

bool Fill::begin(uint16_t status, Fields response, const EntryMeta& meta, Fields request,
                 std::optional<uint64_t> content_length) {
  if (done_ || entry_->has_head()) return false;
  if (content_length && *content_length > store_->opt_.max_object_bytes) {
    abort(AbortReason::TooBig);
    return false;
  }
  if (!set_head(status, response, meta, request, true)) {
    abort(AbortReason::NotStorable);
    return false;
  }
  const uint64_t est = head_estimate(*entry_) + entry_->variant_.size();
  if (est > store_->opt_.max_object_bytes || !store_->charge(*entry_, est)) {
    abort(AbortReason::NoRoom);
    return false;
  }
  if (content_length) {
    next_segment_ = static_cast<uint32_t>(std::clamp<uint64_t>(*content_length, 1, kMaxSegment));
  }
  entry_->head_set_.store(true, std::memory_order_release);
  std::vector<std::shared_ptr<Entry>> dropped;
  store_->fill_begin(*this, request, &dropped);
  entry_->notify();
  return true;
}

bool Fill::begin_revalidated(const Entry& stored, Fields merged, const EntryMeta& meta,
                             Fields request) {
  if (done_ || entry_->has_head()) return false;
  if (!set_head(stored.status(), merged, meta, request, true)) {
    abort(AbortReason::NotStorable);
    return false;
  }
  entry_->body_ = stored.body_;
  const uint64_t body = stored.body_->size();
  const uint64_t est = head_estimate(*entry_) + entry_->variant_.size() + body +
                       (body / kMinSegment + 1) * Body::segment_overhead();
  if (!store_->charge(*entry_, est)) {
    abort(AbortReason::NoRoom);
    return false;
  }
  entry_->head_set_.store(true, std::memory_order_release);
  std::vector<std::shared_ptr<Entry>> dropped;
  store_->fill_begin(*this, request, &dropped);
  store_->fill_finish(*this);
  done_ = true;
  entry_->notify();
  return true;
}

bool Fill::append(const char* p, size_t n) {
  if (done_ || !entry_->has_head()) return false;
  Body& body = *entry_->body_;
  if (body.size() + n > store_->opt_.max_object_bytes) {
    abort(AbortReason::TooBig);
    return false;
  }
  while (n > 0) {
    size_t room = body.room();
    if (room == 0) {
      uint32_t cap = next_segment_ != 0 ? next_segment_ : kMinSegment;
      cap = std::max<uint32_t>(cap, static_cast<uint32_t>(std::min<size_t>(n, kMaxSegment)));
      next_segment_ = std::min<uint32_t>(std::max(cap, kMinSegment) * 2, kMaxSegment);
      if (!store_->charge(*entry_, cap + Body::segment_overhead())) {
        abort(AbortReason::NoRoom);
        return false;
      }
      body.add_segment(cap);
      continue;
    }
    size_t k = std::min(room, n);
    body.write(p, k);
    p += k;
    n -= k;
  }
  entry_->notify();
  return true;
}

void Fill::finish() {
  if (done_) return;
  if (!entry_->has_head()) {
    abort(AbortReason::Cancelled);
    return;
  }
  done_ = true;
  store_->fill_finish(*this);
  entry_->notify();
}

void Fill::abort(AbortReason why) {
  if (done_) return;
  done_ = true;
  store_->fill_abort(*this, why);
  entry_->notify();
}

// ---- Store ----

Store::Store(StoreOptions opt) : opt_(opt) {
  uint32_t n = 1;
  while (n < std::max<uint32_t>(opt_.shards, 1)) n <<= 1;
  opt_.shards = n;
  opt_.max_object_bytes = std::min(opt_.max_object_bytes, opt_.capacity_bytes);
  shards_.reserve(n);
  for (uint32_t i = 0; i < n; ++i) shards_.push_back(std::make_unique<Shard>());
}

Store::~Store() = default;

CacheStats& Store::tstats(Shard& s, std::string_view tenant) {
  auto it = s.stats.find(tenant);
  if (it == s.stats.end()) it = s.stats.emplace(std::string(tenant), CacheStats{}).first;
  return it->second;
}

bool Store::reserve(uint64_t n, size_t home) {
  if (n > opt_.capacity_bytes) return false;
  for (;;) {
    uint64_t u = used_.load(std::memory_order_relaxed);
    while (u + n <= opt_.capacity_bytes) {
      if (used_.compare_exchange_weak(u, u + n, std::memory_order_relaxed)) return true;
    }
    if (!evict_one(home)) return false;
  }
}

bool Store::charge(Entry& e, uint64_t n) {
  const size_t home = shard_index(e.key_.hash);
  if (!reserve(n, home)) return false;
  Shard& s = *shards_[home];
  {
    std::lock_guard lk(s.mu);
    if (!e.idx_.detached) {
      e.idx_.charged += n;
      e.charged_hint_.store(e.idx_.charged, std::memory_order_relaxed);
      tstats(s, e.key_.tenant()).bytes += n;
      return true;
    }
  }
  // Purged while filling: it still feeds its readers but no longer counts as stored.
  release(n);
  return true;
}

bool Store::evict_one(size_t home) {
  const size_t n = shards_.size();
  for (size_t i = 0; i < n; ++i) {
    Shard& s = *shards_[(home + i) & (n - 1)];
    std::shared_ptr<Entry> victim;
    {
      std::lock_guard lk(s.mu);
      victim = pick_victim(s);
    }
    if (victim) {
      if (opt_.lower != nullptr) opt_.lower->demote(std::move(victim));
      return true;  // the victim's memory goes when its last reader lets go, outside the lock
    }
  }
  return false;
}

void Store::enqueue(Shard& s, Entry& e) {
  auto& x = e.idx_;
  x.freq = 0;
  const bool to_main = opt_.eviction == StoreOptions::Eviction::Lru || ghost_has(s, e.key_.hash);
  if (to_main) {
    s.main.push_front(&e);
    x.pos = s.main.begin();
    x.queue = Entry::Index::Queue::Main;
    s.main_bytes += x.charged;
    ++s.main_count;
  } else {
    s.small.push_front(&e);
    x.pos = s.small.begin();
    x.queue = Entry::Index::Queue::Small;
    s.small_bytes += x.charged;
    ++s.small_count;
  }
}

void Store::dequeue(Shard& s, Entry& e) {
  auto& x = e.idx_;
  if (x.queue == Entry::Index::Queue::Small) {
    s.small.erase(x.pos);
    s.small_bytes -= x.charged;
    --s.small_count;
  } else if (x.queue == Entry::Index::Queue::Main) {
    s.main.erase(x.pos);
    s.main_bytes -= x.charged;
    --s.main_count;
  }
  x.queue = Entry::Index::Queue::None;
}

void Store::ghost_add(Shard& s, uint64_t h) {
  s.ghost.push_front(h);
  ++s.ghost_count[h];
  // The ghost remembers about as many keys as the main queue can hold (the paper's sizing); with
  // byte-sized entries that is estimated by the shard's resident object count.
  const size_t cap = std::max<size_t>(s.main_count + s.small_count, 16);
  while (s.ghost.size() > cap) {
    auto it = s.ghost_count.find(s.ghost.back());
    if (it != s.ghost_count.end() && --it->second == 0) s.ghost_count.erase(it);
    s.ghost.pop_back();
  }
}

bool Store::ghost_has(const Shard& s, uint64_t h) const { return s.ghost_count.count(h) != 0; }

// `e` by value: callers pass elements of the very vectors this erases from.
void Store::unlink(Shard& s, Bucket* b, std::shared_ptr<Entry> e) {
  auto& x = e->idx_;
  if (b != nullptr) {
    if (x.indexed) std::erase(b->variants, e);
    if (x.pending) std::erase(b->pending, e);
  }
  dequeue(s, *e);
  CacheStats& st = tstats(s, e->key_.tenant());
  if (x.indexed) --st.objects;
  st.bytes -= x.charged;
  release(x.charged);
  x.charged = 0;
  e->charged_hint_.store(0, std::memory_order_relaxed);
  x.indexed = x.pending = false;
  x.detached = true;
}

std::shared_ptr<Entry> Store::pick_victim(Shard& s) {
  using Q = Entry::Index::Queue;
  const bool lru = opt_.eviction == StoreOptions::Eviction::Lru;
  for (;;) {
    Entry* e = nullptr;
    const bool from_small =
        !lru && !s.small.empty() &&
        (s.main.empty() ||
         static_cast<double>(s.small_bytes) >=
             opt_.small_fraction * static_cast<double>(s.small_bytes + s.main_bytes));
    if (from_small) {
      e = s.small.back();
      if (e->idx_.freq > 0) {
        // Used while in the small queue: promote to main (lazy promotion).
        e->idx_.freq = 0;
        s.small_bytes -= e->idx_.charged;
        s.main_bytes += e->idx_.charged;
        --s.small_count;
        ++s.main_count;
        s.main.splice(s.main.begin(), s.small, e->idx_.pos);
        e->idx_.queue = Q::Main;
        continue;
      }
      // A one-hit wonder: out quickly, remembered in the ghost.
      ghost_add(s, e->key_.hash);
    } else if (!s.main.empty()) {
      e = s.main.back();
      if (!lru && e->idx_.freq > 0) {
        --e->idx_.freq;
        s.main.splice(s.main.begin(), s.main, e->idx_.pos);
        continue;
      }
    } else {
      return nullptr;
    }
    auto it = s.map.find(e->key_.primary);
    assert(it != s.map.end());
    Bucket& b = it->second;
    std::shared_ptr<Entry> sp;
    for (const auto& v : b.variants) {
      if (v.get() == e) sp = v;
    }
    assert(sp);
    unlink(s, &b, sp);
    ++tstats(s, sp->key_.tenant()).evictions;
    if (b.variants.empty() && b.pending.empty()) s.map.erase(it);
    return sp;
  }
}

Store::Lookup Store::start_fill(Shard& s, Bucket& b, const CacheKey& key, FillObserver* observer) {
  CacheStats& st = tstats(s, key.tenant());
  for (const auto& p : b.pending) {
    if (p->key_.extras != key.extras) continue;
    if (p->idx_.waiters >= opt_.max_waiters) {
      ++st.passes;
      return Lookup{Lookup::Kind::Pass, nullptr, nullptr};
    }
    ++p->idx_.waiters;
    if (observer != nullptr) p->subscribe(observer);
    ++st.coalesced;
    return Lookup{Lookup::Kind::Wait, p, nullptr};
  }
  auto e = std::make_shared<Entry>(key);
  e->idx_.pending = true;
  b.pending.push_back(e);
  ++st.misses;
  return Lookup{Lookup::Kind::Miss, nullptr, std::unique_ptr<Fill>(new Fill(this, e))};
}

Store::Lookup Store::lookup(const CacheKey& key, Fields request, FillObserver* observer,
                            bool fill) {
  Shard& s = shard_of(key.hash);
  std::lock_guard lk(s.mu);
  auto it = s.map.find(key.primary);
  if (it == s.map.end()) {
    if (!fill) {
      ++tstats(s, key.tenant()).misses;
      return Lookup{Lookup::Kind::Miss, nullptr, nullptr};
    }
    it = s.map.emplace(key.primary, Bucket{}).first;
  }
  Bucket& b = it->second;
  for (const auto& e : b.variants) {
    if (!e->matches(key, request)) continue;
    if (opt_.eviction == StoreOptions::Eviction::Lru) {
      if (e->idx_.queue == Entry::Index::Queue::Main)
        s.main.splice(s.main.begin(), s.main, e->idx_.pos);
    } else if (e->idx_.freq < 3) {
      ++e->idx_.freq;
    }
    ++tstats(s, key.tenant()).hits;
    if (observer != nullptr && e->state() == Entry::State::Streaming) e->subscribe(observer);
    return Lookup{Lookup::Kind::Hit, e, nullptr};
  }
  const bool others = !b.variants.empty();
  if (!fill) {
    ++tstats(s, key.tenant()).misses;
    Lookup r;
    r.kind = Lookup::Kind::Miss;
    r.other_variants = others;
    return r;
  }
  Lookup r = start_fill(s, b, key, observer);
  r.other_variants = others;
  return r;
}

Store::Lookup Store::revalidate(const CacheKey& key) {
  Shard& s = shard_of(key.hash);
  std::lock_guard lk(s.mu);
  auto it = s.map.find(key.primary);
  if (it == s.map.end()) it = s.map.emplace(key.primary, Bucket{}).first;
  Bucket& b = it->second;
  for (const auto& p : b.pending) {
    if (p->key_.extras != key.extras) continue;
    return Lookup{Lookup::Kind::Wait, p, nullptr};  // a refresh is in flight: not ours to wait
  }
  auto e = std::make_shared<Entry>(key);
  e->idx_.pending = true;
  b.pending.push_back(e);
  return Lookup{Lookup::Kind::Miss, nullptr, std::unique_ptr<Fill>(new Fill(this, e))};
}

void Store::fill_begin(Fill& f, Fields request, std::vector<std::shared_ptr<Entry>>* dropped) {
  Entry& e = *f.entry_;
  Shard& s = shard_of(e.key_.hash);
  std::lock_guard lk(s.mu);
  auto it = s.map.find(e.key_.primary);
  if (it != s.map.end() && e.idx_.pending) {
    std::erase(it->second.pending, f.entry_);
    e.idx_.pending = false;
  }
  if (!e.idx_.detached && it != s.map.end()) {
    Bucket& b = it->second;
    // The new response supersedes every stored variant this request would have selected
    // (RFC 9111 4.1: use the most recent); it goes first so it is found first.
    for (size_t i = 0; i < b.variants.size();) {
      if (b.variants[i]->matches(e.key_, request)) {
        dropped->push_back(b.variants[i]);
        unlink(s, &b, b.variants[i]);
      } else {
        ++i;
      }
    }
    b.variants.insert(b.variants.begin(), f.entry_);
    e.idx_.indexed = true;
    CacheStats& st = tstats(s, e.key_.tenant());
    ++st.objects;
    ++st.stores;
  } else if (!e.idx_.detached) {
    // The bucket went away without detaching us: cannot happen, but never index blindly.
    CacheStats& st = tstats(s, e.key_.tenant());
    st.bytes -= e.idx_.charged;
    release(e.idx_.charged);
    e.idx_.charged = 0;
    e.idx_.detached = true;
  }
  e.state_.store(Entry::State::Streaming, std::memory_order_release);
}

void Store::fill_finish(Fill& f) {
  Entry& e = *f.entry_;
  Shard& s = shard_of(e.key_.hash);
  std::lock_guard lk(s.mu);
  if (e.idx_.indexed && !e.idx_.detached) enqueue(s, e);
  e.state_.store(Entry::State::Complete, std::memory_order_release);
}

void Store::fill_abort(Fill& f, AbortReason why) {
  Entry& e = *f.entry_;
  Shard& s = shard_of(e.key_.hash);
  std::shared_ptr<Entry> keep = f.entry_;
  std::lock_guard lk(s.mu);
  auto it = s.map.find(e.key_.primary);
  Bucket* b = it == s.map.end() ? nullptr : &it->second;
  unlink(s, b, keep);
  if (b != nullptr && b->variants.empty() && b->pending.empty()) s.map.erase(it);
  ++tstats(s, e.key_.tenant()).aborts;
  e.abort_reason_.store(why, std::memory_order_release);
  e.state_.store(Entry::State::Aborted, std::memory_order_release);
}

size_t Store::purge_key(const CacheKey& key) {
  Shard& s = shard_of(key.hash);
  std::vector<std::shared_ptr<Entry>> dropped;  // freed after the lock
  std::lock_guard lk(s.mu);
  auto it = s.map.find(key.primary);
  if (it == s.map.end()) return 0;
  Bucket& b = it->second;
  dropped = b.variants;
  dropped.insert(dropped.end(), b.pending.begin(), b.pending.end());
  for (const auto& e : dropped) unlink(s, &b, e);
  s.map.erase(it);
  tstats(s, key.tenant()).purges += dropped.size();
  return dropped.size();
}

size_t Store::purge_url(std::string_view tenant, std::string_view url) {
  return purge_key(url_key(tenant, url));
}

template <class Pred>
size_t Store::purge_where(std::string_view tenant, Pred&& pred) {
  std::string prefix(tenant);
  prefix.push_back('\x1f');
  size_t n = 0;
  for (auto& sp : shards_) {
    Shard& s = *sp;
    std::vector<std::shared_ptr<Entry>> dropped;
    {
      std::lock_guard lk(s.mu);
      for (auto it = s.map.begin(); it != s.map.end();) {
        if (!std::string_view(it->first).starts_with(prefix)) {
          ++it;
          continue;
        }
        Bucket& b = it->second;
        std::vector<std::shared_ptr<Entry>> hit;
        for (const auto& e : b.variants) {
          if (pred(*e)) hit.push_back(e);
        }
        for (const auto& e : b.pending) {
          if (pred(*e)) hit.push_back(e);
        }
        for (const auto& e : hit) unlink(s, &b, e);
        dropped.insert(dropped.end(), hit.begin(), hit.end());
        if (b.variants.empty() && b.pending.empty()) {
          it = s.map.erase(it);
        } else {
          ++it;
        }
      }
      if (!dropped.empty()) tstats(s, tenant).purges += dropped.size();
    }
    n += dropped.size();
  }
  return n;
}

size_t Store::purge_prefix(std::string_view tenant, std::string_view url_prefix) {
  CacheKey k = url_key(tenant, url_prefix);  // normalises scheme and host the same way
  std::string_view p = k.url();
  return purge_where(tenant, [&](const Entry& e) { return e.url().starts_with(p); });
}

size_t Store::purge_tag(std::string_view tenant, std::string_view tag) {
  // Fills without a head have no tags yet: they are left alone.
  return purge_where(tenant, [&](const Entry& e) {
    if (!e.has_head()) return false;
    for (const std::string& t : e.tags()) {
      if (t == tag) return true;
    }
    return false;
  });
}

size_t Store::purge_tenant(std::string_view tenant) {
  return purge_where(tenant, [](const Entry&) { return true; });
}

void Store::recount(const CacheKey& key, Result from, Result to) {
  auto slot = [](CacheStats& st, Result r) -> uint64_t& {
    switch (r) {
      case Result::Hit:
        return st.hits;
      case Result::Stale:
        return st.stale;
      case Result::Revalidated:
        return st.revalidated;
      case Result::Miss:
        break;
    }
    return st.misses;
  };
  Shard& s = shard_of(key.hash);
  std::lock_guard lk(s.mu);
  CacheStats& st = tstats(s, key.tenant());
  uint64_t& f = slot(st, from);
  if (f > 0) --f;  // a shard's counts are summed: never wrap one below zero
  ++slot(st, to);
}

namespace {
void add(CacheStats* a, const CacheStats& b) {
  a->hits += b.hits;
  a->misses += b.misses;
  a->coalesced += b.coalesced;
  a->passes += b.passes;
  a->stale += b.stale;
  a->revalidated += b.revalidated;
  a->stores += b.stores;
  a->evictions += b.evictions;
  a->purges += b.purges;
  a->aborts += b.aborts;
  a->objects += b.objects;
  a->bytes += b.bytes;
}
}  // namespace

CacheStats Store::stats(std::string_view tenant) const {
  CacheStats total;
  for (const auto& sp : shards_) {
    std::lock_guard lk(sp->mu);
    auto it = sp->stats.find(tenant);
    if (it != sp->stats.end()) add(&total, it->second);
  }
  return total;
}

std::map<std::string, CacheStats> Store::all_stats() const {
  std::map<std::string, CacheStats> out;
  for (const auto& sp : shards_) {
    std::lock_guard lk(sp->mu);
    for (const auto& [t, st] : sp->stats) add(&out[t], st);
  }
  return out;
}

size_t Store::object_count() const {
  size_t n = 0;
  for (const auto& sp : shards_) {
    std::lock_guard lk(sp->mu);
    for (const auto& [t, st] : sp->stats) n += st.objects;
  }
  return n;
}

}  // namespace parapet::cache
