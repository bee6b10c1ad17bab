#include "engine/step_plan.h"

#include <algorithm>
#include <numeric>

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

}  // namespace loraserve
