#include "filters/context.h"

#include <algorithm>
#include <cstring>

namespace parapet::filters {
namespace detail {

char* Arena::alloc(size_t n) {
  // Keep 8-byte alignment so callers may store small structs too.
  n = (n + 7) & ~size_t{7};
  while (block_ < blocks_.size()) {
    Block& b = blocks_[block_];
    if (b.size - used_ >= n) {
      char* p = b.data.get() + used_;
      used_ += n;
      return p;
    }
    ++block_;
    used_ = 0;
  }
  size_t size = std::max<size_t>(4096, n);
  blocks_.push_back({std::make_unique<char[]>(size), size});
  block_ = blocks_.size() - 1;
  used_ = n;
  return blocks_.back().data.get();
}

}  // namespace detail

std::string_view FieldWriter::copy(std::string_view s) {
  if (s.empty()) return {};
  char* p = arena_->alloc(s.size());
  if (!s.empty()) std::memcpy(p, s.data(), s.size());
  return {p, s.size()};
}

void ExecContext::reset(FieldProvider* provider) {
  provider_ = provider;
  for (detail::FieldSlot& s : fields_) s.state = detail::FieldSlot::State::Unfetched;
  arena_.reset();
  ++generation_;
}

void ExecContext::fetch(Field f, detail::FieldSlot& s) {
  s.v = detail::Val();
  s.arr.clear();
  s.map.clear();
  s.state = detail::FieldSlot::State::Missing;
  if (provider_ == nullptr) return;
  FieldWriter w(&s, &arena_);
  bool ok = provider_->fetch(f, w);
  if (!ok) {
    s.v = detail::Val();
    return;
  }
  // Arrays and maps are published after the provider is done: push_back may have moved them.
  switch (field_info(f).type) {
    case Type::ArrayString:
      s.v.k = detail::Val::K::Arr;
      s.v.arr = {s.arr.data(), s.arr.size()};
      break;
    case Type::MapString:
      s.v.k = detail::Val::K::Map;
      s.v.map = {s.map.data(), s.map.size()};
      break;
    default:
      break;
  }
  s.state = detail::FieldSlot::State::Present;
}

}  // namespace parapet::filters
