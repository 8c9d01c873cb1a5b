// Drawing one linked model by weight, for plans that query a single model per query. Pure functions
// plus a per-thread generator, so I/O threads draw without sharing state, and the uniform number an
// I/O thread's queries share within one pass of its event loop.
#pragma once

#include <cstddef>
#include <span>

namespace clipper {

// Index i with probability weights[i] / sum(weights), for `uniform` in [0, 1). Non-positive and
// non-finite weights never win; when no weight is positive, index 0.
std::size_t draw_weighted(std::span<const double> weights, double uniform);

// A uniform draw in [0, 1) from the calling thread's own generator (seeded once per thread).
double thread_uniform();

// One uniform number per pass of an event loop, shared by every draw in that pass: each query still
// gets model i with probability weights[i] / sum (the number is uniform and fresh each pass), but the
// queries that arrive together and weigh alike go to the same model, so each replica's batch is cut
// from the whole pass's arrivals rather than a share of them (independent draws over two models
// halve every batch, doubling the per-batch work of the frontend and the replicas).
// Thread: the owning loop's thread only.
class PassUniform {
 public:
  // The pass's number; drawn on first use after next_pass().
  double get() {
    if (!(value_ >= 0.0)) value_ = thread_uniform();
    return value_;
  }
  // The loop finished a pass (its I/O callbacks ran): the next draw uses a new number.
  void next_pass() { value_ = -1.0; }

 private:
  double value_ = -1.0;
};

}  // namespace clipper
