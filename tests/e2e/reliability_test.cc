// Issue 18 over the wire and through the CLI: corrupt adapters are refused
// with a message naming the file, tensor or field, by `loraserve generate
// --adapter` (non-zero exit, nothing on stdout) and by LoadAdapter (the
// gRPC code), while the server keeps serving a healthy stream exactly.
#include <sys/wait.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/e2e/e2e_util.h"
#include "tests/support/overflow_adapter.h"

namespace loraserve::e2e {
namespace {

namespace fs = std::filesystem;

class Reliability : public ServerSuite {
 protected:
  static void SetUpTestSuite() { start_suite_server(default_server_options(64)); }
  static void TearDownTestSuite() { stop_suite_server(); }
};

// A copy of adapter-001 (rank 16) under the adapter root, named `name`,
// then changed by `mutate(config json, safetensors bytes)`.
std::string corrupt_copy(const std::string& name,
                         const std::function<void(nlohmann::ordered_json*, std::string*)>& mutate) {
  const SynthData& d = synth_data();
  const std::string dir = d.adapters + "/" + name;
  fs::create_directories(dir);
  auto cfg = nlohmann::ordered_json::parse(read_file(d.adapter_dir(1) + "/adapter_config.json"));
  std::string tensors = read_file(d.adapter_dir(1) + "/adapter_model.safetensors");
  mutate(&cfg, &tensors);
  std::ofstream(dir + "/adapter_config.json") << cfg.dump(2);
  std::ofstream(dir + "/adapter_model.safetensors", std::ios::binary) << tensors;
  return name;
}

uint64_t header_len(const std::string& bytes) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  return n;
}

void set_header_len(std::string* bytes, uint64_t n) {
  for (int i = 0; i < 8; ++i) (*bytes)[i] = static_cast<char>((n >> (8 * i)) & 0xff);
}

// Byte offset in the file of element `index` of `tensor` (BF16).
size_t element_offset(const std::string& bytes, const std::string& tensor, size_t index) {
  const uint64_t n = header_len(bytes);
  const auto header = nlohmann::json::parse(bytes.substr(8, n));
  return 8 + n + header.at(tensor).at("data_offsets")[0].get<size_t>() + 2 * index;
}

struct Case {
  std::string dir;
  grpc::StatusCode code;
  std::vector<std::string> needles;  // in the gRPC message and in the CLI's stderr
};

std::vector<Case> corrupt_cases() {
  const std::string a0 = "base_model.model.model.layers.2.self_attn.v_proj.lora_A.weight";
  std::vector<Case> cases;
  // The reported defects: a header length one byte short (the trailing
  // space drops out; weights would be read shifted by a byte), and bytes
  // after the last tensor.
  cases.push_back({corrupt_copy("corrupt-header-short",
                                [](nlohmann::ordered_json*, std::string* b) {
                                  const uint64_t n = header_len(*b);
                                  ASSERT_EQ((*b)[8 + n - 1], ' ') << "writer padding expected";
                                  set_header_len(b, n - 1);
                                }),
                   grpc::StatusCode::DATA_LOSS,
                   {"corrupt-header-short/adapter_model.safetensors", "1 byte(s) after the last"}});
  cases.push_back({corrupt_copy("corrupt-trailing",
                                [](nlohmann::ordered_json*, std::string* b) { *b += "tail"; }),
                   grpc::StatusCode::DATA_LOSS,
                   {"corrupt-trailing/adapter_model.safetensors", "4 byte(s) after the last"}});
  cases.push_back({corrupt_copy("corrupt-nan-weight",
                                [&](nlohmann::ordered_json*, std::string* b) {
                                  const size_t off = element_offset(*b, a0, 37);
                                  (*b)[off] = static_cast<char>(0xc0);  // bf16 0x7fc0: NaN
                                  (*b)[off + 1] = static_cast<char>(0x7f);
                                }),
                   grpc::StatusCode::INVALID_ARGUMENT,
                   {a0, "(BF16) holds NaN at [0, 37]"}});
  cases.push_back({corrupt_copy("corrupt-alpha-1e308",
                                [](nlohmann::ordered_json* c, std::string*) {
                                  (*c)["lora_alpha"] = 1e308;
                                }),
                   grpc::StatusCode::INVALID_ARGUMENT,
                   {"lora_alpha 1e+308", "|scale| <= 10000"}});
  cases.push_back({corrupt_copy("corrupt-alpha-2p40",
                                [](nlohmann::ordered_json* c, std::string*) {
                                  (*c)["lora_alpha"] = 1099511627776.0;
                                }),
                   grpc::StatusCode::INVALID_ARGUMENT,
                   {"lora_alpha 1.09951e+12", "|scale| <= 10000"}});
  return cases;
}

TEST_F(Reliability, CorruptAdaptersAreRefusedByGenerateAndLoadAdapterWhileServingGoesOn) {
  ASSERT_TRUE(load_adapter(stub(), "rel-healthy", SynthData::adapter_name(1)).ok());
  const std::vector<uint32_t> prompt = make_prompt(900, 7);
  const int n = 600;
  const OfflineResult want = run_offline(offline_job(1, prompt, n));
  BackgroundStream healthy(server().get(), make_request("rel-healthy", prompt, n));
  ASSERT_TRUE(wait_until([&] { return healthy.tokens_seen() >= 1 || healthy.ended(); },
                         std::chrono::seconds(20)));

  const std::vector<Case> cases = corrupt_cases();
  ASSERT_FALSE(HasFatalFailure());
  for (const Case& c : cases) {
    SCOPED_TRACE(c.dir);
    // The CLI: exit 1, the message on stderr, no tokens on stdout.
    std::string out, err;
    const int status = run_process({loraserve_bin(), "generate", "--model", synth_data().model,
                                    "--adapter", synth_data().adapters + "/" + c.dir,
                                    "--prompt-ids", "5,6,7", "--max-new-tokens", "4", "--json",
                                    "--pool-mb", "16"},
                                   &out, &err);
    ASSERT_TRUE(WIFEXITED(status)) << status;
    EXPECT_NE(WEXITSTATUS(status), 0) << out;
    EXPECT_TRUE(out.empty()) << out;
    EXPECT_NE(err.find("error: "), std::string::npos) << err;
    for (const std::string& needle : c.needles) {
      EXPECT_NE(err.find(needle), std::string::npos) << "'" << needle << "' not in: " << err;
    }
    // The server: the right code and message; nothing registered.
    const grpc::Status s = load_adapter(stub(), "rel-" + c.dir, c.dir);
    for (const std::string& needle : c.needles) EXPECT_TRUE(has_code(s, c.code, needle));
  }
  const std::vector<v1::AdapterInfo> list = list_adapters(stub());
  for (const Case& c : cases) EXPECT_EQ(find_adapter(list, "rel-" + c.dir), nullptr) << c.dir;

  EXPECT_TRUE(matches_offline(healthy.result(), want, prompt.size()));
  // And it still serves new requests.
  const std::vector<uint32_t> p2 = make_prompt(901, 9);
  EXPECT_TRUE(matches_offline(run_generate(stub(), make_request("rel-healthy", p2, 8)),
                              run_offline(offline_job(1, p2, 8)), p2.size()));
}

// The open-mode caller's account ("" tenant).
v1::TenantStats open_account(const v1::Stats& st) {
  for (const v1::TenantStats& t : st.tenants()) {
    if (t.tenant().empty()) return t;
  }
  return v1::TenantStats();
}

// Finite weights that overflow in the forward: every load check passes, the
// request fails alone with DATA_LOSS and no token, the counter moves, and a
// stream in the same batches stays exact. The CLI exits non-zero too.
TEST_F(Reliability, NonFiniteLogitsFailOnlyTheirRequestAndAreCounted) {
  const SynthData& d = synth_data();
  ASSERT_TRUE(testing_util::write_overflowing_adapter(d.adapter_dir(2), d.adapters + "/overflow-e2e")
                  .ok());
  ASSERT_TRUE(load_adapter(stub(), "rel-overflow", "overflow-e2e").ok());
  ASSERT_TRUE(load_adapter(stub(), "rel-healthy2", SynthData::adapter_name(2)).ok());
  const v1::Stats before = get_stats(stub());
  const std::vector<uint32_t> prompt = make_prompt(910, 12);
  const int n = 400;
  const OfflineResult want = run_offline(offline_job(2, prompt, n));
  BackgroundStream healthy(server().get(), make_request("rel-healthy2", prompt, n));
  ASSERT_TRUE(wait_until([&] { return healthy.tokens_seen() >= 1 || healthy.ended(); },
                         std::chrono::seconds(20)));
  for (int i = 0; i < 3; ++i) {
    const StreamResult bad = run_generate(stub(), make_request("rel-overflow", prompt, 8));
    EXPECT_EQ(bad.status.error_code(), grpc::StatusCode::DATA_LOSS) << describe(bad.status);
    EXPECT_NE(bad.status.error_message().find("non-finite logits"), std::string::npos)
        << describe(bad.status);
    EXPECT_NE(bad.status.error_message().find("rel-overflow"), std::string::npos)
        << describe(bad.status);
    EXPECT_TRUE(bad.tokens.empty()) << "a token left non-finite logits";
    EXPECT_FALSE(bad.got_final);
  }
  EXPECT_TRUE(matches_offline(healthy.result(), want, prompt.size()));
  const v1::Stats after = get_stats(stub());
  EXPECT_EQ(after.requests_non_finite() - before.requests_non_finite(), 3u);
  EXPECT_EQ(after.requests_failed() - before.requests_failed(), 3u);
  EXPECT_EQ(after.requests_completed() - before.requests_completed(), 1u);
  EXPECT_EQ(after.pool().pages_kv(), 0u);

  std::string out, err;
  const int status = run_process({loraserve_bin(), "generate", "--model", d.model, "--adapter",
                                  d.adapters + "/overflow-e2e", "--prompt-ids", "5,6,7",
                                  "--max-new-tokens", "4", "--json", "--pool-mb", "16"},
                                 &out, &err);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0) << out;
  EXPECT_TRUE(out.empty()) << out;
  EXPECT_NE(err.find("DATA_LOSS: non-finite logits (NaN or infinity) for adapter"),
            std::string::npos)
      << err;
}

// A stop string ends the request as a stop: the scheduler's stats and the
// tenant's account both say completed (not cancelled), with the tokens the
// client got.
TEST_F(Reliability, StopStringsAreCountedAsCompletionsNotCancellations) {
  v1::GenerateRequest req;
  req.set_prompt("Once upon a time");
  req.mutable_sampling()->set_max_new_tokens(400);
  req.mutable_sampling()->set_ignore_eos(true);
  const StreamResult full = run_generate(stub(), [&] {
    v1::GenerateRequest r = req;
    r.mutable_sampling()->set_max_new_tokens(30);
    return r;
  }());
  ASSERT_TRUE(full.status.ok()) << describe(full.status);
  std::string text;
  for (const std::string& t : full.text_deltas) text += t;
  ASSERT_GE(text.size(), 12u) << text;
  const std::string stop = text.substr(8, 3);
  req.mutable_sampling()->add_stop(stop);

  const v1::Stats before = get_stats(stub());
  const StreamResult stopped = run_generate(stub(), req);
  ASSERT_TRUE(stopped.status.ok()) << describe(stopped.status);
  EXPECT_EQ(stopped.final_msg.finish_reason(), v1::FINISH_REASON_STOP);
  ASSERT_LT(stopped.tokens.size(), 400u);
  ASSERT_TRUE(wait_until([&] { return get_stats(stub()).running_requests() == 0; },
                         std::chrono::seconds(10)));
  const v1::Stats after = get_stats(stub());
  EXPECT_EQ(after.requests_completed() - before.requests_completed(), 1u);
  EXPECT_EQ(after.requests_cancelled() - before.requests_cancelled(), 0u);
  EXPECT_EQ(after.requests_failed() - before.requests_failed(), 0u);
  // (tokens_generated also counts the few computed after the stop string.)
  EXPECT_GE(after.tokens_generated() - before.tokens_generated(), stopped.tokens.size());
  const v1::TenantStats a0 = open_account(before), a1 = open_account(after);
  EXPECT_EQ(a1.cancelled() - a0.cancelled(), 0u);
  EXPECT_EQ(a1.completion_tokens() - a0.completion_tokens(), stopped.tokens.size());
  EXPECT_EQ(after.pool().pages_kv(), 0u);
}

// A deadline that passes mid-stream: the client sees DEADLINE_EXCEEDED and
// the server counts it as an abort (never as a cancellation, whichever
// side noticed first).
// (Generation::abandon waits for the scheduler's verdict; the account
// follows it.)
TEST_F(Reliability, DeadlinesAreAbortsInTheStatsAndTheAccount) {
  const v1::Stats before = get_stats(stub());
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(250 + 50 * i));
    const StreamResult r =
        run_generate(stub(), make_request("", make_prompt(920 + i, 5), 2000), {}, &ctx);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << describe(r.status);
  }
  ASSERT_TRUE(wait_until([&] { return get_stats(stub()).running_requests() == 0; },
                         std::chrono::seconds(10)));
  // The final accounting happens when the handler returns, just after.
  ASSERT_TRUE(wait_until(
      [&] { return open_account(get_stats(stub())).in_flight() == 0; }, std::chrono::seconds(10)));
  const v1::Stats after = get_stats(stub());
  EXPECT_EQ(after.requests_cancelled() - before.requests_cancelled(), 0u);
  EXPECT_EQ(after.requests_failed() - before.requests_failed(), 3u);  // aborts are failures
  const v1::TenantStats a0 = open_account(before), a1 = open_account(after);
  EXPECT_EQ(a1.aborted() - a0.aborted(), 3u);
  EXPECT_EQ(a1.cancelled() - a0.cancelled(), 0u);
  EXPECT_EQ(after.pool().pages_kv(), 0u);
}

}  // namespace
}  // namespace loraserve::e2e
