#include "selection/selection_weights.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace clipper {
namespace {

TEST(SelectionWeights, PublishedWeightsAreReadBackPerApplicationAndUser) {
  SelectionWeights table;
  const uint32_t digits = table.register_app("digits");
  const uint32_t other = table.register_app("other");
  EXPECT_NE(digits, other);
  EXPECT_EQ(table.register_app("digits"), digits);

  table.set(digits, 7, std::vector<double>{0.25, 0.75});
  std::vector<double> out;
  ASSERT_TRUE(table.get(digits, 7, out));
  EXPECT_EQ(out, (std::vector<double>{0.25, 0.75}));
  EXPECT_FALSE(table.get(digits, 8, out));
  EXPECT_FALSE(table.get(other, 7, out));

  table.set(digits, 7, std::vector<double>{1.0, 0.0, 0.0, 0.0, 0.0, 0.0});  // more than inline
  ASSERT_TRUE(table.get(digits, 7, out));
  EXPECT_EQ(out.size(), 6u);
  table.erase(digits, 7);
  EXPECT_FALSE(table.get(digits, 7, out));
}

TEST(SelectionWeights, ErasingAnApplicationForgetsEveryUserOfItOnly) {
  SelectionWeights table;
  const uint32_t a = table.register_app("a");
  const uint32_t b = table.register_app("b");
  for (int64_t uid = 0; uid < 100; ++uid) {
    table.set(a, uid, std::vector<double>{1.0});
    table.set(b, uid, std::vector<double>{1.0});
  }
  table.erase_app(a);
  EXPECT_EQ(table.size(), 100u);
  std::vector<double> out;
  EXPECT_FALSE(table.get(a, 5, out));
  EXPECT_TRUE(table.get(b, 5, out));
}

TEST(SelectionWeights, MemoryIsBoundedByTheCapacity) {
  SelectionWeights table(SelectionWeights::kShards * 4);
  const uint32_t app = table.register_app("many-users");
  for (int64_t uid = 0; uid < 100000; ++uid) table.set(app, uid, std::vector<double>{0.5, 0.5});
  EXPECT_LE(table.size(), table.capacity());
  std::vector<double> out;
  table.set(app, 123456789, std::vector<double>{0.1, 0.9});
  ASSERT_TRUE(table.get(app, 123456789, out));  // the newest write is always kept
  EXPECT_EQ(out[1], static_cast<double>(0.9f));
}

TEST(SelectionWeights, ReadersSeeWholeWeightVectorsWhileTheControlThreadWrites) {
  SelectionWeights table;
  const uint32_t app = table.register_app("a");
  table.set(app, 1, std::vector<double>{0.5, 0.5});
  std::atomic<bool> stop{false};
  std::atomic<int> torn{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&] {
      std::vector<double> out;
      while (!stop.load()) {
        if (table.get(app, 1, out) && out[0] + out[1] != 1.0) torn.fetch_add(1);
        std::this_thread::yield();  // readers that never pause would starve the writer on 2 cores
      }
    });
  }
  for (int i = 0; i < 5000; ++i) {
    const double first = (i % 2 == 0) ? 0.25 : 0.75;
    table.set(app, 1, std::vector<double>{first, 1.0 - first});
  }
  stop = true;
  for (auto& reader : readers) reader.join();
  EXPECT_EQ(torn.load(), 0);
}

}  // namespace
}  // namespace clipper
