// Turning a batch of sequence steps into the StepPlan every layer reads.
// Pure host logic (no backend), so it is unit-tested on its own.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/backend.h"

namespace loraserve {

// One sequence's share of a step: `tokens` are appended at positions
// start_pos.. ; when `sample` is set the next token is drawn from the logits
// of the last of them.
struct PlanEntry {
  int64_t seq_id = 0;
  int32_t adapter_slot = -1;  // -1: base model only
  int64_t start_pos = 0;
  const std::vector<int32_t>* tokens = nullptr;
  bool sample = true;
  kernels::SamplingConfig sampling;
  uint64_t step = 0;
};

// A run of token rows that share one adapter slot (>= 0).
struct AdapterRun {
  int32_t begin = 0;
  int32_t end = 0;
  int32_t slot = -1;
};

struct BuiltPlan {
  StepPlan plan;
  std::vector<int64_t> seq_ids;     // [num_seqs] in plan order
  std::vector<int32_t> order;       // plan position -> index into the entries
  std::vector<int32_t> sample_entry;  // [sample_rows] index into the entries
  std::vector<AdapterRun> adapter_runs;
};

// Orders entries by adapter slot (stable, so equal slots keep input order),
// flattens their tokens, and records adapter runs and sample rows. The KV
// page table fields are left for the caller (they come from memory/).
BuiltPlan build_step_plan(const std::vector<PlanEntry>& entries);

// Everything the kernels trust in a plan, checked once per step on the host
// by every backend: array lengths agree, sequences and sample rows are in
// range, block tables are monotonic and name pool pages, and every token's
// position lies inside the blocks its sequence owns.
Status validate_step_plan(const StepPlan& plan, int64_t num_layers, const PoolGeometry& pool);

}  // namespace loraserve
