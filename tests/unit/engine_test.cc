// The engine end to end on the cpu backend with a synthetic tiny model:
// batch isolation (each request gets in a mixed batch exactly what it gets
// alone), adapters matter, and bad input is an error that leaves the engine
// usable.
#include "engine/engine.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>

#include "scheduler/offline.h"
#include "checkpoint/lora_adapter.h"
#include "checkpoint/model_weights.h"
#include "checkpoint/synth.h"
#include "tests/support/mixed_adapters.h"
#include "tests/support/overflow_adapter.h"

namespace loraserve {
namespace {

namespace fs = std::filesystem;

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/loraserve-engine-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_TRUE(testing_util::write_mixed_adapters_fixture(dir_).ok());
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  void SetUp() override {
    auto w = ModelWeights::open(dir_ + "/attn/model");
    ASSERT_TRUE(w.ok()) << w.status();
    weights_ = std::move(*w);
  }

  std::unique_ptr<Engine> make_engine(EngineOptions opts = {}) {
    auto e = Engine::create(*weights_, create_cpu_backend(), opts);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }

  // Registers the adapters with `engine` in a fixed order; returns their ids.
  std::vector<std::string> load_adapters(Engine& engine) {
    auto ids = testing_util::register_mixed_adapters(engine, dir_);
    EXPECT_TRUE(ids.ok()) << ids.status();
    return ids.ok() ? *ids : std::vector<std::string>{};
  }

  static std::string dir_;
  std::unique_ptr<ModelWeights> weights_;
};

std::string EngineTest::dir_;

using testing_util::mixed_requests;

TEST_F(EngineTest, MixedBatchMatchesEachRequestAlone) {
  auto together = make_engine();
  ASSERT_NE(together, nullptr);
  const auto slots = load_adapters(*together);
  ASSERT_EQ(slots.size(), 6u);
  const auto reqs = mixed_requests(slots);
  std::vector<GenerationResult> batched;
  ASSERT_TRUE(generate(*together, reqs, &batched).ok());

  for (size_t i = 0; i < reqs.size(); ++i) {
    auto alone_engine = make_engine();
    ASSERT_NE(alone_engine, nullptr);
    load_adapters(*alone_engine);  // same slots
    GenerationRequest r = reqs[i];
    r.join_step = 0;
    r.prefill_chunk = 0;
    std::vector<GenerationResult> alone;
    ASSERT_TRUE(generate(*alone_engine, {r}, &alone).ok());
    ASSERT_EQ(batched[i].tokens, alone[0].tokens) << "request " << i;
    ASSERT_EQ(batched[i].logits.size(), alone[0].logits.size());
    for (size_t t = 0; t < alone[0].logits.size(); ++t) {
      for (size_t v = 0; v < alone[0].logits[t].size(); ++v) {
        ASSERT_NEAR(batched[i].logits[t][v], alone[0].logits[t][v], 1e-3)
            << "request " << i << " step " << t << " token " << v;
      }
      ASSERT_NEAR(batched[i].logprobs[t], alone[0].logprobs[t], 1e-4);
    }
  }
  // Every pool page came back.
  EXPECT_EQ(together->stats().pool.kv, 0);
}

TEST_F(EngineTest, EveryAdapterChangesItsOwnOutput) {
  auto engine = make_engine();
  ASSERT_NE(engine, nullptr);
  const auto slots = load_adapters(*engine);
  std::vector<GenerationRequest> reqs;
  for (const std::string& slot : {std::string(), slots[0], slots[1], slots[2], slots[3], slots[4], slots[5]}) {
    GenerationRequest r;
    r.adapter_id = slot;
    r.prompt = {1, 50, 60, 70};
    r.max_new_tokens = 4;
    r.want_logits = true;
    reqs.push_back(r);
  }
  std::vector<GenerationResult> out;
  ASSERT_TRUE(generate(*engine, reqs, &out).ok());
  for (size_t i = 1; i < out.size(); ++i) {
    double max_diff = 0;
    for (size_t v = 0; v < out[0].logits[0].size(); ++v) {
      max_diff = std::max(max_diff, std::fabs(double(out[i].logits[0][v]) - out[0].logits[0][v]));
    }
    EXPECT_GT(max_diff, 0.05) << "adapter request " << i << " looks like the base model";
  }
}

TEST_F(EngineTest, SeededSamplingIsReproducibleAndBatchIndependent) {
  auto engine = make_engine();
  ASSERT_NE(engine, nullptr);
  const auto slots = load_adapters(*engine);
  GenerationRequest r;
  r.adapter_id = slots[2];
  r.prompt = {3, 1, 4, 1, 5};
  r.max_new_tokens = 12;
  r.sampling.temperature = 1.0f;
  r.sampling.top_p = 0.9f;
  r.sampling.top_k = 50;
  r.sampling.seed = 42;
  std::vector<GenerationResult> a, b, c;
  ASSERT_TRUE(generate(*engine, {r}, &a).ok());
  GenerationRequest other = r;
  other.adapter_id = "";
  other.sampling.seed = 7;
  ASSERT_TRUE(generate(*engine, {other, r}, &b).ok());
  EXPECT_EQ(a[0].tokens, b[1].tokens);
  r.sampling.seed = 43;
  ASSERT_TRUE(generate(*engine, {r}, &c).ok());
  EXPECT_NE(a[0].tokens, c[0].tokens);
}

TEST_F(EngineTest, BadInputIsAnErrorAndTheEngineKeepsWorking) {
  auto engine = make_engine();
  ASSERT_NE(engine, nullptr);
  const auto slots = load_adapters(*engine);
  std::vector<SequenceResult> out;

  SequenceStep unknown;
  unknown.seq_id = 99;
  unknown.tokens = {1};
  EXPECT_EQ(engine->step({unknown}, &out).code(), StatusCode::kNotFound);

  ASSERT_TRUE(engine->start_sequence(1, slots[0]).ok());
  EXPECT_EQ(engine->start_sequence(1, "").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->start_sequence(2, "no-such-adapter").code(), StatusCode::kNotFound);

  SequenceStep bad_token;
  bad_token.seq_id = 1;
  bad_token.tokens = {5, 1024};  // vocab is 1024
  Status s = engine->step({bad_token}, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("1024"), std::string::npos);

  SequenceStep too_long;
  too_long.seq_id = 1;
  too_long.tokens.assign(engine->config().max_position_embeddings + 1, 3);
  EXPECT_FALSE(engine->step({too_long}, &out).ok());

  SequenceStep empty;
  empty.seq_id = 1;
  EXPECT_EQ(engine->step({empty}, &out).code(), StatusCode::kInvalidArgument);

  EXPECT_EQ(engine->unregister_adapter(slots[0]).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(engine->sequence_length(1), 0);  // nothing above changed the sequence

  SequenceStep good;
  good.seq_id = 1;
  good.tokens = {1, 2, 3};
  ASSERT_TRUE(engine->step({good}, &out).ok());
  EXPECT_TRUE(out[0].sampled);
  EXPECT_EQ(engine->sequence_length(1), 3);
  engine->end_sequence(1);
  EXPECT_TRUE(engine->unregister_adapter(slots[0]).ok());
  EXPECT_EQ(engine->unregister_adapter(slots[0]).code(), StatusCode::kNotFound);
}

// A pool too small for two adapters at once: requests wait, adapters are
// evicted and swapped back in between them, and every request still gets
// what it gets from a roomy pool.
TEST_F(EngineTest, SmallPoolEvictsAndReloadsAdaptersWithSameResults) {
  EngineOptions small;
  small.pool_bytes = 160 * 16384;  // 160 pages: rank 64 needs 112, rank 32 needs 56
  auto tight = make_engine(small);
  auto roomy = make_engine();
  ASSERT_NE(tight, nullptr);
  ASSERT_NE(roomy, nullptr);
  const auto ids = load_adapters(*tight);
  load_adapters(*roomy);
  std::vector<GenerationRequest> reqs;
  // Rank 64 twice (shares one resident copy), rank 32 waits for it, and a
  // late rank-64 request needs it back after rank 32 took its pages.
  const std::vector<std::string> order = {ids[3], ids[2], ids[3], ids[0], "", ids[2], ids[3]};
  for (size_t i = 0; i < order.size(); ++i) {
    GenerationRequest r;
    r.adapter_id = order[i];
    r.join_step = i + 1 == order.size() ? 30 : 0;
    r.prompt = {1, 2, 3, 4, 5, 6, 7, 8};
    r.max_new_tokens = 6;
    r.want_logits = true;
    reqs.push_back(r);
  }
  std::vector<GenerationResult> a, b;
  ASSERT_TRUE(generate(*tight, reqs, &a).ok());
  ASSERT_TRUE(generate(*roomy, reqs, &b).ok());
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_EQ(a[i].tokens, b[i].tokens) << "request " << i;
    for (size_t t = 0; t < a[i].logits.size(); ++t) {
      for (size_t v = 0; v < a[i].logits[t].size(); ++v) {
        ASSERT_NEAR(a[i].logits[t][v], b[i].logits[t][v], 1e-4);
      }
    }
  }
  const EngineStats st = tight->stats();
  EXPECT_GE(st.adapters.evictions, 2);
  EXPECT_GE(st.adapters.swap_ins, 4);  // rank-64 and rank-32 adapters came back after eviction
  EXPECT_EQ(roomy->stats().adapters.evictions, 0);
  EXPECT_EQ(st.pool.kv, 0);
  EXPECT_EQ(st.adapters.pinned, 0);
}

TEST_F(EngineTest, KvPressureEvictsIdleAdaptersFirst) {
  EngineOptions small;
  small.pool_bytes = 160 * 16384;
  auto engine = make_engine(small);
  ASSERT_NE(engine, nullptr);
  const auto ids = load_adapters(*engine);
  ASSERT_TRUE(engine->prefetch_adapter(ids[3]).ok());  // 112 pages, idle
  EXPECT_EQ(engine->stats().adapters.resident, 1);
  auto plan = engine->plan_admission(16 * 20, "");
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(plan->admissible);
  EXPECT_EQ(plan->kv_pages, 80);
  EXPECT_EQ(plan->evictions, (std::vector<std::string>{ids[3]}));
  ASSERT_TRUE(engine->start_sequence(1, "").ok());
  SequenceStep s;
  s.seq_id = 1;
  s.tokens.assign(16 * 20, 9);
  std::vector<SequenceResult> out;
  ASSERT_TRUE(engine->step({s}, &out).ok());
  EXPECT_EQ(engine->stats().adapters.resident, 0);
  EXPECT_EQ(engine->stats().adapters.evictions, 1);
  EXPECT_EQ(engine->plan_admission(1, "nope").status().code(), StatusCode::kNotFound);
  engine->end_sequence(1);
}

TEST_F(EngineTest, RegisteringTwiceOrTooBigIsRefused) {
  EngineOptions small;
  small.pool_bytes = 100 * 16384;  // rank 64 (112 pages) can never fit
  auto engine = make_engine(small);
  ASSERT_NE(engine, nullptr);
  auto a = LoraAdapter::load_dir(dir_ + "/attn/adapters/adapter-003", weights_->config());
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(engine->register_adapter("big", **a).code(), StatusCode::kResourceExhausted);
  auto b = LoraAdapter::load_dir(dir_ + "/attn/adapters/adapter-000", weights_->config());
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE(engine->register_adapter("x", **b).ok());
  EXPECT_EQ(engine->register_adapter("x", **b).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(engine->register_adapter("", **b).code(), StatusCode::kInvalidArgument);
}

// One adapter registered under several ids takes its host bytes once;
// each id still has its own pool residency, and outlives the id whose
// image owned the bytes.
TEST_F(EngineTest, OneAdapterUnderSeveralIdsSharesHostBytes) {
  auto engine = make_engine();
  ASSERT_NE(engine, nullptr);
  auto r16 = LoraAdapter::load_dir(dir_ + "/attn/adapters/adapter-001", weights_->config());
  auto r8 = LoraAdapter::load_dir(dir_ + "/attn/adapters/adapter-000", weights_->config());
  ASSERT_TRUE(r16.ok() && r8.ok());
  const size_t bytes16 = static_cast<size_t>(engine->adapter_image_bytes(**r16));
  const size_t bytes8 = static_cast<size_t>(engine->adapter_image_bytes(**r8));
  ASSERT_TRUE(engine->register_adapter("a", **r16).ok());
  ASSERT_TRUE(engine->register_adapter("b", **r16).ok());
  ASSERT_TRUE(engine->register_adapter("c", **r8).ok());
  // The same files loaded again (another LoraAdapter object) share too.
  auto r16_again = LoraAdapter::load_dir(dir_ + "/attn/adapters/adapter-001", weights_->config());
  ASSERT_TRUE(r16_again.ok());
  ASSERT_TRUE(engine->register_adapter("d", **r16_again).ok());
  EXPECT_EQ(engine->adapter_store().total_bytes(), bytes16 + bytes8);
  EXPECT_EQ(engine->stats().registered_adapters, 4);

  auto run = [&](const std::vector<std::string>& ids) {
    std::vector<GenerationRequest> reqs;
    for (const std::string& id : ids) {
      GenerationRequest r;
      r.adapter_id = id;
      r.prompt = {1, 50, 60, 70};
      r.max_new_tokens = 5;
      r.want_logits = true;
      reqs.push_back(r);
    }
    std::vector<GenerationResult> out;
    EXPECT_TRUE(generate(*engine, reqs, &out).ok());
    return out;
  };
  const auto first = run({"a", "b", "c", "d"});
  ASSERT_EQ(first.size(), 4u);
  EXPECT_EQ(first[0].tokens, first[1].tokens);
  EXPECT_EQ(first[0].logits, first[1].logits);
  EXPECT_EQ(first[0].logits, first[3].logits);
  EXPECT_NE(first[0].logits, first[2].logits);
  // Each id was resident on its own pages.
  EXPECT_GE(engine->stats().adapters.swap_ins, 4);

  ASSERT_TRUE(engine->unregister_adapter("a").ok());
  EXPECT_EQ(engine->adapter_store().total_bytes(), bytes16 + bytes8);
  const auto after = run({"b", "d"});
  // Another batch shape: the same up to BLAS summation order.
  auto near = [](const std::vector<std::vector<float>>& x, const std::vector<std::vector<float>>& y) {
    if (x.size() != y.size()) return false;
    for (size_t t = 0; t < x.size(); ++t) {
      for (size_t v = 0; v < x[t].size(); ++v) {
        if (std::fabs(x[t][v] - y[t][v]) > 1e-4f) return false;
      }
    }
    return true;
  };
  EXPECT_EQ(after[0].tokens, first[1].tokens);
  EXPECT_TRUE(near(after[0].logits, first[1].logits));
  EXPECT_TRUE(near(after[1].logits, first[1].logits));
  ASSERT_TRUE(engine->unregister_adapter("b").ok());
  ASSERT_TRUE(engine->unregister_adapter("d").ok());
  EXPECT_EQ(engine->adapter_store().total_bytes(), bytes8);
}

TEST_F(EngineTest, PoolExhaustionIsResourceExhausted) {
  EngineOptions opts;
  // 4 layers x 16 tokens x 2 x kv_dim 128 x 4 bytes = 64 KiB per block: 2 blocks.
  opts.pool_bytes = 2 * 4 * 16 * 2 * 128 * 4;
  auto engine = make_engine(opts);
  ASSERT_NE(engine, nullptr);
  ASSERT_TRUE(engine->start_sequence(1, "").ok());
  std::vector<SequenceResult> out;
  SequenceStep big;
  big.seq_id = 1;
  big.tokens.assign(33, 7);  // needs 3 blocks
  EXPECT_EQ(engine->step({big}, &out).code(), StatusCode::kResourceExhausted);
  big.tokens.assign(32, 7);
  EXPECT_TRUE(engine->step({big}, &out).ok());
  engine->end_sequence(1);
  EXPECT_EQ(engine->stats().pool.free, engine->stats().pool.total);
}

// An adapter whose finite weights overflow (tests/support/overflow_adapter.h)
// in a batch with the whole mixed set: its requests fail alone with a
// DATA_LOSS naming it and emit nothing; every other request gets what it
// gets in the same batch without them, and every page comes back.
TEST_F(EngineTest, NonFiniteLogitsFailOnlyTheirRequests) {
  const std::string poison_dir = dir_ + "/overflow";
  ASSERT_TRUE(testing_util::write_overflowing_adapter(
                  dir_ + "/" + testing_util::mixed_adapter_dirs()[1], poison_dir)
                  .ok());
  auto clean_engine = make_engine();
  auto engine = make_engine();
  ASSERT_NE(clean_engine, nullptr);
  ASSERT_NE(engine, nullptr);
  const auto slots = load_adapters(*clean_engine);
  load_adapters(*engine);
  auto poison = LoraAdapter::load_dir(poison_dir, engine->config());
  ASSERT_TRUE(poison.ok()) << poison.status();  // every load check passes
  ASSERT_TRUE(engine->register_adapter("overflow", **poison).ok());

  const auto clean_reqs = mixed_requests(slots);
  std::vector<GenerationResult> clean;
  ASSERT_TRUE(generate(*clean_engine, clean_reqs, &clean).ok());

  // The same requests with three poisoned ones among them: at the start,
  // joining late with a chunked prefill, and sharing a prompt with base.
  std::vector<GenerationRequest> reqs = clean_reqs;
  std::vector<size_t> where;  // index in reqs of each clean request
  for (size_t i = 0; i < clean_reqs.size(); ++i) where.push_back(i);
  auto insert_poison = [&](size_t at, std::vector<int32_t> prompt, int32_t join, int32_t chunk) {
    std::vector<GenerationRequest> one;
    testing_util::add_request(&one, "overflow", std::move(prompt), 6, join, chunk);
    reqs.insert(reqs.begin() + static_cast<int64_t>(at), one[0]);
    for (size_t& w : where) w += w >= at ? 1 : 0;
  };
  insert_poison(0, {1, 17, 300, 42, 9}, 0, 0);
  insert_poison(4, {5, 6, 7, 8, 9, 10, 11, 12, 13}, 2, 4);
  insert_poison(9, {900, 3}, 1, 0);
  std::vector<GenerationResult> mixed;
  ASSERT_TRUE(generate(*engine, reqs, &mixed).ok());

  size_t poisoned = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    if (reqs[i].adapter_id != "overflow") continue;
    ++poisoned;
    EXPECT_EQ(mixed[i].finish, GenerationFinish::kError) << i;
    EXPECT_EQ(mixed[i].error.code(), StatusCode::kDataLoss) << mixed[i].error;
    EXPECT_NE(mixed[i].error.message().find("non-finite logits"), std::string::npos);
    EXPECT_NE(mixed[i].error.message().find("adapter 'overflow'"), std::string::npos);
    EXPECT_TRUE(mixed[i].tokens.empty()) << "a token left a non-finite row";
  }
  EXPECT_EQ(poisoned, 3u);
  for (size_t c = 0; c < clean_reqs.size(); ++c) {
    const GenerationResult& got = mixed[where[c]];
    ASSERT_TRUE(got.error.ok()) << "request " << c << ": " << got.error;
    ASSERT_EQ(got.tokens, clean[c].tokens) << "request " << c;
    for (size_t t = 0; t < got.logits.size(); ++t) {
      for (size_t v = 0; v < got.logits[t].size(); ++v) {
        ASSERT_TRUE(std::isfinite(got.logits[t][v]));
        ASSERT_NEAR(got.logits[t][v], clean[c].logits[t][v], 1e-3)
            << "request " << c << " step " << t << " token " << v;
      }
    }
  }
  EXPECT_EQ(engine->stats().pool.kv, 0);
  EXPECT_EQ(engine->stats().sequences, 0);
  // The engine keeps serving, the poisoned adapter included (it fails again).
  std::vector<GenerationResult> again;
  ASSERT_TRUE(generate(*engine, {clean_reqs[1], reqs[0]}, &again).ok());
  EXPECT_EQ(again[0].tokens, clean[1].tokens);
  EXPECT_EQ(again[1].finish, GenerationFinish::kError);
}

}  // namespace
}  // namespace loraserve
