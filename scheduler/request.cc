#include "scheduler/request.h"

namespace loraserve {

void RequestStream::push(RequestEvent e) {
  std::shared_ptr<const std::function<void()>> listener;
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(e));
    listener = listener_;
  }
  cv_.notify_one();
  if (listener) (*listener)();
}

bool RequestStream::pop(RequestEvent* out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return false;
  *out = std::move(events_.front());
  events_.pop_front();
  return true;
}

bool RequestStream::try_pop(RequestEvent* out) {
  std::lock_guard<std::mutex> lock(mu_);
  if (events_.empty()) return false;
  *out = std::move(events_.front());
  events_.pop_front();
  return true;
}

void RequestStream::set_listener(std::function<void()> on_event) {
  std::shared_ptr<const std::function<void()>> listener;
  if (on_event) listener = std::make_shared<const std::function<void()>>(std::move(on_event));
  bool pending = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    listener_ = listener;
    pending = !events_.empty();
  }
  if (pending && listener) (*listener)();
}

}  // namespace loraserve
