#include "selection/selection_plan.h"

namespace clipper {

std::optional<SelectionMode> parse_selection_mode(std::string_view name) {
  if (name == "single") return SelectionMode::Single;
  if (name == "sample") return SelectionMode::Sample;
  if (name == "ensemble") return SelectionMode::Ensemble;
  if (name == "cascade") return SelectionMode::Cascade;
  return std::nullopt;
}

std::string_view selection_mode_name(SelectionMode mode) {
  switch (mode) {
    case SelectionMode::Single:
      return "single";
    case SelectionMode::Sample:
      return "sample";
    case SelectionMode::Ensemble:
      return "ensemble";
    case SelectionMode::Cascade:
      return "cascade";
  }
  return "single";
}

}  // namespace clipper
