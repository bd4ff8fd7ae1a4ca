#include "proxy/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <iterator>
#include <string>

#include "proxy/access_log.h"
#include "proxy/cache/store.h"
#include "proxy/log.h"
#include "proxy/phase_lua.h"
#include "proxy/policy.h"
#include "proxy/tail.h"
#include "proxy/tls.h"
#include "proxy/upgrade.h"

namespace parapet {

namespace {

std::string addr_text(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    auto* s = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &s->sin_addr, host, sizeof host);
    port = ntohs(s->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  auto* s = reinterpret_cast<const sockaddr_in6*>(&ss);
  inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof host);
  port = ntohs(s->sin6_port);
  return "[" + std::string(host) + "]:" + std::to_string(port);
}

int listen_socket(const sockaddr_storage& sa, socklen_t len, std::string* why) {
  int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *why = std::strerror(errno);
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&sa), len) != 0 || listen(fd, 4096) != 0) {
    *why = std::strerror(errno);
    close(fd);
    return -1;
  }
  return fd;
}

constexpr int kSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD};

struct MainState {
  Server* server = nullptr;
  std::vector<std::unique_ptr<Worker>>* workers = nullptr;
  uv_signal_t sig[std::size(kSignals)];
  uv_timer_t poll;
  uv_timer_t ticket_rotation;
  uv_tcp_t admin;
  bool has_admin = false;
  int signals = 0;  // SIGTERM/SIGINT received
};

// Every worker has ended its loop: close the main loop's handles so uv_run returns.
void on_drain_poll(uv_timer_t* t) {
  auto* st = static_cast<MainState*>(t->data);
  for (auto& w : *st->workers) {
    if (!w->finished()) return;
  }
  for (uv_signal_t& h : st->sig) uv_close(reinterpret_cast<uv_handle_t*>(&h), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&st->poll), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&st->ticket_rotation), nullptr);
  if (st->has_admin) uv_close(reinterpret_cast<uv_handle_t*>(&st->admin), nullptr);
  close_admin_connections();  // live tails end with the process
  st->server->tail()->close();
}

void on_signal(uv_signal_t* s, int signum) {
  auto* st = static_cast<MainState*>(s->data);
  switch (signum) {
    case SIGTERM:
    case SIGINT:
      ++st->signals;
      log_error("signal %d: %s", signum, st->signals == 1 ? "draining" : "stopping now");
      for (auto& w : *st->workers) w->request_stop();  // a second one stops at once
      if (st->signals == 1) uv_timer_start(&st->poll, on_drain_poll, 20, 20);
      return;
    case SIGHUP:
      if (st->signals == 0) st->server->reload();
      return;
    case SIGUSR1:
      st->server->reopen_logs();
      return;
    case SIGUSR2:
      if (st->signals == 0) st->server->upgrade();
      return;
    case SIGCHLD: {
      // A new binary that failed to start: reap it; this process keeps serving.
      int status = 0;
      pid_t pid;
      while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        log_error("upgrade: pid %d exited with status %d; this process keeps serving",
                  static_cast<int>(pid),
                  WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
      }
      return;
    }
    default:
      return;
  }
}

}  // namespace

std::string listener_key(const config::Listener& l) {
  return l.name + "@" + l.address.text + (l.tls ? "+tls" : "");
}

std::shared_ptr<const TlsContexts> build_tls(const config::Config& cfg,
                                             std::vector<std::string>* errors) {
  bool any_tls = false;
  for (const config::Listener& l : cfg.listeners) any_tls |= l.tls;
  std::shared_ptr<const TlsContexts> t = TlsContexts::build(cfg, errors);
  if (t && any_tls && t->empty()) {
    errors->push_back(
        cfg.file +
        ": a TLS listener needs at least one tenant certificate (tenant tls.certificates)");
    return nullptr;
  }
  return t;
}

bool Server::bind_listeners(const config::Config& cfg, const std::vector<std::string>& have,
                            std::vector<std::vector<ListenerFd>>* per_worker, std::string* err) {
  const size_t n = workers_.empty() ? cfg.workers : workers_.size();
  per_worker->assign(n, {});
  FdMap added;  // merged into all_fds_ only when every listener is bound
  for (const config::Listener& l : cfg.listeners) {
    const std::string key = listener_key(l);
    if (std::find(have.begin(), have.end(), key) != have.end()) continue;
    sockaddr_storage sa = l.address.sa;
    // Sockets handed over by the previous process (binary upgrade) come first: the same
    // kernel sockets, so nothing queued on them is lost. Extra ones go to workers round robin.
    std::vector<int> inherited;
    if (auto it = inherited_.fds.find(key); it != inherited_.fds.end()) {
      inherited = std::move(it->second);
      inherited_.fds.erase(it);
      socklen_t len = sizeof sa;
      getsockname(inherited[0], reinterpret_cast<sockaddr*>(&sa), &len);
      log_error("listening name=%s address=%s (inherited)", l.name.c_str(), addr_text(sa).c_str());
      for (size_t j = 0; j < inherited.size(); ++j) {
        (*per_worker)[j % n].push_back(
            ListenerFd{key, inherited[j], l.tls, l.tls_reject_no_sni, l.name});
        added[key].push_back(inherited[j]);
      }
    }
    for (size_t w = inherited.size(); w < n; ++w) {
      std::string why;
      int fd = listen_socket(sa, l.address.sa_len, &why);
      if (fd < 0) {
        *err = "cannot listen on " + l.address.text + " (listener " + l.name + "): " + why;
        for (auto& v : *per_worker) {
          for (const ListenerFd& x : v) close(x.fd);
        }
        per_worker->clear();
        return false;
      }
      if (w == 0) {
        // Port 0 asks the kernel for a free port; every worker's socket then shares it.
        socklen_t len = sizeof sa;
        getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
        log_error("listening name=%s address=%s", l.name.c_str(), addr_text(sa).c_str());
      }
      (*per_worker)[w].push_back(ListenerFd{key, fd, l.tls, l.tls_reject_no_sni, l.name});
      added[key].push_back(fd);
    }
  }
  for (auto& [key, fds] : added) {
    std::vector<int>& v = all_fds_[key];
    v.insert(v.end(), fds.begin(), fds.end());
  }
  return true;
}

void Server::upgrade() {
  FdMap fds = all_fds_;
  if (admin_fd_ >= 0) fds["admin@" + snap_->cfg().admin.text] = {admin_fd_};
  std::string err;
  pid_t pid = spawn_upgrade(exe_, argv_, fds, tls_export_ticket_keys(), &err);
  if (pid < 0) {
    log_error("upgrade: %s", err.c_str());
    return;
  }
  // Reap it if it fails; if it succeeds it tells us to drain (SIGTERM) and outlives us.
  log_error("upgrade: started %s pid=%d; draining once it is ready", exe_.c_str(),
            static_cast<int>(pid));
}

long Server::cache_purge(const std::string& tenant, const std::string& url,
                         const std::string& prefix, const std::string& tag) {
  bool known = false;
  for (const config::Tenant& t : snap_->cfg().tenants) known |= t.name == tenant;
  if (!known || !cache_) return -1;
  if (!url.empty()) return static_cast<long>(cache_->purge_url(tenant, url));
  if (!prefix.empty()) return static_cast<long>(cache_->purge_prefix(tenant, prefix));
  if (!tag.empty()) return static_cast<long>(cache_->purge_tag(tenant, tag));
  return static_cast<long>(cache_->purge_tenant(tenant));
}

void Server::reopen_logs() {
  if (access_log_) {
    access_log_->reopen();
    log_error("access log reopened");
  }
}

Server::Server() = default;
Server::~Server() = default;

std::vector<std::string> Server::reload() {
  config::LoadResult r = config::load_file(file_);
  if (r.ok() && r.config.workers != workers_.size()) {
    log_error("reload: workers %u -> %zu needs a restart; keeping %zu", r.config.workers,
              workers_.size(), workers_.size());
    r.config.workers = static_cast<unsigned>(workers_.size());
  }
  std::vector<std::vector<ListenerFd>> add;
  std::string err;
  std::shared_ptr<const TlsContexts> tls;
  std::shared_ptr<const Policies> policies;
  std::shared_ptr<const LuaRuntime> lua;
  if (r.ok()) tls = build_tls(r.config, &r.errors);
  if (r.ok()) policies = Policies::build(r.config, &r.errors, rate_counters_);
  if (r.ok()) lua = LuaRuntime::build(r.config, &r.errors);
  if (r.ok() && !bind_listeners(r.config, listener_keys_, &add, &err)) r.errors.push_back(err);
  if (!r.ok()) {
    ++reloads_failed_;
    for (const std::string& e : r.errors) log_error("reload refused: %s", e.c_str());
    return r.errors;
  }
  const config::AccessLogConfig &oldl = snap_->cfg().access_log, &newl = r.config.access_log;
  if (oldl.enabled != newl.enabled || oldl.path != newl.path ||
      oldl.buffer_bytes != newl.buffer_bytes) {
    log_error("reload: a new access_log path or buffer needs a restart; the log stays as it is");
  }
  if (r.config.has_admin != snap_->cfg().has_admin ||
      (r.config.has_admin && r.config.admin.text != snap_->cfg().admin.text)) {
    log_error("reload: a new admin address needs a restart; the admin listener stays");
  }
  std::vector<std::string> keys, removed;
  for (const config::Listener& l : r.config.listeners) keys.push_back(listener_key(l));
  for (const std::string& k : listener_keys_) {
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) removed.push_back(k);
  }
  for (const std::string& k : removed) all_fds_.erase(k);  // the workers close them
  snap_ = std::make_shared<const Snapshot>(std::move(r.config), std::move(tls), std::move(policies),
                                           std::move(lua));
  listener_keys_ = std::move(keys);
  for (size_t i = 0; i < workers_.size(); ++i) workers_[i]->reload(snap_, add[i], removed);
  ++generation_;
  ++reloads_ok_;
  log_error("reload: generation %llu active", static_cast<unsigned long long>(generation_));
  return {};
}

int Server::run(config::Config cfg, std::string exe, std::vector<std::string> argv) {
  file_ = cfg.file;
  exe_ = std::move(exe);
  argv_ = std::move(argv);
  inherited_ = take_inherited();
  if (!inherited_.ticket_keys.empty() && !tls_import_ticket_keys(inherited_.ticket_keys)) {
    log_error("upgrade: the ticket keys handed over are malformed; new keys are used");
  }
  for (const config::Listener& l : cfg.listeners) listener_keys_.push_back(listener_key(l));
  std::vector<std::string> tls_errors;
  std::shared_ptr<const TlsContexts> tls = build_tls(cfg, &tls_errors);
  std::shared_ptr<const Policies> policies;
  std::shared_ptr<const LuaRuntime> lua;
  rate_counters_ = std::make_shared<LocalRateCounter>();
  if (tls_errors.empty()) policies = Policies::build(cfg, &tls_errors, rate_counters_);
  if (tls_errors.empty()) lua = LuaRuntime::build(cfg, &tls_errors);
  if (!tls_errors.empty()) {
    for (const std::string& e : tls_errors) log_error("%s", e.c_str());
    return 1;
  }
  snap_ = std::make_shared<const Snapshot>(std::move(cfg), std::move(tls), std::move(policies),
                                           std::move(lua));
  std::vector<std::vector<ListenerFd>> fds;
  std::string err;
  if (!bind_listeners(snap_->cfg(), {}, &fds, &err)) {
    log_error("%s", err.c_str());
    return 1;
  }
  int admin_inherited = -1;
  if (snap_->cfg().has_admin) {
    auto it = inherited_.fds.find("admin@" + snap_->cfg().admin.text);
    if (it != inherited_.fds.end() && !it->second.empty()) {
      admin_inherited = it->second[0];
      it->second.erase(it->second.begin());
    }
  }
  for (auto& kv : inherited_.fds) {
    for (int fd : kv.second) close(fd);  // listeners the new config no longer has
  }
  inherited_.fds.clear();

  uv_loop_t* loop = uv_default_loop();
  MainState ms;
  ms.server = this;
  ms.workers = &workers_;
  if (snap_->cfg().has_admin) {
    if (!start_admin(loop, snap_->cfg().admin, this, &ms.admin, admin_inherited)) return 1;
    ms.has_admin = true;
    uv_os_fd_t afd;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(&ms.admin), &afd) == 0) admin_fd_ = afd;
  }
  const config::AccessLogConfig& al = snap_->cfg().access_log;
  if (al.enabled) {
    std::string why;
    access_log_ = AccessLog::open(al.path, snap_->cfg().workers, al.buffer_bytes, &why);
    if (!access_log_) {
      log_error("%s: access_log.path '%s': %s", file_.c_str(), al.path.c_str(), why.c_str());
      return 1;
    }
  }
  tail_ = std::make_unique<TailHub>(loop);
  {
    // One store for the process, sized at start (a reload does not resize it).
    cache::StoreOptions so;
    so.capacity_bytes = snap_->cfg().cache.max_bytes;
    so.max_object_bytes = snap_->cfg().cache.max_object_bytes;
    cache_ = std::make_unique<cache::Store>(so);
  }
  for (unsigned i = 0; i < snap_->cfg().workers; ++i) {
    workers_.push_back(std::make_unique<Worker>(i, snap_, fds[i]));
    workers_.back()->set_access_log(access_log_.get());
    workers_.back()->set_tail(tail_.get());
    workers_.back()->set_cache(cache_.get());
  }
  for (auto& w : workers_) w->start();

  uv_timer_init(loop, &ms.poll);
  ms.poll.data = &ms;
  // TLS session ticket keys: a new current key every 12 hours, the previous two still
  // decrypt (tickets live at most 36 hours, and a ticket made with an old key is renewed).
  constexpr uint64_t kTicketRotationMs = 12ull * 3600 * 1000;
  uv_timer_init(loop, &ms.ticket_rotation);
  uv_timer_start(
      &ms.ticket_rotation, [](uv_timer_t*) { tls_rotate_ticket_keys(); }, kTicketRotationMs,
      kTicketRotationMs);
  for (size_t i = 0; i < std::size(kSignals); ++i) {
    uv_signal_init(loop, &ms.sig[i]);
    ms.sig[i].data = &ms;
    uv_signal_start(&ms.sig[i], on_signal, kSignals[i]);
  }

  // Only now: a signal that arrives after this line is handled, never the default action.
  log_error("ready workers=%zu pid=%d", workers_.size(), static_cast<int>(getpid()));
  if (inherited_.parent > 0) {
    log_error("upgrade: taking over from pid=%d, which drains now",
              static_cast<int>(inherited_.parent));
    kill(inherited_.parent, SIGTERM);
  }

  uv_run(loop, UV_RUN_DEFAULT);
  for (auto& w : workers_) w->join();
  close_admin_connections();
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  workers_.clear();
  access_log_.reset();  // writes what is buffered
  log_error("stopped");
  return 0;
}

}  // namespace parapet
