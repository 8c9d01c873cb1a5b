// Micro-benchmark of number parsing on the query path: decoding /predict and /update bodies
// (query/query_codec.*, whose numbers go through common/json_number.h) by the one-pass readers and by
// the general decoder, and the text -> double conversion alone with
// fast_float (what the engine uses) against std::from_chars (what it used before) and std::strtod,
// on the same texts in the same run, taking turns within each round. Medians of rounds; a round times
// enough repetitions of each to last about 2 ms of the thread's CPU time. Built with the C++ tests
// (CLIPPER_BUILD_TESTS); run: build/ctest/bench/micro/json_number_bench [rounds] (default 41).
// Timings on a shared machine are noisy: compare the ratios within one run.
#include <time.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bench_stats.h"
#include "common/json_number.h"
#include "query/query_codec.h"

namespace {

using micro_bench::median;

// The thread's CPU time, not wall time: on a shared machine the time this thread waited for a core
// does not count (cache and frequency effects of neighbours still do).
struct Clock {
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<Clock, duration>;
  static time_point now() {
    timespec spec{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &spec);
    return time_point(duration(spec.tv_sec * 1'000'000'000LL + spec.tv_nsec));
  }
};

// Repetitions of `work` that take about 2 ms.
int calibrate(const std::function<void()>& work) {
  int repetitions = 1;
  for (;;) {
    const auto started = Clock::now();
    for (int i = 0; i < repetitions; ++i) work();
    if (Clock::now() - started > std::chrono::milliseconds(2) || repetitions > (1 << 24)) return repetitions;
    repetitions *= 2;
  }
}

// Nanoseconds per call of each of `variants`, one sample of each per round, the variants taking turns
// within a round so that a disturbance of the machine hits them alike: medians, and the median of the
// per-round ratios of each variant to the first.
struct Timings {
  std::vector<double> nanos;
  std::vector<double> ratios;
};
Timings time_variants(int rounds, const std::vector<std::function<void()>>& variants) {
  std::vector<int> repetitions;
  for (const auto& work : variants) repetitions.push_back(calibrate(work));
  std::vector<std::vector<double>> samples(variants.size()), ratios(variants.size());
  for (int round = 0; round < rounds; ++round) {
    for (std::size_t v = 0; v < variants.size(); ++v) {
      const auto started = Clock::now();
      for (int i = 0; i < repetitions[v]; ++i) variants[v]();
      samples[v].push_back(std::chrono::duration<double, std::nano>(Clock::now() - started).count() /
                           repetitions[v]);
      ratios[v].push_back(samples[v].back() / samples[0].back());
    }
  }
  Timings timings;
  for (std::size_t v = 0; v < variants.size(); ++v) {
    timings.nanos.push_back(median(samples[v]));
    timings.ratios.push_back(median(ratios[v]));
  }
  return timings;
}

// Random doubles as Python's json.dumps writes them (up to 17 significant digits).
std::vector<std::string> random_double_texts(std::size_t count, std::mt19937_64& random) {
  std::normal_distribution<double> normal(0.0, 1000.0);
  std::vector<std::string> texts;
  char buffer[64];
  for (std::size_t i = 0; i < count; ++i) {
    std::snprintf(buffer, sizeof(buffer), "%.17g", normal(random));
    texts.emplace_back(buffer);
  }
  return texts;
}

// [n1, n2, ...] as Python's json.dumps writes it.
std::string number_array(const std::vector<std::string>& numbers) {
  std::string array = "[";
  for (std::size_t i = 0; i < numbers.size(); ++i) array += (i ? ", " : "") + numbers[i];
  return array + "]";
}

std::string predict_body(const std::vector<std::string>& numbers) {
  return "{\"input\": " + number_array(numbers) + "}";
}

volatile double sink = 0.0;  // keeps the conversions from being optimized away

}  // namespace

int main(int argc, char** argv) {
  // "calls BODY one-pass|general N": only decode body number BODY (0-6, in the order printed) N times,
  // untimed, for counting instructions under callgrind (the difference of two N is the cost per body).
  const bool count_only = argc == 5 && std::string(argv[1]) == "calls";
  const int rounds = count_only ? 3 : argc > 1 ? std::max(3, std::atoi(argv[1])) : 41;
  std::mt19937_64 random(7);
  const std::vector<std::string> ones(10, "1.0");
  const std::vector<std::string> ten = random_double_texts(10, random);
  const std::vector<std::string> thousand = random_double_texts(1000, random);

  std::printf("# json_number_bench: medians of %d rounds, CPU nanoseconds per call\n", rounds);
  // Each body decoded by the engine's decoder (the one-pass reader for these common bodies) and by the
  // general decoder (a rapidjson document, what every body took before the one-pass readers), taking
  // turns.
  std::printf("%-44s %12s %12s %10s\n", "decoding a body", "one-pass", "general",
              "one-pass/general (median of rounds)");
  struct Body {
    const char* name;
    std::string text;
    clipper::InputType type = clipper::InputType::Doubles;
    bool update = false;
  };
  std::string batch = "{\"input_batch\": [";
  for (int i = 0; i < 8; ++i) batch += (i ? ", " : "") + number_array(random_double_texts(10, random));
  const Body bodies[] = {
      {"10 doubles 1.0", predict_body(ones)},
      {"10 random doubles (17 digits)", predict_body(ten)},
      {"1000 random doubles (17 digits)", predict_body(thousand)},
      {"10 random doubles, uid and version", predict_body(ten).insert(1, "\"uid\": 7, \"version\": \"1\", ")},
      {"input_batch of 8 x 10 random doubles", batch + "]}"},
      {"update: uid, 10 random doubles, label", predict_body(ten).insert(1, "\"uid\": 7, \"label\": 1.0, "),
       clipper::InputType::Doubles, true},
      {"a string of 64 bytes (strings)", "{\"input\": \"" + std::string(64, 'x') + "\"}",
       clipper::InputType::Strings}};
  for (const Body& body : bodies) {
    auto decode = [&body](bool general) __attribute__((noinline)) {
      std::size_t elements = 0;
      if (body.update) {
        const auto decoded = general ? clipper::decode_update_body_general(body.text, body.type)
                                     : clipper::decode_update_body(body.text, body.type);
        if (!decoded.ok()) std::abort();
        elements = decoded.value->input.element_count;
      } else {
        const auto decoded = general ? clipper::decode_predict_body_general(body.text, body.type)
                                     : clipper::decode_predict_body(body.text, body.type);
        if (!decoded.ok()) std::abort();
        for (const auto& input : decoded.value->inputs) elements += input.element_count;
      }
      sink = sink + static_cast<double>(elements);
    };
    if (count_only) {
      if (&body - bodies != std::atoi(argv[2])) continue;
      const bool general = std::string(argv[3]) == "general";
      for (int i = std::atoi(argv[4]); i > 0; --i) decode(general);
      return 0;
    }
    const Timings timings = time_variants(rounds, {[&] { decode(false); }, [&] { decode(true); }});
    std::printf("%-44s %12.0f %12.0f %10.2fx\n", body.name, timings.nanos[0], timings.nanos[1],
                timings.ratios[1] == 0 ? 0.0 : 1.0 / timings.ratios[1]);
  }

  std::printf("\n%-44s %12s %12s %12s %10s\n", "conversion of 1000 texts", "fast_float", "from_chars",
              "strtod", "from_chars/fast_float (median of rounds)");
  struct Texts {
    const char* name;
    const std::vector<std::string>* texts;
  };
  const std::vector<std::string> thousand_ones(1000, "1.0");
  const Texts sets[] = {{"\"1.0\"", &thousand_ones}, {"random doubles (17 digits)", &thousand}};
  for (const Texts& set : sets) {
    const auto& texts = *set.texts;
    const Timings timings = time_variants(rounds, {
        [&] {
          for (const std::string& text : texts) sink = sink + clipper::parse_json_number(text).real;
        },
        [&] {
          for (const std::string& text : texts) {
            double value = 0.0;
            std::from_chars(text.data(), text.data() + text.size(), value);
            sink = sink + value;
          }
        },
        [&] {
          for (const std::string& text : texts) sink = sink + std::strtod(text.c_str(), nullptr);
        }});
    std::printf("%-44s %12.0f %12.0f %12.0f %10.2fx\n", set.name, timings.nanos[0], timings.nanos[1],
                timings.nanos[2], timings.ratios[1]);
  }
  return 0;
}
