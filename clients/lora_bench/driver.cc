#include "clients/common/grpc_util.h"
#include "clients/lora_bench/driver.h"

#include <algorithm>
#include <cstdio>
#include <optional>

#include "clients/lora_bench/progress.h"

namespace loraserve::bench {

// One Generate stream. Owned by the Driver: created by start_call, deleted by
// reap() after OnDone has handed it over.
class GenerateCall final : public grpc::ClientReadReactor<v1::GenerateResponse>, public BenchCall {
 public:
  GenerateCall(Driver* driver, const BenchConfig& cfg, RequestSpec spec, v1::LoraServe::Stub* stub)
      : driver_(driver), stub_(stub) {
    req_.set_adapter_id(spec.adapter_id);
    req_.mutable_prompt_token_ids()->Add(spec.prompt_ids.begin(), spec.prompt_ids.end());
    v1::SamplingParams* s = req_.mutable_sampling();
    s->set_max_new_tokens(spec.output_len);
    s->set_ignore_eos(true);  // the drawn output length is the length we get
    s->set_temperature(cfg.temperature);
    s->set_seed(cfg.seed + spec.index);
    req_.set_request_id("bench-" + std::to_string(spec.index));
    if (cfg.request_timeout_s > 0) {
      ctx_.set_deadline(std::chrono::system_clock::now() +
                        std::chrono::microseconds(
                            static_cast<int64_t>(cfg.request_timeout_s * 1e6)));
    }
    clients::add_api_key(&ctx_, cfg.api_key);
    clients::add_adapter_routing(&ctx_, spec.adapter_id);
    record_.index = spec.index;
    record_.adapter_id = spec.adapter_id;
    record_.prompt_len = static_cast<uint32_t>(spec.prompt_ids.size());
    record_.output_len = spec.output_len;
    record_.itl_ms.reserve(spec.output_len);
  }

  void start() override {
    record_.start = Clock::now();
    stub_->async()->Generate(&ctx_, &req_, this);
    StartRead(&resp_);
    StartCall();
  }

  void cancel() override {
    cancel_requested_.store(true);
    ctx_.TryCancel();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended; OnDone follows
    const Clock::time_point now = Clock::now();
    const int k = resp_.token_ids_size();
    if (k > 0) {
      if (record_.tokens == 0) {
        record_.first_token = now;
      } else {
        const float gap = static_cast<float>(
            std::chrono::duration<double, std::milli>(now - last_token_).count() / k);
        record_.itl_ms.insert(record_.itl_ms.end(), static_cast<size_t>(k), gap);
      }
      last_token_ = now;
      record_.tokens += static_cast<uint32_t>(k);
      driver_->add_tokens(static_cast<uint64_t>(k));
    }
    if (resp_.final()) {
      record_.got_final = true;
      record_.completion_tokens = resp_.usage().completion_tokens();
      record_.server_ttft_ms = resp_.timings().ttft_ms();
      record_.server_queue_ms = resp_.timings().queue_ms();
    }
    StartRead(&resp_);
  }

  void OnDone(const grpc::Status& status) override {
    record_.end = Clock::now();
    record_.code = status.error_code();
    record_.error_message = status.error_message();
    record_.cancelled_at_drain = cancel_requested_.load() && !status.ok();
    driver_->on_finished(this);  // last touch of `this` on this thread
  }


 private:
  Driver* driver_;
  v1::LoraServe::Stub* stub_;
  grpc::ClientContext ctx_;
  v1::GenerateRequest req_;
  v1::GenerateResponse resp_;
  Clock::time_point last_token_;
  std::atomic<bool> cancel_requested_{false};
};

CallFactory grpc_calls(const BenchConfig& cfg,
                       std::vector<std::shared_ptr<grpc::Channel>> channels) {
  struct Stubs {
    std::vector<std::shared_ptr<grpc::Channel>> channels;
    std::vector<std::unique_ptr<v1::LoraServe::Stub>> stubs;
    size_t next = 0;  // dispatch thread only
  };
  auto stubs = std::make_shared<Stubs>();
  stubs->channels = std::move(channels);
  for (auto& ch : stubs->channels) stubs->stubs.push_back(v1::LoraServe::NewStub(ch));
  return [&cfg, stubs](Driver* driver, RequestSpec spec) -> BenchCall* {
    v1::LoraServe::Stub* stub = stubs->stubs[stubs->next].get();
    stubs->next = (stubs->next + 1) % stubs->stubs.size();
    return new GenerateCall(driver, cfg, std::move(spec), stub);
  };
}

Driver::Driver(const BenchConfig& cfg, CallFactory make_call)
    : cfg_(cfg), make_call_(std::move(make_call)) {}

Driver::~Driver() {
  // Calls that never finished (see DriverOutcome::all_finished) are leaked on
  // purpose: their reactors may still be called.
}

void Driver::on_finished(BenchCall* call) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    finished_.push_back(call);
  }
  cv_.notify_one();
}

void Driver::start_call(RequestSpec spec) {
  BenchCall* call = make_call_(this, std::move(spec));
  live_.insert(call);
  call->start();
}

void Driver::reap(Metrics* metrics) {
  std::vector<BenchCall*> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    done.swap(finished_);
  }
  for (BenchCall* call : done) {
    RequestRecord& r = call->record();
    if (r.code != grpc::StatusCode::OK && !r.cancelled_at_drain) errors_ += 1;
    metrics->add(std::move(r));
    live_.erase(call);
    delete call;
  }
}

void Driver::cancel_all() {
  // No lock held: TryCancel may run reactor callbacks inline, which take mu_.
  for (BenchCall* call : live_) call->cancel();
}

DriverOutcome Driver::run(Workload* workload, Metrics* metrics) {
  DriverOutcome out;
  const Clock::time_point t0 = Clock::now();
  out.start = t0;
  ProgressLine progress(cfg_.progress, t0);
  const bool open_loop = cfg_.users <= 0;
  const auto seconds = [](double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  };
  const Clock::time_point duration_end =
      cfg_.duration_s > 0 ? t0 + seconds(cfg_.duration_s) : Clock::time_point::max();

  uint64_t issued = 0;
  std::optional<RequestSpec> pending = workload->next();
  bool issuing = pending.has_value();
  Clock::time_point drain_end = Clock::time_point::max();
  Clock::time_point give_up = Clock::time_point::max();
  bool cancelled = false;

  const auto snapshot = [&] {
    ProgressSnapshot s;
    s.done = metrics->finished();
    s.in_flight = live_.size();
    s.errors = errors_;
    s.tokens = tokens_.load(std::memory_order_relaxed);
    return s;
  };

  for (;;) {
    reap(metrics);
    Clock::time_point now = Clock::now();

    if (issuing) {
      // Issue everything that is due.
      while (pending) {
        if (cfg_.num_requests > 0 && issued >= cfg_.num_requests) break;
        if (now >= duration_end) break;
        if (open_loop) {
          const Clock::time_point due = t0 + seconds(pending->arrival_s);
          if (due >= duration_end) break;
          if (due > now) break;
          const double lag_ms = std::chrono::duration<double, std::milli>(now - due).count();
          out.max_dispatch_lag_ms = std::max(out.max_dispatch_lag_ms, lag_ms);
        } else if (live_.size() >= static_cast<size_t>(cfg_.users)) {
          break;
        }
        start_call(std::move(*pending));
        issued += 1;
        pending = workload->next();
      }
      const bool count_done = cfg_.num_requests > 0 && issued >= cfg_.num_requests;
      const bool time_done =
          now >= duration_end ||
          (open_loop && pending && t0 + seconds(pending->arrival_s) >= duration_end);
      if (!pending || count_done || time_done) {
        issuing = false;
        drain_end = now + seconds(cfg_.drain_s);
      }
    }

    if (!issuing) {
      if (live_.empty()) break;
      if (!cancelled && now >= drain_end) {
        std::fprintf(stderr, "lora-bench: drain of %.1fs over: cancelling %zu in-flight requests\n",
                     cfg_.drain_s, live_.size());
        cancel_all();
        cancelled = true;
        out.cancelled_at_drain = true;
        give_up = now + std::chrono::seconds(10);
      }
      if (cancelled && now >= give_up) {
        std::fprintf(stderr, "lora-bench: %zu calls did not end 10s after cancel; giving up\n",
                     live_.size());
        out.all_finished = false;
        break;
      }
    }

    progress.update(now, snapshot());

    // Sleep until the next arrival, a finished call, or 100 ms at most.
    Clock::time_point wake = now + std::chrono::milliseconds(100);
    if (issuing && open_loop && pending) wake = std::min(wake, t0 + seconds(pending->arrival_s));
    if (!issuing && !cancelled) wake = std::min(wake, drain_end);
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_until(lock, wake, [&] { return !finished_.empty(); });
  }
  progress.finish(Clock::now(), snapshot());
  return out;
}

}  // namespace loraserve::bench
