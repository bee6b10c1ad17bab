// lora-bench flags: one plain struct, filled by CLI11 in config.cc and
// checked once before anything runs. Every other file reads it, none writes it.
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

namespace loraserve::bench {

// Process exit codes (also printed by --help).
constexpr int kExitOk = 0;             // the run finished and every request succeeded
constexpr int kExitFailed = 1;         // could not run: server unreachable, setup failed, bad trace
constexpr int kExitUsage = 2;          // bad flags
constexpr int kExitRequestErrors = 3;  // the run finished, but some requests failed (see report)

struct IntRange {
  uint32_t lo = 0;
  uint32_t hi = 0;  // inclusive
};

struct BenchConfig {
  std::string addr = "127.0.0.1:50051";  // gRPC: setup, stats, and requests with --api grpc
  std::string api = "grpc";              // grpc | openai (requests over HTTP+SSE to http_addr)
  std::string http_addr;                 // host:port of `serve --http-listen`
  std::string api_key;  // sent as `authorization: Bearer <key>` ($LORASERVE_API_KEY)
  int connections = 4;  // HTTP/2 connections the streams are spread over

  // Bounds: at least one of them; the run stops issuing at whichever comes first.
  double duration_s = 0;     // 0 = no time bound
  uint64_t num_requests = 0;  // 0 = no count bound
  double drain_s = 30;        // after the bound: wait this long for in-flight, then cancel
  double request_timeout_s = 0;  // per-request gRPC deadline; 0 = none

  // Arrivals: open loop (rate > 0) or closed loop (users > 0).
  double rate = 0;   // requests/s, open loop
  double cv = 1.0;   // coefficient of variation of inter-arrival gaps (1 = Poisson)
  int users = 0;     // closed loop: this many requests in flight at all times

  // Adapters and lengths.
  int num_adapters = 0;       // adapter-000 .. adapter-(N-1); 0 = base model only
  std::string popularity = "uniform";  // uniform | powerlaw
  double alpha = 1.0;         // power-law exponent: P(rank i) ~ 1 / (i+1)^alpha
  bool base_only = false;     // send every request with an empty adapter_id
  std::string trace;          // JSONL trace; overrides arrivals/adapters/lengths it names
  IntRange prompt_len{16, 64};
  IntRange output_len{16, 64};
  uint32_t vocab = 1024;      // token ids are drawn from [0, vocab)
  uint64_t seed = 0;
  float temperature = 0;      // 0 = greedy

  // Setup: register adapters from a `loraserve synth` directory first.
  std::string tls_ca, tls_cert, tls_key;  // TLS when tls_ca is set
  std::string setup_dir;
  int setup_files = 0;  // adapter directories to cycle through (0: one per adapter)
  int setup_concurrency = 8;

  // SLO targets for the attainment numbers.
  double ttft_slo_ms = 1000;
  double itl_slo_ms = 100;

  // Output.
  std::string json_path;
  bool progress = false;      // force the progress line even when stderr is not a tty
  bool quiet = false;         // no table on stdout
};

// Declares every flag on `app`, bound to `cfg`.
void add_flags(CLI::App& app, BenchConfig* cfg);

// Checks the combinations CLI11 cannot; returns an error message or "".
std::string validate(const BenchConfig& cfg);

// "adapter-007" for 7.
std::string adapter_name(int index);

}  // namespace loraserve::bench
