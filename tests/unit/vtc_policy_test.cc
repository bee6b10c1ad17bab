// The Virtual Token Counter policy, table-driven with a fake memory view,
// and the fairness it buys over FCFS on the real step loop.
#include <gtest/gtest.h>

#include <map>
#include <random>

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

// The admission rule as first written (a full rescan of the queue for each
// slot), kept here as the oracle for the bucketed implementation.
std::vector<Request*> rescan_admit(const std::map<std::string, double>& counters,
                                   const std::deque<Request*>& waiting, int32_t free_slots,
                                   MemoryView& memory, double w_prefill) {
  std::vector<Request*> out;
  std::vector<bool> taken(waiting.size(), false);
  std::map<std::string, double> projected = counters;
  while (static_cast<int32_t>(out.size()) < free_slots) {
    int best = -1;
    for (size_t i = 0; i < waiting.size(); ++i) {
      if (taken[i]) continue;
      if (best < 0) {
        best = static_cast<int>(i);
        continue;
      }
      const double cr = projected[waiting[i]->params.tenant];
      const double cb = projected[waiting[best]->params.tenant];
      if (cr < cb || (cr == cb && waiting[i]->arrival_seq < waiting[best]->arrival_seq)) {
        best = static_cast<int>(i);
      }
    }
    if (best < 0) break;
    if (!memory.try_admit(*waiting[best])) break;
    taken[best] = true;
    projected[waiting[best]->params.tenant] +=
        w_prefill * static_cast<double>(waiting[best]->context_len());
    out.push_back(waiting[best]);
  }
  return out;
}

// Admits the first `budget` requests it is asked about, then refuses.
class Budget : public MemoryView {
 public:
  explicit Budget(int budget) : left_(budget) {}
  bool try_admit(const Request& r) override {
    asked.push_back(r.id);
    return left_-- > 0;
  }
  std::vector<std::string> asked;

 private:
  int left_;
};

TEST(VtcPolicy, BucketedAdmissionPicksExactlyWhatAFullRescanPicks) {
  std::mt19937 rng(18);
  for (int round = 0; round < 400; ++round) {
    SCOPED_TRACE(round);
    VtcPolicy vtc(1.0, 2.0);
    const int tenants = 1 + static_cast<int>(rng() % 6);
    const int n = static_cast<int>(rng() % 40);
    std::vector<std::unique_ptr<Request>> rs;
    for (int i = 0; i < n; ++i) {
      rs.push_back(req(std::string(1, static_cast<char>('a' + rng() % tenants)), i,
                       1 + static_cast<int>(rng() % 30)));
    }
    std::deque<Request*> waiting;
    for (auto& r : rs) {
      vtc.on_enqueue(*r);
      waiting.push_back(r.get());
    }
    // Some service already given, so counters differ (and sometimes tie).
    for (auto& r : rs) {
      if (rng() % 3 == 0) vtc.on_served(*r, static_cast<int32_t>(rng() % 4) * 8, 0);
    }
    const int32_t slots = static_cast<int32_t>(rng() % 12);
    const int budget = static_cast<int>(rng() % 14);
    Budget got_mem(budget), want_mem(budget);
    std::vector<std::string> got, want;
    for (Request* r : vtc.admit(waiting, slots, got_mem)) got.push_back(r->id);
    for (Request* r : rescan_admit(vtc.counters(), waiting, slots, want_mem, 1.0)) {
      want.push_back(r->id);
    }
    ASSERT_EQ(got, want);
    ASSERT_EQ(got_mem.asked, want_mem.asked);  // the same requests were offered to memory
  }
}

}  // namespace
}  // namespace loraserve
