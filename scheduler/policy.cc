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
  std::vector<bool> taken(waiting.size(), false);
  // Counters as they would be after this round's admissions: a tenant that
  // gets a request in is charged its prompt now, so one round does not hand
  // every slot to the same tenant.
  std::map<std::string, double> projected = counter_;
  while (static_cast<int32_t>(out.size()) < free_slots) {
    int best = -1;
    for (size_t i = 0; i < waiting.size(); ++i) {
      if (taken[i]) continue;
      const Request* r = waiting[i];
      if (best < 0) {
        best = static_cast<int>(i);
        continue;
      }
      const Request* b = waiting[best];
      const double cr = projected[r->params.tenant];
      const double cb = projected[b->params.tenant];
      if (cr < cb || (cr == cb && r->arrival_seq < b->arrival_seq)) best = static_cast<int>(i);
    }
    if (best < 0) break;
    Request* r = waiting[best];
    if (!memory.try_admit(*r)) break;
    taken[best] = true;
    projected[r->params.tenant] += w_prefill_ * static_cast<double>(r->context_len());
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
