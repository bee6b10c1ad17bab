#include "tests/e2e/e2e_util.h"

#include <stdlib.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "checkpoint/synth.h"

namespace loraserve::e2e {

namespace {

// Owns the synthetic data and removes it when the test process exits.
struct SynthHolder {
  SynthData data;
  SynthHolder() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "loraserve-e2e-data-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      data.error = "mkdtemp failed";
      return;
    }
    data.root = tmpl;
    data.model = tmpl + "/model";
    data.adapters = tmpl + "/adapters";
    auto preset = synth_preset("tiny");
    if (!preset.ok()) {
      data.error = preset.status().to_string();
      return;
    }
    SynthOptions opts;
    opts.config = *preset;
    opts.seed = 3;
    opts.num_adapters = kNumAdapters;
    opts.ranks = {8, 16, 32, 64};
    Status s = synth_write(opts, tmpl);
    if (!s.ok()) data.error = s.to_string();
  }
  ~SynthHolder() {
    std::error_code ec;
    if (!data.root.empty()) std::filesystem::remove_all(data.root, ec);
  }
};

}  // namespace

std::string SynthData::adapter_name(int i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "adapter-%03d", i);
  return buf;
}

std::string SynthData::adapter_dir(int i) const { return adapters + "/" + adapter_name(i); }

const SynthData& synth_data() {
  static SynthHolder holder;
  return holder.data;
}

std::vector<uint32_t> make_prompt(uint32_t seed, int len) {
  std::vector<uint32_t> p;
  uint64_t x = 0x9E3779B97F4A7C15ull * (seed + 1);
  for (int i = 0; i < len; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p.push_back(3 + static_cast<uint32_t>(x % (kVocab - 3)));
  }
  return p;
}

v1::GenerateRequest make_request(const std::string& adapter_id, const std::vector<uint32_t>& prompt,
                                 int max_new_tokens) {
  v1::GenerateRequest req;
  req.set_adapter_id(adapter_id);
  for (uint32_t t : prompt) req.add_prompt_token_ids(t);
  req.mutable_sampling()->set_max_new_tokens(static_cast<uint32_t>(max_new_tokens));
  req.mutable_sampling()->set_ignore_eos(true);
  return req;
}

StreamResult run_generate(v1::LoraServe::Stub* stub, const v1::GenerateRequest& req,
                          const std::function<void(const StreamResult&)>& on_message,
                          grpc::ClientContext* ctx) {
  grpc::ClientContext local;
  grpc::ClientContext* c = ctx != nullptr ? ctx : &local;
  if (ctx == nullptr) c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  StreamResult r;
  auto reader = stub->Generate(c, req);
  v1::GenerateResponse msg;
  std::string request_id;
  while (reader->Read(&msg)) {
    r.messages += 1;
    if (r.got_final) r.protocol_error += "a message arrived after the final one; ";
    if (request_id.empty()) request_id = msg.request_id();
    if (msg.request_id().empty() || msg.request_id() != request_id) {
      r.protocol_error +=
          "request_id '" + msg.request_id() + "' differs from '" + request_id + "'; ";
    }
    if (!req.request_id().empty() && msg.request_id() != req.request_id()) {
      r.protocol_error += "request_id not echoed; ";
    }
    if (msg.token_ids_size() != msg.logprobs_size()) {
      r.protocol_error += "token_ids and logprobs differ in length; ";
    }
    r.tokens.insert(r.tokens.end(), msg.token_ids().begin(), msg.token_ids().end());
    r.logprobs.insert(r.logprobs.end(), msg.logprobs().begin(), msg.logprobs().end());
    r.text_deltas.push_back(msg.text());
    if (msg.final()) {
      r.got_final = true;
      r.final_msg = msg;
    } else if (msg.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      r.protocol_error += "finish_reason set on a non-final message; ";
    }
    if (on_message) on_message(r);
  }
  r.status = reader->Finish();
  return r;
}

std::string describe(const grpc::Status& s) {
  return std::to_string(static_cast<int>(s.error_code())) + " '" + s.error_message() + "'";
}

testing::AssertionResult matches_offline(const StreamResult& got, const OfflineResult& want,
                                         size_t prompt_len) {
  if (!want.ok) return testing::AssertionFailure() << "offline reference failed: " << want.error;
  if (!got.status.ok())
    return testing::AssertionFailure() << "stream failed: " << describe(got.status);
  if (!got.protocol_error.empty()) {
    return testing::AssertionFailure() << "protocol: " << got.protocol_error;
  }
  if (!got.got_final) return testing::AssertionFailure() << "no final message";
  if (got.tokens != want.tokens) {
    size_t i = 0;
    while (i < got.tokens.size() && i < want.tokens.size() && got.tokens[i] == want.tokens[i]) ++i;
    return testing::AssertionFailure()
           << "token ids differ from offline at index " << i << " (served " << got.tokens.size()
           << " tokens, offline " << want.tokens.size() << ")"
           << (i < got.tokens.size() && i < want.tokens.size()
                   ? ": served " + std::to_string(got.tokens[i]) + " offline " +
                         std::to_string(want.tokens[i])
                   : std::string());
  }
  for (size_t i = 0; i < want.logprobs.size(); ++i) {
    if (!(std::fabs(got.logprobs[i] - want.logprobs[i]) <= kLogprobTol)) {
      return testing::AssertionFailure() << "logprob " << i << " is " << got.logprobs[i]
                                         << " served, " << want.logprobs[i] << " offline";
    }
  }
  const v1::GenerateResponse& f = got.final_msg;
  if (f.finish_reason() != v1::FINISH_REASON_LENGTH) {
    return testing::AssertionFailure() << "finish_reason " << f.finish_reason() << ", want LENGTH";
  }
  if (f.usage().prompt_tokens() != prompt_len ||
      f.usage().completion_tokens() != want.tokens.size()) {
    return testing::AssertionFailure()
           << "usage {" << f.usage().prompt_tokens() << ", " << f.usage().completion_tokens()
           << "}, want {" << prompt_len << ", " << want.tokens.size() << "}";
  }
  return testing::AssertionSuccess();
}

OfflineJob offline_job(int adapter_index, const std::vector<uint32_t>& prompt, int max_new_tokens) {
  OfflineJob j;
  j.model = synth_data().model;
  j.adapter = adapter_index < 0 ? "" : synth_data().adapter_dir(adapter_index);
  j.prompt = prompt;
  j.max_new_tokens = max_new_tokens;
  return j;
}

v1::Stats get_stats(v1::LoraServe::Stub* stub) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::Stats stats;
  grpc::Status s = stub->GetStats(&ctx, v1::GetStatsRequest(), &stats);
  EXPECT_TRUE(s.ok()) << "GetStats: " << describe(s);
  return stats;
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

grpc::Status load_adapter(v1::LoraServe::Stub* stub, const std::string& id, const std::string& path,
                          v1::AdapterInfo* info) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::LoadAdapterRequest req;
  req.set_adapter_id(id);
  req.set_path(path);
  v1::AdapterInfo local;
  return stub->LoadAdapter(&ctx, req, info != nullptr ? info : &local);
}

grpc::Status upload_adapter(v1::LoraServe::Stub* stub, const std::string& id,
                            const std::string& config, const std::string& tensors, size_t chunk,
                            v1::AdapterInfo* info, bool replace) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::AdapterInfo local;
  auto writer = stub->UploadAdapter(&ctx, info != nullptr ? info : &local);
  v1::UploadAdapterChunk first;
  first.set_adapter_id(id);
  first.set_adapter_config_json(config);
  first.set_replace(replace);
  bool ok = writer->Write(first);
  for (size_t off = 0; ok && off < tensors.size(); off += chunk) {
    v1::UploadAdapterChunk c;
    c.set_safetensors_data(tensors.substr(off, chunk));
    ok = writer->Write(c);
  }
  writer->WritesDone();
  return writer->Finish();
}

grpc::Status unload_adapter(v1::LoraServe::Stub* stub, const std::string& id) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::UnloadAdapterRequest req;
  req.set_adapter_id(id);
  v1::UnloadAdapterResponse resp;
  grpc::Status s = stub->UnloadAdapter(&ctx, req, &resp);
  if (s.ok()) {
    EXPECT_EQ(resp.adapter_id(), id);
  }
  return s;
}

std::vector<v1::AdapterInfo> list_adapters(v1::LoraServe::Stub* stub) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ListAdaptersResponse resp;
  grpc::Status s = stub->ListAdapters(&ctx, v1::ListAdaptersRequest(), &resp);
  EXPECT_TRUE(s.ok()) << "ListAdapters: " << describe(s);
  return {resp.adapters().begin(), resp.adapters().end()};
}

const v1::AdapterInfo* find_adapter(const std::vector<v1::AdapterInfo>& list,
                                    const std::string& id) {
  for (const v1::AdapterInfo& a : list) {
    if (a.adapter_id() == id) return &a;
  }
  return nullptr;
}

namespace {
std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
}  // namespace

testing::AssertionResult has_code(const grpc::Status& s, grpc::StatusCode code,
                                  const std::string& needle) {
  if (s.error_code() != code) {
    return testing::AssertionFailure() << "got " << describe(s) << ", want code " << code;
  }
  if (lower(s.error_message()).find(lower(needle)) == std::string::npos) {
    return testing::AssertionFailure()
           << "message '" << s.error_message() << "' does not mention '" << needle << "'";
  }
  return testing::AssertionSuccess();
}

BackgroundStream::BackgroundStream(ServerProcess* server, v1::GenerateRequest req)
    : stub_(server->stub()), req_(std::move(req)) {
  thread_ = std::thread([this] {
    result_ = run_generate(stub_.get(), req_, [this](const StreamResult& r) {
      seen_ = static_cast<int>(r.tokens.size());
    });
    ended_ = true;
  });
}

void BackgroundStream::join() {
  if (thread_.joinable()) thread_.join();
}

const StreamResult& BackgroundStream::result() {
  join();
  return result_;
}

ServerOptions default_server_options(int64_t pool_mb) {
  ServerOptions o;
  o.model = synth_data().model;
  o.adapter_root = synth_data().adapters;
  o.pool_mb = pool_mb;
  o.extra_args = {"--log-level", "warn"};
  return o;
}

std::unique_ptr<ServerProcess>& ServerSuite::server() {
  static std::unique_ptr<ServerProcess> s;
  return s;
}

std::string& ServerSuite::server_error() {
  static std::string e;
  return e;
}

void ServerSuite::start_suite_server(const ServerOptions& opts) {
  server_error().clear();
  if (!synth_data().error.empty()) {
    server_error() = "synth_write failed: " + synth_data().error;
    return;
  }
  server() = ServerProcess::start(opts, &server_error());
}

void ServerSuite::stop_suite_server() { server().reset(); }

void ServerSuite::SetUp() {
  ASSERT_TRUE(synth_data().error.empty()) << synth_data().error;
  ASSERT_NE(server(), nullptr) << server_error();
  ASSERT_TRUE(server()->running()) << "the suite's server died; its log:\n" << server()->log();
  stub_ = server()->stub();
}

void ServerSuite::TearDown() {
  if (server() != nullptr) {
    EXPECT_TRUE(server()->running()) << "the server died during the test; its log:\n"
                                     << server()->log();
  }
}

}  // namespace loraserve::e2e
