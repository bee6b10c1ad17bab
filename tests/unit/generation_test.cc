// Generation's endings as the tenant's account sees them: the account
// always follows the scheduler's verdict, whether the transport waits for it
// (gRPC: Generation::abandon) or has gone before it comes (HTTP: the
// Generation is dropped), so a cancel at the deadline is an abort in the
// account as in the stats, and a request that completed just before its
// client left is a completion.
#include "server/generation.h"

#include <gtest/gtest.h>

#include <thread>

#include "checkpoint/model_weights.h"
#include "checkpoint/synth.h"
#include "tests/support/test_util.h"

namespace loraserve {
namespace {

class GenerationEndings : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing_util::TempDir();
    auto preset = synth_preset("tiny");
    ASSERT_TRUE(preset.ok());
    SynthOptions o;
    o.config = *preset;
    o.seed = 29;
    o.num_adapters = 0;
    ASSERT_TRUE(synth_write(o, dir_->path()).ok());
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    auto w = ModelWeights::open(dir_->path() + "/model");
    ASSERT_TRUE(w.ok()) << w.status();
    weights_ = std::move(*w);
    EngineOptions eo;
    eo.pool_bytes = 64ll << 20;
    auto e = Engine::create(*weights_, create_cpu_backend(), eo);
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = std::move(*e);
    auto s = Scheduler::create(engine_.get(), SchedulerOptions{});
    ASSERT_TRUE(s.ok()) << s.status();
    sched_ = std::move(*s);
    generator_ = std::make_unique<Generator>(sched_.get(), &tenants_, nullptr);
    auto caller = tenants_.authenticate(nullptr);
    ASSERT_TRUE(caller.ok());
    caller_ = *caller;
    sched_->start();
  }
  void TearDown() override {
    if (sched_) sched_->stop();
  }

  // A long request: it cannot end by itself within the tests' waits.
  std::unique_ptr<Generation> start(Clock::time_point deadline, int32_t max_new = 1500) {
    GenerationInput in;
    in.prompt_ids = {1, 2, 3};
    in.max_new_tokens = max_new;
    in.ignore_eos = true;
    in.deadline = deadline;
    auto g = generator_->start(caller_, std::move(in));
    EXPECT_TRUE(g.ok()) << g.status();
    return g.ok() ? std::move(*g) : nullptr;
  }

  TenantAccount account() { return tenants_.accounts(caller_).at(0); }

  // The account once every request has been settled.
  TenantAccount settled() {
    const auto until = Clock::now() + std::chrono::seconds(20);
    while (account().in_flight != 0 && Clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    const TenantAccount a = account();
    EXPECT_EQ(a.in_flight, 0);
    EXPECT_EQ(a.queued_tokens, 0);
    return a;
  }

  static testing_util::TempDir* dir_;
  std::unique_ptr<ModelWeights> weights_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Scheduler> sched_;
  TenantDirectory tenants_{nullptr};
  std::unique_ptr<Generator> generator_;
  Caller caller_;
};

testing_util::TempDir* GenerationEndings::dir_ = nullptr;

// The deadline is 200 ms away, inside the scheduler's 250 ms slack: a
// cancel now is the deadline's (what gRPC does when a client's deadline
// passes).
Clock::time_point near_deadline() { return Clock::now() + std::chrono::milliseconds(200); }

TEST_F(GenerationEndings, AbandonAtTheDeadlineReturnsTheVerdictAndCountsAnAbort) {
  auto g = start(near_deadline());
  ASSERT_NE(g, nullptr);
  const Status s = g->abandon("client cancelled", std::chrono::seconds(10));
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s;
  EXPECT_TRUE(g->done());
  g.reset();
  const TenantAccount a = settled();
  EXPECT_EQ(a.aborted, 1u);
  EXPECT_EQ(a.cancelled, 0u);
  EXPECT_EQ(sched_->stats().aborted, 1u);
  EXPECT_EQ(sched_->stats().cancelled, 0u);
}

TEST_F(GenerationEndings, AbandonWithoutADeadlineIsACancel) {
  auto g = start(Clock::time_point::max());
  ASSERT_NE(g, nullptr);
  const Status s = g->abandon("client cancelled", std::chrono::seconds(10));
  EXPECT_EQ(s.code(), StatusCode::kCancelled) << s;
  EXPECT_EQ(s.message(), "client cancelled");
  g.reset();
  const TenantAccount a = settled();
  EXPECT_EQ(a.cancelled, 1u);
  EXPECT_EQ(a.aborted, 0u);
  EXPECT_EQ(sched_->stats().cancelled, 1u);
}

TEST_F(GenerationEndings, ADroppedGenerationIsSettledByTheSchedulersLaterVerdict) {
  // The HTTP transport cannot wait: it drops the Generation, and the
  // verdict comes afterwards, on the scheduler's thread.
  start(near_deadline()).reset();
  start(Clock::time_point::max()).reset();
  const TenantAccount a = settled();
  EXPECT_EQ(a.finished, 2u);
  EXPECT_EQ(a.aborted, 1u);
  EXPECT_EQ(a.cancelled, 1u);
  const SchedulerStats st = sched_->stats();
  EXPECT_EQ(st.aborted, 1u);
  EXPECT_EQ(st.cancelled, 1u);
}

TEST_F(GenerationEndings, ARequestThatCompletedBeforeItsClientLeftIsACompletion) {
  auto g = start(Clock::time_point::max(), 2);
  ASSERT_NE(g, nullptr);
  const auto until = Clock::now() + std::chrono::seconds(20);
  while (sched_->stats().completed == 0 && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(sched_->stats().completed, 1u);
  g.reset();  // its final event is queued, unread
  const TenantAccount a = settled();
  EXPECT_EQ(a.finished, 1u);
  EXPECT_EQ(a.cancelled, 0u);
  EXPECT_EQ(a.aborted, 0u);
  EXPECT_EQ(a.prompt_tokens, 3u);
  EXPECT_EQ(a.completion_tokens, 2u);
}

}  // namespace
}  // namespace loraserve
