// The Virtual Token Counter policy, table-driven with a fake memory view,
// and the fairness it buys over FCFS on the real step loop.
#include <gtest/gtest.h>

#include "scheduler/policy.h"

namespace loraserve {
namespace {

class AllFit : public MemoryView {
 public:
  bool try_admit(const Request&) override { return true; }
};

std::unique_ptr<Request> req(const std::string& tenant, uint64_t seq, int prompt = 4) {
  auto r = std::make_unique<Request>();
  r->id = tenant + std::to_string(seq);
  r->params.tenant = tenant;
  r->params.prompt.assign(prompt, 1);
  r->arrival_seq = seq;
  return r;
}

TEST(VtcPolicy, ServesTheLeastServedTenantFirst) {
  VtcPolicy vtc(1.0, 2.0);
  // Tenant a floods first; b arrives later.
  std::vector<std::unique_ptr<Request>> rs;
  for (int i = 0; i < 6; ++i) rs.push_back(req("a", i));
  rs.push_back(req("b", 6));
  rs.push_back(req("b", 7));
  std::deque<Request*> waiting;
  for (auto& r : rs) {
    vtc.on_enqueue(*r);
    waiting.push_back(r.get());
  }
  // a has already been served 100 tokens.
  vtc.on_served(*rs[0], 50, 25);
  AllFit mem;
  auto picked = vtc.admit(waiting, 3, mem);
  ASSERT_EQ(picked.size(), 3u);
  EXPECT_EQ(picked[0]->id, "b6");
  EXPECT_EQ(picked[1]->id, "b7");
  EXPECT_EQ(picked[2]->id, "a0");
  EXPECT_DOUBLE_EQ(vtc.counters()["a"], 100.0);

  FcfsPolicy fcfs;
  auto in_order = fcfs.admit(waiting, 3, mem);
  EXPECT_EQ(in_order[0]->id, "a0");
  EXPECT_EQ(in_order[2]->id, "a2");
}

TEST(VtcPolicy, ProjectsChargesWithinOneRound) {
  VtcPolicy vtc;
  std::vector<std::unique_ptr<Request>> rs;
  rs.push_back(req("a", 0, 10));
  rs.push_back(req("a", 1, 10));
  rs.push_back(req("b", 2, 10));
  rs.push_back(req("b", 3, 10));
  std::deque<Request*> waiting;
  for (auto& r : rs) {
    vtc.on_enqueue(*r);
    waiting.push_back(r.get());
  }
  AllFit mem;
  auto picked = vtc.admit(waiting, 4, mem);
  ASSERT_EQ(picked.size(), 4u);
  // Alternates: a0 (a charged 10), b2, a1, b3.
  EXPECT_EQ(picked[0]->id, "a0");
  EXPECT_EQ(picked[1]->id, "b2");
  EXPECT_EQ(picked[2]->id, "a1");
  EXPECT_EQ(picked[3]->id, "b3");
}

TEST(VtcPolicy, ReturningTenantIsLiftedAndVictimIsTheMostServed) {
  VtcPolicy vtc;
  auto a = req("a", 0);
  auto b = req("b", 1);
  vtc.on_enqueue(*a);
  vtc.on_served(*a, 500, 0);
  // b was idle: it joins at a's level, not at 0 with 500 tokens of credit.
  vtc.on_enqueue(*b);
  EXPECT_DOUBLE_EQ(vtc.counters()["b"], 500.0);
  vtc.on_served(*b, 10, 0);
  EXPECT_EQ(vtc.preempt_victim({a.get(), b.get()}), b.get());
  vtc.on_finish(*a);
  vtc.on_finish(*b);
}

}  // namespace
}  // namespace loraserve
