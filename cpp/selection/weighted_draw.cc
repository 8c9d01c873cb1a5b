#include "selection/weighted_draw.h"

#include <cmath>
#include <random>

namespace clipper {
namespace {

bool counts(double weight) { return std::isfinite(weight) && weight > 0.0; }

}  // namespace

std::size_t draw_weighted(std::span<const double> weights, double uniform) {
  double total = 0.0;
  for (double weight : weights) total += counts(weight) ? weight : 0.0;
  if (!(total > 0.0)) return 0;
  double remaining = uniform * total;
  std::size_t last_counted = 0;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    if (!counts(weights[i])) continue;
    last_counted = i;
    if (remaining < weights[i]) return i;
    remaining -= weights[i];
  }
  return last_counted;  // rounding left `remaining` a hair over the last weight
}

double thread_uniform() {
  thread_local std::mt19937_64 generator{std::random_device{}()};
  thread_local std::uniform_real_distribution<double> distribution(0.0, 1.0);
  return distribution(generator);
}

}  // namespace clipper
