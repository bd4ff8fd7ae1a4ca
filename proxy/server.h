// The process: binds the listeners (one SO_REUSEPORT socket per worker and listener), starts
// the workers, serves the admin listener and handles signals on the main thread's loop.
#pragma once

#include <memory>
#include <vector>

#include "config/config.h"
#include "proxy/snapshot.h"
#include "proxy/upgrade.h"
#include "proxy/worker.h"

namespace parapet {

class AccessLog;
class TlsContexts;
class TailHub;
class RateCounter;
namespace cache {
class Store;
}

class Server {
 public:
  Server();
  ~Server();
  // Runs until SIGTERM/SIGINT and a graceful drain. Returns the process exit code.
  // `exe` and `argv`: how to start this binary again (SIGUSR2, binary upgrade).
  int run(config::Config cfg, std::string exe, std::vector<std::string> argv);

  // Prometheus text of the workers' counters.
  std::string metrics_text() const;

  // Loads the config file again (main thread, off the hot path). A valid config becomes the
  // snapshot of every worker; an invalid one changes nothing. Returns the errors (empty: ok).
  std::vector<std::string> reload();
  uint64_t generation() const { return generation_; }
  // SIGUSR1: the access log reopens its file (log rotation).
  void reopen_logs();
  TailHub* tail() const { return tail_.get(); }
  // Admin purge (main thread): tenant-scoped; an empty url/prefix/tag purges the whole
  // tenant. Returns the entries removed, or -1 for an unknown tenant.
  long cache_purge(const std::string& tenant, const std::string& url, const std::string& prefix,
                   const std::string& tag);
  uint32_t admin_idle_ms() const { return snap_->cfg().admin_idle_ms; }
  // SIGUSR2: start the binary at exe_ again, handing over the listening sockets (upgrade.h).
  void upgrade();

 private:
  // Binds `workers` sockets for each listener of `cfg` whose key is not in `have`.
  bool bind_listeners(const config::Config& cfg, const std::vector<std::string>& have,
                      std::vector<std::vector<ListenerFd>>* per_worker, std::string* err);

  std::string file_;
  std::string exe_;
  std::vector<std::string> argv_;
  Inherited inherited_;
  FdMap all_fds_;  // every listening socket, by listener key (for a binary upgrade)
  int admin_fd_ = -1;
  std::unique_ptr<AccessLog> access_log_;
  std::unique_ptr<TailHub> tail_;
  std::unique_ptr<cache::Store> cache_;  // outlives the workers (declared before them)
  // Rate-limit counters: one store for the process, handed to every config's Policies, so
  // counts survive reloads.
  std::shared_ptr<RateCounter> rate_counters_;
  std::shared_ptr<const Snapshot> snap_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::string> listener_keys_;  // of snap_
  uint64_t generation_ = 1;
  uint64_t reloads_ok_ = 0, reloads_failed_ = 0;
};

std::string listener_key(const config::Listener& l);
// Loads the certificates of `cfg` (also for --check); errors name file:line:col.
std::shared_ptr<const TlsContexts> build_tls(const config::Config& cfg,
                                             std::vector<std::string>* errors);

// Admin listener on the main loop: /healthz, /readyz, /metrics, POST /reload.
// `inherited_fd` >= 0: a listening socket handed over by the previous process.
bool start_admin(uv_loop_t* loop, const config::Address& addr, Server* server, uv_tcp_t* handle,
                 int inherited_fd = -1);
void close_admin_connections();

}  // namespace parapet
