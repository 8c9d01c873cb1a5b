#include "selection/ensemble_combiner.h"

#include <absl/container/inlined_vector.h>

#include <charconv>
#include <cmath>
#include <optional>

namespace clipper {
namespace {

std::string_view trimmed(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\n' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\n' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// The output as a finite number, if all of it is one (JSON strings with quotes are labels).
std::optional<double> as_number(std::string_view output) {
  const std::string_view text = trimmed(output);
  if (text.empty()) return std::nullopt;
  double value = 0.0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) return std::nullopt;
  return value;
}

double usable(double weight) { return std::isfinite(weight) && weight > 0.0 ? weight : 0.0; }

std::string render_number(double value) {
  char buffer[32];
  const auto [end, error] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return error == std::errc() ? std::string(buffer, end) : std::to_string(value);
}

}  // namespace

CombinedAnswer combine_answers(std::span<const ModelAnswer> answers, std::span<const double> weights) {
  CombinedAnswer combined;
  double total_weight = 0.0;
  double answered_weight = 0.0;
  bool all_numbers = true;
  bool any_fraction = false;
  absl::InlinedVector<std::optional<double>, 4> numbers(answers.size());
  for (std::size_t i = 0; i < answers.size(); ++i) {
    const double weight = i < weights.size() ? usable(weights[i]) : 0.0;
    total_weight += weight;
    if (!answers[i].answered) {
      combined.partial = true;
      continue;
    }
    combined.answered = true;
    answered_weight += weight;
    numbers[i] = as_number(answers[i].output);
    if (!numbers[i]) {
      all_numbers = false;
    } else if (*numbers[i] != std::floor(*numbers[i])) {
      any_fraction = true;
    }
  }
  if (!combined.answered) return combined;

  if (all_numbers && any_fraction) {
    double sum = 0.0;
    double weight_sum = 0.0;
    double plain_sum = 0.0;
    std::size_t count = 0;
    for (std::size_t i = 0; i < answers.size(); ++i) {
      if (!answers[i].answered) continue;
      const double weight = i < weights.size() ? usable(weights[i]) : 0.0;
      sum += weight * *numbers[i];
      weight_sum += weight;
      plain_sum += *numbers[i];
      ++count;
    }
    // With every answering model at weight 0, fall back to the plain mean rather than dividing by 0.
    combined.output = render_number(weight_sum > 0.0 ? sum / weight_sum : plain_sum / static_cast<double>(count));
    combined.confidence = total_weight > 0.0 ? answered_weight / total_weight : 0.0;
    return combined;
  }

  // Weighted vote: each distinct answer collects the weight of the models that gave it.
  std::size_t best = answers.size();
  double best_weight = -1.0;
  for (std::size_t i = 0; i < answers.size(); ++i) {
    if (!answers[i].answered) continue;
    double support = 0.0;
    bool seen_before = false;
    for (std::size_t j = 0; j < answers.size(); ++j) {
      if (!answers[j].answered) continue;
      const bool same = numbers[i] && numbers[j] ? *numbers[i] == *numbers[j]
                                                 : trimmed(answers[i].output) == trimmed(answers[j].output);
      if (!same) continue;
      if (j < i) {
        seen_before = true;
        break;
      }
      support += j < weights.size() ? usable(weights[j]) : 0.0;
    }
    if (seen_before) continue;
    if (support > best_weight) {
      best_weight = support;
      best = i;
    }
  }
  combined.output = std::string(answers[best].output);
  combined.confidence = total_weight > 0.0 ? best_weight / total_weight : 0.0;
  return combined;
}

}  // namespace clipper
