// lora-cli stats: GetStats as a short summary or as the message in JSON.
#include <google/protobuf/util/json_util.h>

#include <cstdio>

#include "clients/lora_cli/client.h"
#include "proto/loraserve.grpc.pb.h"

namespace loraserve::client {
namespace {

int run_stats(const GlobalOptions& opts, bool json) {
  auto stub = v1::LoraServe::NewStub(make_channel(opts));
  grpc::ClientContext ctx;
  set_deadline(opts, &ctx);
  v1::Stats stats;
  grpc::Status status = stub->GetStats(&ctx, v1::GetStatsRequest(), &stats);
  if (!status.ok()) return report_error(status);

  if (json) {
    // Proto3 JSON mapping: snake_case names, zeros included; uint64 fields
    // are JSON strings, as the mapping requires.
    google::protobuf::util::JsonPrintOptions print;
    print.always_print_primitive_fields = true;
    print.preserve_proto_field_names = true;
    std::string out;
    auto converted = google::protobuf::util::MessageToJsonString(stats, &out, print);
    if (!converted.ok()) return report_error("cannot print stats as JSON: " + converted.ToString());
    std::printf("%s\n", out.c_str());
    return kExitOk;
  }

  const v1::PoolStats& pool = stats.pool();
  const auto u64 = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  std::printf("backend:     %s\n", stats.backend().c_str());
  std::printf("requests:    %u waiting, %u running; %llu completed, %llu cancelled, %llu failed\n",
              stats.waiting_requests(), stats.running_requests(), u64(stats.requests_completed()),
              u64(stats.requests_cancelled()), u64(stats.requests_failed()));
  std::printf("throughput:  %.1f tokens/s; %llu tokens in %llu steps, %llu preemptions\n",
              stats.tokens_per_second(), u64(stats.tokens_generated()), u64(stats.steps()),
              u64(stats.preemptions()));
  std::printf("last batch:  %u tokens, %u requests\n", stats.last_batch_tokens(),
              stats.last_batch_requests());
  std::printf("adapters:    %u registered, %u resident\n", stats.registered_adapters(),
              pool.resident_adapters());
  std::printf("pool:        %u pages of %s: %u free, %u kv, %u adapter\n", pool.pages_total(),
              format_bytes(pool.page_bytes()).c_str(), pool.pages_free(), pool.pages_kv(),
              pool.pages_adapter());
  std::printf("swapping:    %llu swap-ins, %llu evictions, %s copied\n", u64(pool.swap_ins()),
              u64(pool.evictions()), format_bytes(pool.bytes_copied()).c_str());
  return kExitOk;
}

}  // namespace

void add_stats_command(CLI::App& app, const GlobalOptions* opts, Runner* runner) {
  auto json = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand("stats", "server statistics");
  cmd->add_flag("--json", *json, "print the Stats message as JSON");
  cmd->callback(
      [opts, json, runner] { *runner = [opts, json] { return run_stats(*opts, *json); }; });
}

}  // namespace loraserve::client
