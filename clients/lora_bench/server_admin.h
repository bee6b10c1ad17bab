// The unary calls lora-bench makes around a run: registering the synthetic
// adapters (--setup) and reading the server's GetStats before and after.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "clients/lora_bench/config.h"
#include "proto/loraserve.grpc.pb.h"

namespace loraserve::bench {

struct SetupResult {
  int loaded = 0;
  int already_present = 0;  // ALREADY_EXISTS: registered by an earlier run
  double seconds = 0;
};

// Registers adapter-000 .. adapter-(cfg.num_adapters-1) with LoadAdapter
// (path "adapter-XYZ", relative to the server's --adapter-root, which must be
// cfg.setup_dir + "/adapters"), cfg.setup_concurrency calls at a time.
// ALREADY_EXISTS counts as present. Returns false and sets *error on any
// other failure.
bool setup_adapters(const BenchConfig& cfg, const std::shared_ptr<grpc::Channel>& channel,
                    SetupResult* result, std::string* error);

// GetStats with a 10 s deadline.
grpc::Status get_stats(const std::shared_ptr<grpc::Channel>& channel, const std::string& api_key,
                       v1::Stats* stats);

// The message as proto3 JSON (field names as in the .proto, defaults printed;
// 64-bit integers are JSON strings, as proto3 JSON specifies).
std::string stats_to_json(const v1::Stats& stats);

}  // namespace loraserve::bench
