#include "scheduler/scheduler.h"

#include <algorithm>
#include <cmath>

#include "scheduler/offline.h"
#include "scheduler/request_checks.h"

namespace loraserve {

namespace {

// How many waiting requests' adapters are prefetched per iteration.
constexpr int kPrefetchDepth = 4;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// A cancel this close to the request's deadline is the deadline's doing: a
// gRPC client cancels at its own deadline, and the cancel reaches us about
// when our copy expires (it travelled as a timeout: ours = theirs +
// latency), often a little before it.
constexpr auto kDeadlineSlack = std::chrono::milliseconds(250);

bool past_deadline(const Request& r, Clock::time_point now) {
  if (now >= r.params.deadline) return true;
  return r.stream->cancelled() && !r.stream->stopped_early() &&
         r.params.deadline - now <= kDeadlineSlack;
}

}  // namespace

// The memory answer for one admission round: pages promised to requests
// admitted earlier in the round, and to running requests whose prefill has
// not allocated its KV yet, count as taken.
class Scheduler::StepMemoryView final : public MemoryView {
 public:
  StepMemoryView(Scheduler* s, int32_t outstanding) : s_(s), promised_(outstanding) {}

  bool try_admit(const Request& r) override {
    auto plan = s_->engine_->plan_admission(r.context_len(), r.params.adapter_id, promised_);
    if (!plan.ok() || !plan->admissible) return false;
    // Starting the sequence pins the adapter now (swapping it in, evicting
    // idle ones as planned), so it cannot be evicted before its first step.
    Request& req = const_cast<Request&>(r);
    req.seq_id = s_->next_seq_id_++;
    Status st = s_->engine_->start_sequence(req.seq_id, r.params.adapter_id);
    if (!st.ok()) {
      req.seq_id = -1;
      return false;
    }
    promised_ += plan->kv_pages;
    return true;
  }

 private:
  Scheduler* s_;
  int32_t promised_;
};

StatusOr<std::unique_ptr<Scheduler>> Scheduler::create(Engine* engine,
                                                       const SchedulerOptions& opts) {
  if (engine == nullptr) return invalid_argument("scheduler: no engine");
  auto policy = make_policy(opts.policy);
  if (!policy) {
    return invalid_argument("unknown scheduling policy '" + opts.policy + "' (expected fcfs or vtc)");
  }
  if (!(opts.ttft_slo_ms >= 0)) return invalid_argument("ttft_slo_ms must not be negative");
  if (opts.max_batch_tokens <= 0 || opts.max_running <= 0 || opts.max_queue <= 0) {
    return invalid_argument("scheduler: batch, running and queue limits must be positive");
  }
  if (opts.max_batch_tokens > engine->options().max_batch_tokens ||
      opts.max_running > engine->options().max_batch_seqs) {
    return invalid_argument("scheduler: limits exceed the engine's (max_batch_tokens " +
                            std::to_string(engine->options().max_batch_tokens) + ", max_batch_seqs " +
                            std::to_string(engine->options().max_batch_seqs) + ")");
  }
  return std::unique_ptr<Scheduler>(new Scheduler(engine, opts, std::move(policy)));
}

Scheduler::Scheduler(Engine* engine, const SchedulerOptions& opts,
                     std::unique_ptr<SchedulingPolicy> policy)
    : engine_(engine), opts_(opts), policy_(std::move(policy)) {
  publish_snapshot();
}

Scheduler::~Scheduler() { stop(); }

void Scheduler::start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { loop(); });
}

void Scheduler::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Whatever was never picked up by the loop ends here.
  std::deque<std::unique_ptr<Request>> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    left.swap(incoming_);
  }
  for (auto& r : left) {
    {
      std::lock_guard<std::mutex> flight(flight_mu_);
      auto it = in_flight_.find(r->params.adapter_id);
      if (it != in_flight_.end() && --it->second <= 0) in_flight_.erase(it);
    }
    cancelled_ += 1;
    cancelled_shutdown_ += 1;
    prompt_tokens_ += r->params.prompt.size();
    RequestEvent e;
    e.final = true;
    e.finish = FinishReason::kCancelled;
    r->stream->push(std::move(e));
  }
}

StatusOr<std::shared_ptr<RequestStream>> Scheduler::submit(const std::string& request_id,
                                                           GenerationParams params) {
  LS_RETURN_IF_ERROR(check_request_params(engine_->config(), opts_.default_max_new_tokens,
                                          opts_.max_new_tokens_limit, &params));

  auto r = std::make_unique<Request>();
  r->id = request_id;
  r->params = std::move(params);
  r->stream = std::make_shared<RequestStream>();
  r->arrival = Clock::now();
  std::shared_ptr<RequestStream> stream = r->stream;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return Status(StatusCode::kUnavailable, "server is shutting down");
    if (!r->params.adapter_id.empty() && !engine_->adapter_store().get(r->params.adapter_id).ok()) {
      return not_found("adapter '" + r->params.adapter_id + "' is not loaded");
    }
    const size_t queued = incoming_.size() + static_cast<size_t>(waiting_count_.load());
    if (queued >= static_cast<size_t>(opts_.max_queue)) {
      return resource_exhausted("request queue is full (" + std::to_string(opts_.max_queue) +
                                " waiting)");
    }
    r->arrival_seq = next_arrival_++;
    {
      std::lock_guard<std::mutex> flight(flight_mu_);
      in_flight_[r->params.adapter_id] += 1;
    }
    incoming_.push_back(std::move(r));
  }
  cv_.notify_all();
  return stream;
}

namespace {
// Takes the engine lock for an admin call, telling the loop to step aside.
class AdminLock {
 public:
  AdminLock(std::mutex& mu, std::atomic<int32_t>& waiting) : waiting_(waiting) {
    waiting_ += 1;
    lock_ = std::unique_lock<std::mutex>(mu);
    waiting_ -= 1;
  }

 private:
  std::atomic<int32_t>& waiting_;
  std::unique_lock<std::mutex> lock_;
};
}  // namespace

Status Scheduler::register_adapter(const std::string& id, const LoraAdapter& adapter) {
  AdminLock lock(engine_mu_, admin_waiting_);
  Status s = engine_->register_adapter(id, adapter);
  publish_snapshot();
  return s;
}

Status Scheduler::unregister_adapter(const std::string& id) {
  // Holding mu_ keeps submit() from adding a user between the check and
  // the unregistration.
  std::lock_guard<std::mutex> lock(mu_);
  {
    std::lock_guard<std::mutex> flight(flight_mu_);
    auto it = in_flight_.find(id);
    if (it != in_flight_.end() && it->second > 0) {
      return failed_precondition("adapter '" + id + "' is used by " + std::to_string(it->second) +
                                 " request(s) in flight; unload it when they finish");
    }
  }
  AdminLock engine_lock(engine_mu_, admin_waiting_);
  Status s = engine_->unregister_adapter(id);
  publish_snapshot();
  return s;
}

AdapterSummary Scheduler::summarize(const AdapterImage& image) {
  AdapterSummary a;
  a.id = image.id;
  a.rank = image.max_rank;
  a.target_modules = image.target_modules;
  a.bytes = image.num_bytes();
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    a.resident = resident_snapshot_.count(image.id) != 0;
  }
  std::lock_guard<std::mutex> lock(flight_mu_);
  auto it = in_flight_.find(image.id);
  a.in_flight = it == in_flight_.end() ? 0 : it->second;
  return a;
}

std::vector<AdapterSummary> Scheduler::list_adapters() {
  // The store is thread-safe on its own; residency comes from the snapshot.
  std::vector<AdapterSummary> out;
  for (const std::string& id : engine_->adapter_store().ids()) {
    auto image = engine_->adapter_store().get(id);
    if (image.ok()) out.push_back(summarize(**image));
  }
  return out;
}

StatusOr<AdapterSummary> Scheduler::describe_adapter(const std::string& id) {
  LS_ASSIGN_OR_RETURN(auto image, engine_->adapter_store().get(id));
  return summarize(*image);
}

SchedulerStats Scheduler::stats() {
  SchedulerStats s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto now = Clock::now();
    while (!recent_tokens_.empty() && now - recent_tokens_.front().first > std::chrono::seconds(5)) {
      recent_tokens_.pop_front();
    }
    int64_t tokens = 0;
    for (const auto& p : recent_tokens_) tokens += p.second;
    s.tokens_per_second = recent_tokens_.empty()
                              ? 0.0
                              : tokens / std::max(0.001, std::chrono::duration<double>(
                                                            now - recent_tokens_.front().first)
                                                            .count());
    s.waiting = waiting_count_.load() + static_cast<int32_t>(incoming_.size());
  }
  s.running = running_count_.load();
  s.non_finite = non_finite_.load();
  s.completed = completed_.load();
  s.cancelled = cancelled_.load();
  s.failed = failed_.load();
  s.tokens_generated = tokens_generated_.load();
  s.aborted = aborted_.load();
  s.finished_stop = finished_stop_.load();
  s.finished_length = finished_length_.load();
  s.aborted_ttft_slo = aborted_ttft_slo_.load();
  s.cancelled_shutdown = cancelled_shutdown_.load();
  s.prompt_tokens = prompt_tokens_.load();
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  s.engine = snapshot_.engine;
  s.last_batch_tokens = snapshot_.last_batch_tokens;
  s.last_batch_requests = snapshot_.last_batch_requests;
  s.steps = snapshot_.steps;
  s.preemptions = snapshot_.preemptions;
  s.step_ms_ewma = snapshot_.step_ms_ewma;
  s.tenant_counters = snapshot_.tenant_counters;
  s.running_adapters = snapshot_.running_adapters;
  s.waiting_adapters = snapshot_.waiting_adapters;
  return s;
}

void Scheduler::publish_snapshot() {
  SchedulerStats snap;
  snap.engine = engine_->stats();
  snap.last_batch_tokens = last_batch_tokens_;
  snap.last_batch_requests = last_batch_requests_;
  snap.steps = step_count_;
  snap.preemptions = preemptions_;
  snap.step_ms_ewma = step_ms_ewma_;
  snap.tenant_counters = policy_->counters();
  // running_ and waiting_ change only under engine_mu_, which every caller holds.
  auto adapters_of = [](const auto& requests) {
    std::set<std::string> ids;
    for (const Request* r : requests) {
      if (!r->params.adapter_id.empty()) ids.insert(r->params.adapter_id);
    }
    return std::vector<std::string>(ids.begin(), ids.end());
  };
  snap.running_adapters = adapters_of(running_);
  snap.waiting_adapters = adapters_of(waiting_);
  // The resident set is rebuilt only when residency changed, not every step.
  const uint64_t version = engine_->residency_version();
  std::set<std::string> resident;
  const bool rebuild = version != resident_version_;
  if (rebuild) {
    std::vector<std::string> ids = engine_->resident_adapters();
    resident.insert(ids.begin(), ids.end());
    resident_version_ = version;
  }
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  snapshot_ = std::move(snap);
  if (rebuild) resident_snapshot_ = std::move(resident);
}

void Scheduler::loop() {
  for (;;) {
    bool stopping = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (incoming_.empty() && arrived_.empty() && waiting_.empty() && running_.empty() &&
          !stopping_) {
        cv_.wait_for(lock, std::chrono::milliseconds(100));
      }
      stopping = stopping_;
      while (!incoming_.empty()) {
        Request* raw = incoming_.front().get();
        owned_[raw] = std::move(incoming_.front());
        incoming_.pop_front();
        arrived_.push_back(raw);
      }
    }
    std::vector<std::unique_ptr<Request>> ended;
    int32_t generated = 0;
    while (admin_waiting_.load() > 0) std::this_thread::yield();
    {
      std::lock_guard<std::mutex> lock(engine_mu_);
      for (Request* r : arrived_) {
        waiting_.push_back(r);
        policy_->on_enqueue(*r);
      }
      arrived_.clear();
      if (stopping) {
        shutting_down_ = true;
        std::vector<Request*> all(running_.begin(), running_.end());
        all.insert(all.end(), waiting_.begin(), waiting_.end());
        for (Request* r : all) finish(r, FinishReason::kCancelled, ok_status(), &ended);
      } else {
        const uint64_t before = step_count_;
        iterate(&ended);
        if (step_count_ != before) generated = last_batch_requests_;
      }
      waiting_count_.store(static_cast<int32_t>(waiting_.size()));
      running_count_.store(static_cast<int32_t>(running_.size()));
      publish_snapshot();
      for (const auto& r : ended) r->stream->push(std::move(r->final_event));
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (generated > 0) recent_tokens_.emplace_back(Clock::now(), generated);
      while (recent_tokens_.size() > 10000) recent_tokens_.pop_front();
      if (stopping) return;
    }
  }
}

void Scheduler::iterate(std::vector<std::unique_ptr<Request>>* ended) {
  abort_late(ended);
  drop_cancelled(ended);
  admit(ended);
  run_step(ended);
}

void Scheduler::abort_late(std::vector<std::unique_ptr<Request>>* ended) {
  const auto now = Clock::now();
  std::vector<std::pair<Request*, Status>> late;
  for (Request* r : running_) {
    if (past_deadline(*r, now)) {
      late.emplace_back(r, Status(StatusCode::kDeadlineExceeded, "the request's deadline passed"));
    }
  }
  for (Request* r : waiting_) {
    if (past_deadline(*r, now)) {
      late.emplace_back(r, Status(StatusCode::kDeadlineExceeded,
                                  "the request's deadline passed while it was queued"));
      continue;
    }
    if (opts_.ttft_slo_ms <= 0 || !r->generated.empty()) continue;
    // Its first token needs at least the steps that prefill its context.
    const double steps = std::ceil(static_cast<double>(r->context_len()) / opts_.max_batch_tokens);
    const double predicted = ms_between(r->arrival, now) + steps * step_ms_ewma_;
    if (predicted > opts_.ttft_slo_ms) {
      aborted_ttft_slo_ += 1;
      late.emplace_back(r, Status(StatusCode::kDeadlineExceeded,
                                  "aborted early: cannot produce a first token within the " +
                                      std::to_string(static_cast<int>(opts_.ttft_slo_ms)) +
                                      " ms TTFT objective under the current load"));
    }
  }
  for (auto& [r, why] : late) finish(r, FinishReason::kDeadline, why, ended);
}

void Scheduler::drop_cancelled(std::vector<std::unique_ptr<Request>>* ended) {
  std::vector<Request*> gone;
  for (Request* r : running_) if (r->stream->cancelled()) gone.push_back(r);
  for (Request* r : waiting_) if (r->stream->cancelled()) gone.push_back(r);
  for (Request* r : gone) {
    finish(r, r->stream->stopped_early() ? FinishReason::kStop : FinishReason::kCancelled,
           ok_status(), ended);
  }
}

void Scheduler::admit(std::vector<std::unique_ptr<Request>>* ended) {
  if (waiting_.empty()) return;
  int32_t outstanding = 0;  // KV pages running prefills will still take
  for (Request* r : running_) outstanding += engine_->kv_pages_needed(r->seq_id, r->context_len());
  const int32_t free_slots = opts_.max_running - static_cast<int32_t>(running_.size());
  StepMemoryView view(this, outstanding);
  std::vector<Request*> admitted =
      free_slots > 0 ? policy_->admit(waiting_, free_slots, view) : std::vector<Request*>{};
  for (Request* r : admitted) {
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), r));
    r->kv_len = 0;
    if (!r->scheduled_once) {
      r->scheduled_once = true;
      r->first_scheduled = Clock::now();
      histograms_.queue_time.observe(
          std::chrono::duration<double>(r->first_scheduled - r->arrival).count());
    }
    running_.push_back(r);
  }
  // Bring the adapters of the next waiting requests in ahead of their turn,
  // into free pages only (a prefetch never evicts): on cuda the copy runs on
  // its own stream while this step computes.
  int prefetched = 0;
  for (Request* r : waiting_) {
    if (prefetched >= kPrefetchDepth) break;
    if (r->params.adapter_id.empty() || engine_->adapter_resident(r->params.adapter_id)) continue;
    if (!engine_->prefetch_adapter(r->params.adapter_id).ok()) break;  // pool full: stop trying
    prefetched += 1;
  }
  // A request that cannot fit even into an idle server never will.
  if (running_.empty() && !waiting_.empty()) {
    Request* head = waiting_.front();
    auto plan = engine_->plan_admission(head->context_len(), head->params.adapter_id);
    Status why = plan.ok() ? resource_exhausted("request needs " +
                                                std::to_string(plan->kv_pages + plan->adapter_pages) +
                                                " pool pages with its adapter; the pool has " +
                                                std::to_string(engine_->stats().pool.total))
                           : plan.status();
    finish(head, FinishReason::kError, why, ended);
  }
}

void Scheduler::preempt(Request* r) {
  engine_->end_sequence(r->seq_id);
  r->seq_id = -1;
  r->kv_len = 0;
  r->preemptions += 1;
  preemptions_ += 1;
  running_.erase(std::find(running_.begin(), running_.end(), r));
  enqueue_waiting(r);
}

void Scheduler::enqueue_waiting(Request* r) {
  auto pos = std::find_if(waiting_.begin(), waiting_.end(),
                          [&](Request* w) { return w->arrival_seq > r->arrival_seq; });
  waiting_.insert(pos, r);
}

bool Scheduler::run_step(std::vector<std::unique_ptr<Request>>* ended) {
  while (!running_.empty()) {
    // Decode tokens first (one each), then prefill chunks in arrival order.
    std::vector<Request*> order = running_;
    std::stable_sort(order.begin(), order.end(), [](Request* a, Request* b) {
      const bool da = a->kv_len + 1 >= a->context_len();
      const bool db = b->kv_len + 1 >= b->context_len();
      if (da != db) return da;
      return a->arrival_seq < b->arrival_seq;
    });
    std::vector<SequenceStep> batch;
    std::vector<Request*> who;
    int32_t budget = opts_.max_batch_tokens;
    for (Request* r : order) {
      if (budget <= 0) break;
      const int64_t remaining = r->context_len() - r->kv_len;
      const int64_t n = std::min<int64_t>(remaining, budget);
      SequenceStep st;
      st.seq_id = r->seq_id;
      st.tokens.reserve(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) st.tokens.push_back(r->context_at(r->kv_len + i));
      st.sample = r->kv_len + n == r->context_len();
      st.sampling = r->params.sampling;
      st.step = r->generated.size();
      budget -= static_cast<int32_t>(n);
      batch.push_back(std::move(st));
      who.push_back(r);
    }
    std::vector<SequenceResult> results;
    const auto step_start = Clock::now();
    Status s = engine_->step(batch, &results);
    if (s.code() == StatusCode::kResourceExhausted) {
      if (running_.size() == 1) {
        finish(running_.front(), FinishReason::kError,
               s.with_context("the pool cannot hold this request's KV cache"), ended);
        return false;
      }
      preempt(policy_->preempt_victim(running_));
      continue;
    }
    if (!s.ok()) {
      for (Request* r : who) finish(r, FinishReason::kError, s, ended);
      return false;
    }
    step_count_ += 1;
    last_batch_requests_ = 0;
    last_batch_tokens_ = 0;
    const auto now = Clock::now();
    const double step_ms = ms_between(step_start, now);
    step_ms_ewma_ = step_ms_ewma_ == 0 ? step_ms : 0.9 * step_ms_ewma_ + 0.1 * step_ms;
    histograms_.step_time.observe(step_ms / 1000.0);
    for (size_t i = 0; i < who.size(); ++i) {
      Request* r = who[i];
      r->kv_len += static_cast<int64_t>(batch[i].tokens.size());
      last_batch_tokens_ += static_cast<int32_t>(batch[i].tokens.size());
      // A decode step feeds back one sampled token; everything else is prefill.
      const bool decode = batch[i].tokens.size() == 1 && !r->generated.empty() &&
                          r->kv_len == r->context_len();
      policy_->on_served(*r, decode ? 0 : static_cast<int32_t>(batch[i].tokens.size()),
                         results[i].sampled ? 1 : 0);
      if (results[i].non_finite) {  // fails this request alone; nothing is emitted
        non_finite_ += 1;
        finish(r, FinishReason::kError,
               non_finite_logits_error(r->params.adapter_id, r->generated.size()), ended);
        continue;
      }
      if (!results[i].sampled) continue;
      last_batch_requests_ += 1;
      const int32_t token = results[i].token;
      if (r->generated.empty()) {
        r->first_token = now;
        histograms_.time_to_first_token.observe(
            std::chrono::duration<double>(now - r->arrival).count());
      } else {
        histograms_.inter_token_latency.observe(
            std::chrono::duration<double>(now - r->last_token).count());
      }
      r->last_token = now;
      r->generated.push_back(token);
      tokens_generated_ += 1;
      RequestEvent e;
      e.tokens = {token};
      e.logprobs = {results[i].logprob};
      r->stream->push(std::move(e));
      const GenerationParams& p = r->params;
      const bool stop = std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), token) !=
                            p.stop_token_ids.end() ||
                        (!p.ignore_eos && p.eos_token_id >= 0 && token == p.eos_token_id);
      if (stop) {
        finish(r, FinishReason::kStop, ok_status(), ended);
      } else if (static_cast<int32_t>(r->generated.size()) >= p.max_new_tokens) {
        finish(r, FinishReason::kLength, ok_status(), ended);
      }
    }
    return true;
  }
  return false;
}

void Scheduler::finish(Request* r, FinishReason why, const Status& error,
                       std::vector<std::unique_ptr<Request>>* ended) {
  if (r->seq_id >= 0) engine_->end_sequence(r->seq_id);
  r->seq_id = -1;
  auto run_it = std::find(running_.begin(), running_.end(), r);
  if (run_it != running_.end()) running_.erase(run_it);
  auto wait_it = std::find(waiting_.begin(), waiting_.end(), r);
  if (wait_it != waiting_.end()) waiting_.erase(wait_it);

  // Counted before the final event goes out, so a client that sees the end
  // of its stream also sees it in the stats.
  policy_->on_finish(*r);
  switch (why) {
    case FinishReason::kCancelled:
      cancelled_ += 1;
      if (shutting_down_) cancelled_shutdown_ += 1;
      break;
    case FinishReason::kError: failed_ += 1; break;
    case FinishReason::kDeadline: aborted_ += 1; break;
    default:
      completed_ += 1;
      if (why == FinishReason::kStop) finished_stop_ += 1;
      if (why == FinishReason::kLength) finished_length_ += 1;
      break;
  }
  // Generated tokens are counted as they are sampled (run_step).
  prompt_tokens_ += r->params.prompt.size();
  {
    std::lock_guard<std::mutex> flight(flight_mu_);
    auto fit = in_flight_.find(r->params.adapter_id);
    if (fit != in_flight_.end() && --fit->second <= 0) in_flight_.erase(fit);
  }
  const auto now = Clock::now();
  if (why == FinishReason::kStop || why == FinishReason::kLength) {
    histograms_.e2e_request_latency.observe(std::chrono::duration<double>(now - r->arrival).count());
  }
  RequestEvent e;
  e.final = true;
  e.finish = why;
  e.error = error;
  e.prompt_tokens = static_cast<int32_t>(r->params.prompt.size());
  e.completion_tokens = static_cast<int32_t>(r->generated.size());
  e.queue_ms = r->scheduled_once ? ms_between(r->arrival, r->first_scheduled) : ms_between(r->arrival, now);
  e.ttft_ms = r->generated.empty() ? 0.0 : ms_between(r->arrival, r->first_token);
  e.total_ms = ms_between(r->arrival, now);
  r->final_event = std::move(e);

  // The loop publishes stats, then sends the final event (see loop()).
  auto it = owned_.find(r);
  if (it != owned_.end()) {
    ended->push_back(std::move(it->second));
    owned_.erase(it);
  }

}

}  // namespace loraserve
