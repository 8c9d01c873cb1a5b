// The one clock of the engine: deadlines, batch latencies and liveness all use it.
// Owns only the alias; no thread affinity.
#pragma once

#include <chrono>

namespace clipper {

using Clock = std::chrono::steady_clock;

}  // namespace clipper
