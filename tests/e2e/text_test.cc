// Text over the wire with the model's tokenizer (synth writes one): a text
// prompt is the same request as its encoded ids, the streamed deltas are
// valid UTF-8 and concatenate to the offline decode, and stop strings cut
// the output at the right place even when they straddle tokens.
#include <filesystem>

#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "tests/e2e/e2e_util.h"

namespace loraserve::e2e {
namespace {

namespace fs = std::filesystem;

class Text : public ServerSuite {
 protected:
  static void SetUpTestSuite() { start_suite_server(default_server_options(64)); }
  static void TearDownTestSuite() { stop_suite_server(); }

  void SetUp() override {
    ServerSuite::SetUp();
    auto tok = Tokenizer::load_dir(synth_data().model);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tok_ = *tok;
  }

  static v1::GenerateRequest text_request(const std::string& prompt, int n) {
    v1::GenerateRequest req;
    req.set_prompt(prompt);
    req.mutable_sampling()->set_max_new_tokens(static_cast<uint32_t>(n));
    req.mutable_sampling()->set_ignore_eos(true);
    return req;
  }
  std::string offline_text(const std::vector<uint32_t>& ids) const {
    DecodeOptions o;
    o.skip_special_tokens = true;
    o.continuation = true;
    return tok_->decode(std::vector<int32_t>(ids.begin(), ids.end()), o);
  }

  std::shared_ptr<const Tokenizer> tok_;
};

std::string joined(const StreamResult& r) {
  std::string s;
  for (const std::string& d : r.text_deltas) s += d;
  return s;
}

TEST_F(Text, TextPromptEqualsItsIdsAndDeltasConcatenateToTheOfflineDecode) {
  const std::string prompt = "The morning train to the city was late, caf\xc3\xa9 ol\xc3\xa9 \xf0\x9f\x98\x80";
  const StreamResult by_text = run_generate(stub(), text_request(prompt, 40));
  ASSERT_TRUE(by_text.status.ok()) << describe(by_text.status);
  auto ids = tok_->encode(prompt, /*add_special_tokens=*/true);
  ASSERT_TRUE(ids.ok());
  v1::GenerateRequest by_ids_req;
  for (int32_t id : *ids) by_ids_req.add_prompt_token_ids(static_cast<uint32_t>(id));
  by_ids_req.mutable_sampling()->set_max_new_tokens(40);
  by_ids_req.mutable_sampling()->set_ignore_eos(true);
  const StreamResult by_ids = run_generate(stub(), by_ids_req);
  EXPECT_EQ(by_text.tokens, by_ids.tokens);
  EXPECT_EQ(by_text.final_msg.usage().prompt_tokens(), ids->size());
  for (const std::string& d : by_text.text_deltas) {
    EXPECT_TRUE(utf8_valid(d)) << "a delta is not valid UTF-8";
  }
  EXPECT_EQ(joined(by_text), offline_text(by_text.tokens));
  EXPECT_FALSE(joined(by_text).empty());
}

TEST_F(Text, StopStringsCutAtTheRightPlaceAcrossTokens) {
  const std::string prompt = "Once upon a time";
  const StreamResult full = run_generate(stub(), text_request(prompt, 48));
  ASSERT_TRUE(full.status.ok());
  const std::string text = joined(full);
  // Text offsets where each token's text ends, to find a stop string that
  // straddles a token boundary.
  std::vector<size_t> ends;
  for (size_t k = 1; k <= full.tokens.size(); ++k) {
    ends.push_back(offline_text(std::vector<uint32_t>(full.tokens.begin(), full.tokens.begin() + k))
                       .size());
  }
  size_t cut = std::string::npos;
  std::string stop;
  for (size_t k = 4; k + 1 < ends.size() && cut == std::string::npos; ++k) {
    const size_t b = ends[k];
    if (b < 2 || b + 2 > text.size() || ends[k + 1] <= b) continue;
    const std::string candidate = text.substr(b - 2, 4);
    if (!utf8_valid(candidate)) continue;
    if (text.find(candidate) == b - 2) {  // first occurrence is the one we mean
      stop = candidate;
      cut = b - 2;
    }
  }
  ASSERT_NE(cut, std::string::npos) << "no token boundary usable for a stop string in: " << text;
  v1::GenerateRequest req = text_request(prompt, 48);
  req.mutable_sampling()->add_stop(stop);
  req.mutable_sampling()->add_stop("never-appears-\x01");
  const StreamResult stopped = run_generate(stub(), req);
  ASSERT_TRUE(stopped.status.ok()) << describe(stopped.status);
  EXPECT_EQ(joined(stopped), text.substr(0, cut)) << "stop string '" << stop << "'";
  EXPECT_EQ(stopped.final_msg.finish_reason(), v1::FINISH_REASON_STOP);
  // The tokens sent are a prefix of the full run, ending with the token
  // that completed the stop string.
  ASSERT_LE(stopped.tokens.size(), full.tokens.size());
  EXPECT_TRUE(std::equal(stopped.tokens.begin(), stopped.tokens.end(), full.tokens.begin()));
  EXPECT_EQ(stopped.final_msg.usage().completion_tokens(), stopped.tokens.size());
  EXPECT_GE(offline_text(stopped.tokens).size(), cut + stop.size());
  // Nothing is left running.
  EXPECT_TRUE(wait_until([&] { return get_stats(stub()).running_requests() == 0; },
                         std::chrono::seconds(10)));
}

TEST_F(Text, BadTextRequestsAreRefused) {
  v1::GenerateRequest both = text_request("hi", 4);
  both.add_prompt_token_ids(5);
  EXPECT_TRUE(has_code(run_generate(stub(), both).status, grpc::StatusCode::INVALID_ARGUMENT,
                       "not both"));
  v1::GenerateRequest empty_stop = text_request("hi", 4);
  empty_stop.mutable_sampling()->add_stop("");
  EXPECT_TRUE(has_code(run_generate(stub(), empty_stop).status,
                       grpc::StatusCode::INVALID_ARGUMENT, "stop"));
}

TEST(TextWithoutTokenizer, TextPromptsAreFailedPrecondition) {
  // The same model without its tokenizer files.
  const std::string dir = synth_data().root + "/model-no-tokenizer";
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(synth_data().model)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("tokenizer", 0) == 0) continue;
    if (!fs::exists(dir + "/" + name)) fs::create_symlink(e.path(), dir + "/" + name);
  }
  ServerOptions opts = default_server_options(32);
  opts.model = dir;
  std::string err;
  auto server = ServerProcess::start(opts, &err);
  ASSERT_NE(server, nullptr) << err;
  auto stub = server->stub();
  v1::GenerateRequest req;
  req.set_prompt("hello");
  EXPECT_TRUE(has_code(run_generate(stub.get(), req).status,
                       grpc::StatusCode::FAILED_PRECONDITION, "tokenizer"));
  // Token ids still work, with empty text.
  const StreamResult ids = run_generate(stub.get(), make_request("", make_prompt(9, 4), 3));
  EXPECT_TRUE(ids.status.ok());
  EXPECT_EQ(ids.tokens.size(), 3u);
}

}  // namespace
}  // namespace loraserve::e2e
