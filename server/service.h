// LoraServeService: the gRPC face of the server. Thin: it authenticates the
// caller (TenantDirectory), translates messages to and from the
// transport-neutral Generator and AdapterAdmin (which the HTTP frontend
// shares), runs each RPC on gRPC's sync thread pool, and maps every
// loraserve Status to a gRPC status in one place (grpc_status.h).
// Thread-safe (the scheduler, the directory and both helpers are).
#pragma once

#include <cstdint>
#include <string>

#include "proto/loraserve.grpc.pb.h"
#include "server/adapter_admin.h"
#include "server/chat_prompt.h"
#include "server/generation.h"
#include "server/tenant_directory.h"

namespace loraserve {

struct ServiceOptions {
  int64_t max_upload_bytes = 4ll << 30;
  std::string backend_name;
  ChatPrompt chat;  // renders GenerateRequest.messages (as HTTP chat does); none: refused
};

class LoraServeService final : public loraserve::v1::LoraServe::Service {
 public:
  // Every pointer must outlive the service.
  LoraServeService(Generator* generator, AdapterAdmin* adapters, TenantDirectory* tenants,
                   ServiceOptions options);

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
  StatusOr<Caller> authenticate(const grpc::ServerContext* ctx) const;
  Status generate(grpc::ServerContext* ctx, const Caller& caller, const v1::GenerateRequest& req,
                  grpc::ServerWriter<v1::GenerateResponse>* writer);

  Generator* generator_;
  AdapterAdmin* adapters_;
  TenantDirectory* tenants_;
  Scheduler* scheduler_;
  ServiceOptions options_;
};

}  // namespace loraserve
