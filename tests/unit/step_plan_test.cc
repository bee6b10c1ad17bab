#include "engine/step_plan.h"

#include <gtest/gtest.h>

namespace loraserve {
namespace {

TEST(StepPlan, GroupsByAdapterAndFlattensTokens) {
  std::vector<int32_t> a = {5, 6, 7}, b = {8}, c = {9, 10}, d = {11};
  std::vector<PlanEntry> e(4);
  e[0] = PlanEntry{100, 2, 0, &a, true, {}, 0};   // prefill, adapter 2
  e[1] = PlanEntry{101, -1, 4, &b, true, {}, 3};  // decode, base model
  e[2] = PlanEntry{102, 0, 0, &c, false, {}, 0};  // prefill chunk, no sample, adapter 0
  e[3] = PlanEntry{103, 2, 9, &d, true, {}, 5};   // decode, adapter 2
  BuiltPlan p = build_step_plan(e);
  // Order by slot: -1 (101), 0 (102), 2 (100, 103).
  EXPECT_EQ(p.order, (std::vector<int32_t>{1, 2, 0, 3}));
  EXPECT_EQ(p.seq_ids, (std::vector<int64_t>{101, 102, 100, 103}));
  EXPECT_EQ(p.plan.token_ids, (std::vector<int32_t>{8, 9, 10, 5, 6, 7, 11}));
  EXPECT_EQ(p.plan.positions, (std::vector<int32_t>{4, 0, 1, 0, 1, 2, 9}));
  EXPECT_EQ(p.plan.token_seq, (std::vector<int32_t>{0, 1, 1, 2, 2, 2, 3}));
  EXPECT_EQ(p.plan.sample_rows, (std::vector<int32_t>{0, 5, 6}));
  EXPECT_EQ(p.sample_entry, (std::vector<int32_t>{1, 0, 3}));
  EXPECT_EQ(p.plan.sample_steps, (std::vector<uint64_t>{3, 0, 5}));
  ASSERT_EQ(p.adapter_runs.size(), 2u);
  EXPECT_EQ(p.adapter_runs[0].slot, 0);
  EXPECT_EQ(p.adapter_runs[0].begin, 1);
  EXPECT_EQ(p.adapter_runs[0].end, 3);
  EXPECT_EQ(p.adapter_runs[1].slot, 2);  // 100 and 103 merged into one segment
  EXPECT_EQ(p.adapter_runs[1].begin, 3);
  EXPECT_EQ(p.adapter_runs[1].end, 7);
}

}  // namespace
}  // namespace loraserve
