#include "engine/step_plan.h"

#include <algorithm>
#include <numeric>
#include <string>

namespace loraserve {

BuiltPlan build_step_plan(const std::vector<PlanEntry>& entries) {
  BuiltPlan out;
  out.order.resize(entries.size());
  std::iota(out.order.begin(), out.order.end(), 0);
  std::stable_sort(out.order.begin(), out.order.end(), [&](int32_t a, int32_t b) {
    return entries[a].adapter_slot < entries[b].adapter_slot;
  });

  StepPlan& plan = out.plan;
  plan.num_seqs = static_cast<int32_t>(entries.size());
  for (int32_t s = 0; s < plan.num_seqs; ++s) {
    const PlanEntry& e = entries[out.order[s]];
    const int32_t begin = static_cast<int32_t>(plan.token_ids.size());
    for (size_t i = 0; i < e.tokens->size(); ++i) {
      plan.token_ids.push_back((*e.tokens)[i]);
      plan.positions.push_back(static_cast<int32_t>(e.start_pos + static_cast<int64_t>(i)));
      plan.token_seq.push_back(s);
    }
    const int32_t end = static_cast<int32_t>(plan.token_ids.size());
    out.seq_ids.push_back(e.seq_id);
    if (e.sample && end > begin) {
      plan.sample_rows.push_back(end - 1);
      plan.sampling.push_back(e.sampling);
      plan.sample_steps.push_back(e.step);
      out.sample_entry.push_back(out.order[s]);
    }
    if (e.adapter_slot >= 0 && end > begin) {
      if (!out.adapter_runs.empty() && out.adapter_runs.back().slot == e.adapter_slot &&
          out.adapter_runs.back().end == begin) {
        out.adapter_runs.back().end = end;
      } else {
        out.adapter_runs.push_back(AdapterRun{begin, end, e.adapter_slot});
      }
    }
  }
  return out;
}

Status validate_step_plan(const StepPlan& plan, int64_t num_layers, const PoolGeometry& pool) {
  const size_t n = plan.token_ids.size();
  if (plan.positions.size() != n || plan.token_seq.size() != n) {
    return invalid_argument("step plan: token arrays differ in length");
  }
  if (n > static_cast<size_t>(INT32_MAX)) return invalid_argument("step plan: too many tokens");
  if (plan.num_seqs < 0 || plan.kv_block_indptr.size() != static_cast<size_t>(plan.num_seqs) + 1) {
    return invalid_argument("step plan: kv_block_indptr must have num_seqs + 1 entries");
  }
  if (plan.sampling.size() != plan.sample_rows.size() ||
      plan.sample_steps.size() != plan.sample_rows.size()) {
    return invalid_argument("step plan: sampling arrays differ in length");
  }
  const int64_t layers = num_layers;
  if (plan.kv_block_indptr[0] < 0) return invalid_argument("step plan: negative kv_block_indptr");
  for (int32_t s = 0; s < plan.num_seqs; ++s) {
    if (plan.kv_block_indptr[s + 1] < plan.kv_block_indptr[s]) {
      return invalid_argument("step plan: kv_block_indptr decreases");
    }
  }
  if (static_cast<int64_t>(plan.kv_block_indptr[plan.num_seqs]) * layers >
      static_cast<int64_t>(plan.kv_page_ids.size())) {
    return invalid_argument("step plan: kv_page_ids shorter than the block table");
  }
  for (int32_t id : plan.kv_page_ids) {
    if (id < 0 || id >= pool.num_pages) return invalid_argument("step plan: KV page id outside the pool");
  }
  for (size_t t = 0; t < n; ++t) {
    const int32_t s = plan.token_seq[t];
    const int32_t pos = plan.positions[t];
    if (s < 0 || s >= plan.num_seqs) {
      return invalid_argument("step plan: token " + std::to_string(t) + " names sequence " +
                              std::to_string(s) + " outside [0, " +
                              std::to_string(plan.num_seqs) + ")");
    }
    if (pos < 0) return invalid_argument("step plan: negative position");
    const int64_t cap = static_cast<int64_t>(plan.kv_block_indptr[s + 1] - plan.kv_block_indptr[s]) *
                        pool.kv_page_tokens;
    if (pos >= cap) {
      return out_of_range("step plan: token " + std::to_string(t) + " at position " +
                          std::to_string(pos) + " is beyond the " + std::to_string(cap) +
                          " tokens its sequence owns");
    }
  }
  for (int32_t r : plan.sample_rows) {
    if (r < 0 || static_cast<size_t>(r) >= n) return invalid_argument("step plan: sample row out of range");
  }
  return ok_status();
}

}  // namespace loraserve
