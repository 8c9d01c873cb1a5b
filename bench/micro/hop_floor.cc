// The floor of the cross-process hop a shared-memory replica pays per batch (issue 13): two processes
// share one mapping holding a 64-byte message slot each way; the "frontend" (parent) writes a
// request, wakes the "replica" (child), which reads it, writes a 64-byte answer and wakes the parent.
// Both sleep while they wait, as the transport's sides do at low load. CPU per round trip comes from
// getrusage on each side (user + system), wall time from the parent's clock. Processes unpinned.
//
// Wake-up mechanisms (--mechanism):
//   eventfd       blocking read() on an eventfd, write() to wake: two system calls per side per trip
//   poll_eventfd  poll() then read() on the eventfd, as the replica waits today (it also watches its
//                 ZeroMQ socket): three per side
//   epoll_et      epoll_wait on the eventfd watched edge-triggered, never read back, as the replica
//                 waits since the epoll commit: two per side
//   futex         FUTEX_WAIT on a word in the mapping, FUTEX_WAKE: the least the kernel offers
// --rate R paces the parent (absolute-time sleeps, R trips per second; 0: back to back), so each side
// goes idle between trips as under an open loop of R batches per second.
//
//   hop_floor [--mechanism eventfd|poll_eventfd|epoll_et|futex] [--trips N] [--repeats K] [--rate R]
// Prints one JSON object: per repeat and as medians, CPU us per round trip of each side, wall us.
#include <linux/futex.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <new>
#include <string>
#include <vector>

namespace {

enum class Mechanism { Eventfd, PollEventfd, EpollEt, Futex };

struct alignas(64) Slot {
  std::atomic<uint32_t> sequence;  // bumped by the writer after the message is in place
  std::atomic<uint32_t> sleeping;  // the reader announced it sleeps (futex: it waits on `sequence`)
  alignas(64) unsigned char message[64];
};

struct Shared {
  Slot request;   // parent -> child
  Slot response;  // child -> parent
  double child_cpu_us;
};

double cpu_us() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1e6 + usage.ru_utime.tv_usec +
         usage.ru_stime.tv_usec;
}

double now_us() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now.tv_sec * 1e6 + now.tv_nsec / 1e3;
}

long futex(std::atomic<uint32_t>* word, int op, uint32_t value) {
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), op, value, nullptr, nullptr, 0);
}

// One side's end of a slot: how it waits for the next message and wakes its reader.
class Endpoint {
 public:
  Endpoint(Mechanism mechanism, Slot* slot, int doorbell) : mechanism_(mechanism), slot_(slot), doorbell_(doorbell) {
    if (mechanism_ != Mechanism::EpollEt) return;
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    epoll_event event{};
    event.events = EPOLLIN | EPOLLET;
    event.data.fd = doorbell_;
    if (epoll_ < 0 || epoll_ctl(epoll_, EPOLL_CTL_ADD, doorbell_, &event) != 0) std::abort();
  }
  ~Endpoint() {
    if (epoll_ >= 0) close(epoll_);
  }
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  // Writer: publish a message and wake the reader if it sleeps (the transport's protocol).
  void send(const unsigned char* message) {
    std::memcpy(slot_->message, message, sizeof(slot_->message));
    slot_->sequence.fetch_add(1, std::memory_order_seq_cst);
    if (slot_->sleeping.load(std::memory_order_seq_cst) == 0) return;
    if (mechanism_ == Mechanism::Futex) {
      futex(&slot_->sequence, FUTEX_WAKE, 1);
    } else {
      const uint64_t one = 1;
      if (write(doorbell_, &one, sizeof(one)) != sizeof(one)) std::abort();
    }
  }

  // Reader: wait for message number `expected`, copy it out.
  void receive(uint32_t expected, unsigned char* out) {
    while (slot_->sequence.load(std::memory_order_acquire) != expected) {
      slot_->sleeping.store(1, std::memory_order_seq_cst);
      const uint32_t seen = slot_->sequence.load(std::memory_order_seq_cst);
      if (seen != expected) sleep(seen);
      slot_->sleeping.store(0, std::memory_order_relaxed);
    }
    std::memcpy(out, slot_->message, sizeof(slot_->message));
  }

 private:
  void sleep(uint32_t seen) {
    uint64_t drained = 0;
    switch (mechanism_) {
      case Mechanism::Futex:
        futex(&slot_->sequence, FUTEX_WAIT, seen);  // returns at once if it moved meanwhile
        break;
      case Mechanism::PollEventfd: {
        pollfd watched{doorbell_, POLLIN, 0};
        if (poll(&watched, 1, -1) < 0 && errno != EINTR) std::abort();
        if (read(doorbell_, &drained, sizeof(drained)) < 0 && errno != EAGAIN) std::abort();
        break;
      }
      case Mechanism::EpollEt: {
        epoll_event event{};
        if (epoll_wait(epoll_, &event, 1, -1) < 0 && errno != EINTR) std::abort();
        break;
      }
      case Mechanism::Eventfd:
        if (read(doorbell_, &drained, sizeof(drained)) < 0 && errno != EINTR) std::abort();
        break;
    }
  }

  Mechanism mechanism_;
  Slot* slot_;
  int doorbell_;
  int epoll_ = -1;
};

struct Result {
  double parent_cpu_us, child_cpu_us, wall_us;
};

Result run_once(Mechanism mechanism, long trips, double rate) {
  auto* shared = static_cast<Shared*>(
      mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  if (shared == MAP_FAILED) std::abort();
  new (shared) Shared{};
  // Only the plain eventfd waits by a blocking read; the others wait in poll/epoll.
  const int flags = mechanism == Mechanism::Eventfd ? 0 : EFD_NONBLOCK;
  const int request_doorbell = eventfd(0, flags);
  const int response_doorbell = eventfd(0, flags);
  const pid_t child = fork();
  if (child == 0) {
    Endpoint requests(mechanism, &shared->request, request_doorbell);
    Endpoint responses(mechanism, &shared->response, response_doorbell);
    unsigned char message[64];
    const double start = cpu_us();
    for (long trip = 1; trip <= trips; ++trip) {
      requests.receive(static_cast<uint32_t>(trip), message);
      message[0] ^= 1;
      responses.send(message);
    }
    shared->child_cpu_us = cpu_us() - start;
    _exit(0);
  }
  Endpoint requests(mechanism, &shared->request, request_doorbell);
  Endpoint responses(mechanism, &shared->response, response_doorbell);
  unsigned char message[64] = {};
  const double gap_ns = rate > 0 ? 1e9 / rate : 0;
  timespec next{};
  clock_gettime(CLOCK_MONOTONIC, &next);
  const double cpu_start = cpu_us(), wall_start = now_us();
  for (long trip = 1; trip <= trips; ++trip) {
    if (gap_ns > 0) {
      next.tv_nsec += static_cast<long>(gap_ns);
      while (next.tv_nsec >= 1000000000L) {
        next.tv_nsec -= 1000000000L;
        ++next.tv_sec;
      }
      clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, nullptr);
    }
    std::memcpy(message, &trip, sizeof(trip));
    requests.send(message);
    responses.receive(static_cast<uint32_t>(trip), message);
  }
  Result result{cpu_us() - cpu_start, 0, now_us() - wall_start};
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) std::abort();
  result.child_cpu_us = shared->child_cpu_us;
  close(request_doorbell);
  close(response_doorbell);
  munmap(shared, sizeof(Shared));
  result.parent_cpu_us /= trips;
  result.child_cpu_us /= trips;
  result.wall_us /= trips;
  return result;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  Mechanism mechanism = Mechanism::Eventfd;
  std::string name = "eventfd";
  long trips = 200000;
  int repeats = 5;
  double rate = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s needs a value\n", arg.c_str());
      return 2;
    }
    const char* value = argv[++i];
    if (arg == "--mechanism") {
      name = value;
      if (name == "eventfd") mechanism = Mechanism::Eventfd;
      else if (name == "poll_eventfd") mechanism = Mechanism::PollEventfd;
      else if (name == "epoll_et") mechanism = Mechanism::EpollEt;
      else if (name == "futex") mechanism = Mechanism::Futex;
      else {
        std::fprintf(stderr, "unknown mechanism %s (eventfd, poll_eventfd, epoll_et, futex)\n", value);
        return 2;
      }
    } else if (arg == "--trips") {
      trips = std::atol(value);
    } else if (arg == "--repeats") {
      repeats = std::atoi(value);
    } else if (arg == "--rate") {
      rate = std::atof(value);
    } else {
      std::fprintf(stderr, "unknown option %s\n", arg.c_str());
      return 2;
    }
  }
  if (trips < 1 || repeats < 1 || rate < 0) {
    std::fprintf(stderr, "--trips and --repeats must be positive, --rate not negative\n");
    return 2;
  }
  std::vector<double> parent, child, wall;
  std::printf("{\"mechanism\": \"%s\", \"trips\": %ld, \"rate\": %.0f, \"runs\": [", name.c_str(), trips, rate);
  for (int r = 0; r < repeats; ++r) {
    const Result result = run_once(mechanism, trips, rate);
    parent.push_back(result.parent_cpu_us);
    child.push_back(result.child_cpu_us);
    wall.push_back(result.wall_us);
    std::printf("%s{\"parent_cpu_us\": %.3f, \"child_cpu_us\": %.3f, \"wall_us\": %.3f}", r ? ", " : "",
                result.parent_cpu_us, result.child_cpu_us, result.wall_us);
  }
  std::printf("], \"median\": {\"parent_cpu_us\": %.3f, \"child_cpu_us\": %.3f, \"both_cpu_us\": %.3f, "
              "\"wall_us\": %.3f}}\n",
              median(parent), median(child), median(parent) + median(child), median(wall));
  return 0;
}
