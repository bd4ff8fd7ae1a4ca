// The process: binds the listeners (one SO_REUSEPORT socket per worker and listener), starts
// the workers, serves the admin listener and handles signals on the main thread's loop.
#pragma once

#include <memory>
#include <vector>

#include "config/config.h"
#include "proxy/snapshot.h"
#include "proxy/worker.h"

namespace parapet {

class Server {
 public:
  // Runs until SIGTERM/SIGINT and a graceful drain. Returns the process exit code.
  int run(config::Config cfg);

  // Prometheus text of the workers' counters.
  std::string metrics_text() const;

 private:
  bool bind_listeners(std::vector<std::vector<int>>* fds_per_worker);

  std::shared_ptr<const Snapshot> snap_;
  std::vector<std::unique_ptr<Worker>> workers_;
};

// Admin listener on the main loop: /healthz, /readyz, /metrics.
bool start_admin(uv_loop_t* loop, const config::Address& addr, Server* server, uv_tcp_t* handle);
void close_admin_connections();

}  // namespace parapet
