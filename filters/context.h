// The per-request side of the rules engine: the field provider the proxy implements, and the
// ExecContext that caches fields and holds scratch storage while compiled rules run.
//
// Threads: an ExecContext belongs to one request on one worker thread at a time; compiled
// Filters / ValueExprs / RuleSets are immutable and shared by all workers, so evaluation is
// thread-safe as long as each thread uses its own ExecContext.
//
// Allocation: the context keeps every buffer's capacity across reset(), so once a worker has
// seen a request shape, evaluating the same rules again allocates nothing.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "filters/scheme.h"

namespace parapet::filters {

struct ContainsBinding;

// One entry of a Map<Array<String>> field. A key may repeat (two headers of one name): m["k"] is
// the array of the values of every entry with that key, in order.
struct MapEntry {
  std::string_view key;
  std::string_view value;
};

namespace detail {

struct StrSpan {
  const std::string_view* data = nullptr;
  size_t size = 0;
};
struct MapSpan {
  const MapEntry* data = nullptr;
  size_t size = 0;
};

// A runtime value. Missing is "no value" (absent header, index out of range, undecodable
// base64): every comparison on it is false.
struct Val {
  enum class K : uint8_t { Missing, Bool, Int, Str, Ip, Arr, Map };
  K k = K::Missing;
  bool b = false;
  int64_t i = 0;
  std::string_view s;
  IpAddr ip;
  StrSpan arr;
  MapSpan map;

  static Val boolean(bool v) {
    Val x;
    x.k = K::Bool;
    x.b = v;
    return x;
  }
  static Val integer(int64_t v) {
    Val x;
    x.k = K::Int;
    x.i = v;
    return x;
  }
  static Val str(std::string_view v) {
    Val x;
    x.k = K::Str;
    x.s = v;
    return x;
  }
};

// Bump allocator for bytes a provider derives (lowercased names, decoded args). Blocks are kept
// across reset(), so steady state allocates nothing.
class Arena {
 public:
  char* alloc(size_t n);
  void reset() {
    block_ = 0;
    used_ = 0;
  }

 private:
  struct Block {
    std::unique_ptr<char[]> data;
    size_t size;
  };
  std::vector<Block> blocks_;
  size_t block_ = 0;
  size_t used_ = 0;
};

// Per-request results of a ContainsIndex (contains_index.h): which of its groups were scanned
// in this request, and their bits. Capacity is kept across requests.
struct ContainsState {
  uint64_t owner = 0;  // the id of the ContainsIndex the entries belong to (ids are never reused)
  std::vector<uint64_t> done;   // per group: the request generation it was scanned in
  std::vector<uint64_t> words;  // every group's bits, one per literal
};

struct FieldSlot {
  enum class State : uint8_t { Unfetched, Present, Missing };
  State state = State::Unfetched;
  Val v;
  std::vector<std::string_view> arr;
  std::vector<MapEntry> map;
};

}  // namespace detail

// What a FieldProvider writes one field into. Use the setter matching the field's type (see
// scheme.h): set_* for scalars, add_string for Array<String>, add_entry for Map<Array<String>>.
// Strings are borrowed: they must stay valid until the ExecContext is reset or destroyed (the
// request's own buffers do); bytes the provider derives go through copy()/alloc(), which live
// in the context.
class FieldWriter {
 public:
  void set_bool(bool v) { slot_->v = detail::Val::boolean(v); }
  void set_int(int64_t v) { slot_->v = detail::Val::integer(v); }
  void set_string(std::string_view v) { slot_->v = detail::Val::str(v); }
  void set_ip(const IpAddr& a) {
    slot_->v.k = detail::Val::K::Ip;
    slot_->v.ip = a;
  }
  void add_string(std::string_view v) { slot_->arr.push_back(v); }
  void add_entry(std::string_view key, std::string_view value) {
    slot_->map.push_back({key, value});
  }
  // Context-owned storage, valid until reset().
  char* alloc(size_t n) { return arena_->alloc(n); }
  std::string_view copy(std::string_view s);

 private:
  friend class ExecContext;
  FieldWriter(detail::FieldSlot* slot, detail::Arena* arena) : slot_(slot), arena_(arena) {}
  detail::FieldSlot* slot_;
  detail::Arena* arena_;
};

// Implemented by the proxy (or a test): supplies field values on demand.
//
// fetch() runs on the worker thread evaluating the rules, at most once per field per request
// (per ExecContext reset), and only when a rule needs the field. It returns false when the
// field has no value in this request (e.g. no TLS info), which makes every comparison on it
// false; arrays and maps with no elements should return true with nothing added.
class FieldProvider {
 public:
  virtual ~FieldProvider() = default;
  virtual bool fetch(Field field, FieldWriter& out) = 0;
};

// Per-request evaluation state: the lazily filled field table and scratch buffers. Create one
// per request, or one per connection and reset() it for each request. Not thread-safe; the
// provider is borrowed and must outlive the evaluations.
class ExecContext {
 public:
  explicit ExecContext(FieldProvider* provider = nullptr) : provider_(provider) {}
  ExecContext(const ExecContext&) = delete;
  ExecContext& operator=(const ExecContext&) = delete;

  // Starts a new request: forgets every cached field, keeps all capacity.
  void reset(FieldProvider* provider);

  // --- Used by the compiled rules (filters/*.cc), not by the proxy. ---
  const detail::Val& field(Field f) {
    detail::FieldSlot& s = fields_[static_cast<size_t>(f)];
    if (s.state == detail::FieldSlot::State::Unfetched) fetch(f, s);
    return s.v;
  }
  // Makes sure the scratch tables hold at least these many entries (grows on first use only).
  void prepare(uint32_t strings, uint32_t arrays, uint32_t iters) {
    if (strings > strs_.size()) strs_.resize(strings);
    if (arrays > arrs_.size()) arrs_.resize(arrays);
    if (iters > iters_.size()) iters_.resize(iters);
  }
  std::string& scratch_string(uint32_t i) { return strs_[i]; }
  std::vector<std::string_view>& scratch_array(uint32_t i) { return arrs_[i]; }
  detail::Val& iter(uint32_t i) { return iters_[i]; }
  // The ContainsIndex binding of the filter being evaluated (null: every `contains` by memmem).
  const ContainsBinding* contains_binding() const { return binding_; }
  void set_contains_binding(const ContainsBinding* b) { binding_ = b; }
  detail::ContainsState& contains_state() { return contains_; }
  // Candidate bits of the prefilter `owner` for this request (RuleSet): recomputed when the
  // owner or the request changed.
  std::vector<uint64_t>& candidate_bits(const void* owner, bool* fresh) {
    *fresh = bits_owner_ == owner && bits_generation_ == generation_;
    bits_owner_ = owner;
    bits_generation_ = generation_;
    return bits_;
  }
  // Changes at every reset(): per-request results are valid while it stays the same.
  uint64_t generation() const { return generation_; }

 private:
  void fetch(Field f, detail::FieldSlot& s);

  FieldProvider* provider_;
  std::array<detail::FieldSlot, kFieldCount> fields_;
  detail::Arena arena_;
  std::vector<std::string> strs_;
  std::vector<std::vector<std::string_view>> arrs_;
  std::vector<detail::Val> iters_;
  const ContainsBinding* binding_ = nullptr;
  detail::ContainsState contains_;
  std::vector<uint64_t> bits_;
  const void* bits_owner_ = nullptr;
  uint64_t bits_generation_ = ~uint64_t{0};
  uint64_t generation_ = 1;
};

}  // namespace parapet::filters
