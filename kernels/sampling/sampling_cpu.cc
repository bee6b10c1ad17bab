#include <cmath>

#include "kernels/gemm/gemm_bf16.h"
#include "kernels/sampling/sampling.h"

namespace loraserve::kernels {

Status sample_cpu(const SampleParams& p, int isa_int) {
  LS_RETURN_IF_ERROR(validate_sample(p));
  const CpuIsa isa = static_cast<CpuIsa>(isa_int);
  for (int64_t r = 0; r < p.num_rows; ++r) {
    const SamplingConfig& c = p.configs[r];
    if (c.temperature != 0.0f) {
      SampleParams one = p;
      one.logits = p.logits + r * p.vocab;
      one.num_rows = 1;
      one.configs = p.configs + r;
      one.steps = p.steps + r;
      one.out_tokens = p.out_tokens + r;
      one.out_logprobs = p.out_logprobs ? p.out_logprobs + r : nullptr;
      LS_RETURN_IF_ERROR(sample_ref(one));
      continue;
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
