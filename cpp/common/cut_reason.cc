#include "common/cut_reason.h"

namespace clipper {

std::string_view cut_reason_name(CutReason reason) {
  switch (reason) {
    case CutReason::Full: return "full";
    case CutReason::Deadline: return "deadline";
    case CutReason::WaitExpired: return "wait_expired";
    case CutReason::QueueEmpty: return "queue_empty";
  }
  return "unknown";
}

}  // namespace clipper
