// Zero-downtime binary upgrade (nginx's USR2 model, over SO_REUSEPORT sockets):
//   1. SIGUSR2 to the running process: it starts the binary found at its own path again (a new
//      build installed there), with the same arguments, handing over every listening socket
//      (the environment names them: PARAPET_LISTEN_FDS, and PARAPET_UPGRADE_PARENT its pid),
//      and the TLS session-ticket keys in an anonymous memory file (PARAPET_TICKET_KEYS_FD),
//      so tickets issued by the old process resume on the new one.
//   2. The new process validates its config, adopts the inherited sockets instead of binding,
//      and once its workers are up sends SIGTERM to the old process.
//   3. The old process drains (stops accepting, finishes in-flight requests) and exits.
// The listening sockets are the same kernel objects throughout: no connection in an accept
// queue is lost. If the new process fails (bad config, crash), the old one keeps serving.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

namespace parapet {

using FdMap = std::map<std::string, std::vector<int>>;  // listener key -> sockets

struct Inherited {
  FdMap fds;
  pid_t parent = 0;
  std::string ticket_keys;  // tls_export_ticket_keys() of the previous process, or empty
};

// Reads (and removes from the environment) what a previous process handed over.
Inherited take_inherited();
// Starts `exe` with `argv`, handing over `fds` and `ticket_keys`. Returns the child's pid, or
// -1 with *err.
pid_t spawn_upgrade(const std::string& exe, const std::vector<std::string>& argv, const FdMap& fds,
                    const std::string& ticket_keys, std::string* err);

}  // namespace parapet
