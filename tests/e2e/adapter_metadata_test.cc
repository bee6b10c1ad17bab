// lora-cli and lora-bench name the adapter of each call in `x-lora-adapter`
// metadata (for proxies that route by adapter, e.g. nginx hashing on it), and
// send none for the base model. The server ignores the header, so the
// clients run against a recording stand-in: an in-process gRPC server that
// answers every call trivially and keeps the metadata it was sent.
#include <grpcpp/grpcpp.h>
#include <sys/wait.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "proto/loraserve.grpc.pb.h"
#include "tests/e2e/e2e_util.h"

namespace loraserve::e2e {
namespace {

constexpr char kHeader[] = "x-lora-adapter";

struct Call {
  std::string method;
  std::string adapter_id;            // as the request names it
  std::vector<std::string> headers;  // every x-lora-adapter value
};

class RecordingService final : public v1::LoraServe::Service {
 public:
  grpc::Status Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override {
    record(ctx, "Generate", req->adapter_id());
    // As many tokens as asked for, in one final message.
    const uint32_t n = std::max<uint32_t>(1, req->sampling().max_new_tokens());
    v1::GenerateResponse resp;
    resp.set_request_id(req->request_id().empty() ? "fake" : req->request_id());
    for (uint32_t i = 0; i < n; ++i) {
      resp.add_token_ids(7);
      resp.add_logprobs(-1.0f);
    }
    resp.set_final(true);
    resp.set_finish_reason(v1::FINISH_REASON_LENGTH);
    resp.mutable_usage()->set_prompt_tokens(static_cast<uint32_t>(req->prompt_token_ids_size()));
    resp.mutable_usage()->set_completion_tokens(n);
    writer->Write(resp);
    return grpc::Status::OK;
  }
  grpc::Status LoadAdapter(grpc::ServerContext* ctx, const v1::LoadAdapterRequest* req,
                           v1::AdapterInfo* resp) override {
    record(ctx, "LoadAdapter", req->adapter_id());
    resp->set_adapter_id(req->adapter_id());
    return grpc::Status::OK;
  }
  grpc::Status UploadAdapter(grpc::ServerContext* ctx,
                             grpc::ServerReader<v1::UploadAdapterChunk>* reader,
                             v1::AdapterInfo* resp) override {
    v1::UploadAdapterChunk chunk;
    std::string id;
    while (reader->Read(&chunk)) {
      if (id.empty()) id = chunk.adapter_id();
    }
    record(ctx, "UploadAdapter", id);
    resp->set_adapter_id(id);
    return grpc::Status::OK;
  }
  grpc::Status UnloadAdapter(grpc::ServerContext* ctx, const v1::UnloadAdapterRequest* req,
                             v1::UnloadAdapterResponse* resp) override {
    record(ctx, "UnloadAdapter", req->adapter_id());
    resp->set_adapter_id(req->adapter_id());
    return grpc::Status::OK;
  }
  grpc::Status GetStats(grpc::ServerContext*, const v1::GetStatsRequest*, v1::Stats*) override {
    return grpc::Status::OK;
  }

  std::vector<Call> take() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(calls_, {});
  }

 private:
  void record(grpc::ServerContext* ctx, const std::string& method, const std::string& id) {
    Call c{method, id, {}};
    auto range = ctx->client_metadata().equal_range(kHeader);
    for (auto it = range.first; it != range.second; ++it) {
      c.headers.emplace_back(it->second.data(), it->second.size());
    }
    std::lock_guard<std::mutex> lock(mu_);
    calls_.push_back(std::move(c));
  }

  std::mutex mu_;
  std::vector<Call> calls_;
};

class AdapterMetadata : public testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(port_, 0);
    addr_ = "127.0.0.1:" + std::to_string(port_);
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  // Runs a client binary; expects exit 0.
  void run_ok(std::vector<std::string> argv) {
    std::string out, err;
    const int status = run_process(argv, &out, &err);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << argv[0] << " " << argv[1] << ": status " << status << "\n" << out << err;
  }

  // Every recorded call carries exactly one header equal to its adapter id,
  // or none when it names no adapter.
  static void expect_headers_match(const std::vector<Call>& calls) {
    for (const Call& c : calls) {
      SCOPED_TRACE(c.method + " '" + c.adapter_id + "'");
      if (c.adapter_id.empty()) {
        EXPECT_TRUE(c.headers.empty()) << c.headers[0];
      } else {
        EXPECT_EQ(c.headers, std::vector<std::string>{c.adapter_id});
      }
    }
  }

  RecordingService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string addr_;
};

TEST_F(AdapterMetadata, LoraCliNamesTheAdapterOfEveryCall) {
  const std::vector<std::string> cli = {LORA_CLI_BIN, "--addr", addr_};
  auto with = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = cli;
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  };
  run_ok(with({"generate", "--adapter", "support-bot", "--prompt-ids", "1,2,3",
               "--max-new-tokens", "2"}));
  run_ok(with({"generate", "--adapter", "tenant:org/bot-v2.1", "--prompt", "hi", "--chat"}));
  run_ok(with({"generate", "--prompt-ids", "1,2,3", "--max-new-tokens", "2"}));  // base model
  run_ok(with({"load", "--id", "from-path", "--path", "adapter-000"}));
  run_ok(with({"load", "--id", "uploaded", "--upload", synth_data().adapter_dir(0)}));
  run_ok(with({"unload", "--id", "from-path"}));

  const std::vector<Call> calls = service_.take();
  ASSERT_EQ(calls.size(), 6u);
  expect_headers_match(calls);
  std::map<std::string, std::string> seen;  // method/adapter -> header
  for (const Call& c : calls) {
    seen[c.method + "/" + c.adapter_id] = c.headers.empty() ? "(none)" : c.headers[0];
  }
  EXPECT_EQ(seen["Generate/support-bot"], "support-bot");
  EXPECT_EQ(seen["Generate/tenant:org/bot-v2.1"], "tenant:org/bot-v2.1");
  EXPECT_EQ(seen["Generate/"], "(none)");
  EXPECT_EQ(seen["LoadAdapter/from-path"], "from-path");
  EXPECT_EQ(seen["UploadAdapter/uploaded"], "uploaded");
  EXPECT_EQ(seen["UnloadAdapter/from-path"], "from-path");
}

TEST_F(AdapterMetadata, LoraBenchNamesTheAdapterOfEveryCall) {
  // --setup loads adapter-000..002 (the directory is only checked when it
  // exists here), then 12 requests spread over them.
  run_ok({LORA_BENCH_BIN, "--addr", addr_, "--setup", synth_data().root + "/no-such-setup",
          "--num-adapters", "3", "--num-requests", "12", "--rate", "200", "--prompt-len", "4",
          "--output-len", "2", "--quiet"});
  std::vector<Call> calls = service_.take();
  int loads = 0, generates = 0;
  for (const Call& c : calls) {
    loads += c.method == "LoadAdapter";
    generates += c.method == "Generate";
    EXPECT_FALSE(c.adapter_id.empty()) << c.method;
  }
  EXPECT_EQ(loads, 3);
  EXPECT_EQ(generates, 12);
  expect_headers_match(calls);

  // The base model: no header.
  run_ok({LORA_BENCH_BIN, "--addr", addr_, "--base-only", "--num-requests", "4", "--rate", "200",
          "--prompt-len", "4", "--output-len", "2", "--quiet"});
  calls = service_.take();
  ASSERT_EQ(calls.size(), 4u);
  for (const Call& c : calls) {
    EXPECT_TRUE(c.adapter_id.empty());
    EXPECT_TRUE(c.headers.empty());
  }
}

}  // namespace
}  // namespace loraserve::e2e
