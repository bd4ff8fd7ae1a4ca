#include "proxy/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>

#include "proxy/log.h"

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

struct MainState {
  Server* server = nullptr;
  std::vector<std::unique_ptr<Worker>>* workers = nullptr;
  uv_signal_t sigterm, sigint;
  uv_timer_t poll;
  uv_tcp_t admin;
  bool has_admin = false;
  int signals = 0;
};

}  // namespace

bool Server::bind_listeners(std::vector<std::vector<int>>* fds) {
  const config::Config& cfg = snap_->cfg();
  fds->assign(cfg.workers, {});
  for (const config::Listener& l : cfg.listeners) {
    sockaddr_storage sa = l.address.sa;
    for (unsigned w = 0; w < cfg.workers; ++w) {
      std::string why;
      int fd = listen_socket(sa, l.address.sa_len, &why);
      if (fd < 0) {
        log_error("cannot listen on %s (listener %s): %s", l.address.text.c_str(), l.name.c_str(),
                  why.c_str());
        return false;
      }
      if (w == 0) {
        // Port 0 asks the kernel for a free port; every worker's socket then shares it.
        socklen_t len = sizeof sa;
        getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
        log_error("listening name=%s address=%s", l.name.c_str(), addr_text(sa).c_str());
      }
      (*fds)[w].push_back(fd);
    }
  }
  return true;
}

std::string Server::metrics_text() const {
  uint64_t req = 0, resp[6] = {}, conns = 0, accepted = 0, connects = 0, reused = 0, failures = 0,
           retries = 0, refused = 0;
  for (const auto& w : workers_) {
    WorkerStats& s = w->stats();
    auto ld = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    req += ld(s.requests);
    for (int i = 0; i < 6; ++i) resp[i] += ld(s.responses[i]);
    conns += ld(s.client_conns);
    accepted += ld(s.client_accepted);
    connects += ld(s.upstream_connects);
    reused += ld(s.upstream_reused);
    failures += ld(s.upstream_failures);
    retries += ld(s.upstream_retries);
    refused += ld(s.refused);
  }
  std::string m;
  auto line = [&m](const char* name, const char* type, uint64_t v) {
    m += std::string("# TYPE ") + name + " " + type + "\n" + name + " " + std::to_string(v) + "\n";
  };
  line("parapet_requests_total", "counter", req);
  m += "# TYPE parapet_responses_total counter\n";
  for (int i = 1; i < 6; ++i) {
    m += "parapet_responses_total{class=\"" + std::to_string(i) + "xx\"} " +
         std::to_string(resp[i]) + "\n";
  }
  line("parapet_client_connections", "gauge", conns);
  line("parapet_client_connections_accepted_total", "counter", accepted);
  line("parapet_upstream_connects_total", "counter", connects);
  line("parapet_upstream_reused_total", "counter", reused);
  line("parapet_upstream_failures_total", "counter", failures);
  line("parapet_upstream_retries_total", "counter", retries);
  line("parapet_refused_requests_total", "counter", refused);
  return m;
}

int Server::run(config::Config cfg) {
  snap_ = std::make_shared<const Snapshot>(std::move(cfg));
  std::vector<std::vector<int>> fds;
  if (!bind_listeners(&fds)) return 1;

  uv_loop_t* loop = uv_default_loop();
  MainState ms;
  ms.server = this;
  ms.workers = &workers_;
  if (snap_->cfg().has_admin) {
    if (!start_admin(loop, snap_->cfg().admin, this, &ms.admin)) return 1;
    ms.has_admin = true;
  }
  for (unsigned i = 0; i < snap_->cfg().workers; ++i) {
    workers_.push_back(std::make_unique<Worker>(i, snap_, fds[i]));
  }
  for (auto& w : workers_) w->start();
  log_error("ready workers=%zu", workers_.size());

  auto on_signal = [](uv_signal_t* s, int signum) {
    auto* st = static_cast<MainState*>(s->data);
    ++st->signals;
    log_error("signal %d: %s", signum, st->signals == 1 ? "draining" : "stopping now");
    for (auto& w : *st->workers) w->request_stop();
    if (st->signals == 1) {
      uv_timer_start(
          &st->poll,
          [](uv_timer_t* t) {
            auto* s2 = static_cast<MainState*>(t->data);
            for (auto& w : *s2->workers) {
              if (!w->finished()) return;
            }
            uv_close(reinterpret_cast<uv_handle_t*>(&s2->sigterm), nullptr);
            uv_close(reinterpret_cast<uv_handle_t*>(&s2->sigint), nullptr);
            uv_close(reinterpret_cast<uv_handle_t*>(&s2->poll), nullptr);
            if (s2->has_admin) uv_close(reinterpret_cast<uv_handle_t*>(&s2->admin), nullptr);
          },
          20, 20);
    }
  };
  uv_signal_init(loop, &ms.sigterm);
  uv_signal_init(loop, &ms.sigint);
  uv_timer_init(loop, &ms.poll);
  ms.sigterm.data = ms.sigint.data = ms.poll.data = &ms;
  uv_signal_start(&ms.sigterm, on_signal, SIGTERM);
  uv_signal_start(&ms.sigint, on_signal, SIGINT);

  uv_run(loop, UV_RUN_DEFAULT);
  for (auto& w : workers_) w->join();
  close_admin_connections();
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  workers_.clear();
  log_error("stopped");
  return 0;
}

}  // namespace parapet
