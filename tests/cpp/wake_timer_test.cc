#include "rpc/wake_timer.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <time.h>

#include <chrono>

namespace clipper {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

bool readable(int fd, int timeout_millis = 0) {
  pollfd item{fd, POLLIN, 0};
  return ::poll(&item, 1, timeout_millis) == 1 && (item.revents & POLLIN) != 0;
}

TEST(WakeTimer, ArmsTheClocksOwnTimes) {
  // TFD_TIMER_ABSTIME on CLOCK_MONOTONIC: the Clock must read the same clock.
  timespec monotonic{};
  ::clock_gettime(CLOCK_MONOTONIC, &monotonic);
  const auto clock_nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
  const int64_t monotonic_nanos = int64_t{monotonic.tv_sec} * 1'000'000'000 + monotonic.tv_nsec;
  EXPECT_LT(std::abs(clock_nanos - monotonic_nanos), 10'000'000);
}

TEST(WakeTimer, WakesAtASubMillisecondTimeNotEarlier) {
  WakeTimer timer;
  ASSERT_TRUE(timer.valid());
  // A millisecond timer armed for 200 us turns due after 1 ms at the soonest; this one is readable
  // once the time has passed (a 300 us margin for the kernel's timer slack and a busy machine's
  // interrupt; three tries, each fresh, so one stolen slice of the VM does not fail it).
  bool woke_before_a_millisecond = false;
  for (int attempt = 0; attempt < 3 && !woke_before_a_millisecond; ++attempt) {
    const Clock::time_point at = Clock::now() + microseconds(200);
    ASSERT_TRUE(timer.arm(at));
    EXPECT_FALSE(readable(timer.fd())) << "fired before its time";
    while (Clock::now() < at + microseconds(300)) {
    }
    woke_before_a_millisecond = readable(timer.fd()) && Clock::now() < at + microseconds(800);
    timer.clear();
  }
  EXPECT_TRUE(woke_before_a_millisecond);
}

TEST(WakeTimer, ReArmsOnlyWhenTheTimeChanges) {
  WakeTimer timer;
  ASSERT_TRUE(timer.valid());
  const Clock::time_point at = Clock::now() + milliseconds(50);
  EXPECT_TRUE(timer.arm(at));
  EXPECT_FALSE(timer.arm(at));  // the same wake-up: no system call
  EXPECT_EQ(timer.armed(), at);
  EXPECT_TRUE(timer.arm(at + microseconds(1)));
  EXPECT_TRUE(timer.arm(Clock::time_point::max()));  // disarms
  EXPECT_FALSE(timer.arm(Clock::time_point::max()));
}

TEST(WakeTimer, ReArmingAFiredTimerForLaterMakesItUnreadable) {
  // ReplicaService never reads the timer: it relies on a re-arm resetting the expiration.
  WakeTimer timer;
  ASSERT_TRUE(timer.valid());
  ASSERT_TRUE(timer.arm(Clock::now() + microseconds(50)));
  ASSERT_TRUE(readable(timer.fd(), 1000));
  ASSERT_TRUE(timer.arm(Clock::now() + milliseconds(200)));
  EXPECT_FALSE(readable(timer.fd()));
  ASSERT_TRUE(timer.arm(Clock::time_point::max()));
  EXPECT_FALSE(readable(timer.fd(), 5));
}

TEST(WakeTimer, ATimeAlreadyPastFiresAtOnce) {
  WakeTimer timer;
  ASSERT_TRUE(timer.valid());
  ASSERT_TRUE(timer.arm(Clock::now() - milliseconds(1)));
  EXPECT_TRUE(readable(timer.fd(), 1000));
  timer.clear();
  EXPECT_FALSE(readable(timer.fd()));
  EXPECT_EQ(timer.armed(), Clock::time_point::max());
}

}  // namespace
}  // namespace clipper
