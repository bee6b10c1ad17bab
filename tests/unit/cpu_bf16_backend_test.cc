// The cpu-bf16 backend through the Engine against the f32 cpu backend (the
// oracle), on the mixed-adapter fixture (base and six adapters of ranks
// 4..64, late joins, chunked prefill): with f32 activations (avx512, avx2,
// scalar kernels) every logit agrees with the oracle to f32 rounding; with
// the bf16-activation kernel (avx512bf16) within the bf16 tolerance. The
// synthetic weights are bf16 on disk, so no weight rounding enters.
// The float64 PyTorch reference checks the same backend in ctest
// (reference_vs_pytorch_cpu_bf16*).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "checkpoint/model_weights.h"
#include "checkpoint/safetensors.h"
#include "checkpoint/synth.h"
#include "engine/engine.h"
#include "kernels/gemm/gemm_bf16.h"
#include "scheduler/offline.h"
#include "tests/support/mixed_adapters.h"

namespace loraserve {
namespace {

namespace fs = std::filesystem;
using kernels::CpuIsa;

class CpuBf16BackendTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/loraserve-cpubf16-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_TRUE(testing_util::write_mixed_adapters_fixture(dir_).ok());
    auto w = ModelWeights::open(dir_ + "/attn/model");
    ASSERT_TRUE(w.ok()) << w.status();
    weights_ = std::move(*w);
    // The oracle's run, once.
    auto cpu = Engine::create(*weights_, create_cpu_backend(), EngineOptions{});
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    ASSERT_TRUE(run(**cpu, &oracle_).ok());
  }
  static void TearDownTestSuite() {
    weights_.reset();
    fs::remove_all(dir_);
  }

  static Status run(Engine& e, std::vector<GenerationResult>* out) {
    LS_ASSIGN_OR_RETURN(auto ids, testing_util::register_mixed_adapters(e, dir_));
    return generate(e, testing_util::mixed_requests(ids), out);
  }

  static std::unique_ptr<Engine> make(const std::string& isa, int threads,
                                      const std::string& kv = "auto",
                                      const std::string& weights = "mapped",
                                      const std::string& weights_cache = "") {
    BackendOptions bo;
    bo.cpu_isa = isa;
    bo.threads = threads;
    bo.kv_cache_dtype = kv;
    bo.cpu_weights = weights;
    bo.cpu_weights_cache = weights_cache;
    auto b = create_backend("cpu-bf16", bo);
    EXPECT_TRUE(b.ok()) << b.status();
    if (!b.ok()) return nullptr;
    auto e = Engine::create(weights_, std::move(*b), EngineOptions{});
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }

  // max |a - b| / max |b| over every logit of every request, comparing only
  // the steps both took along the same tokens.
  static double max_rel_diff(const std::vector<GenerationResult>& a,
                             const std::vector<GenerationResult>& b, size_t* same_tokens) {
    double num = 0, den = 0;
    *same_tokens = 0;
    for (size_t r = 0; r < a.size(); ++r) {
      for (size_t s = 0; s < a[r].logits.size() && s < b[r].logits.size(); ++s) {
        for (size_t v = 0; v < a[r].logits[s].size(); ++v) {
          num = std::max(num, std::fabs(double(a[r].logits[s][v]) - b[r].logits[s][v]));
          den = std::max(den, std::fabs(double(b[r].logits[s][v])));
        }
        if (a[r].tokens[s] != b[r].tokens[s]) break;  // later rows see different prefixes
        ++*same_tokens;
      }
    }
    return num / den;
  }

  static std::vector<std::string> isas() {
    std::vector<std::string> out;
    for (CpuIsa i : kernels::runnable_cpu_isas()) out.push_back(kernels::cpu_isa_name(i));
    return out;
  }

  static std::string dir_;
  static std::shared_ptr<const ModelWeights> weights_;
  static std::vector<GenerationResult> oracle_;
};

std::string CpuBf16BackendTest::dir_;
std::shared_ptr<const ModelWeights> CpuBf16BackendTest::weights_;
std::vector<GenerationResult> CpuBf16BackendTest::oracle_;

TEST_F(CpuBf16BackendTest, EveryKernelMatchesTheF32Backend) {
  // With the f32 KV cache, so that only the kernels differ from the oracle.
  size_t total = 0;
  for (const auto& r : oracle_) total += r.tokens.size();
  for (const std::string& isa : isas()) {
    SCOPED_TRACE(isa);
    auto e = make(isa, 2, "f32");
    ASSERT_NE(e, nullptr);
    std::vector<GenerationResult> got;
    ASSERT_TRUE(run(*e, &got).ok());
    ASSERT_EQ(got.size(), oracle_.size());
    size_t same = 0;
    const double rel = max_rel_diff(got, oracle_, &same);
    if (isa == "avx512bf16") {
      // x rounded to bf16 before each projection: ~2^-9 per product.
      EXPECT_LT(rel, 2e-2);
      EXPECT_GT(same, total * 3 / 4) << "greedy tokens drifted early";
    } else {
      // bf16 weights are exact in f32: only the summation order differs.
      EXPECT_LT(rel, 1e-4);
      EXPECT_EQ(same, total);
    }
  }
}

TEST_F(CpuBf16BackendTest, Bf16KvCacheStaysWithinBf16ToleranceOfTheF32Backend) {
  // K and V rounded to bf16 once as they are cached (~2^-9 relative each):
  // the same bound as the bf16-activation kernel, alone and together.
  size_t total = 0;
  for (const auto& r : oracle_) total += r.tokens.size();
  for (const std::string& isa : isas()) {
    SCOPED_TRACE(isa);
    auto e = make(isa, 2, "bf16");
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->backend().kv_dtype(), DType::kBF16);
    std::vector<GenerationResult> got;
    ASSERT_TRUE(run(*e, &got).ok());
    ASSERT_EQ(got.size(), oracle_.size());
    size_t same = 0;
    const double rel = max_rel_diff(got, oracle_, &same);
    EXPECT_LT(rel, 2e-2);
    EXPECT_GT(rel, 0.0) << "the cache was not rounded";
    EXPECT_GT(same, total * 3 / 4) << "greedy tokens drifted early";
  }
}

TEST_F(CpuBf16BackendTest, Bf16KvCacheHoldsTwiceTheTokensInTheSamePool) {
  EngineOptions o;
  o.pool_bytes = 8 << 20;
  auto make_kv = [&](const std::string& kv) -> std::unique_ptr<Engine> {
    BackendOptions bo;
    bo.kv_cache_dtype = kv;
    auto b = create_backend("cpu-bf16", bo);
    EXPECT_TRUE(b.ok()) << b.status();
    auto e = Engine::create(weights_, std::move(*b), o);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  };
  auto f32 = make_kv("f32"), bf16 = make_kv("auto");
  ASSERT_TRUE(f32 && bf16);
  const ModelConfig& c = weights_->config();
  // A page: K and V rows of 16 tokens (EngineOptions' default) of one layer.
  EXPECT_EQ(f32->stats().page_bytes, 2 * 16 * c.kv_dim() * 4);
  EXPECT_EQ(bf16->stats().page_bytes, 2 * 16 * c.kv_dim() * 2);
  EXPECT_EQ(bf16->stats().pool.total, 2 * f32->stats().pool.total);
}

TEST_F(CpuBf16BackendTest, ThreadCountDoesNotChangeAnyLogit) {
  // Threads split output columns and token rows, never one dot product.
  std::vector<GenerationResult> one, three;
  auto e1 = make("auto", 1);
  auto e3 = make("auto", 3);
  ASSERT_TRUE(e1 && e3);
  ASSERT_TRUE(run(*e1, &one).ok());
  ASSERT_TRUE(run(*e3, &three).ok());
  for (size_t r = 0; r < one.size(); ++r) {
    EXPECT_EQ(one[r].tokens, three[r].tokens) << "request " << r;
    EXPECT_EQ(one[r].logits, three[r].logits) << "request " << r;
  }
}

TEST_F(CpuBf16BackendTest, MixedBatchMatchesEachRequestAlone) {
  auto together = make("auto", 2);
  ASSERT_NE(together, nullptr);
  auto ids = testing_util::register_mixed_adapters(*together, dir_);
  ASSERT_TRUE(ids.ok());
  const auto reqs = testing_util::mixed_requests(*ids);
  std::vector<GenerationResult> batched;
  ASSERT_TRUE(generate(*together, reqs, &batched).ok());
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto alone_engine = make("auto", 2);
    ASSERT_NE(alone_engine, nullptr);
    ASSERT_TRUE(testing_util::register_mixed_adapters(*alone_engine, dir_).ok());
    GenerationRequest r = reqs[i];
    r.join_step = 0;
    r.prefill_chunk = 0;
    std::vector<GenerationResult> alone;
    ASSERT_TRUE(generate(*alone_engine, {r}, &alone).ok());
    EXPECT_EQ(batched[i].tokens, alone[0].tokens) << "request " << i;
  }
}

// An adapter whose weights are all bf16 values (a bf16 file) is held as a
// bf16 image, half the bytes; one that is not (an f32 file) keeps f32, so
// the f32-activation kernels still agree with the f32 oracle to f32
// rounding, with both kinds of image in the same steps.
TEST_F(CpuBf16BackendTest, AdapterImagesAreBf16OnlyWhereThatIsExact) {
  const std::string src = dir_ + "/attn/adapters/adapter-001";
  const std::string f32_dir = dir_ + "/adapter-001-f32";
  fs::create_directories(f32_dir);
  fs::copy_file(src + "/adapter_config.json", f32_dir + "/adapter_config.json",
                fs::copy_options::overwrite_existing);
  {
    auto file = SafetensorsFile::open(src + "/adapter_model.safetensors");
    ASSERT_TRUE(file.ok()) << file.status();
    std::vector<TensorToWrite> out;
    for (const auto& [name, t] : (*file)->tensors()) {
      ASSERT_EQ(t.dtype, DType::kBF16) << name;
      size_t n = 1;
      for (int64_t d : t.shape) n *= static_cast<size_t>(d);
      std::vector<float> v(n);
      convert_to_f32(t.dtype, t.data, v.data(), n);
      // Off the bf16 grid (8 significant bits) by up to a few tenths of its
      // spacing, element by element: a bf16 image would round this away.
      for (size_t i = 0; i < n; ++i) v[i] *= 1.0f + static_cast<float>((i * 2654435761u) % 1001) * 3e-6f;
      out.push_back(TensorToWrite{name, DType::kF32, t.shape,
                                  std::string(reinterpret_cast<const char*>(v.data()), n * 4)});
    }
    ASSERT_TRUE(write_safetensors(f32_dir + "/adapter_model.safetensors", out).ok());
  }
  auto bf16_adapter = LoraAdapter::load_dir(src, weights_->config());
  auto f32_adapter = LoraAdapter::load_dir(f32_dir, weights_->config());
  ASSERT_TRUE(bf16_adapter.ok()) << bf16_adapter.status();
  ASSERT_TRUE(f32_adapter.ok()) << f32_adapter.status();

  auto oracle = Engine::create(weights_, create_cpu_backend(), EngineOptions{});
  ASSERT_TRUE(oracle.ok()) << oracle.status();
  auto fast = make("scalar", 2, "f32");  // f32 activations: exact bf16 weights, f32 sums
  ASSERT_NE(fast, nullptr);
  EXPECT_EQ(fast->adapter_image_dtype(**bf16_adapter), DType::kBF16);
  EXPECT_EQ(fast->adapter_image_dtype(**f32_adapter), DType::kF32);
  EXPECT_EQ(2 * fast->adapter_image_bytes(**bf16_adapter), fast->adapter_image_bytes(**f32_adapter));
  EXPECT_EQ((*oracle)->adapter_image_dtype(**bf16_adapter), DType::kF32);

  std::vector<GenerationRequest> reqs;
  testing_util::add_request(&reqs, "bf16", {1, 17, 300, 42, 9}, 10, 0, 0);
  testing_util::add_request(&reqs, "f32", {1, 17, 300, 42, 9}, 10, 0, 0);
  testing_util::add_request(&reqs, "", {5, 6, 7, 8}, 10, 0, 0);
  testing_util::add_request(&reqs, "f32", {900, 3, 77}, 8, 2, 0);
  std::vector<GenerationResult> got[2];
  Engine* engines[2] = {oracle->get(), fast.get()};
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(engines[i]->register_adapter("bf16", **bf16_adapter).ok());
    ASSERT_TRUE(engines[i]->register_adapter("f32", **f32_adapter).ok());
    ASSERT_TRUE(generate(*engines[i], reqs, &got[i]).ok());
  }
  size_t same = 0, total = 0;
  for (const auto& r : got[0]) total += r.tokens.size();
  EXPECT_LT(max_rel_diff(got[1], got[0], &same), 1e-4);
  EXPECT_EQ(same, total);
  // The f32 copy is a different adapter: its logits are not the bf16 one's.
  EXPECT_NE(got[0][0].logits[0], got[0][1].logits[0]);
}

TEST_F(CpuBf16BackendTest, RefusesToMapWeightsItDoesNotShare) {
  BackendOptions bo;
  bo.cpu_weights = "mapped";
  auto b = create_backend("cpu-bf16", bo);
  ASSERT_TRUE(b.ok());
  auto e = Engine::create(*weights_, std::move(*b), EngineOptions{});
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kFailedPrecondition) << e.status();
}

TEST_F(CpuBf16BackendTest, EngineKeepsTheMappingAlive) {
  // The caller drops its reference at once; the engine must still read the
  // checkpoint's pages (ASan would report a use after unmap otherwise, and
  // the tokens would differ).
  auto w = ModelWeights::open(dir_ + "/attn/model");
  ASSERT_TRUE(w.ok());
  std::shared_ptr<const ModelWeights> shared = std::move(*w);
  BackendOptions bo;
  bo.cpu_weights = "mapped";
  auto b = create_backend("cpu-bf16", bo);
  ASSERT_TRUE(b.ok());
  auto e = Engine::create(shared, std::move(*b), EngineOptions{});
  ASSERT_TRUE(e.ok()) << e.status();
  shared.reset();
  std::vector<GenerationResult> got;
  ASSERT_TRUE(run(**e, &got).ok());
  EXPECT_EQ(got[0].tokens.size(), oracle_[0].tokens.size());
}

TEST_F(CpuBf16BackendTest, PackedWeightsMatchMappedWeights) {
  if (kernels::detect_cpu_isa() != CpuIsa::kAvx512Bf16) GTEST_SKIP() << "no AVX512-BF16";
  // The same bf16 x and weights through the panel kernel: only the order of
  // the f32 additions differs from the row kernel. Where that moves an
  // activation across a bf16 rounding boundary the next projection sees a
  // 2^-8 change, so the logits differ by a few 1e-3 (measured 3.1e-3), well
  // inside the oracle's bound, and every greedy token is the same.
  size_t total = 0;
  for (const auto& r : oracle_) total += r.tokens.size();
  auto mapped = make("avx512bf16", 2, "f32");
  auto packed = make("avx512bf16", 3, "f32", "packed");
  ASSERT_TRUE(mapped && packed);
  EXPECT_NE(packed->backend().describe().find("packed weights"), std::string::npos);
  std::vector<GenerationResult> a, b;
  ASSERT_TRUE(run(*mapped, &a).ok());
  ASSERT_TRUE(run(*packed, &b).ok());
  size_t same = 0;
  EXPECT_LT(max_rel_diff(b, a, &same), 1e-2);
  EXPECT_EQ(same, total);
  EXPECT_LT(max_rel_diff(b, oracle_, &same), 2e-2);  // and the oracle's bound
}

// Logits of every step of every request, bit for bit.
bool same_logits(const std::vector<GenerationResult>& a, const std::vector<GenerationResult>& b) {
  if (a.size() != b.size()) return false;
  for (size_t r = 0; r < a.size(); ++r) {
    if (a[r].tokens != b[r].tokens || a[r].logits != b[r].logits) return false;
  }
  return true;
}

TEST_F(CpuBf16BackendTest, PackedWeightsCacheServesTheNextStartAndSurvivesCorruption) {
  if (kernels::detect_cpu_isa() != CpuIsa::kAvx512Bf16) GTEST_SKIP() << "no AVX512-BF16";
  const std::string cache = dir_ + "/weights-cache";
  // Packed in memory (no cache) is what every cached start must equal, bit
  // for bit: the same panels through the same kernel.
  std::vector<GenerationResult> plain, first, second, repaired;
  {
    auto e = make("avx512bf16", 2, "f32", "packed");
    ASSERT_NE(e, nullptr);
    ASSERT_TRUE(run(*e, &plain).ok());
  }
  {
    auto e = make("avx512bf16", 2, "f32", "packed", cache);  // a miss: packs and writes
    ASSERT_NE(e, nullptr);
    EXPECT_NE(e->backend().describe().find(", 0 mapped from the cache"), std::string::npos)
        << e->backend().describe();
    ASSERT_TRUE(run(*e, &first).ok());
  }
  std::vector<fs::path> entries;
  for (const auto& f : fs::directory_iterator(cache)) entries.push_back(f.path());
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].extension(), ".lsw");
  {
    auto e = make("avx512bf16", 2, "f32", "packed", cache);  // every matrix mapped
    ASSERT_NE(e, nullptr);
    EXPECT_NE(e->backend().describe().find(", 0 packed"), std::string::npos)
        << e->backend().describe();
    ASSERT_TRUE(run(*e, &second).ok());
  }
  EXPECT_TRUE(same_logits(first, plain));
  EXPECT_TRUE(same_logits(second, plain));
  // One flipped byte in the last payload: that matrix fails its checksum and
  // is packed again (not served as garbage), and the entry is rewritten.
  {
    std::fstream f(entries[0], std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-1, std::ios::end);
    const char c = static_cast<char>(f.get() ^ 0x5a);
    f.seekp(-1, std::ios::end);
    f.put(c);
  }
  {
    auto e = make("avx512bf16", 2, "f32", "packed", cache);
    ASSERT_NE(e, nullptr);
    EXPECT_NE(e->backend().describe().find(", 1 packed"), std::string::npos)
        << e->backend().describe();
    ASSERT_TRUE(run(*e, &repaired).ok());
  }
  EXPECT_TRUE(same_logits(repaired, plain));
  auto e = make("avx512bf16", 2, "f32", "packed", cache);
  ASSERT_NE(e, nullptr);
  EXPECT_NE(e->backend().describe().find(", 0 packed"), std::string::npos) << e->backend().describe();
}

TEST_F(CpuBf16BackendTest, PackedWeightsCacheThatCannotBeWrittenOnlyCostsPacking) {
  if (kernels::detect_cpu_isa() != CpuIsa::kAvx512Bf16) GTEST_SKIP() << "no AVX512-BF16";
  // A cache "directory" under a regular file cannot be created (as root
  // too): the backend warns and packs in memory, and serves the same.
  const std::string file = dir_ + "/not-a-dir";
  { std::ofstream(file) << "x"; }
  auto e = make("avx512bf16", 2, "f32", "packed", file + "/cache");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->backend().describe().find("from the cache"), std::string::npos);
  std::vector<GenerationResult> got;
  ASSERT_TRUE(run(*e, &got).ok());
  size_t same = 0;
  EXPECT_LT(max_rel_diff(got, oracle_, &same), 2e-2);
}

TEST_F(CpuBf16BackendTest, PackedTiedTableServesEmbeddingAndLmHead) {
  if (kernels::detect_cpu_isa() != CpuIsa::kAvx512Bf16) GTEST_SKIP() << "no AVX512-BF16";
  // A tied table packed once serves both the embedding lookup (read back
  // out of the panels) and lm_head; vocab 1000 leaves a last panel of 8.
  auto tiny = synth_preset("tiny");
  ASSERT_TRUE(tiny.ok());
  SynthOptions so;
  so.config = *tiny;
  so.config.tie_word_embeddings = true;
  so.config.vocab_size = 1000;
  so.seed = 21;
  so.num_adapters = 0;
  ASSERT_TRUE(synth_write(so, dir_ + "/tied").ok());
  auto w = ModelWeights::open(dir_ + "/tied/model");
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ((*w)->lm_head(), (*w)->embed_tokens());
  std::shared_ptr<const ModelWeights> shared = std::move(*w);
  std::vector<GenerationRequest> reqs(3);
  reqs[0].prompt = {1, 999, 500, 7};
  reqs[1].prompt = {992, 993, 994, 995, 996, 997, 998};  // ids in the last, partial panel
  reqs[2].prompt = {3};
  for (auto& r : reqs) {
    r.max_new_tokens = 10;
    r.want_logits = true;
  }
  std::vector<GenerationResult> outs[2];
  for (int i = 0; i < 2; ++i) {
    BackendOptions bo;
    bo.cpu_isa = "avx512bf16";
    bo.kv_cache_dtype = "f32";
    bo.cpu_weights = i == 0 ? "mapped" : "packed";
    auto b = create_backend("cpu-bf16", bo);
    ASSERT_TRUE(b.ok()) << b.status();
    // Packed copies what it needs: it takes the weights by reference (the
    // mapped backend is refused that, see RefusesToMapWeightsItDoesNotShare).
    auto e = i == 0 ? Engine::create(shared, std::move(*b), EngineOptions{})
                    : Engine::create(*shared, std::move(*b), EngineOptions{});
    ASSERT_TRUE(e.ok()) << e.status();
    ASSERT_TRUE(generate(**e, reqs, &outs[i]).ok());
  }
  size_t same = 0, total = 0;
  for (const auto& r : outs[0]) total += r.tokens.size();
  EXPECT_LT(max_rel_diff(outs[1], outs[0], &same), 1e-2);  // measured 3.5e-3, see above
  EXPECT_EQ(same, total);
}

TEST_F(CpuBf16BackendTest, CpuWeightsAutoPacksWhereThePanelKernelRuns) {
  BackendOptions bo;  // cpu_weights "auto"
  auto b = create_backend("cpu-bf16", bo);
  ASSERT_TRUE(b.ok()) << b.status();
  const bool bf16 = kernels::detect_cpu_isa() == CpuIsa::kAvx512Bf16;
  EXPECT_NE((*b)->describe().find(bf16 ? "packed weights" : "mapped weights"), std::string::npos)
      << (*b)->describe();
  EXPECT_EQ((*b)->maps_weights(), !bf16);
  bo.cpu_isa = "scalar";  // no panel kernel: auto maps
  auto scalar = create_backend("cpu-bf16", bo);
  ASSERT_TRUE(scalar.ok()) << scalar.status();
  EXPECT_TRUE((*scalar)->maps_weights());
  EXPECT_TRUE(create_backend("cpu", bo).ok());  // auto is fine for every backend
}

TEST_F(CpuBf16BackendTest, CpuWeightsIsCheckedPerBackend) {
  BackendOptions bo;
  bo.cpu_weights = "compressed";
  EXPECT_EQ(create_backend("cpu-bf16", bo).status().code(), StatusCode::kInvalidArgument);
  bo.cpu_weights = "packed";
  EXPECT_EQ(create_backend("cpu", bo).status().code(), StatusCode::kInvalidArgument);
  bo.cpu_isa = "avx2";  // the panel kernel is VDPBF16PS only
  if (kernels::parse_cpu_isa("avx2").ok()) {
    auto b = create_backend("cpu-bf16", bo);
    EXPECT_EQ(b.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(b.status().message().find("AVX512-BF16"), std::string::npos) << b.status();
  }
}

TEST_F(CpuBf16BackendTest, RefusesUnknownOrMissingInstructionSets) {
  BackendOptions bo;
  bo.cpu_isa = "neon";
  EXPECT_FALSE(create_backend("cpu-bf16", bo).ok());
  bo.cpu_isa = "auto";
  bo.threads = -1;
  EXPECT_FALSE(create_backend("cpu-bf16", bo).ok());
}

TEST_F(CpuBf16BackendTest, KvCacheDtypeIsCheckedPerBackend) {
  BackendOptions bo;
  bo.kv_cache_dtype = "fp8";
  EXPECT_EQ(create_backend("cpu-bf16", bo).status().code(), StatusCode::kInvalidArgument);
  bo.kv_cache_dtype = "bf16";
  // The cpu backend is the f32 oracle.
  EXPECT_EQ(create_backend("cpu", bo).status().code(), StatusCode::kInvalidArgument);
  bo.kv_cache_dtype = "f32";
  auto cpu = create_backend("cpu", bo);
  ASSERT_TRUE(cpu.ok());
  EXPECT_EQ((*cpu)->kv_dtype(), DType::kF32);
  auto fast = create_backend("cpu-bf16", bo);
  ASSERT_TRUE(fast.ok());
  EXPECT_EQ((*fast)->kv_dtype(), DType::kF32);
}

}  // namespace
}  // namespace loraserve
