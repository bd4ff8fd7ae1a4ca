#include "proxy/upgrade.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

extern char** environ;

namespace parapet {

namespace {
constexpr const char* kFdsVar = "PARAPET_LISTEN_FDS";
constexpr const char* kParentVar = "PARAPET_UPGRADE_PARENT";
constexpr const char* kKeysVar = "PARAPET_TICKET_KEYS_FD";
constexpr size_t kMaxKeysBytes = 64 * 1024;

void set_cloexec(int fd, bool on) {
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0) return;
  fcntl(fd, F_SETFD, on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC));
}
}  // namespace

Inherited take_inherited() {
  Inherited in;
  // Format: one "key\tfd,fd,...\n" line per listener (keys hold ':' and '@', never tabs).
  if (const char* v = std::getenv(kFdsVar)) {
    std::istringstream lines(v);
    std::string line;
    while (std::getline(lines, line)) {
      size_t tab = line.find('\t');
      if (tab == std::string::npos) continue;
      std::vector<int>& fds = in.fds[line.substr(0, tab)];
      std::istringstream list(line.substr(tab + 1));
      std::string fd;
      while (std::getline(list, fd, ',')) {
        int n = std::atoi(fd.c_str());
        if (n > 2 && fcntl(n, F_GETFD) >= 0) {
          set_cloexec(n, true);
          fds.push_back(n);
        }
      }
    }
    unsetenv(kFdsVar);
  }
  if (const char* p = std::getenv(kParentVar)) {
    in.parent = static_cast<pid_t>(std::atoi(p));
    unsetenv(kParentVar);
  }
  if (const char* k = std::getenv(kKeysVar)) {
    int fd = std::atoi(k);
    if (fd > 2 && fcntl(fd, F_GETFD) >= 0) {
      char buf[4096];
      ssize_t n;
      while ((n = pread(fd, buf, sizeof buf, static_cast<off_t>(in.ticket_keys.size()))) > 0 &&
             in.ticket_keys.size() < kMaxKeysBytes) {
        in.ticket_keys.append(buf, static_cast<size_t>(n));
      }
      close(fd);
    }
    unsetenv(kKeysVar);
  }
  return in;
}

pid_t spawn_upgrade(const std::string& exe, const std::vector<std::string>& argv, const FdMap& fds,
                    const std::string& ticket_keys, std::string* err) {
  // The keys travel in an anonymous memory file, never in the environment (readable in /proc)
  // or on disk; only the child inherits it.
  int keys_fd = -1;
  if (!ticket_keys.empty()) {
    keys_fd = memfd_create("parapet-ticket-keys", 0);  // no MFD_CLOEXEC: the child inherits it
    if (keys_fd < 0 || write(keys_fd, ticket_keys.data(), ticket_keys.size()) !=
                           static_cast<ssize_t>(ticket_keys.size())) {
      *err = std::string("ticket keys: ") + std::strerror(errno);
      if (keys_fd >= 0) close(keys_fd);
      return -1;
    }
  }
  std::string list;
  for (const auto& [key, v] : fds) {
    list += key + "\t";
    for (size_t i = 0; i < v.size(); ++i) list += (i ? "," : "") + std::to_string(v[i]);
    list += "\n";
  }
  // Everything exec needs is built before fork: the child only calls async-signal-safe code.
  std::vector<std::string> env_store;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, kFdsVar, std::strlen(kFdsVar)) == 0) continue;
    if (std::strncmp(*e, kParentVar, std::strlen(kParentVar)) == 0) continue;
    if (std::strncmp(*e, kKeysVar, std::strlen(kKeysVar)) == 0) continue;
    env_store.emplace_back(*e);
  }
  if (keys_fd >= 0) env_store.push_back(std::string(kKeysVar) + "=" + std::to_string(keys_fd));
  env_store.push_back(std::string(kFdsVar) + "=" + list);
  env_store.push_back(std::string(kParentVar) + "=" + std::to_string(getpid()));
  std::vector<char*> envp, args;
  for (std::string& s : env_store) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_store = argv;
  for (std::string& s : argv_store) args.push_back(s.data());
  args.push_back(nullptr);

  for (const auto& kv : fds) {
    for (int fd : kv.second) set_cloexec(fd, false);
  }
  pid_t pid = fork();
  if (pid == 0) {
    execve(exe.c_str(), args.data(), envp.data());
    _exit(127);
  }
  int saved = errno;
  if (keys_fd >= 0) close(keys_fd);
  for (const auto& kv : fds) {
    for (int fd : kv.second) set_cloexec(fd, true);
  }
  if (pid < 0) *err = std::string("fork: ") + std::strerror(saved);
  return pid;
}

}  // namespace parapet
