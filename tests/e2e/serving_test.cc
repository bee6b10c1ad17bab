// Served output equals the offline engine: base model and adapters, many
// concurrent streams with mixed ranks, and adapters hot-loaded under load.
#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

#include "tests/e2e/e2e_util.h"

namespace loraserve::e2e {
namespace {

class Serving : public ServerSuite {
 protected:
  static void SetUpTestSuite() { start_suite_server(default_server_options(64)); }
  static void TearDownTestSuite() { stop_suite_server(); }
};

const std::set<std::string> kTargets = {"q_proj", "k_proj", "v_proj", "o_proj"};

TEST_F(Serving, GreedyOutputEqualsOfflineForBaseAndAdapters) {
  const std::vector<int> adapters = {-1, 0, 1, 2, 3, 9};  // base, ranks 8, 16, 32, 64, 16
  const std::vector<uint32_t> prompt = make_prompt(1, 12);
  const int n = 24;
  std::vector<OfflineJob> jobs;
  for (int a : adapters) jobs.push_back(offline_job(a, prompt, n));
  const std::vector<OfflineResult> want = run_offline_many(jobs);

  for (size_t k = 0; k < adapters.size(); ++k) {
    const int a = adapters[k];
    std::string id;
    if (a >= 0) {
      id = "serve-" + SynthData::adapter_name(a);
      v1::AdapterInfo info;
      grpc::Status s = load_adapter(stub(), id, SynthData::adapter_name(a), &info);
      ASSERT_TRUE(s.ok()) << describe(s);
      EXPECT_EQ(info.adapter_id(), id);
      EXPECT_EQ(info.rank(), static_cast<uint32_t>(adapter_rank(a)));
      EXPECT_GT(info.bytes(), 0u);
      EXPECT_EQ(info.in_flight(), 0u);
      EXPECT_EQ(std::set<std::string>(info.target_modules().begin(), info.target_modules().end()),
                kTargets);
    }
    SCOPED_TRACE("adapter " + (id.empty() ? std::string("(base)") : id));
    v1::GenerateRequest req = make_request(id, prompt, n);
    req.set_request_id("greedy-" + std::to_string(k));
    const StreamResult got = run_generate(stub(), req);
    EXPECT_TRUE(matches_offline(got, want[k], prompt.size()));
    EXPECT_GT(got.messages, 1) << "tokens should stream, not arrive in one message";
    EXPECT_EQ(got.final_msg.request_id(), req.request_id());
    const v1::Timings& t = got.final_msg.timings();
    EXPECT_GT(t.ttft_ms(), 0.0);
    EXPECT_LE(t.ttft_ms(), t.total_ms());
    EXPECT_LE(t.queue_ms(), t.ttft_ms());
    EXPECT_GE(t.queue_ms(), 0.0);
  }
  // Different adapters really change the output (else the test proves little).
  std::set<std::vector<uint32_t>> distinct;
  for (const OfflineResult& r : want) distinct.insert(r.tokens);
  EXPECT_GE(distinct.size(), adapters.size() - 1);
}

TEST_F(Serving, ServerMakesRequestIdAndDefaultsMaxNewTokensTo16) {
  const std::vector<uint32_t> prompt = make_prompt(2, 5);
  const OfflineResult want = run_offline(offline_job(-1, prompt, 16));
  v1::GenerateRequest req = make_request("", prompt, 0);
  const StreamResult got = run_generate(stub(), req);
  EXPECT_TRUE(matches_offline(got, want, prompt.size()));
  EXPECT_FALSE(got.final_msg.request_id().empty());
}

TEST_F(Serving, StopTokenEndsTheStreamAfterEmittingIt) {
  const std::vector<uint32_t> prompt = make_prompt(3, 9);
  ASSERT_TRUE(load_adapter(stub(), "stop-a5", SynthData::adapter_name(5)).ok());
  const OfflineResult want = run_offline(offline_job(5, prompt, 20));
  ASSERT_TRUE(want.ok) << want.error;
  const uint32_t stop = want.tokens[6];
  const size_t first =
      std::find(want.tokens.begin(), want.tokens.end(), stop) - want.tokens.begin();
  v1::GenerateRequest req = make_request("stop-a5", prompt, 20);
  req.mutable_sampling()->add_stop_token_ids(stop);
  const StreamResult got = run_generate(stub(), req);
  ASSERT_TRUE(got.status.ok()) << describe(got.status);
  ASSERT_TRUE(got.got_final);
  EXPECT_EQ(got.final_msg.finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_EQ(got.tokens,
            std::vector<uint32_t>(want.tokens.begin(), want.tokens.begin() + first + 1));
  EXPECT_EQ(got.final_msg.usage().completion_tokens(), first + 1);
}

TEST_F(Serving, SixtyFourConcurrentStreamsWithSixteenAdaptersEqualOffline) {
  for (int a = 0; a < kNumAdapters; ++a) {
    grpc::Status s = load_adapter(stub(), "conc-" + std::to_string(a), SynthData::adapter_name(a));
    ASSERT_TRUE(s.ok()) << describe(s);
  }
  struct Case {
    int adapter;  // -1 = base
    std::vector<uint32_t> prompt;
    int max_new;
  };
  std::vector<Case> cases;
  std::vector<OfflineJob> jobs;
  for (int i = 0; i < 64; ++i) {
    Case c;
    c.adapter = i % 8 == 7 ? -1 : (i * 5) % kNumAdapters;
    c.prompt = make_prompt(100 + i, 3 + (i * 7) % 40);
    c.max_new = 4 + (i * 11) % 45;
    jobs.push_back(offline_job(c.adapter, c.prompt, c.max_new));
    cases.push_back(std::move(c));
  }
  const std::vector<OfflineResult> want = run_offline_many(jobs);

  std::vector<StreamResult> got(cases.size());
  using Clock = std::chrono::steady_clock;
  std::vector<Clock::time_point> first_token(cases.size()), ended(cases.size());
  std::atomic<bool> go{false};
  std::atomic<int> done{0};
  std::vector<std::thread> threads;
  for (size_t i = 0; i < cases.size(); ++i) {
    threads.emplace_back([&, i] {
      auto s = server()->stub();
      while (!go.load()) std::this_thread::yield();
      const Case& c = cases[i];
      got[i] = run_generate(
          s.get(),
          make_request(c.adapter < 0 ? "" : "conc-" + std::to_string(c.adapter), c.prompt,
                       c.max_new),
          [&, i](const StreamResult& r) {
            if (r.tokens.size() == 1) first_token[i] = Clock::now();
          });
      ended[i] = Clock::now();
      done += 1;
    });
  }
  go = true;
  // GetStats while the streams run: how long it takes to answer (it should
  // not wait for the burst to finish).
  double max_stats_ms = 0;
  while (done.load() < static_cast<int>(cases.size())) {
    const auto t0 = Clock::now();
    get_stats(stub());
    max_stats_ms = std::max(
        max_stats_ms, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_TRUE(matches_offline(got[i], want[i], cases[i].prompt.size()))
        << "stream " << i << " adapter " << cases[i].adapter;
  }
  // Concurrency seen by the clients: the most streams that had their first
  // token and had not ended at one stream's first token.
  size_t overlap = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    size_t n = 0;
    for (size_t j = 0; j < cases.size(); ++j) {
      n += first_token[j] <= first_token[i] && ended[j] > first_token[i] ? 1 : 0;
    }
    overlap = std::max(overlap, n);
  }
  std::printf("64 streams: up to %zu streaming at once; slowest GetStats meanwhile %.0f ms\n",
              overlap, max_stats_ms);
  EXPECT_GT(overlap, 4u) << "the streams were not served concurrently";
}

TEST_F(Serving, HotLoadedAdapterServesAtOnceWhileStreamsAreInFlight) {
  const std::vector<int> long_adapters = {4, 5, -1, 6};
  for (int a : long_adapters) {
    if (a < 0) continue;
    ASSERT_TRUE(
        load_adapter(stub(), "hot-long-" + std::to_string(a), SynthData::adapter_name(a)).ok());
  }
  const int long_n = 500;
  std::vector<OfflineJob> jobs;
  for (size_t i = 0; i < long_adapters.size(); ++i) {
    jobs.push_back(offline_job(long_adapters[i], make_prompt(200 + i, 8), long_n));
  }
  const std::vector<uint32_t> hot_prompt = make_prompt(300, 10);
  jobs.push_back(offline_job(11, hot_prompt, 16));
  const std::vector<OfflineResult> want = run_offline_many(jobs);

  std::vector<StreamResult> got(long_adapters.size());
  std::vector<std::atomic<int>> progress(long_adapters.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < long_adapters.size(); ++i) {
    threads.emplace_back([&, i] {
      auto s = server()->stub();
      const int a = long_adapters[i];
      got[i] = run_generate(
          s.get(),
          make_request(a < 0 ? "" : "hot-long-" + std::to_string(a), jobs[i].prompt, long_n),
          [&, i](const StreamResult& r) { progress[i] = static_cast<int>(r.tokens.size()); });
      progress[i] = long_n + 1;  // ended
    });
  }
  const bool started = wait_until(
      [&] {
        for (auto& p : progress)
          if (p.load() < 5) return false;
        return true;
      },
      std::chrono::seconds(20));
  EXPECT_TRUE(started) << "the long streams did not start";

  v1::AdapterInfo info;
  const auto t0 = std::chrono::steady_clock::now();
  grpc::Status s = load_adapter(stub(), "hot-new", SynthData::adapter_name(11), &info);
  const double load_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(s.ok()) << describe(s);
  EXPECT_EQ(info.rank(), 64u);
  const StreamResult hot = run_generate(stub(), make_request("hot-new", hot_prompt, 16));
  int still_running = 0;
  for (auto& p : progress) still_running += p.load() <= long_n ? 1 : 0;
  const double served_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("hot load: LoadAdapter %.0f ms, loaded and served 16 tokens in %.0f ms\n", load_ms,
              served_ms);
  EXPECT_TRUE(matches_offline(hot, want.back(), hot_prompt.size()));
  for (auto& t : threads) t.join();
  EXPECT_GT(still_running, 0) << "the long streams ended before the hot-loaded adapter was "
                                 "served: the test did not overlap them";
  for (size_t i = 0; i < long_adapters.size(); ++i) {
    EXPECT_TRUE(matches_offline(got[i], want[i], jobs[i].prompt.size())) << "long stream " << i;
  }
}

}  // namespace
}  // namespace loraserve::e2e
