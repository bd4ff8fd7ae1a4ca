// A circuit breaker for one tenant's script on one worker: a script whose runs keep being
// stopped by the CPU budget or the memory cap stops being run for a while, so that it cannot
// spend the worker's loop (and other tenants' latency) on runs that are going to be stopped.
//
//   closed     every run goes ahead; `failures` consecutive stopped runs open it.
//   open       no run until `cooldown` has passed since it opened; the caller applies the
//              tenant's failure outcome instead.
//   half-open  after the cooldown, one run goes ahead (the probe): stopped again, the breaker
//              opens again for another cooldown; otherwise it closes.
//
// Only stops count (Timeout, OutOfMemory): a script error is cheap and is the script's own
// business. Not thread-safe: one per tenant per worker thread.
#pragma once

#include <chrono>
#include <cstdint>

namespace parapet::lua {

class LuaBreaker {
 public:
  using Clock = std::chrono::steady_clock;

  // failures == 0: never opens.
  LuaBreaker(uint32_t failures, std::chrono::milliseconds cooldown)
      : failures_(failures), cooldown_(cooldown) {}

  // May a run go ahead now? False while open. The first call after the cooldown returns true
  // (the probe) and puts the breaker half-open until record().
  bool allow(Clock::time_point now);

  // The outcome of a run that allow() let through. Returns true when this outcome opened the
  // breaker (a trip: the caller logs it once and counts it).
  bool record(bool stopped, Clock::time_point now);

  bool is_open() const { return open_; }
  uint32_t consecutive_stops() const { return stops_; }

 private:
  uint32_t failures_;
  std::chrono::milliseconds cooldown_;
  uint32_t stops_ = 0;
  bool open_ = false;
  bool probing_ = false;
  Clock::time_point until_{};
};

inline bool LuaBreaker::allow(Clock::time_point now) {
  if (!open_) return true;
  if (probing_ || now < until_) return false;
  probing_ = true;
  return true;
}

inline bool LuaBreaker::record(bool stopped, Clock::time_point now) {
  if (!stopped) {
    stops_ = 0;
    open_ = probing_ = false;
    return false;
  }
  ++stops_;
  const bool trip = probing_ || (!open_ && failures_ != 0 && stops_ >= failures_);
  if (!trip) return false;
  open_ = true;
  probing_ = false;
  stops_ = 0;
  until_ = now + cooldown_;
  return true;
}

}  // namespace parapet::lua
