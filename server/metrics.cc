#include "server/metrics.h"

#include <chrono>
#include <cstdio>
#include <set>

namespace loraserve {

namespace {

// Label values: backslash, double quote and newline escaped, per the format.
std::string escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

class Exposition {
 public:
  void family(const char* name, const char* type, const char* help) {
    out_ += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }
  void sample(const std::string& name, double value, const std::string& labels = "") {
    out_ += name;
    if (!labels.empty()) out_ += "{" + labels + "}";
    out_ += " " + number(value) + "\n";
  }
  void gauge(const char* name, const char* help, double value) {
    family(name, "gauge", help);
    sample(name, value);
  }
  void counter(const char* name, const char* help, double value) {
    family(name, "counter", help);
    sample(name, value);
  }
  void histogram(const char* name, const char* help, const Histogram::Snapshot& h) {
    family(name, "histogram", help);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < h.upper_bounds.size(); ++i) {
      cumulative += h.counts[i];
      char le[32];
      std::snprintf(le, sizeof(le), "%g", h.upper_bounds[i]);
      sample(std::string(name) + "_bucket", static_cast<double>(cumulative),
             std::string("le=\"") + le + "\"");
    }
    sample(std::string(name) + "_bucket", static_cast<double>(h.count), "le=\"+Inf\"");
    sample(std::string(name) + "_sum", h.sum);
    sample(std::string(name) + "_count", static_cast<double>(h.count));
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

// Scheduler adapter ids to the ids callers use ("acme/bot" -> "bot"),
// joined by commas as the endpoint picker expects.
std::string adapter_list(const std::vector<std::string>& scheduler_ids,
                         const TenantDirectory& tenants) {
  std::set<std::string> ids;
  for (const std::string& sid : scheduler_ids) {
    auto own = tenants.ownership(sid);
    ids.insert(own.ok() ? own->public_id : sid);
  }
  std::string out;
  for (const std::string& id : ids) out += (out.empty() ? "" : ",") + id;
  return out;
}

}  // namespace

std::string render_prometheus(Scheduler& scheduler, const TenantDirectory& tenants,
                              const MetricsOptions& options) {
  const SchedulerStats s = scheduler.stats();
  const SchedulerHistograms& h = scheduler.histograms();
  const PagePoolStats& pool = s.engine.pool;
  Exposition e;

  e.family("loraserve_info", "gauge", "The served model and backend; always 1.");
  e.sample("loraserve_info", 1,
           "model=\"" + escape(options.model_name) + "\",backend=\"" + escape(options.backend) + "\"");
  e.gauge("loraserve_num_requests_running", "Requests in the running batch.", s.running);
  e.gauge("loraserve_num_requests_waiting", "Requests waiting for the running batch.", s.waiting);
  e.gauge("loraserve_kv_cache_usage_ratio",
          "Fraction of the unified pool's pages that hold KV cache (0..1).",
          pool.total > 0 ? static_cast<double>(pool.kv) / pool.total : 0.0);
  e.family("loraserve_pool_pages", "gauge", "Pages of the unified pool by use.");
  e.sample("loraserve_pool_pages", pool.kv, "use=\"kv\"");
  e.sample("loraserve_pool_pages", pool.adapter, "use=\"adapter\"");
  e.sample("loraserve_pool_pages", pool.free, "use=\"free\"");
  e.gauge("loraserve_pool_page_size_bytes", "Bytes in one page of the unified pool.",
          static_cast<double>(s.engine.page_bytes));
  e.gauge("loraserve_lora_adapters_registered", "Adapters registered (host memory).",
          s.engine.registered_adapters);
  e.gauge("loraserve_lora_adapters_resident", "Adapters resident in the pool.",
          s.engine.adapters.resident);

  // The endpoint picker's LoRA affinity input (vLLM's lora_requests_info):
  // the value is the time of the figures, so the newest series wins.
  e.family("loraserve_lora_requests_info", "gauge",
           "Adapters of the running batch and of the queue; value = unix time of the figures.");
  const double now = std::chrono::duration<double>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  e.sample("loraserve_lora_requests_info", now,
           "running_lora_adapters=\"" + escape(adapter_list(s.running_adapters, tenants)) +
               "\",waiting_lora_adapters=\"" + escape(adapter_list(s.waiting_adapters, tenants)) +
               "\",max_lora=\"" + std::to_string(scheduler.options().max_running) + "\"");

  e.histogram("loraserve_time_to_first_token_seconds", "Arrival to first generated token.",
              h.time_to_first_token.snapshot());
  e.histogram("loraserve_inter_token_latency_seconds",
              "Time between consecutive tokens of one request.", h.inter_token_latency.snapshot());
  e.histogram("loraserve_e2e_request_latency_seconds",
              "Arrival to end of requests that completed (stop or length).",
              h.e2e_request_latency.snapshot());
  e.histogram("loraserve_request_queue_time_seconds",
              "Arrival to first admission into the running batch.", h.queue_time.snapshot());
  e.histogram("loraserve_step_duration_seconds", "One engine step.", h.step_time.snapshot());

  e.counter("loraserve_prompt_tokens_total", "Prompt tokens of requests that ended.",
            static_cast<double>(s.prompt_tokens));
  e.counter("loraserve_generation_tokens_total", "Tokens generated.",
            static_cast<double>(s.tokens_generated));
  e.family("loraserve_request_success_total", "counter", "Requests that completed, by finish reason.");
  e.sample("loraserve_request_success_total", static_cast<double>(s.finished_stop),
           "finished_reason=\"stop\"");
  e.sample("loraserve_request_success_total", static_cast<double>(s.finished_length),
           "finished_reason=\"length\"");
  e.family("loraserve_request_aborts_total", "counter", "Requests that did not complete, by cause.");
  e.sample("loraserve_request_aborts_total", static_cast<double>(s.cancelled - s.cancelled_shutdown),
           "cause=\"client_cancel\"");
  e.sample("loraserve_request_aborts_total", static_cast<double>(s.cancelled_shutdown),
           "cause=\"shutdown\"");
  e.sample("loraserve_request_aborts_total", static_cast<double>(s.aborted - s.aborted_ttft_slo),
           "cause=\"deadline\"");
  e.sample("loraserve_request_aborts_total", static_cast<double>(s.aborted_ttft_slo),
           "cause=\"ttft_slo\"");
  e.sample("loraserve_request_aborts_total", static_cast<double>(s.failed), "cause=\"error\"");
  e.counter("loraserve_preemptions_total", "Running requests preempted (their KV recomputed later).",
            static_cast<double>(s.preemptions));
  e.counter("loraserve_steps_total", "Engine steps run.", static_cast<double>(s.steps));
  e.counter("loraserve_lora_swap_ins_total", "Adapters copied into the pool.",
            static_cast<double>(s.engine.adapters.swap_ins));
  e.counter("loraserve_lora_evictions_total", "Idle adapters evicted from the pool.",
            static_cast<double>(s.engine.adapters.evictions));
  e.counter("loraserve_lora_swap_in_bytes_total", "Adapter bytes copied into the pool.",
            static_cast<double>(s.engine.adapters.bytes_copied));
  return e.take();
}

}  // namespace loraserve
