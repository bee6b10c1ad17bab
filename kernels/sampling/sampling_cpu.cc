#include <cmath>

#include "kernels/gemm/gemm_bf16.h"
#include "kernels/sampling/sampling.h"

namespace loraserve::kernels {

Status sample_cpu(const SampleParams& p, int isa_int) {
  const CpuIsa isa = static_cast<CpuIsa>(isa_int);
  for (int64_t r = 0; r < p.num_rows; ++r) {
    const SamplingConfig& c = p.configs[r];
    if (c.temperature != 0.0f) {
      SampleParams one = p;  // sample_ref validates the row
      one.logits = p.logits + r * p.vocab;
      one.num_rows = 1;
      one.configs = p.configs + r;
      one.steps = p.steps + r;
      one.out_tokens = p.out_tokens + r;
      one.out_logprobs = p.out_logprobs ? p.out_logprobs + r : nullptr;
      LS_RETURN_IF_ERROR(sample_ref(one));
      continue;
    }
    if (c.top_k < 0 || !(c.top_p > 0.0f && c.top_p <= 1.0f)) {
      return invalid_argument("sample: row " + std::to_string(r) +
                              ": top_k must be >= 0 and top_p in (0, 1]");
    }
    const float* row = p.logits + r * p.vocab;
    const RowSoftmaxStats st = row_softmax_stats(row, p.vocab, isa);
    if (!st.finite) {
      p.out_tokens[r] = kNonFiniteRow;
      if (p.out_logprobs) p.out_logprobs[r] = std::nanf("");
      continue;
    }
    p.out_tokens[r] = static_cast<int32_t>(st.argmax);
    if (p.out_logprobs) {
      p.out_logprobs[r] = static_cast<float>(static_cast<double>(row[st.argmax]) - st.max -
                                             st.log_sum_exp);
    }
  }
  return ok_status();
}

}  // namespace loraserve::kernels
