// lora-bench: the load generator of loraserve. See clients/lora_bench/README.md.
//
//   lora-bench --addr 127.0.0.1:50051 --rate 20 --num-requests 200
//       --num-adapters 100 --popularity powerlaw --alpha 1 --setup /data/synth --json out.json
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>

#include "clients/lora_bench/config.h"
#include "clients/lora_bench/driver.h"
#include "clients/lora_bench/openai_call.h"
#include "clients/lora_bench/report.h"
#include "clients/common/credentials.h"
#include "clients/lora_bench/server_admin.h"
#include "clients/lora_bench/workload.h"

namespace loraserve::bench {
namespace {

std::vector<std::shared_ptr<grpc::Channel>> make_channels(
    const BenchConfig& cfg, const std::shared_ptr<grpc::ChannelCredentials>& creds) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < cfg.connections; ++i) {
    grpc::ChannelArguments args;
    // Distinct arguments keep the channels from sharing one subchannel (connection).
    args.SetInt("loraserve.bench.connection", i);
    args.SetMaxReceiveMessageSize(64 << 20);
    channels.push_back(
        grpc::CreateCustomChannel(cfg.addr, creds, args));
  }
  return channels;
}

int run(const BenchConfig& cfg) {
  std::string tls_error;
  auto creds = clients::channel_credentials({cfg.tls_ca, cfg.tls_cert, cfg.tls_key}, &tls_error);
  if (!creds) {
    std::fprintf(stderr, "lora-bench: %s\n", tls_error.c_str());
    return 2;
  }
  auto channels = make_channels(cfg, creds);
  if (!channels[0]->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    std::fprintf(stderr, "lora-bench: cannot connect to %s within 10 s\n", cfg.addr.c_str());
    return kExitFailed;
  }

  Report report;
  report.cfg = &cfg;
  if (!cfg.setup_dir.empty()) {
    SetupResult setup;
    std::string error;
    if (!setup_adapters(cfg, channels[0], &setup, &error)) {
      std::fprintf(stderr, "lora-bench: setup failed: %s\n", error.c_str());
      return kExitFailed;
    }
    report.setup = setup;
  }

  std::unique_ptr<Workload> workload;
  if (!cfg.trace.empty()) {
    std::string error;
    workload = load_trace_workload(cfg, &error);
    if (!workload) {
      std::fprintf(stderr, "lora-bench: %s\n", error.c_str());
      return kExitFailed;
    }
  } else {
    workload = make_synthetic_workload(cfg);
  }

  v1::Stats before;
  grpc::Status s = get_stats(channels[0], cfg.api_key, &before);
  if (!s.ok()) {
    std::fprintf(stderr, "lora-bench: GetStats: %s: %s\n", status_code_name(s.error_code()),
                 s.error_message().c_str());
    return kExitFailed;
  }
  report.stats_before = before;

  Metrics metrics;
  OpenAiTransport http(cfg);
  CallFactory calls;
  if (cfg.api == "openai") {
    std::string error;
    if (!http.start(&error)) {
      std::fprintf(stderr, "lora-bench: %s\n", error.c_str());
      return kExitFailed;
    }
    calls = http.calls();
  } else {
    calls = grpc_calls(cfg, channels);
  }
  Driver driver(cfg, std::move(calls));
  report.outcome = driver.run(workload.get(), &metrics);

  v1::Stats after;
  s = get_stats(channels[0], cfg.api_key, &after);
  if (report.outcome.cancelled_at_drain) {
    // The server counts a cancelled request when its next step notices: give
    // it up to 3 s to go idle so the "after" counters include ours.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (s.ok() && after.running_requests() + after.waiting_requests() > 0 &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      s = get_stats(channels[0], cfg.api_key, &after);
    }
  }
  if (s.ok()) {
    report.stats_after = after;
  } else {
    std::fprintf(stderr, "lora-bench: GetStats after the run: %s: %s\n",
                 status_code_name(s.error_code()), s.error_message().c_str());
  }

  report.summary = metrics.summarize({cfg.ttft_slo_ms, cfg.itl_slo_ms});
  report.exit_code = report.summary.errors > 0 ? kExitRequestErrors : kExitOk;
  if (!cfg.quiet) print_table(report, stdout);
  std::fflush(stdout);
  if (!cfg.json_path.empty()) {
    std::ofstream out(cfg.json_path);
    out << to_json(report).dump(2) << "\n";
    if (!out) {
      std::fprintf(stderr, "lora-bench: cannot write %s\n", cfg.json_path.c_str());
      return kExitFailed;
    }
  }
  if (!report.outcome.all_finished) {
    // Reactors of calls that never ended may still run: leave without
    // destroying the driver and channels under them.
    std::fflush(stderr);
    std::_Exit(report.exit_code);
  }
  return report.exit_code;
}

}  // namespace
}  // namespace loraserve::bench

int main(int argc, char** argv) {
  using namespace loraserve::bench;
  CLI::App app{"lora-bench: asynchronous load generator for loraserve (gRPC or OpenAI HTTP+SSE)"};
  BenchConfig cfg;
  add_flags(app, &cfg);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  const std::string problem = validate(cfg);
  if (!problem.empty()) {
    std::fprintf(stderr, "lora-bench: %s\n", problem.c_str());
    return kExitUsage;
  }
  return run(cfg);
}
