// parapet: edge HTTP reverse proxy.
//   parapet -c FILE            serve FILE
//   parapet --check -c FILE    validate FILE, exit 0 (valid) or 1
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "config/config.h"
#include "proxy/phase_lua.h"
#include "proxy/policy.h"
#include "proxy/server.h"

#ifndef PARAPET_VERSION
#define PARAPET_VERSION "0.0.0"
#endif

namespace {

void usage(FILE* out) {
  std::fprintf(out,
               "usage: parapet -c FILE [--check]\n"
               "  -c, --config FILE   configuration file (YAML, see docs/config.md)\n"
               "  -t, --check         validate the configuration and exit 0 (valid) or 1\n"
               "  -v, --version       print the version and exit\n"
               "  -h, --help          print this help and exit\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string file;
  bool check = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "-c" || a == "--config") && i + 1 < argc) {
      file = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      file = a.substr(9);
    } else if (a == "-t" || a == "--check") {
      check = true;
    } else if (a == "-v" || a == "--version") {
      std::printf("parapet %s\n", PARAPET_VERSION);
      return 0;
    } else if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "parapet: unknown argument '%s'\n", a.c_str());
      usage(stderr);
      return 2;
    }
  }
  if (file.empty()) {
    std::fprintf(stderr, "parapet: a configuration file is required (-c FILE)\n");
    usage(stderr);
    return 2;
  }
  parapet::config::LoadResult r = parapet::config::load_file(file);
  if (!r.ok()) {
    for (const std::string& e : r.errors) std::fprintf(stderr, "%s\n", e.c_str());
    std::fprintf(stderr, "parapet: %s: %zu error(s), configuration refused\n", file.c_str(),
                 r.errors.size());
    return 1;
  }
  std::vector<std::string> tls_errors;
  parapet::build_tls(r.config, &tls_errors);        // certificates: readable, matching, not expired
  parapet::Policies::build(r.config, &tls_errors);  // rules: expressions, lists, overrides
  if (tls_errors.empty()) parapet::LuaRuntime::build(r.config, &tls_errors);  // scripts
  if (!tls_errors.empty()) {
    for (const std::string& e : tls_errors) std::fprintf(stderr, "%s\n", e.c_str());
    std::fprintf(stderr, "parapet: %s: %zu error(s), configuration refused\n", file.c_str(),
                 tls_errors.size());
    return 1;
  }
  if (check) {
    std::printf("parapet: %s: configuration ok\n", file.c_str());
    return 0;
  }
  std::signal(SIGPIPE, SIG_IGN);
  // How to start this binary again for an upgrade: its path now (a new build installed there
  // is what SIGUSR2 starts) and the same arguments.
  char exe[PATH_MAX];
  std::string self = realpath(argv[0], exe) != nullptr ? exe : "/proc/self/exe";
  std::vector<std::string> args(argv, argv + argc);
  parapet::Server server;
  return server.run(std::move(r.config), self, args);
}
