// The step loop's early endings, each decided in Scheduler::sweep: a passed
// deadline wins over a cancel, a stop string found by the frontend ends a
// request as a stop (counted completed, not cancelled, with only the kept
// tokens), and a request whose logits turn non-finite fails alone.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <thread>

#include "checkpoint/model_weights.h"
#include "checkpoint/synth.h"
#include "scheduler/offline.h"
#include "scheduler/scheduler.h"
#include "tests/support/request_stream_util.h"
#include "tests/support/overflow_adapter.h"

namespace loraserve {
namespace {

class SchedulerEndings : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/loraserve-sched-rel-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto preset = synth_preset("tiny");
    ASSERT_TRUE(preset.ok());
    SynthOptions o;
    o.config = *preset;
    o.seed = 23;
    o.num_adapters = 2;
    ASSERT_TRUE(synth_write(o, dir_).ok());
    ASSERT_TRUE(testing_util::write_overflowing_adapter(dir_ + "/adapters/adapter-001",
                                                        dir_ + "/adapters/overflow")
                    .ok());
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(dir_); }

  void SetUp() override {
    auto w = ModelWeights::open(dir_ + "/model");
    ASSERT_TRUE(w.ok()) << w.status();
    weights_ = std::move(*w);
    EngineOptions eo;
    eo.pool_bytes = 64ll << 20;
    eo.max_batch_tokens = 512;
    eo.max_batch_seqs = 64;
    auto e = Engine::create(*weights_, create_cpu_backend(), eo);
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = std::move(*e);
    for (const std::string id : {"adapter-000", "adapter-001", "overflow"}) {
      auto a = LoraAdapter::load_dir(dir_ + "/adapters/" + id, weights_->config());
      ASSERT_TRUE(a.ok()) << a.status();
      ASSERT_TRUE(engine_->register_adapter(id, **a).ok());
    }
    auto s = Scheduler::create(engine_.get(), SchedulerOptions{});
    ASSERT_TRUE(s.ok()) << s.status();
    sched_ = std::move(*s);
  }
  void TearDown() override {
    if (sched_) sched_->stop();
  }

  static GenerationParams params(const std::string& adapter, std::vector<int32_t> prompt,
                                 int32_t n) {
    GenerationParams p;
    p.adapter_id = adapter;
    p.prompt = std::move(prompt);
    p.max_new_tokens = n;
    p.ignore_eos = true;
    return p;
  }

  static RequestEvent drain(RequestStream& s, std::vector<int32_t>* tokens) {
    return testing_util::drain_stream(s, tokens, std::chrono::milliseconds(20000));
  }

  static std::string dir_;
  std::unique_ptr<ModelWeights> weights_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Scheduler> sched_;
};

std::string SchedulerEndings::dir_;

TEST_F(SchedulerEndings, AStopStringEndsTheRequestAsAStopNotACancel) {
  sched_->start();
  auto s = sched_->submit("stop-me", params("adapter-000", {1, 2, 3}, 1500));
  ASSERT_TRUE(s.ok()) << s.status();
  std::vector<int32_t> seen;
  RequestEvent e;
  while (seen.size() < 3) {
    ASSERT_TRUE((*s)->pop(&e, std::chrono::milliseconds(10000)));
    ASSERT_FALSE(e.final);
    seen.insert(seen.end(), e.tokens.begin(), e.tokens.end());
  }
  (*s)->stop_early();  // the frontend found a stop string
  std::vector<int32_t> more;
  const RequestEvent fin = drain(**s, &more);
  EXPECT_EQ(fin.finish, FinishReason::kStop);
  EXPECT_TRUE(fin.error.ok());
  EXPECT_LT(fin.completion_tokens, 1500);
  const SchedulerStats st = sched_->stats();
  EXPECT_EQ(st.completed, 1u);
  EXPECT_EQ(st.cancelled, 0u);
  EXPECT_EQ(st.engine.pool.kv, 0);
}

TEST_F(SchedulerEndings, APassedDeadlineWinsOverACancelAndIsCountedAborted) {
  // Queued with its deadline already gone, and cancelled too (gRPC cancels
  // a call whose deadline passed): the scheduler, not the frontend's race,
  // says it was the deadline.
  GenerationParams p = params("", {1, 2, 3}, 8);
  p.deadline = Clock::now() - std::chrono::milliseconds(1);
  auto late = sched_->submit("late", p);
  ASSERT_TRUE(late.ok());
  (*late)->cancel();
  auto cancelled = sched_->submit("cancelled", params("", {1, 2, 3}, 8));
  ASSERT_TRUE(cancelled.ok());
  (*cancelled)->cancel();
  sched_->start();
  std::vector<int32_t> tokens;
  RequestEvent fin = drain(**late, &tokens);
  EXPECT_EQ(fin.finish, FinishReason::kDeadline);
  EXPECT_EQ(fin.error.code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(fin.error.message().find("queued"), std::string::npos) << fin.error;
  fin = drain(**cancelled, &tokens);
  EXPECT_EQ(fin.finish, FinishReason::kCancelled);
  EXPECT_TRUE(tokens.empty());
  const SchedulerStats st = sched_->stats();
  EXPECT_EQ(st.aborted, 1u);
  EXPECT_EQ(st.cancelled, 1u);
}

TEST_F(SchedulerEndings, ACancelAtTheDeadlineIsTheDeadlinesAndAnEarlierOneIsACancel) {
  // A gRPC client cancels at its own deadline, which reaches the server a
  // little before the server's copy of it: within 250 ms it is an abort.
  GenerationParams near = params("", {1, 2, 3}, 1500);
  near.deadline = Clock::now() + std::chrono::milliseconds(150);
  GenerationParams far = params("", {1, 2, 3}, 1500);
  far.deadline = Clock::now() + std::chrono::seconds(60);
  auto a = sched_->submit("near", near);
  auto b = sched_->submit("far", far);
  ASSERT_TRUE(a.ok() && b.ok());
  (*a)->cancel();
  (*b)->cancel();
  sched_->start();
  std::vector<int32_t> tokens;
  const RequestEvent fa = drain(**a, &tokens);
  EXPECT_EQ(fa.finish, FinishReason::kDeadline);
  EXPECT_EQ(fa.error.code(), StatusCode::kDeadlineExceeded);
  EXPECT_LT(fa.total_ms, 150.0);  // ended at once, not when the deadline came
  EXPECT_EQ(drain(**b, &tokens).finish, FinishReason::kCancelled);
  EXPECT_EQ(sched_->stats().aborted, 1u);
  EXPECT_EQ(sched_->stats().cancelled, 1u);
}

TEST_F(SchedulerEndings, ARunningRequestStopsAtItsDeadline) {
  GenerationParams p = params("adapter-001", {4, 5, 6}, 2000);
  p.deadline = Clock::now() + std::chrono::milliseconds(300);
  sched_->start();
  auto s = sched_->submit("slow", p);
  ASSERT_TRUE(s.ok());
  std::vector<int32_t> tokens;
  const RequestEvent fin = drain(**s, &tokens);
  EXPECT_EQ(fin.finish, FinishReason::kDeadline);
  EXPECT_EQ(fin.error.code(), StatusCode::kDeadlineExceeded);
  EXPECT_GT(tokens.size(), 0u);
  EXPECT_LT(tokens.size(), 2000u);
  EXPECT_EQ(fin.completion_tokens, static_cast<int32_t>(tokens.size()));
  EXPECT_GE(fin.total_ms, 250.0);  // the deadline was set just before submit
  EXPECT_EQ(sched_->stats().aborted, 1u);
  EXPECT_EQ(sched_->stats().engine.pool.kv, 0);
}

TEST_F(SchedulerEndings, NonFiniteLogitsFailOneRequestAndTheOthersMatchOffline) {
  std::vector<GenerationParams> ps = {params("adapter-000", {7, 8, 9, 10}, 20),
                                      params("overflow", {7, 8, 9, 10}, 20),
                                      params("", {11, 12}, 20),
                                      params("adapter-001", {13, 14, 15}, 20)};
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (size_t i = 0; i < ps.size(); ++i) {
    auto s = sched_->submit("r" + std::to_string(i), ps[i]);
    ASSERT_TRUE(s.ok()) << s.status();
    streams.push_back(*s);
  }
  sched_->start();  // all four start in the same batch
  std::vector<std::vector<int32_t>> got(ps.size());
  std::vector<RequestEvent> fins;
  for (size_t i = 0; i < ps.size(); ++i) fins.push_back(drain(*streams[i], &got[i]));
  EXPECT_EQ(fins[1].finish, FinishReason::kError);
  EXPECT_EQ(fins[1].error.code(), StatusCode::kDataLoss);
  EXPECT_NE(fins[1].error.message().find("non-finite logits (NaN or infinity) for adapter "
                                         "'overflow' at generated token 0"),
            std::string::npos)
      << fins[1].error;
  EXPECT_TRUE(got[1].empty()) << "a token was emitted from non-finite logits";
  EXPECT_EQ(fins[1].completion_tokens, 0);
  const SchedulerStats st = sched_->stats();
  EXPECT_EQ(st.non_finite, 1u);
  EXPECT_EQ(st.failed, 1u);
  EXPECT_EQ(st.completed, 3u);
  EXPECT_EQ(st.engine.pool.kv, 0);
  sched_->stop();
  for (size_t i : {0u, 2u, 3u}) {
    EXPECT_EQ(fins[i].finish, FinishReason::kLength) << i;
    GenerationRequest r;
    r.adapter_id = ps[i].adapter_id;
    r.prompt = ps[i].prompt;
    r.max_new_tokens = ps[i].max_new_tokens;
    std::vector<GenerationResult> want;
    ASSERT_TRUE(generate(*engine_, {r}, &want).ok());
    EXPECT_EQ(got[i], want[0].tokens) << "request " << i;
  }
}

}  // namespace
}  // namespace loraserve
