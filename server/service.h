// LoraServeService: the gRPC face of the scheduler. Thin: it validates and
// translates messages, runs each RPC on gRPC's sync thread pool, and maps
// every loraserve Status to a gRPC status in one place (grpc_status.h).
// Thread-safe (the scheduler is).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "proto/loraserve.grpc.pb.h"
#include "scheduler/scheduler.h"

namespace loraserve {

struct ServiceOptions {
  std::string adapter_root;            // "" = LoadAdapter by path is refused
  int64_t max_upload_bytes = 4ll << 30;
  std::string backend_name;
};

class LoraServeService final : public loraserve::v1::LoraServe::Service {
 public:
  LoraServeService(Scheduler* scheduler, ServiceOptions options);

  grpc::Status Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override;
  grpc::Status LoadAdapter(grpc::ServerContext* ctx, const v1::LoadAdapterRequest* req,
                           v1::AdapterInfo* resp) override;
  grpc::Status UploadAdapter(grpc::ServerContext* ctx,
                             grpc::ServerReader<v1::UploadAdapterChunk>* reader,
                             v1::AdapterInfo* resp) override;
  grpc::Status UnloadAdapter(grpc::ServerContext* ctx, const v1::UnloadAdapterRequest* req,
                             v1::UnloadAdapterResponse* resp) override;
  grpc::Status ListAdapters(grpc::ServerContext* ctx, const v1::ListAdaptersRequest* req,
                            v1::ListAdaptersResponse* resp) override;
  grpc::Status GetStats(grpc::ServerContext* ctx, const v1::GetStatsRequest* req,
                        v1::Stats* resp) override;

 private:
  Status register_and_describe(const std::string& id, const LoraAdapter& adapter,
                               v1::AdapterInfo* resp);
  void describe(const std::string& id, v1::AdapterInfo* resp);

  Scheduler* scheduler_;
  ServiceOptions options_;
  std::atomic<uint64_t> next_request_{1};
};

}  // namespace loraserve
