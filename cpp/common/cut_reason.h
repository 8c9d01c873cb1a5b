// Why a batch was cut when it was: full, a deadline, the delayed-batching wait ran out, or the
// queue emptied. Counted per model version and shown in the batching state. No thread affinity.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace clipper {

enum class CutReason : uint8_t { Full = 0, Deadline = 1, WaitExpired = 2, QueueEmpty = 3 };
inline constexpr std::size_t kCutReasons = 4;
std::string_view cut_reason_name(CutReason reason);

}  // namespace clipper
