// When a request's (last) bytes reached the frontend, as far as one I/O loop can tell without kernel
// timestamps (libuv reads with read(2), so SO_TIMESTAMPING's control messages never reach us):
// the loop notes when it enters its poll and when the first read after the poll runs. Bytes read
// after a poll that slept arrived while it slept: they are stamped with the wake-up (time spent
// waiting for a CPU before the wake-up stays invisible). Bytes read after a poll that returned at
// once were already waiting: they arrived during the previous iteration, and are stamped with its
// start (at most one iteration early); all the reads of one iteration share its stamp, so requests
// handled late in a long iteration are seen as old. A request parsed long after its bytes arrived
// (a lagging loop, a CPU taken by a model) is thus seen as old, so admission control can refuse it
// before its body is decoded. A slow upload is not: the stamp is that of the bytes completing it.
// Loop thread only; one clock read per loop iteration and one per first read in it.
#pragma once

#include <chrono>
#include <cstdint>

#include "common/clock.h"

namespace clipper::http {

class ArrivalClock {
 public:
  // An arrival estimate and the loop iteration it was made in.
  struct Stamp {
    Clock::time_point time{};
    uint64_t iteration = 0;
  };

  // Right before the loop polls (a uv_prepare callback).
  void before_poll() {
    const Clock::time_point now = Clock::now();
    previous_began_ = read_this_iteration_ ? began_ : now;  // nothing read: its end bounds it
    poll_entered_ = now;
    read_this_iteration_ = false;
    ++iteration_;
  }

  // At each read or accept: the earliest time the bytes (the connection) can be taken to have arrived.
  Stamp at_read() {
    if (!read_this_iteration_) {
      began_ = Clock::now();
      slept_ = began_ - poll_entered_ > kSleptAfter;
      read_this_iteration_ = true;
    }
    return {slept_ ? began_ : previous_began_, iteration_};
  }

  // At a connection's first read. libuv polls a new connection only from the iteration after its
  // accept: bytes waiting in that poll (it returned at once) came with the connection, and take the
  // connection's arrival.
  Clock::time_point at_first_read(const Stamp& accepted) {
    const Stamp now = at_read();
    return !slept_ && now.iteration == accepted.iteration + 1 ? accepted.time : now.time;
  }

  // A poll that took longer than this slept (the system call alone takes a few microseconds).
  static constexpr auto kSleptAfter = std::chrono::microseconds(50);

 private:
  Clock::time_point poll_entered_{};
  Clock::time_point began_{};           // this iteration's first read
  Clock::time_point previous_began_{};  // the previous iteration's first read (or its end)
  uint64_t iteration_ = 0;
  bool read_this_iteration_ = false;
  bool slept_ = true;
};

}  // namespace clipper::http
