// The scheduler: the FCFS policy table-driven with a fake memory view, and
// the real step loop over a tiny synthetic model: concurrent requests,
// preemption with recompute, cancellation, unload while in use.
#include "scheduler/scheduler.h"
#include "tests/support/request_stream_util.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <set>
#include <thread>

#include "scheduler/offline.h"
#include "checkpoint/model_weights.h"
#include "checkpoint/synth.h"

namespace loraserve {
namespace {

// --- policy, table-driven ---

class FakeMemory : public MemoryView {
 public:
  explicit FakeMemory(std::set<std::string> fits) : fits_(std::move(fits)) {}
  bool try_admit(const Request& r) override {
    asked_.push_back(r.id);
    return fits_.count(r.id) != 0;
  }
  std::set<std::string> fits_;
  std::vector<std::string> asked_;
};

std::vector<std::unique_ptr<Request>> make_requests(const std::vector<std::string>& ids) {
  std::vector<std::unique_ptr<Request>> out;
  for (size_t i = 0; i < ids.size(); ++i) {
    auto r = std::make_unique<Request>();
    r->id = ids[i];
    r->arrival_seq = i;
    out.push_back(std::move(r));
  }
  return out;
}

TEST(FcfsPolicy, AdmitsInOrderAndStopsAtTheFirstThatDoesNotFit) {
  struct Case {
    std::set<std::string> fits;
    int32_t slots;
    std::vector<std::string> want;
  };
  const std::vector<Case> cases = {
      {{"a", "b", "c", "d"}, 10, {"a", "b", "c", "d"}},
      {{"a", "b", "c", "d"}, 2, {"a", "b"}},
      {{"a", "c", "d"}, 10, {"a"}},  // b blocks: no overtaking
      {{"b", "c"}, 10, {}},
      {{"a", "b"}, 0, {}},
  };
  for (const Case& c : cases) {
    auto reqs = make_requests({"a", "b", "c", "d"});
    std::deque<Request*> waiting;
    for (auto& r : reqs) waiting.push_back(r.get());
    FakeMemory mem(c.fits);
    FcfsPolicy policy;
    std::vector<std::string> got;
    for (Request* r : policy.admit(waiting, c.slots, mem)) got.push_back(r->id);
    EXPECT_EQ(got, c.want);
  }
}

TEST(FcfsPolicy, PreemptsTheLatestArrival) {
  auto reqs = make_requests({"a", "b", "c"});
  FcfsPolicy policy;
  EXPECT_EQ(policy.preempt_victim({reqs[0].get(), reqs[2].get(), reqs[1].get()})->id, "c");
  EXPECT_EQ(policy.preempt_victim({}), nullptr);
}

// --- the step loop on a real engine ---

class SchedulerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/loraserve-sched-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto preset = synth_preset("tiny");
    ASSERT_TRUE(preset.ok());
    SynthOptions o;
    o.config = *preset;
    o.seed = 21;
    o.num_adapters = 4;
    ASSERT_TRUE(synth_write(o, dir_).ok());
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(dir_); }

  void SetUp() override {
    auto w = ModelWeights::open(dir_ + "/model");
    ASSERT_TRUE(w.ok()) << w.status();
    weights_ = std::move(*w);
  }

  std::unique_ptr<Engine> make_engine(int64_t pool_bytes) {
    EngineOptions eo;
    eo.pool_bytes = pool_bytes;
    eo.max_batch_tokens = 512;
    eo.max_batch_seqs = 64;
    auto e = Engine::create(*weights_, create_cpu_backend(), eo);
    EXPECT_TRUE(e.ok()) << e.status();
    return std::move(*e);
  }

  void register_all(Engine& e, int count = 4) {
    for (int i = 0; i < count; ++i) {
      const std::string id = "adapter-00" + std::to_string(i);
      auto a = LoraAdapter::load_dir(dir_ + "/adapters/" + id, weights_->config());
      ASSERT_TRUE(a.ok()) << a.status();
      ASSERT_TRUE(e.register_adapter(id, **a).ok());
    }
  }

  static RequestEvent drain(RequestStream& s, std::vector<int32_t>* tokens) {
    return testing_util::drain_stream(s, tokens, std::chrono::milliseconds(10000));
  }

  static std::string dir_;
  std::unique_ptr<ModelWeights> weights_;
};

std::string SchedulerTest::dir_;

GenerationParams params(const std::string& adapter, std::vector<int32_t> prompt, int32_t n) {
  GenerationParams p;
  p.adapter_id = adapter;
  p.prompt = std::move(prompt);
  p.max_new_tokens = n;
  p.ignore_eos = true;
  return p;
}

// What the offline path produces for the same request.
std::vector<int32_t> offline(Engine& e, const GenerationParams& p) {
  GenerationRequest r;
  r.adapter_id = p.adapter_id;
  r.prompt = p.prompt;
  r.max_new_tokens = p.max_new_tokens;
  std::vector<GenerationResult> out;
  EXPECT_TRUE(generate(e, {r}, &out).ok());
  return out.empty() ? std::vector<int32_t>{} : out[0].tokens;
}

TEST_F(SchedulerTest, ConcurrentRequestsWithPreemptionMatchOffline) {
  // 96 pages: the two adapters take 42 (ranks 8 and 16); eight sequences
  // of 40-82 tokens need 12-24 KV pages each, so they cannot all grow at
  // once and the scheduler must preempt and recompute.
  auto engine = make_engine(96 * 16384);
  auto reference = make_engine(64ll << 20);
  register_all(*engine, 2);
  register_all(*reference, 2);
  SchedulerOptions so;
  so.max_batch_tokens = 64;  // prompts of 40 tokens are prefilled in chunks
  so.max_running = 8;
  auto sched = Scheduler::create(engine.get(), so);
  ASSERT_TRUE(sched.ok()) << sched.status();
  (*sched)->start();

  std::vector<GenerationParams> ps;
  for (int i = 0; i < 8; ++i) {
    std::vector<int32_t> prompt;
    for (int t = 0; t < 10 + 5 * i; ++t) prompt.push_back((i * 37 + t * 11) % 1024);
    ps.push_back(params(i % 3 == 2 ? "" : "adapter-00" + std::to_string(i % 3), prompt, 30 + i));
  }
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (size_t i = 0; i < ps.size(); ++i) {
    auto s = (*sched)->submit("r" + std::to_string(i), ps[i]);
    ASSERT_TRUE(s.ok()) << s.status();
    streams.push_back(*s);
  }
  for (size_t i = 0; i < ps.size(); ++i) {
    std::vector<int32_t> tokens;
    RequestEvent fin = drain(*streams[i], &tokens);
    EXPECT_EQ(fin.finish, FinishReason::kLength) << fin.error;
    EXPECT_EQ(tokens, offline(*reference, ps[i])) << "request " << i;
    EXPECT_EQ(fin.completion_tokens, ps[i].max_new_tokens);
    EXPECT_LE(fin.ttft_ms, fin.total_ms);
  }
  const SchedulerStats st = (*sched)->stats();
  EXPECT_GT(st.preemptions, 0u) << "the pool was meant to be too small for all of them";
  EXPECT_EQ(st.completed, ps.size());
  EXPECT_EQ(st.engine.pool.kv, 0);
  (*sched)->stop();
}

TEST_F(SchedulerTest, CancelFreesPagesAndUnloadWaitsForRequests) {
  auto engine = make_engine(64ll << 20);
  register_all(*engine);
  auto sched = Scheduler::create(engine.get(), SchedulerOptions{});
  ASSERT_TRUE(sched.ok());
  (*sched)->start();
  auto s = (*sched)->submit("long", params("adapter-001", {1, 2, 3}, 1500));
  ASSERT_TRUE(s.ok());
  RequestEvent first;
  ASSERT_TRUE((*s)->pop(&first, std::chrono::milliseconds(5000)));
  EXPECT_EQ((*sched)->unregister_adapter("adapter-001").code(), StatusCode::kFailedPrecondition);
  (*s)->cancel();
  std::vector<int32_t> rest;
  RequestEvent fin = drain(**s, &rest);
  EXPECT_EQ(fin.finish, FinishReason::kCancelled);
  const SchedulerStats st = (*sched)->stats();
  EXPECT_EQ(st.engine.pool.kv, 0);
  EXPECT_EQ(st.cancelled, 1u);
  // Once the final event is out the adapter is free to go.
  EXPECT_TRUE((*sched)->unregister_adapter("adapter-001").ok());
  EXPECT_EQ((*sched)->submit("x", params("adapter-001", {1}, 1)).status().code(),
            StatusCode::kNotFound);
  (*sched)->stop();
}

TEST_F(SchedulerTest, AdaptersOfWaitingRequestsArePrefetched) {
  auto engine = make_engine(64ll << 20);
  register_all(*engine);
  SchedulerOptions so;
  so.max_running = 1;  // the second request waits behind the first
  auto sched = Scheduler::create(engine.get(), so);
  ASSERT_TRUE(sched.ok());
  (*sched)->start();
  auto first = (*sched)->submit("first", params("adapter-000", {1, 2, 3}, 40));
  auto second = (*sched)->submit("second", params("adapter-003", {4, 5, 6}, 4));
  ASSERT_TRUE(first.ok() && second.ok());
  RequestEvent e;
  ASSERT_TRUE((*first)->pop(&e, std::chrono::milliseconds(5000)));
  // While the first runs, the second's adapter is already in the pool.
  bool resident_early = false;
  for (int i = 0; i < 200 && !resident_early; ++i) {
    for (const AdapterSummary& a : (*sched)->list_adapters()) {
      if (a.id == "adapter-003" && a.resident) resident_early = true;
    }
    if (!resident_early) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::vector<int32_t> tokens;
  const RequestEvent second_end = drain(**second, &tokens);
  EXPECT_TRUE(resident_early);
  EXPECT_GE((*sched)->stats().engine.adapters.prefetches, 1);
  EXPECT_EQ(second_end.finish, FinishReason::kLength);
  drain(**first, &tokens);
  (*sched)->stop();
}

TEST_F(SchedulerTest, RejectsBadRequestsUpFront) {
  auto engine = make_engine(64ll << 20);
  SchedulerOptions so;
  so.max_queue = 2;
  auto sched = Scheduler::create(engine.get(), so);
  ASSERT_TRUE(sched.ok());
  // Not started: requests stay queued, so the queue limit is deterministic.
  EXPECT_EQ((*sched)->submit("a", params("", {}, 4)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*sched)->submit("a", params("", {1, 4096}, 4)).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ((*sched)->submit("a", params("", {1}, 100000)).status().code(),
            StatusCode::kInvalidArgument);
  std::vector<int32_t> long_prompt(2040, 5);
  auto s = (*sched)->submit("a", params("", long_prompt, 100));
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("context"), std::string::npos);
  GenerationParams hot = params("", {1}, 4);
  hot.sampling.temperature = -1;
  EXPECT_EQ((*sched)->submit("a", hot).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*sched)->submit("a", params("missing", {1}, 4)).status().code(), StatusCode::kNotFound);
  ASSERT_TRUE((*sched)->submit("q1", params("", {1}, 4)).ok());
  ASSERT_TRUE((*sched)->submit("q2", params("", {1}, 4)).ok());
  EXPECT_EQ((*sched)->submit("q3", params("", {1}, 4)).status().code(),
            StatusCode::kResourceExhausted);
  (*sched)->stop();
  EXPECT_EQ((*sched)->submit("late", params("", {1}, 4)).status().code(), StatusCode::kUnavailable);
}

TEST_F(SchedulerTest, StopCancelsEverythingInFlight) {
  auto engine = make_engine(64ll << 20);
  auto sched = Scheduler::create(engine.get(), SchedulerOptions{});
  ASSERT_TRUE(sched.ok());
  (*sched)->start();
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 4; ++i) {
    auto s = (*sched)->submit("r" + std::to_string(i), params("", {1, 2, 3}, 1500));
    ASSERT_TRUE(s.ok());
    streams.push_back(*s);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  (*sched)->stop();
  for (auto& s : streams) {
    std::vector<int32_t> tokens;
    EXPECT_EQ(drain(*s, &tokens).finish, FinishReason::kCancelled);
  }
  EXPECT_EQ(engine->stats().pool.kv, 0);
  EXPECT_EQ(engine->stats().sequences, 0);
}

}  // namespace
}  // namespace loraserve
