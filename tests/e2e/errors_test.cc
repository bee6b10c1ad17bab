// Bad Generate requests over the wire: each is refused with the right code
// and a message naming the problem, before any token is produced, while a
// healthy stream on the same server runs on and completes correctly.
#include <cmath>
#include <limits>

#include "tests/e2e/e2e_util.h"

namespace loraserve::e2e {
namespace {

class BadRequests : public ServerSuite {
 protected:
  static void SetUpTestSuite() { start_suite_server(default_server_options(64)); }
  static void TearDownTestSuite() { stop_suite_server(); }

  // Runs `req` and expects it refused with `code`, no tokens, no messages.
  testing::AssertionResult refused(const v1::GenerateRequest& req, grpc::StatusCode code,
                                   const std::string& needle) {
    const StreamResult r = run_generate(stub(), req);
    if (r.messages != 0) {
      return testing::AssertionFailure()
             << r.messages << " message(s) before the error " << describe(r.status);
    }
    return has_code(r.status, code, needle);
  }
};

TEST_F(BadRequests, EachIsRefusedWithTheRightCodeWhileAHealthyStreamRuns) {
  ASSERT_TRUE(load_adapter(stub(), "healthy-a6", SynthData::adapter_name(6)).ok());
  const std::vector<uint32_t> prompt = make_prompt(700, 9);
  const int n = 800;
  const OfflineResult want = run_offline(offline_job(6, prompt, n));
  const v1::Stats before = get_stats(stub());
  BackgroundStream healthy(server().get(), make_request("healthy-a6", prompt, n));
  ASSERT_TRUE(wait_until([&] { return healthy.tokens_seen() >= 1 || healthy.ended(); },
                         std::chrono::seconds(20)));

  using grpc::StatusCode;
  const std::vector<uint32_t> ok_prompt = make_prompt(701, 4);
  v1::GenerateRequest r;

  EXPECT_TRUE(refused(make_request("", {}, 4), StatusCode::INVALID_ARGUMENT, "prompt_token_ids"));
  EXPECT_TRUE(refused(make_request("", {5, kVocab, 7}, 4), StatusCode::INVALID_ARGUMENT, "1024"));
  EXPECT_TRUE(refused(make_request("", {5, kVocab - 1, 0xFFFFFFFFu}, 4),
                      StatusCode::INVALID_ARGUMENT, "4294967295"));
  EXPECT_TRUE(
      refused(make_request("", ok_prompt, 100000), StatusCode::INVALID_ARGUMENT, "max_new_tokens"));
  EXPECT_TRUE(refused(make_request("", make_prompt(702, 2040), 100), StatusCode::INVALID_ARGUMENT,
                      "context"));
  // One past the context (2040 + 9 = 2049); 2040 + 8 is served, checked below.
  EXPECT_TRUE(
      refused(make_request("", make_prompt(702, 2040), 9), StatusCode::INVALID_ARGUMENT, "2048"));

  r = make_request("", ok_prompt, 4);
  r.mutable_sampling()->set_temperature(-1);
  EXPECT_TRUE(refused(r, StatusCode::INVALID_ARGUMENT, "temperature"));
  r.mutable_sampling()->set_temperature(std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE(refused(r, StatusCode::INVALID_ARGUMENT, "temperature"));
  r = make_request("", ok_prompt, 4);
  r.mutable_sampling()->set_top_p(1.5f);
  EXPECT_TRUE(refused(r, StatusCode::INVALID_ARGUMENT, "top_p"));

  r = make_request("", ok_prompt, 4);
  r.set_prompt("Hello, world");
  EXPECT_TRUE(refused(r, StatusCode::INVALID_ARGUMENT, "not both"));

  EXPECT_TRUE(refused(make_request("no-such-adapter", ok_prompt, 4), StatusCode::NOT_FOUND,
                      "no-such-adapter"));
  EXPECT_TRUE(
      refused(make_request("a b", ok_prompt, 4), StatusCode::INVALID_ARGUMENT, "adapter_id"));

  EXPECT_FALSE(healthy.ended()) << "the healthy stream ended before the bad requests were done";
  EXPECT_TRUE(matches_offline(healthy.result(), want, prompt.size()));

  // The longest request the context allows is accepted (cancelled after its
  // first token: a 2040-token prefill is slow on the CPU backend).
  grpc::ClientContext edge_ctx;
  edge_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  const StreamResult edge = run_generate(
      stub(), make_request("", make_prompt(702, 2040), 8),
      [&](const StreamResult& r) {
        if (!r.tokens.empty()) edge_ctx.TryCancel();
      },
      &edge_ctx);
  EXPECT_FALSE(edge.tokens.empty()) << "2040 + 8 tokens fit the context: " << describe(edge.status);

  // Refused requests never reached the scheduler: nothing failed or leaked.
  v1::Stats after;
  EXPECT_TRUE(wait_until(
      [&] {
        after = get_stats(stub());
        return after.running_requests() == 0 && after.waiting_requests() == 0 &&
               after.requests_completed() + after.requests_cancelled() >=
                   before.requests_completed() + before.requests_cancelled() + 2;
      },
      std::chrono::seconds(5)));
  EXPECT_EQ(after.requests_failed(), before.requests_failed());
  // The healthy stream completed; the edge one may have completed before the
  // cancel arrived.
  EXPECT_EQ(after.requests_completed() + after.requests_cancelled(),
            before.requests_completed() + before.requests_cancelled() + 2);
  EXPECT_EQ(after.pool().pages_kv(), 0u);
}

}  // namespace
}  // namespace loraserve::e2e
