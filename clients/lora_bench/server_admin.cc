#include "clients/common/grpc_util.h"
#include "clients/lora_bench/server_admin.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include "clients/lora_bench/metrics.h"

namespace loraserve::bench {
namespace {

void set_deadline_s(grpc::ClientContext* ctx, double seconds) {
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
}

}  // namespace

bool setup_adapters(const BenchConfig& cfg, const std::shared_ptr<grpc::Channel>& channel,
                    SetupResult* result, std::string* error) {
  namespace fs = std::filesystem;
  const fs::path local = fs::path(cfg.setup_dir) / "adapters";
  // The directory may live only on the server's machine; check it when we can see it.
  const int files = cfg.setup_files > 0 ? std::min(cfg.setup_files, cfg.num_adapters)
                                         : cfg.num_adapters;
  if (fs::is_directory(local)) {
    const fs::path last = local / adapter_name(files - 1);
    if (!fs::is_directory(last)) {
      *error = "--setup: " + last.string() + " does not exist (synthesise at least " +
               std::to_string(files) + " adapters)";
      return false;
    }
  }
  auto stub = v1::LoraServe::NewStub(channel);
  const auto t0 = std::chrono::steady_clock::now();
  std::atomic<int> next{0}, loaded{0}, present{0};
  std::mutex mu;
  std::string first_error;
  auto worker = [&] {
    for (int i = next++; i < cfg.num_adapters; i = next++) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (!first_error.empty()) return;
      }
      v1::LoadAdapterRequest req;
      req.set_adapter_id(adapter_name(i));
      req.set_path(adapter_name(i % files));
      v1::AdapterInfo info;
      grpc::ClientContext ctx;
      set_deadline_s(&ctx, 120);
      clients::add_api_key(&ctx, cfg.api_key);
      clients::add_adapter_routing(&ctx, req.adapter_id());
      const grpc::Status s = stub->LoadAdapter(&ctx, req, &info);
      if (s.ok()) {
        loaded += 1;
      } else if (s.error_code() == grpc::StatusCode::ALREADY_EXISTS) {
        present += 1;
      } else {
        std::lock_guard<std::mutex> lock(mu);
        if (first_error.empty()) {
          first_error = "LoadAdapter " + adapter_name(i) + ": " +
                        status_code_name(s.error_code()) + ": " + s.error_message();
        }
      }
    }
  };
  std::vector<std::thread> threads;
  const int n = std::min(cfg.setup_concurrency, cfg.num_adapters);
  for (int t = 0; t < n; ++t) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  result->loaded = loaded.load();
  result->already_present = present.load();
  result->seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!first_error.empty()) {
    *error = first_error + " (is the server's --adapter-root " + local.string() + "?)";
    return false;
  }
  return true;
}

grpc::Status get_stats(const std::shared_ptr<grpc::Channel>& channel, const std::string& api_key,
                       v1::Stats* stats) {
  auto stub = v1::LoraServe::NewStub(channel);
  grpc::ClientContext ctx;
  set_deadline_s(&ctx, 10);
  clients::add_api_key(&ctx, api_key);
  return stub->GetStats(&ctx, v1::GetStatsRequest(), stats);
}

std::string stats_to_json(const v1::Stats& stats) {
  google::protobuf::util::JsonPrintOptions opts;
  opts.always_print_primitive_fields = true;
  opts.preserve_proto_field_names = true;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(stats, &out, opts).ok()) return "{}";
  return out;
}

}  // namespace loraserve::bench
