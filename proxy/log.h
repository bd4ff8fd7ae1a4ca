// Error log to stderr: one line per event, written with a single fprintf (atomic per line).
#pragma once

#include <cstdio>

#define log_error(fmt, ...) std::fprintf(stderr, "parapet: " fmt "\n", ##__VA_ARGS__)
