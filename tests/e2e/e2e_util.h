// Shared pieces of the end-to-end tests: the synthetic checkpoint (written
// once per test process), a fixture base that owns one server per suite,
// and helpers that drive a Generate stream and compare it with the offline
// reference.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "proto/loraserve.grpc.pb.h"
#include "tests/e2e/offline.h"
#include "tests/e2e/server_process.h"

namespace loraserve::e2e {

constexpr int kNumAdapters = 16;   // adapter-000 .. adapter-015, ranks 8,16,32,64 cycled
constexpr uint32_t kVocab = 1024;  // tiny preset
constexpr int kContext = 2048;
constexpr double kLogprobTol = 1e-3;

// `loraserve synth --preset tiny --adapters 16 --ranks 8,16,32,64 --seed 3`
// into a fresh temporary directory, removed at exit.
struct SynthData {
  std::string root;
  std::string model;                       // root/model
  std::string adapters;                    // root/adapters (the servers' --adapter-root)
  std::string error;                       // non-empty when writing failed
  std::string adapter_dir(int i) const;    // absolute path of adapter-00i
  static std::string adapter_name(int i);  // "adapter-00i"
};
const SynthData& synth_data();
inline int adapter_rank(int i) { return 8 << (i % 4); }

// A deterministic prompt of `len` token ids in [3, kVocab).
std::vector<uint32_t> make_prompt(uint32_t seed, int len);

// Greedy request that ignores EOS (the offline path does not stop at EOS).
v1::GenerateRequest make_request(const std::string& adapter_id, const std::vector<uint32_t>& prompt,
                                 int max_new_tokens);

struct StreamResult {
  grpc::Status status;
  std::vector<uint32_t> tokens;
  std::vector<float> logprobs;
  std::vector<std::string> text_deltas;  // one per message, as received
  bool got_final = false;
  v1::GenerateResponse final_msg;
  int messages = 0;
  std::string protocol_error;  // messages after final, mismatched request ids, ...
};

// Runs one Generate stream to its end. `on_message` (optional) is called
// after every message with the tokens received so far; `ctx` (optional)
// lets the caller cancel. Deadline 60 s unless the context has one.
StreamResult run_generate(v1::LoraServe::Stub* stub, const v1::GenerateRequest& req,
                          const std::function<void(const StreamResult&)>& on_message = {},
                          grpc::ClientContext* ctx = nullptr);

// Equal token ids and logprobs within kLogprobTol, with OK status and a
// LENGTH final message whose usage counts are right.
testing::AssertionResult matches_offline(const StreamResult& got, const OfflineResult& want,
                                         size_t prompt_len);

OfflineJob offline_job(int adapter_index, const std::vector<uint32_t>& prompt, int max_new_tokens);

v1::Stats get_stats(v1::LoraServe::Stub* stub);
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

grpc::Status load_adapter(v1::LoraServe::Stub* stub, const std::string& id, const std::string& path,
                          v1::AdapterInfo* info = nullptr);
grpc::Status unload_adapter(v1::LoraServe::Stub* stub, const std::string& id);
// UploadAdapter with the safetensors bytes in chunks of `chunk`.
grpc::Status upload_adapter(v1::LoraServe::Stub* stub, const std::string& id,
                            const std::string& config, const std::string& tensors, size_t chunk,
                            v1::AdapterInfo* info = nullptr, bool replace = false);
std::vector<v1::AdapterInfo> list_adapters(v1::LoraServe::Stub* stub);
// The entry for `id`, or nullptr.
const v1::AdapterInfo* find_adapter(const std::vector<v1::AdapterInfo>& list,
                                    const std::string& id);

// Expects `s` to carry `code` and a message that mentions `needle`
// (case-insensitive).
testing::AssertionResult has_code(const grpc::Status& s, grpc::StatusCode code,
                                  const std::string& needle);

// A Generate stream run on its own thread; tokens_seen() tells how far it
// has got. The destructor joins it.
class BackgroundStream {
 public:
  BackgroundStream(ServerProcess* server, v1::GenerateRequest req);
  ~BackgroundStream() { join(); }
  void join();
  int tokens_seen() const { return seen_.load(); }
  bool ended() const { return ended_.load(); }
  const StreamResult& result();  // joins first

 private:
  std::unique_ptr<v1::LoraServe::Stub> stub_;
  v1::GenerateRequest req_;
  std::atomic<int> seen_{0};
  std::atomic<bool> ended_{false};
  StreamResult result_;
  std::thread thread_;
};

// "CODE: message" for assertion output.
std::string describe(const grpc::Status& s);

// Base fixture: each suite owns one server, started in SetUpTestSuite from
// server_options() of the derived class (via a static hook).
class ServerSuite : public testing::Test {
 protected:
  static void start_suite_server(const ServerOptions& opts);
  static void stop_suite_server();
  void SetUp() override;     // fails the test if the suite's server did not start
  void TearDown() override;  // fails the test if the server died during it

  static std::unique_ptr<ServerProcess>& server();
  static std::string& server_error();
  v1::LoraServe::Stub* stub() { return stub_.get(); }

  std::unique_ptr<v1::LoraServe::Stub> stub_;
};

// Options for a server on the shared synthetic data.
ServerOptions default_server_options(int64_t pool_mb = 64);

}  // namespace loraserve::e2e
