// A wake-up at an absolute time of the engine's Clock with nanosecond resolution, for loops whose own
// timeouts count whole milliseconds (libuv's timers, zmq_poll): a timerfd that turns readable when
// the time comes, watched by the loop beside its other descriptors. Arming costs a system call, so
// arm() makes one only when the time changes: a loop that asks for the same wake-up on every pass
// pays nothing more.
// Readability: re-arming resets the timer's expirations, so a caller that arms only times still in
// the future (and does not sleep while a wake-up is due) never needs to read it; clear() is there
// for callers that do. One thread.
#pragma once

#include "common/clock.h"

namespace clipper {

class WakeTimer {
 public:
  // A timerfd on CLOCK_MONOTONIC (the Clock's). valid() is false when it could not be made: callers
  // then keep to their millisecond timeouts.
  WakeTimer();
  ~WakeTimer();
  WakeTimer(const WakeTimer&) = delete;
  WakeTimer& operator=(const WakeTimer&) = delete;

  bool valid() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  // Turns readable at `at`; Clock::time_point::max() disarms. Returns whether it made a system call
  // (false when `at` is what it is armed for already).
  bool arm(Clock::time_point at);
  Clock::time_point armed() const { return armed_; }
  // Drains expirations (after fd() turned readable); the timer stays armed for nothing.
  void clear();

 private:
  int fd_ = -1;
  Clock::time_point armed_ = Clock::time_point::max();
};

}  // namespace clipper
