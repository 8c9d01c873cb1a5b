#include "rpc/wake_timer.h"

#include <sys/timerfd.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <type_traits>

namespace clipper {

// TFD_TIMER_ABSTIME on CLOCK_MONOTONIC takes the Clock's own readings: libstdc++'s steady_clock
// reads CLOCK_MONOTONIC on Linux.
static_assert(std::is_same_v<Clock, std::chrono::steady_clock>, "WakeTimer arms CLOCK_MONOTONIC times");

WakeTimer::WakeTimer() : fd_(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) {}

WakeTimer::~WakeTimer() {
  if (fd_ >= 0) ::close(fd_);
}

bool WakeTimer::arm(Clock::time_point at) {
  if (fd_ < 0 || at == armed_) return false;
  itimerspec spec{};  // all zero: disarm
  if (at != Clock::time_point::max()) {
    const int64_t nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(at.time_since_epoch()).count();
    // A zero it_value would disarm: the epoch itself is in the past anyway, 1 ns fires at once.
    spec.it_value.tv_sec = nanos > 0 ? nanos / 1'000'000'000 : 0;
    spec.it_value.tv_nsec = nanos > 0 ? nanos % 1'000'000'000 : 1;
  }
  if (::timerfd_settime(fd_, TFD_TIMER_ABSTIME, &spec, nullptr) != 0) return false;
  armed_ = at;
  return true;
}

void WakeTimer::clear() {
  if (fd_ < 0) return;
  uint64_t expirations;
  [[maybe_unused]] auto drained = ::read(fd_, &expirations, sizeof(expirations));
  armed_ = Clock::time_point::max();
}

}  // namespace clipper
