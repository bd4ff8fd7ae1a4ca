// A global operator new that counts every heap allocation of the process, for the
// zero-allocation test (tests/alloc/) and the rules microbenchmark (bench/micro/filters_bench).
// Link counting_new.cc into an executable of its own: the other tests and benches must not
// inherit the replacement. Not for the sanitizer builds (they bring their own operator new).
#pragma once

#include <cstdint>

namespace parapet::testing {

// Allocations made through operator new since the process started.
uint64_t allocation_count();

}  // namespace parapet::testing
