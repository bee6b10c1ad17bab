// Scheduling policies: which waiting requests to admit at a step, and which
// running request to preempt when the KV cache runs out. A policy is a
// function of (queue, memory view); it never touches the engine, so it is
// tested table-driven with fakes. Fairness across tenants (VTC) plugs in
// here later.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "scheduler/request.h"

namespace loraserve {

// The scheduler's answer to "does this request fit now?" for a policy.
class MemoryView {
 public:
  virtual ~MemoryView() = default;
  // True when `r` (its whole context as a prefill, its adapter if not
  // resident) fits next to everything already admitted this step; then the
  // view counts its pages as taken.
  virtual bool try_admit(const Request& r) = 0;
};

class SchedulingPolicy {
 public:
  virtual ~SchedulingPolicy() = default;
  virtual std::string name() const = 0;
  // Requests to start now, in order, at most `free_slots` of them, taken
  // from `waiting` (which stays in arrival order; preempted requests keep
  // their original arrival).
  virtual std::vector<Request*> admit(const std::deque<Request*>& waiting, int32_t free_slots,
                                      MemoryView& memory) = 0;
  // The running request to preempt when memory runs out; null for none.
  virtual Request* preempt_victim(const std::vector<Request*>& running) = 0;
};

// First come, first served: admit in arrival order and stop at the first
// request that does not fit (no overtaking, so no starvation of large
// requests); preempt the most recently arrived running request.
class FcfsPolicy final : public SchedulingPolicy {
 public:
  std::string name() const override { return "fcfs"; }
  std::vector<Request*> admit(const std::deque<Request*>& waiting, int32_t free_slots,
                              MemoryView& memory) override;
  Request* preempt_victim(const std::vector<Request*>& running) override;
};

std::unique_ptr<SchedulingPolicy> make_policy(const std::string& name);

}  // namespace loraserve
