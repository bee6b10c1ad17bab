// The bf16 CUDA lora paged kernel against its CPU reference, run on the
// bf16-rounded inputs (so only the kernel's own rounding and summation
// order differ). Outputs are poisoned first and every element is checked.
// Every case skips itself where no GPU is present.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "kernels/lora/lora_paged.h"
#include "tests/gpu/gpu_test_util.h"

namespace loraserve::kernels {
namespace {

using gputest::DevBuf;
using gputest::expect_close;
using gputest::from_bf16;
using gputest::random_vec;
using gputest::rounded;
using gputest::to_bf16;

// ---- paged LoRA ----

struct HostAdapter {
  int32_t rank;
  int64_t a_offset, bt_offset;
  std::vector<int32_t> pages;  // image order
};

// The layouts the kernels' vector paths depend on, one knob each: aligned
// or odd offsets, page sizes (multiple of 8 and >= the row, or not), x / y /
// v strides and base pointers (16-byte aligned or not). Everything a kernel
// must not read is NaN (pool padding and unused pages, x padding, v outside
// the segments' ranks), so a read past a row, a mask or a rank shows up.
struct LoraCase {
  int64_t num_tokens = 1, in_dim = 4096, out_dim = 4096, page_elems = 32768;
  std::vector<int32_t> ranks;  // per adapter
  bool decode = true;          // token t: its own segment and adapter t; else ragged segments
  bool gaps = false;           // decode: every 5th token has no segment
  bool aligned_offsets = true; // a_offset / bt_offset multiples of 8 (else odd phases)
  int64_t x_pad = 0, y_pad = 0, v_stride = 0;      // strides: dim + pad; v_stride 0: max rank
  int64_t x_shift = 0, y_shift = 0, v_shift = 0;   // base pointers moved by this many elements
};

void run_lora_general(const LoraCase& c, uint32_t seed) {
  SCOPED_TRACE(::testing::Message() << "tokens " << c.num_tokens << " in " << c.in_dim << " out "
                                    << c.out_dim << " page " << c.page_elems << " seed " << seed);
  std::mt19937 rng(seed);
  const int num_adapters = static_cast<int>(c.ranks.size());
  const int32_t max_adapter_rank = *std::max_element(c.ranks.begin(), c.ranks.end());
  const int64_t x_stride = c.in_dim + c.x_pad, y_stride = c.out_dim + c.y_pad;
  const int64_t v_stride = c.v_stride ? c.v_stride : max_adapter_rank;
  const int64_t pe = c.page_elems;
  std::vector<HostAdapter> adapters(num_adapters);
  std::vector<int64_t> image_elems(num_adapters);
  int32_t total_pages = 0;
  for (int a = 0; a < num_adapters; ++a) {
    HostAdapter& h = adapters[a];
    h.rank = c.ranks[a];
    h.a_offset = c.aligned_offsets ? 8 * (a % 3) : 1 + (a % 7) + 8 * (a % 2);
    h.bt_offset = h.a_offset + h.rank * c.in_dim + (c.aligned_offsets ? 8 * (a % 2) : 3 + a % 5);
    if (c.aligned_offsets) h.bt_offset = (h.bt_offset + 7) / 8 * 8;
    image_elems[a] = h.bt_offset + h.rank * c.out_dim + 5;
    total_pages += static_cast<int32_t>((image_elems[a] + pe - 1) / pe);
  }
  const int32_t num_pages = total_pages + 3;
  std::vector<int32_t> perm(num_pages);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  int32_t next = 0;
  for (int a = 0; a < num_adapters; ++a) {
    const int32_t n = static_cast<int32_t>((image_elems[a] + pe - 1) / pe);
    adapters[a].pages.assign(perm.begin() + next, perm.begin() + next + n);
    next += n;
  }
  // NaN everywhere but the adapters' A and Bt.
  std::vector<float> pool(static_cast<size_t>(num_pages) * pe, NAN);
  std::uniform_real_distribution<float> unif(-1.0f, 1.0f);
  const float w_scale = 4.0f / std::sqrt(static_cast<float>(c.in_dim));
  for (const HostAdapter& h : adapters) {
    auto fill = [&](int64_t off, int64_t n) {
      for (int64_t e = off; e < off + n; ++e) {
        pool[static_cast<size_t>(h.pages[e / pe]) * pe + e % pe] =
            bf16_to_f32(f32_to_bf16(unif(rng) * w_scale));
      }
    };
    fill(h.a_offset, h.rank * c.in_dim);
    fill(h.bt_offset, h.rank * c.out_dim);
  }

  std::vector<PagedLoraSegment> segs;
  std::vector<PagedLoraSegmentDev> dsegs;
  std::vector<int32_t> all_pages;
  auto add_segment = [&](int32_t begin, int32_t end, int a) {
    const HostAdapter& h = adapters[a];
    PagedLoraSegment s;
    s.begin = begin;
    s.end = end;
    s.rank = h.rank;
    s.scale = 0.5f + static_cast<float>(rng() % 100) / 50.0f;
    s.page_ids = h.pages.data();
    s.a_offset = h.a_offset;
    s.bt_offset = h.bt_offset;
    segs.push_back(s);
    PagedLoraSegmentDev d;
    d.begin = begin;
    d.end = end;
    d.rank = h.rank;
    d.scale = s.scale;
    d.page_begin = static_cast<int32_t>(all_pages.size());
    d.num_pages = static_cast<int32_t>(h.pages.size());
    d.a_offset = h.a_offset;
    d.bt_offset = h.bt_offset;
    dsegs.push_back(d);
    all_pages.insert(all_pages.end(), h.pages.begin(), h.pages.end());
  };
  if (c.decode) {
    ASSERT_EQ(num_adapters, c.num_tokens);
    for (int32_t t = 0; t < c.num_tokens; ++t) {
      if (!c.gaps || t % 5 != 3) add_segment(t, t + 1, t);
    }
  } else {
    int32_t t = 0;
    while (t < c.num_tokens) {
      const int32_t len = 1 + static_cast<int32_t>(rng() % std::max<int64_t>(1, c.num_tokens / 4));
      const int32_t end = static_cast<int32_t>(std::min<int64_t>(c.num_tokens, t + len));
      if (rng() % 5 != 0) add_segment(t, end, static_cast<int>(rng() % num_adapters));
      t = end;
    }
    // A draw of nothing but gaps (likely for one token) would check nothing.
    if (segs.empty()) add_segment(0, static_cast<int32_t>(c.num_tokens), 0);
  }
  ASSERT_FALSE(segs.empty());
  int32_t max_rank = 0;
  for (const auto& s : segs) max_rank = std::max(max_rank, s.rank);

  // x: NaN outside the rows' first in_dim columns; y: random everywhere.
  std::vector<float> x(c.x_shift + c.num_tokens * x_stride, NAN);
  {
    auto vals = rounded(random_vec(c.num_tokens * c.in_dim, seed + 2, -1.0f, 1.0f));
    for (int64_t t = 0; t < c.num_tokens; ++t) {
      std::copy_n(vals.begin() + t * c.in_dim, c.in_dim, x.begin() + c.x_shift + t * x_stride);
    }
  }
  const auto y0 = rounded(random_vec(c.y_shift + c.num_tokens * y_stride, seed + 3, -1.0f, 1.0f));

  // Shrink.
  std::vector<float> v_ref(c.v_shift + c.num_tokens * v_stride, NAN);
  PagedLoraShrinkParams sp{x.data() + c.x_shift, x_stride, v_ref.data() + c.v_shift, v_stride,
                           c.in_dim, c.num_tokens, pool.data(), pe, segs.data(),
                           static_cast<int32_t>(segs.size())};
  ASSERT_TRUE(lora_shrink_paged_ref(sp).ok());
  DevBuf<uint16_t> dpool(to_bf16(pool)), dx(to_bf16(x)), dy(to_bf16(y0));
  DevBuf<uint16_t> dv(v_ref.size());  // poisoned: 0xffff
  DevBuf<PagedLoraSegmentDev> dseg(dsegs);
  DevBuf<int32_t> dpages(all_pages);
  PagedLoraShrinkBf16Params dsp;
  dsp.x = dx.p + c.x_shift;
  dsp.x_stride = x_stride;
  dsp.v = dv.p + c.v_shift;
  dsp.v_stride = v_stride;
  dsp.in_dim = c.in_dim;
  dsp.num_tokens = c.num_tokens;
  dsp.pool = dpool.p;
  dsp.page_elems = pe;
  dsp.segments = dseg.p;
  dsp.page_ids = dpages.p;
  dsp.num_segments = static_cast<int32_t>(dsegs.size());
  dsp.max_rank = max_rank;
  ASSERT_TRUE(launch_lora_shrink_paged_bf16(dsp, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto v_bits = dv.host();
  std::vector<bool> defined(v_bits.size(), false);
  std::vector<float> got_v, want_v;
  for (const auto& s : segs) {
    for (int32_t t = s.begin; t < s.end; ++t) {
      for (int32_t j = 0; j < s.rank; ++j) {
        const size_t i = c.v_shift + t * v_stride + j;
        defined[i] = true;
        got_v.push_back(bf16_to_f32(v_bits[i]));
        want_v.push_back(v_ref[i]);
      }
    }
  }
  expect_close(got_v, want_v, 2e-2f, 1e-2f, 1e-2, "lora_shrink_bf16 (general)");
  size_t touched = 0;
  for (size_t i = 0; i < v_bits.size(); ++i) touched += !defined[i] && v_bits[i] != 0xffff;
  EXPECT_EQ(touched, 0u) << "shrink wrote v outside the segments' ranks";

  // Expand from the device's v as it is (NaN wherever no segment defines it).
  std::vector<float> v_in = from_bf16(v_bits);
  std::vector<float> y_ref = y0;
  PagedLoraExpandParams ep{v_in.data() + c.v_shift, v_stride, y_ref.data() + c.y_shift, y_stride,
                           c.out_dim, c.num_tokens, pool.data(), pe, segs.data(),
                           static_cast<int32_t>(segs.size())};
  ASSERT_TRUE(lora_expand_paged_ref(ep).ok());
  PagedLoraExpandBf16Params dep;
  dep.v = dv.p + c.v_shift;
  dep.v_stride = v_stride;
  dep.y = dy.p + c.y_shift;
  dep.y_stride = y_stride;
  dep.out_dim = c.out_dim;
  dep.num_tokens = c.num_tokens;
  dep.pool = dpool.p;
  dep.page_elems = pe;
  dep.segments = dseg.p;
  dep.page_ids = dpages.p;
  dep.num_segments = static_cast<int32_t>(dsegs.size());
  dep.max_rank = max_rank;
  ASSERT_TRUE(launch_lora_expand_paged_bf16(dep, nullptr).ok());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  // The whole buffer: padding columns, rows without a segment and the
  // elements before the shifted base must come back unchanged.
  expect_close(from_bf16(dy.host()), y_ref, 2e-2f, 1e-2f, 1e-2, "lora_expand_bf16 (general)");
}

// Ragged segments with gaps over six adapters of ranks 8..128 at odd
// offsets; page sizes that rows straddle (every row spans several at 97).
TEST(GpuBf16LoraPaged, RaggedSegmentsMixedRanksStraddlingPages) {
  SKIP_WITHOUT_GPU();
  const std::vector<int32_t> rank_choices = {8, 16, 24, 32, 64, 128};
  uint32_t seed = 1000;
  auto run = [&](int64_t tokens, int64_t in_dim, int64_t out_dim, int64_t page_elems) {
    LoraCase c;
    c.num_tokens = tokens;
    c.in_dim = in_dim;
    c.out_dim = out_dim;
    c.page_elems = page_elems;
    for (size_t a = 0; a < rank_choices.size(); ++a) {
      c.ranks.push_back(rank_choices[(a + seed) % rank_choices.size()]);
    }
    c.decode = false;
    c.aligned_offsets = false;
    c.v_stride = 128;
    run_lora_general(c, seed++);
  };
  for (int64_t tokens : {1, 3, 16, 77, 256, 512}) {
    run(tokens, 512, 768, 1000);
    run(tokens, 4096, 1024, 65536 + 37);
  }
  run(64, 300, 200, 97);
}

// Ranks cycling through `choices`, shuffled, one per adapter.
std::vector<int32_t> mixed_ranks(int n, const std::vector<int32_t>& choices, uint32_t seed) {
  std::vector<int32_t> r(n);
  for (int i = 0; i < n; ++i) r[i] = choices[i % choices.size()];
  std::mt19937 rng(seed);
  std::shuffle(r.begin(), r.end(), rng);
  return r;
}

// The benchmark's decode shapes: every token its own segment and adapter,
// hidden 4096, ranks 8..64 mixed, aligned offsets (the vector path, phase 0).
TEST(GpuBf16LoraPaged, DecodeShapesEachTokenItsOwnAdapter) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 2000;
  const std::vector<int32_t> r4 = {8, 16, 32, 64};
  LoraCase c;
  c.ranks = {16};  // batch 1: one row per shrink block
  run_lora_general(c, seed++);
  c.num_tokens = 5;
  c.ranks = {8, 16, 32, 64, 8};
  run_lora_general(c, seed++);
  // Rows straddle pages (at multiples of 8), every 5th token without adapter.
  c.num_tokens = 64;
  c.ranks = mixed_ranks(64, r4, seed);
  c.page_elems = 4096 * 5 + 8;
  c.gaps = true;
  run_lora_general(c, seed++);
  c.num_tokens = 256;
  c.out_dim = 1024;
  c.ranks = mixed_ranks(256, r4, seed);
  c.page_elems = 65536;
  c.gaps = false;
  run_lora_general(c, seed++);
}

// Odd offsets (every phase), strides and base pointers; pages that are a
// multiple of 8 and longer than a row (vector path with a phase), not a
// multiple of 8 (generic path), shorter than a row (generic path, vector
// loads where aligned). Ranks up to 128.
TEST(GpuBf16LoraPaged, DecodeMisalignedOffsetsStridesAndPages) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 3000;
  const std::vector<int32_t> r5 = {8, 16, 32, 64, 128};
  LoraCase c;
  c.num_tokens = 33;
  c.out_dim = 1024;
  c.ranks = mixed_ranks(33, r5, seed);
  c.aligned_offsets = false;
  c.page_elems = 8200;
  run_lora_general(c, seed++);
  // Misaligned activations: x, y, v strides and bases.
  c.x_pad = 3;
  c.y_pad = 5;
  c.v_stride = 131;
  c.x_shift = 1;
  c.y_shift = 3;
  c.v_shift = 1;
  c.gaps = true;
  run_lora_general(c, seed++);
  // Padded but aligned activations, aligned offsets.
  c.aligned_offsets = true;
  c.x_pad = 8;
  c.y_pad = 16;
  c.v_stride = 136;
  c.x_shift = 8;
  c.y_shift = 24;
  c.v_shift = 0;
  run_lora_general(c, seed++);
  // Generic path: page size not a multiple of 8; then shorter than a row.
  c.page_elems = 8197;
  run_lora_general(c, seed++);
  c.num_tokens = 9;
  c.ranks = mixed_ranks(9, r5, seed);
  c.page_elems = 1000;
  run_lora_general(c, seed++);
  c.aligned_offsets = false;
  run_lora_general(c, seed++);
}

// Long segments (several tokens per block share the weight loads) mixed with
// short ones and gaps; odd dims; both weight paths; misaligned activations.
TEST(GpuBf16LoraPaged, PrefillTilesOddDimsAndStrides) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 4000;
  LoraCase c;
  c.decode = false;
  c.ranks = {8, 64, 16, 128, 24, 32};
  c.num_tokens = 301;
  c.in_dim = 512;
  c.out_dim = 768;
  c.page_elems = 1024;
  c.aligned_offsets = false;
  c.x_pad = 1;
  c.y_shift = 1;
  c.v_stride = 129;
  run_lora_general(c, seed++);
  c.in_dim = 300;  // not a multiple of 8: generic path
  c.out_dim = 203;
  c.page_elems = 256;
  c.x_pad = 0;
  c.x_shift = 5;
  c.y_shift = 0;
  c.y_pad = 3;
  run_lora_general(c, seed++);
  c.num_tokens = 64;
  c.in_dim = 1024;
  c.out_dim = 512;
  c.page_elems = 4096;
  c.aligned_offsets = true;
  c.x_shift = 0;
  c.y_pad = 0;
  c.v_stride = 0;
  run_lora_general(c, seed++);
}

// Ranks beyond expand's shared-memory chunk of rows (256) and beyond a
// shrink block's rows, up to 520.
TEST(GpuBf16LoraPaged, RanksBeyondSharedMemoryChunk) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 5000;
  LoraCase c;
  c.num_tokens = 3;
  c.in_dim = 256;
  c.out_dim = 200;
  c.page_elems = 2048;
  c.ranks = {300, 520, 8};
  run_lora_general(c, seed++);
  c.aligned_offsets = false;
  c.page_elems = 999;
  run_lora_general(c, seed++);
  c.decode = false;
  c.num_tokens = 40;
  c.page_elems = 4096;
  run_lora_general(c, seed++);
}

// Runs without a GPU too: every rejection happens before any CUDA call.
TEST(GpuBf16LoraPaged, BadParamsAreInvalidArgument) {
  static uint16_t fake[64];  // never dereferenced: the launches are refused
  static PagedLoraSegmentDev fake_seg;
  static int32_t fake_page;
  auto shrink = [&] {
    PagedLoraShrinkBf16Params p;
    p.x = fake;
    p.x_stride = 4096;
    p.v = fake;
    p.v_stride = 64;
    p.in_dim = 4096;
    p.num_tokens = 4;
    p.pool = fake;
    p.page_elems = 65536;
    p.segments = &fake_seg;
    p.page_ids = &fake_page;
    p.num_segments = 1;
    p.max_rank = 64;
    return p;
  };
  auto expand = [&] {
    PagedLoraExpandBf16Params p;
    p.v = fake;
    p.v_stride = 64;
    p.y = fake;
    p.y_stride = 4096;
    p.out_dim = 4096;
    p.num_tokens = 4;
    p.pool = fake;
    p.page_elems = 65536;
    p.segments = &fake_seg;
    p.page_ids = &fake_page;
    p.num_segments = 1;
    p.max_rank = 64;
    return p;
  };
  const auto bad = StatusCode::kInvalidArgument;
  auto s = shrink();
  s.max_rank = 0;
  EXPECT_EQ(launch_lora_shrink_paged_bf16(s, nullptr).code(), bad);
  s = shrink();
  s.max_rank = 65;  // > v_stride
  EXPECT_EQ(launch_lora_shrink_paged_bf16(s, nullptr).code(), bad);
  s = shrink();
  s.v_stride = 9000;
  s.max_rank = 8193;
  EXPECT_EQ(launch_lora_shrink_paged_bf16(s, nullptr).code(), bad);
  s = shrink();
  s.x_stride = 4095;
  EXPECT_EQ(launch_lora_shrink_paged_bf16(s, nullptr).code(), bad);
  s = shrink();
  s.page_elems = 0;
  EXPECT_EQ(launch_lora_shrink_paged_bf16(s, nullptr).code(), bad);
  s = shrink();
  s.page_ids = nullptr;
  EXPECT_EQ(launch_lora_shrink_paged_bf16(s, nullptr).code(), bad);
  s = shrink();
  s.num_tokens = -1;
  EXPECT_EQ(launch_lora_shrink_paged_bf16(s, nullptr).code(), bad);
  s = shrink();
  s.num_tokens = 0;  // nothing to do
  EXPECT_TRUE(launch_lora_shrink_paged_bf16(s, nullptr).ok());
  auto e = expand();
  e.out_dim = 0;
  EXPECT_EQ(launch_lora_expand_paged_bf16(e, nullptr).code(), bad);
  e = expand();
  e.y_stride = 100;
  EXPECT_EQ(launch_lora_expand_paged_bf16(e, nullptr).code(), bad);
  e = expand();
  e.out_dim = e.y_stride = int64_t{1} << 40;  // more column blocks than a grid holds
  EXPECT_EQ(launch_lora_expand_paged_bf16(e, nullptr).code(), bad);
  e = expand();
  e.pool = nullptr;
  EXPECT_EQ(launch_lora_expand_paged_bf16(e, nullptr).code(), bad);
  e = expand();
  e.max_rank = 128;  // > v_stride
  EXPECT_EQ(launch_lora_expand_paged_bf16(e, nullptr).code(), bad);
  e = expand();
  e.num_segments = 0;  // nothing to do
  EXPECT_TRUE(launch_lora_expand_paged_bf16(e, nullptr).ok());
}

TEST(GpuBf16LoraLaunch, BadParamsAreStatusNotCrash) {
  // Runs without a GPU too: validation happens before any CUDA call.
  PagedLoraShrinkBf16Params s;
  s.num_tokens = 4;
  s.num_segments = 1;
  EXPECT_EQ(launch_lora_shrink_paged_bf16(s, nullptr).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace loraserve::kernels
