// LoraServeService: the gRPC face of the scheduler. Thin: it authenticates
// the caller (TenantDirectory), translates messages, runs each RPC on
// gRPC's sync thread pool, and maps every loraserve Status to a gRPC status
// in one place (grpc_status.h). Thread-safe (the scheduler and the
// directory are).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "proto/loraserve.grpc.pb.h"
#include "scheduler/scheduler.h"
#include "server/tenant_directory.h"
#include "tokenizer/text_stream.h"
#include "tokenizer/tokenizer.h"

namespace loraserve {

struct ServiceOptions {
  std::string adapter_root;            // "" = LoadAdapter by path is refused
  // The model's tokenizer: text prompts, text deltas and stop strings need
  // it; null = token ids only.
  std::shared_ptr<const Tokenizer> tokenizer;
  int64_t max_upload_bytes = 4ll << 30;
  std::string backend_name;
};

class LoraServeService final : public loraserve::v1::LoraServe::Service {
 public:
  LoraServeService(Scheduler* scheduler, TenantDirectory* tenants, ServiceOptions options);

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

  // Registers an adapter for `owner` ("" open mode, a tenant, or "public")
  // under the id its owner uses; quotas apply. Used by the RPCs and by
  // start-up preloading.
  Status register_adapter(const std::string& owner, const std::string& id,
                          const LoraAdapter& adapter, v1::AdapterInfo* info);

 private:
  StatusOr<Caller> authenticate(const grpc::ServerContext* ctx) const;
  Status generate(grpc::ServerContext* ctx, const Caller& caller, const v1::GenerateRequest& req,
                  grpc::ServerWriter<v1::GenerateResponse>* writer);
  void describe(const std::string& scheduler_id, v1::AdapterInfo* info);

  Scheduler* scheduler_;
  TenantDirectory* tenants_;
  ServiceOptions options_;
  std::atomic<uint64_t> next_request_{1};
};

}  // namespace loraserve
