#include "proxy/tail.h"

#include <cstdlib>

namespace parapet {

namespace {
constexpr size_t kMaxQueued = 4096;

std::string url_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() &&
               std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
               std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::strtol(std::string(s.substr(i + 1, 2)).c_str(), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}
}  // namespace

TailHub::TailHub(uv_loop_t* main_loop) {
  uv_async_init(main_loop, &async_, on_async);
  async_.data = this;
}

void TailHub::close() { uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr); }

void TailHub::publish(std::string_view tenant, uint16_t status, std::string_view path,
                      std::string_view line) {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock() || queue_.size() >= kMaxQueued) {
    dropped_.add();  // (one writer per worker would be exact; a rare race only miscounts)
    return;
  }
  queue_.push_back(Item{std::string(tenant), status, std::string(path), std::string(line)});
  lock.unlock();
  uv_async_send(&async_);
}

void TailHub::on_async(uv_async_t* a) { static_cast<TailHub*>(a->data)->deliver_all(); }

void TailHub::deliver_all() {
  std::vector<Item> items;
  {
    std::lock_guard<std::mutex> lock(mu_);
    items.swap(queue_);
  }
  for (const Item& it : items) {
    for (TailSubscriber* s : subs_) {
      const TailFilter& f = s->filter;
      if (it.tenant != f.tenant) continue;
      if (f.status != 0 && it.status != f.status) continue;
      if (f.status_class != 0 && it.status / 100 != f.status_class) continue;
      if (!f.path_prefix.empty() && it.path.compare(0, f.path_prefix.size(), f.path_prefix) != 0)
        continue;
      s->credit += f.sample;
      if (s->credit < 1.0) continue;
      s->credit -= 1.0;
      if (!s->deliver(it.line)) ++s->dropped;
    }
  }
}

void TailHub::subscribe(TailSubscriber* s) {
  subs_.push_back(s);
  subscribers_.store(static_cast<int>(subs_.size()), std::memory_order_relaxed);
}

void TailHub::unsubscribe(TailSubscriber* s) {
  std::erase(subs_, s);
  subscribers_.store(static_cast<int>(subs_.size()), std::memory_order_relaxed);
}

bool parse_tail_query(std::string_view q, TailFilter* f, std::string* err) {
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view kv = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    size_t eq = kv.find('=');
    std::string key(kv.substr(0, eq));
    std::string value = eq == std::string_view::npos ? "" : url_decode(kv.substr(eq + 1));
    if (key == "tenant") {
      f->tenant = value;
    } else if (key == "status") {
      if (value.size() == 3 && value[1] == 'x' && value[2] == 'x' && value[0] >= '1' &&
          value[0] <= '5') {
        f->status_class = value[0] - '0';
      } else if (value.size() == 3 && value.find_first_not_of("0123456789") == std::string::npos) {
        f->status = std::atoi(value.c_str());
      } else {
        *err = "status must be like 404 or 5xx";
        return false;
      }
    } else if (key == "path") {
      f->path_prefix = value;
    } else if (key == "sample") {
      char* end = nullptr;
      double v = std::strtod(value.c_str(), &end);
      if (end == value.c_str() || *end != '\0' || !(v > 0.0 && v <= 1.0)) {
        *err = "sample must be in (0, 1]";
        return false;
      }
      f->sample = v;
    } else if (!key.empty()) {
      *err = "unknown parameter '" + key + "' (tenant, status, path, sample)";
      return false;
    }
  }
  if (f->tenant.empty()) {
    *err = "tenant is required: a tail shows one tenant's own traffic";
    return false;
  }
  return true;
}

}  // namespace parapet
