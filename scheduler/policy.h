// Scheduling policies: which waiting requests to admit at a step, and which
// running request to preempt when the KV cache runs out. A policy is a
// function of (queue, memory view); it never touches the engine, so it is
// tested table-driven with fakes. Two policies: fcfs, and vtc (a fair share
// of tokens between tenants, after the Virtual Token Counter).
#pragma once

#include <deque>
#include <map>
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

  // Notifications for policies that keep accounts (all optional).
  virtual void on_enqueue(const Request& /*r*/) {}  // a new request joins the queue
  virtual void on_served(const Request& /*r*/, int32_t /*prefill*/, int32_t /*decode*/) {}
  virtual void on_finish(const Request& /*r*/) {}
  // Per-tenant service counters, for stats (empty when not kept).
  virtual std::map<std::string, double> counters() const { return {}; }
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

// Virtual Token Counter (Sheng et al., "Fairness in Serving Large Language
// Models", OSDI 2024): each tenant's counter grows by the tokens served to
// it, prefill tokens weighted `w_prefill` and decode tokens `w_decode`;
// admission always serves the tenant with the smallest counter that has
// waiting requests, in its arrival order. A tenant that becomes active is
// lifted to the smallest counter of the active tenants, so idling earns no
// credit. Preemption takes from the tenant with the largest counter.
class VtcPolicy final : public SchedulingPolicy {
 public:
  VtcPolicy(double w_prefill = 1.0, double w_decode = 2.0)
      : w_prefill_(w_prefill), w_decode_(w_decode) {}
  std::string name() const override { return "vtc"; }
  std::vector<Request*> admit(const std::deque<Request*>& waiting, int32_t free_slots,
                              MemoryView& memory) override;
  Request* preempt_victim(const std::vector<Request*>& running) override;
  void on_enqueue(const Request& r) override;
  void on_served(const Request& r, int32_t prefill, int32_t decode) override;
  void on_finish(const Request& r) override;
  std::map<std::string, double> counters() const override { return counter_; }

 private:
  double w_prefill_, w_decode_;
  std::map<std::string, double> counter_;
  std::map<std::string, int32_t> active_;  // requests queued or running, per tenant
};

// "fcfs" or "vtc"; null for anything else.
std::unique_ptr<SchedulingPolicy> make_policy(const std::string& name);

}  // namespace loraserve
