#include "scheduler/policy.h"

#include <algorithm>

namespace loraserve {

std::vector<Request*> FcfsPolicy::admit(const std::deque<Request*>& waiting, int32_t free_slots,
                                        MemoryView& memory) {
  std::vector<Request*> out;
  for (Request* r : waiting) {
    if (static_cast<int32_t>(out.size()) >= free_slots) break;
    if (!memory.try_admit(*r)) break;
    out.push_back(r);
  }
  return out;
}

Request* FcfsPolicy::preempt_victim(const std::vector<Request*>& running) {
  Request* victim = nullptr;
  for (Request* r : running) {
    if (victim == nullptr || r->arrival_seq > victim->arrival_seq) victim = r;
  }
  return victim;
}

std::vector<Request*> VtcPolicy::admit(const std::deque<Request*>& waiting, int32_t free_slots,
                                       MemoryView& memory) {
  std::vector<Request*> out;
  if (free_slots <= 0 || waiting.empty()) return out;
  // Bucket the queue by tenant once per step: each tenant's requests in
  // arrival order, behind a cursor. A pick then looks at one head per
  // tenant instead of rescanning the whole queue (and its map lookups) for
  // every slot: O(waiting + slots * tenants) instead of O(slots * waiting).
  struct Bucket {
    double projected = 0;  // the counter as it would be after this round's admissions
    std::vector<Request*> queue;
    size_t next = 0;
  };
  std::map<std::string, Bucket> buckets;
  for (Request* r : waiting) buckets[r->params.tenant].queue.push_back(r);
  for (auto& [tenant, b] : buckets) {
    auto it = counter_.find(tenant);
    b.projected = it == counter_.end() ? 0.0 : it->second;
    // `waiting` is in arrival order already; sorting keeps the contract
    // even if a caller hands it otherwise (stable: ties keep queue order).
    std::stable_sort(b.queue.begin(), b.queue.end(), [](const Request* x, const Request* y) {
      return x->arrival_seq < y->arrival_seq;
    });
  }
  // Counters as they would be after this round's admissions: a tenant that
  // gets a request in is charged its prompt now, so one round does not hand
  // every slot to the same tenant.
  while (static_cast<int32_t>(out.size()) < free_slots) {
    Bucket* best = nullptr;
    for (auto& [tenant, b] : buckets) {
      if (b.next >= b.queue.size()) continue;
      if (best == nullptr || b.projected < best->projected ||
          (b.projected == best->projected &&
           b.queue[b.next]->arrival_seq < best->queue[best->next]->arrival_seq)) {
        best = &b;
      }
    }
    if (best == nullptr) break;
    Request* r = best->queue[best->next];
    if (!memory.try_admit(*r)) break;
    best->next += 1;
    best->projected += w_prefill_ * static_cast<double>(r->context_len());
    out.push_back(r);
  }
  return out;
}

Request* VtcPolicy::preempt_victim(const std::vector<Request*>& running) {
  Request* victim = nullptr;
  for (Request* r : running) {
    if (victim == nullptr) {
      victim = r;
      continue;
    }
    const double cr = counter_[r->params.tenant];
    const double cv = counter_[victim->params.tenant];
    if (cr > cv || (cr == cv && r->arrival_seq > victim->arrival_seq)) victim = r;
  }
  return victim;
}

void VtcPolicy::on_enqueue(const Request& r) {
  const std::string& t = r.params.tenant;
  if (active_[t] == 0) {
    // Lift a returning tenant to the least served active tenant.
    double floor = -1;
    for (const auto& [name, n] : active_) {
      if (n > 0 && name != t && (floor < 0 || counter_[name] < floor)) floor = counter_[name];
    }
    if (floor >= 0) counter_[t] = std::max(counter_[t], floor);
  }
  active_[t] += 1;
}

void VtcPolicy::on_served(const Request& r, int32_t prefill, int32_t decode) {
  counter_[r.params.tenant] += w_prefill_ * prefill + w_decode_ * decode;
}

void VtcPolicy::on_finish(const Request& r) {
  auto it = active_.find(r.params.tenant);
  if (it != active_.end() && it->second > 0) it->second -= 1;
}

std::unique_ptr<SchedulingPolicy> make_policy(const std::string& name) {
  if (name == "fcfs") return std::make_unique<FcfsPolicy>();
  if (name == "vtc") return std::make_unique<VtcPolicy>();
  return nullptr;
}

}  // namespace loraserve
