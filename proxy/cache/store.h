// The shared HTTP cache store: one per process, used by every worker thread.
//
// Shape
//   Index    shards (by primary-key hash), each a mutex + hash map primary key -> Bucket (the
//            URL's variants and its fills in progress) + the shard's eviction queues. A lookup
//            holds one shard lock for a hash-map find, a variant comparison and a shared_ptr
//            copy; bodies are never copied under a lock.
//   Entry    a stored response: refcounted (`std::shared_ptr<const Entry>`), immutable once its
//            head is set, its Body append-only. A reader keeps its Entry alive: eviction or
//            purge only unlinks it from the index.
//   Body     a chain of segments written by one filler thread and read by any number of
//            readers concurrently (each segment's length is published with release/acquire).
//   Bytes    one global budget (`capacity_bytes`) counting everything an entry holds (key,
//            headers, body segments, a fixed overhead estimate). It is reserved before memory is
//            allocated (an atomic compare-exchange, evicting first when needed), so the
//            accounted total never exceeds the capacity.
//   Eviction S3-FIFO per shard (small FIFO ~10% of the shard's bytes, main FIFO with a 2-bit
//            frequency, ghost FIFO of key hashes); plain LRU can be chosen for comparison. A
//            reservation evicts from its own shard first, then from the others in turn, taking
//            one shard lock at a time.
//
// Request flow (see also the sketch at the end of this header)
//   lookup()  Hit   a variant matching the request (complete, or still streaming: read what is
//                   there, the observer is subscribed for the rest). Freshness is the caller's
//                   call: decide(entry->meta(), ...).
//             Wait  a fill of this key is in progress and its head is not known yet; the
//                   observer is subscribed. When notified: state Streaming + matches(request)
//                   -> read it like a hit; otherwise (Aborted, or another variant) look up again
//                   or go to the origin.
//             Miss  nothing usable and nobody fetching: the caller is the filler and owns the
//                   returned Fill.
//             Pass  go to the origin without storing (too many waiters on this key).
//   An entry becomes visible to lookups when its head is set (Fill::begin), while its body is
//   still streaming; it joins the eviction queues (and can be evicted) once finished.
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "proxy/cache/freshness.h"
#include "proxy/cache/headers.h"
#include "proxy/cache/key.h"

namespace parapet::cache {

class Entry;
class Store;

// Told about a fill's progress: head set (Streaming), body appended, Complete, Aborted.
//
// Contract: runs on the thread that made the change (the filler's worker, or a thread that
// purged or aborted), with the entry's observer mutex held. It must be quick and must not call
// into the Store or subscribe/unsubscribe: a worker records that its exchange has news and
// wakes its own loop with uv_async_send(), then reads the entry from its own thread. Several
// updates may arrive as one wake-up: always read everything that is available.
class FillObserver {
 public:
  virtual ~FillObserver() = default;
  virtual void on_entry_update(const Entry& e) = 0;
};

// Append-only body: one writer, many concurrent readers.
class Body {
 public:
  Body() = default;
  Body(const Body&) = delete;
  Body& operator=(const Body&) = delete;
  ~Body();

  struct Segment;
  // A read position. next() returns the bytes available now after the position and advances;
  // an empty view means "nothing more yet" (or the end, once the entry is complete). Views stay
  // valid while the Entry (or the Body) is alive.
  class Reader {
   public:
    std::string_view next();
    // Moves forward by n bytes that are already available (Range requests). Returns false when
    // fewer are available.
    bool skip(uint64_t n);
    uint64_t offset() const { return pos_; }

   private:
    friend class Body;
    const Body* body_ = nullptr;
    const Segment* seg_ = nullptr;
    uint32_t off_ = 0;
    uint64_t pos_ = 0;
  };
  Reader reader() const;
  uint64_t size() const { return size_.load(std::memory_order_acquire); }
  // Copies the whole available body (tests and small objects).
  std::string to_string() const;

  // Writer side (the filler thread only).
  // Room left in the last segment.
  size_t room() const;
  // Copies up to room() bytes and publishes them.
  void write(const char* p, size_t n);
  // Appends a new empty segment of `cap` bytes (already accounted by the caller).
  void add_segment(uint32_t cap);
  static size_t segment_overhead();

 private:
  std::atomic<Segment*> first_{nullptr};
  Segment* last_ = nullptr;  // writer only
  std::atomic<uint64_t> size_{0};
};

enum class AbortReason : uint8_t { None, Origin, NotStorable, TooBig, NoRoom, Cancelled };
const char* abort_reason_name(AbortReason r);

class Entry {
 public:
  enum class State : uint8_t { Pending, Streaming, Complete, Aborted };

  State state() const { return state_.load(std::memory_order_acquire); }
  AbortReason abort_reason() const { return abort_reason_.load(std::memory_order_acquire); }
  // Everything below but key/tenant/url is valid once state() has been seen != Pending
  // (after an abort, only if the entry reached Streaming before).
  bool has_head() const { return head_set_.load(std::memory_order_acquire); }
  uint16_t status() const { return meta_.status; }
  Fields headers() const { return fields_; }
  const EntryMeta& meta() const { return meta_; }
  const Body& body() const { return *body_; }
  const std::vector<std::string>& vary() const { return vary_; }
  const std::vector<std::string>& tags() const { return tags_; }
  std::string_view tenant() const { return key_.tenant(); }
  std::string_view url() const { return key_.url(); }
  const CacheKey& key() const { return key_; }
  // This stored response can answer a request with this key and these fields (extras and
  // Vary, RFC 9111 4.1).
  bool matches(const CacheKey& k, Fields req) const;
  // Bytes this entry is accounted for (its estimate, for stats and tests).
  uint64_t accounted_bytes() const { return charged_hint_.load(std::memory_order_relaxed); }

  // Observers (see FillObserver). subscribe() returns the state at the time of subscribing, so
  // nothing is missed in between.
  State subscribe(FillObserver* o) const;
  void unsubscribe(FillObserver* o) const;

  // Not for callers: made by the Store.
  Entry(CacheKey key) : key_(std::move(key)) {}

 private:
  friend class Store;
  friend class Fill;
  void notify() const;

  const CacheKey key_;
  std::atomic<State> state_{State::Pending};
  std::atomic<AbortReason> abort_reason_{AbortReason::None};
  std::atomic<bool> head_set_{false};
  // Set once by the filler before head_set_/state_ are published.
  EntryMeta meta_;
  std::string head_buf_;
  std::vector<Field> fields_;
  std::vector<std::string> vary_;
  std::string variant_;  // encode_variant(vary_, request)
  std::vector<std::string> tags_;
  std::shared_ptr<Body> body_ = std::make_shared<Body>();
  std::atomic<uint64_t> charged_hint_{0};

  mutable std::mutex obs_mu_;
  mutable std::vector<FillObserver*> observers_;
  mutable std::atomic<uint32_t> observer_count_{0};

  // Index state: guarded by the shard mutex of key_.hash.
  struct Index {
    enum class Queue : uint8_t { None, Small, Main } queue = Queue::None;
    std::list<Entry*>::iterator pos;
    uint8_t freq = 0;
    bool indexed = false;   // in its bucket's variants
    bool pending = false;   // in its bucket's pending list
    bool detached = false;  // purged/evicted/aborted: never indexed again, bytes not counted
    uint32_t waiters = 0;
    uint64_t charged = 0;  // bytes counted in the store's total
  };
  mutable Index idx_;
};

// The filler's handle on a fill (one thread: the worker fetching from the origin). Dropping it
// without finish() aborts the fill.
class Fill {
 public:
  ~Fill();
  Fill(const Fill&) = delete;
  Fill& operator=(const Fill&) = delete;

  // The origin's response head, already judged storable (storable()) with its meta
  // (make_meta()). `request` is the client request (for Vary). `content_length` is the
  // announced body size, or nullopt. Returns false when the store refuses it (Vary: *, larger
  // than max_object_bytes, no room): the fill is then aborted and the response passes through.
  bool begin(uint16_t status, Fields response, const EntryMeta& meta, Fields request,
             std::optional<uint64_t> content_length);
  // Revalidation answered 304: the new entry takes `merged` headers (merge_304()) and shares the
  // stored entry's body; it is complete at once and replaces the stored one.
  bool begin_revalidated(const Entry& stored, Fields merged, const EntryMeta& meta, Fields request);
  // Body bytes from the origin, in order. False: the fill was aborted (too big, no room); stop
  // calling and pass the rest through.
  bool append(const char* p, size_t n);
  void finish();
  void abort(AbortReason why);

  const std::shared_ptr<Entry>& entry() const { return entry_; }
  bool done() const { return done_; }

 private:
  friend class Store;
  Fill(Store* s, std::shared_ptr<Entry> e) : store_(s), entry_(std::move(e)) {}
  bool set_head(uint16_t status, Fields headers, const EntryMeta& meta, Fields request,
                bool filter);

  Store* store_;
  std::shared_ptr<Entry> entry_;
  uint32_t next_segment_ = 0;
  bool done_ = false;
};

// Seam for a lower tier (disk): the memory index offers it each complete entry it evicts, outside
// any lock. A lower tier would keep its own index and answer memory misses; nothing here calls it
// otherwise. nullptr: memory only.
class LowerTier {
 public:
  virtual ~LowerTier() = default;
  virtual void demote(std::shared_ptr<const Entry> e) = 0;
};

struct StoreOptions {
  uint64_t capacity_bytes = 256ull << 20;
  uint64_t max_object_bytes = 16ull << 20;  // larger responses pass through
  uint32_t shards = 16;                     // rounded up to a power of two
  uint32_t max_waiters = 1024;              // per key in flight; more: Pass
  enum class Eviction : uint8_t { S3Fifo, Lru } eviction = Eviction::S3Fifo;
  double small_fraction = 0.10;  // S3-FIFO small queue share
  LowerTier* lower = nullptr;
};

// Per-tenant counters. Kept per shard and written under the shard mutex the operation already
// holds (no extra atomics on the hot path); stats() sums the shards, taking each lock briefly.
//
// Lookups, each counted once by how the request was answered: hits (a fresh stored response),
// stale (a stale stored response served without validation: max-stale,
// stale-while-revalidate, stale-if-error), revalidated (a stale stored response validated by
// the origin with a 304, then served from the cache), misses (the origin's response: no stored
// response, another variant, or a stored one the request could not use), coalesced (waited for
// another request's fill), passes (too many waiters: straight to the origin, unstored).
// lookup() counts a Hit as a hit; a caller that ends up answering otherwise moves that count
// with recount().
struct CacheStats {
  uint64_t hits = 0, misses = 0, coalesced = 0, passes = 0, stale = 0, revalidated = 0;
  uint64_t stores = 0, evictions = 0, purges = 0, aborts = 0;
  uint64_t objects = 0, bytes = 0;
};

class Store {
 public:
  explicit Store(StoreOptions opt);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  struct Lookup {
    enum class Kind : uint8_t { Hit, Wait, Miss, Pass } kind = Kind::Pass;
    std::shared_ptr<const Entry> entry;  // Hit, Wait
    std::unique_ptr<Fill> fill;          // Miss (null for a lookup without fill)
    bool other_variants = false;         // Miss: the URL has stored variants, none matching
  };
  // `observer` (may be null) is subscribed to a pending or streaming entry returned by Wait or
  // Hit; the caller unsubscribes when done with it (or on its own timeout). `fill` false: only
  // stored responses are looked for (a request that must not be stored, or must not wait for
  // the origin): Hit or Miss without a Fill, never Wait or Pass.
  Lookup lookup(const CacheKey& key, Fields request, FillObserver* observer, bool fill = true);
  // For a stale hit that must be revalidated: a Fill (Miss) unless a fill of this key is already
  // in flight (Wait: the caller does not wait for it, nothing is subscribed). The stored entry
  // stays servable until the fill's begin replaces it. Counts nothing (the lookup that found
  // the stale entry was counted).
  Lookup revalidate(const CacheKey& key);

  // Purges: tenant-scoped, synchronous (the entries are unlinked when these return; readers
  // that hold one keep it alive). Fills in progress for the purged keys still feed their
  // waiters but are not stored. Return the number of entries (and fills) unlinked.
  size_t purge_url(std::string_view tenant, std::string_view url);  // all variants
  size_t purge_key(const CacheKey& key);                            // all variants
  size_t purge_prefix(std::string_view tenant, std::string_view url_prefix);
  size_t purge_tag(std::string_view tenant, std::string_view tag);  // Cache-Tag values
  size_t purge_tenant(std::string_view tenant);

  // Moves one lookup of this key's tenant from one result to another (see CacheStats): e.g. a
  // Hit that was served stale, or that went to the origin and came back 304.
  enum class Result : uint8_t { Hit, Stale, Revalidated, Miss };
  void recount(const CacheKey& key, Result from, Result to);

  CacheStats stats(std::string_view tenant) const;
  std::map<std::string, CacheStats> all_stats() const;
  uint64_t bytes_used() const { return used_.load(std::memory_order_relaxed); }
  uint64_t capacity() const { return opt_.capacity_bytes; }
  size_t object_count() const;
  const StoreOptions& options() const { return opt_; }

 private:
  friend class Fill;
  struct Bucket {
    std::vector<std::shared_ptr<Entry>> variants;
    std::vector<std::shared_ptr<Entry>> pending;  // fills without a head yet, by extras
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, Bucket> map;
    std::list<Entry*> small, main;  // front: newest. LRU uses `main` only.
    uint64_t small_bytes = 0, main_bytes = 0;
    size_t small_count = 0, main_count = 0;
    std::list<uint64_t> ghost;  // S3-FIFO ghost: hashes of keys evicted from small
    std::unordered_map<uint64_t, uint32_t> ghost_count;
    std::map<std::string, CacheStats, std::less<>> stats;
  };

  Shard& shard_of(uint64_t hash) const { return *shards_[hash & (shards_.size() - 1)]; }
  size_t shard_index(uint64_t hash) const { return hash & (shards_.size() - 1); }
  CacheStats& tstats(Shard& s, std::string_view tenant);

  // Byte budget.
  bool reserve(uint64_t n, size_t home);
  void release(uint64_t n) { used_.fetch_sub(n, std::memory_order_relaxed); }
  bool charge(Entry& e, uint64_t n);  // reserve + record on the entry (no locks held)
  bool evict_one(size_t home);
  // Under the shard lock: pick and unlink the next victim, or null.
  std::shared_ptr<Entry> pick_victim(Shard& s);
  // Under the shard lock: take the entry out of its bucket and queue, release its bytes.
  void unlink(Shard& s, Bucket* b, std::shared_ptr<Entry> e);
  void enqueue(Shard& s, Entry& e);
  void dequeue(Shard& s, Entry& e);
  void ghost_add(Shard& s, uint64_t h);
  bool ghost_has(const Shard& s, uint64_t h) const;
  template <class Pred>
  size_t purge_where(std::string_view tenant, Pred&& pred);
  Lookup start_fill(Shard& s, Bucket& b, const CacheKey& key, FillObserver* observer);

  // Fill callbacks.
  void fill_begin(Fill& f, Fields request, std::vector<std::shared_ptr<Entry>>* dropped);
  void fill_finish(Fill& f);
  void fill_abort(Fill& f, AbortReason why);

  StoreOptions opt_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<uint64_t> used_{0};
  std::atomic<uint32_t> evict_cursor_{0};
};

// How a worker uses it (the integration sketch):
//
//   CacheKey key = make_key(tenant, scheme, host, target, route.key_options, req);
//   auto r = store.lookup(key, req, exchange);        // exchange implements FillObserver
//   switch (r.kind) {
//     Hit:  d = decide(r.entry->meta(), rq_cc, policy, now);
//           Fresh/StaleAcceptable/StaleWhileRevalidate -> answer from r.entry (conditional.h,
//           range.h; Age: d.age); SWR also starts store.revalidate(key, nullptr) in the
//           background. Otherwise -> store.revalidate(key): Miss -> conditional
//           request to the origin (revalidation_headers()); 304 -> fill.begin_revalidated(...);
//           200 -> like a miss; 5xx/error + StaleIfError -> serve r.entry.
//     Wait: arm a timer; on_entry_update -> uv_async -> if entry Streaming && matches: serve it
//           as it streams; if Aborted or not matching or timer fired: unsubscribe, go to origin.
//     Miss: forward to the origin; on its head: if storable() -> r.fill->begin(...) (false ->
//           pass through); each body piece -> r.fill->append(); end -> finish();
//           origin error -> abort(AbortReason::Origin).
//     Pass: forward to the origin, store nothing.
//   }
//   Unsafe method with a 2xx/3xx answer -> store.purge_url() for the target URL and the
//   Location/Content-Location URLs of the same host (RFC 9111 4.4).
//   HEAD: look up the GET key and answer with the stored head; on Miss either forward a GET to
//   fill (and answer the client with the head only) or drop the Fill at once, which aborts it
//   and sends any waiters to the origin.
//   Lifetimes: the Store outlives every Fill and every observer subscription (it is created
//   before the workers start and destroyed after they have stopped).

}  // namespace parapet::cache
