// The StepPlan every layer of a step reads, how a batch of sequence steps
// becomes one, and the checks every backend makes on it. Pure host logic (no
// backend), so it is unit-tested on its own.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "kernels/sampling/sampling.h"

namespace loraserve {

// Geometry of the unified page pool: `num_pages` pages of `page_bytes`.
// A KV page of one layer holds `kv_page_tokens` tokens: K rows then V rows.
struct PoolGeometry {
  int32_t num_pages = 0;
  int64_t page_bytes = 0;
  int32_t kv_page_tokens = 0;
};

// Everything about one forward step that every layer shares. Built on the
// host by the engine; tokens of one sequence are contiguous and sequences
// that share an adapter are adjacent (so LoRA segments are contiguous).
struct StepPlan {
  std::vector<int32_t> token_ids;   // [T]
  std::vector<int32_t> positions;   // [T]
  std::vector<int32_t> token_seq;   // [T] index into this step's sequences
  int32_t num_seqs = 0;
  std::vector<int32_t> kv_block_indptr;  // [num_seqs + 1]
  std::vector<int32_t> kv_page_ids;      // [blocks * num_layers]
  std::vector<int32_t> sample_rows;      // token rows whose next token is drawn
  std::vector<kernels::SamplingConfig> sampling;  // [sample_rows.size()]
  std::vector<uint64_t> sample_steps;             // [sample_rows.size()]
};

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
