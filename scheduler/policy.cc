#include "scheduler/policy.h"

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

std::unique_ptr<SchedulingPolicy> make_policy(const std::string& name) {
  if (name == "fcfs") return std::make_unique<FcfsPolicy>();
  return nullptr;
}

}  // namespace loraserve
