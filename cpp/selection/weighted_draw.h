// Drawing one linked model by weight, for plans that query a single model per query. Pure functions
// plus a per-thread generator, so I/O threads draw without sharing state.
#pragma once

#include <cstddef>
#include <span>

namespace clipper {

// Index i with probability weights[i] / sum(weights), for `uniform` in [0, 1). Non-positive and
// non-finite weights never win; when no weight is positive, index 0.
std::size_t draw_weighted(std::span<const double> weights, double uniform);

// A uniform draw in [0, 1) from the calling thread's own generator (seeded once per thread).
double thread_uniform();

}  // namespace clipper
