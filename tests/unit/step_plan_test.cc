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

namespace loraserve {
namespace {

// Two sequences, 2 layers, 4-token pages: seq 0 owns blocks {0,1} (pages
// 0..3), seq 1 owns block {2} (pages 4,5). Valid as built; each mutation
// names what it broke.
StepPlan valid_plan() {
  StepPlan p;
  p.token_ids = {10, 11, 12};
  p.positions = {6, 7, 3};
  p.token_seq = {0, 0, 1};
  p.num_seqs = 2;
  p.kv_block_indptr = {0, 2, 3};
  p.kv_page_ids = {0, 1, 2, 3, 4, 5};
  p.sample_rows = {1, 2};
  p.sampling.resize(2);
  p.sample_steps = {0, 0};
  return p;
}

TEST(StepPlan, ValidateRejectsWhatTheKernelsWouldTrust) {
  PoolGeometry pool;
  pool.num_pages = 6;
  pool.page_bytes = 4096;
  pool.kv_page_tokens = 4;
  EXPECT_TRUE(validate_step_plan(valid_plan(), 2, pool).ok());
  struct Case {
    const char* what;
    void (*mutate)(StepPlan*);
    const char* message;
  };
  const Case cases[] = {
      {"positions shorter", [](StepPlan* p) { p->positions.pop_back(); }, "differ in length"},
      {"indptr short", [](StepPlan* p) { p->kv_block_indptr.pop_back(); }, "num_seqs + 1"},
      {"indptr decreases", [](StepPlan* p) { p->kv_block_indptr = {0, 2, 1}; }, "decreases"},
      {"pages short", [](StepPlan* p) { p->kv_page_ids.pop_back(); }, "shorter than the block table"},
      {"page outside", [](StepPlan* p) { p->kv_page_ids[3] = 6; }, "outside the pool"},
      {"sequence outside", [](StepPlan* p) { p->token_seq[2] = 2; }, "names sequence 2"},
      {"negative position", [](StepPlan* p) { p->positions[0] = -1; }, "negative position"},
      {"beyond its blocks", [](StepPlan* p) { p->positions[2] = 4; }, "beyond the 4 tokens"},
      {"sample row outside", [](StepPlan* p) { p->sample_rows[1] = 3; }, "sample row out of range"},
      {"sampling short", [](StepPlan* p) { p->sample_steps.pop_back(); }, "sampling arrays"},
  };
  for (const Case& c : cases) {
    StepPlan p = valid_plan();
    c.mutate(&p);
    const Status s = validate_step_plan(p, 2, pool);
    EXPECT_FALSE(s.ok()) << c.what;
    EXPECT_NE(s.message().find(c.message), std::string::npos) << c.what << ": " << s;
  }
}

}  // namespace
}  // namespace loraserve
