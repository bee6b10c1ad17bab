// Request and server lifecycle: cancellation frees everything, a full queue
// pushes back, bursts leave no pages behind, a small pool evicts and
// preempts without changing outputs, health checks and SIGTERM.
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <thread>

#include "tests/e2e/e2e_util.h"
#include "proto/health.grpc.pb.h"

namespace loraserve::e2e {
namespace {

class Lifecycle : public ServerSuite {
 protected:
  static void SetUpTestSuite() { start_suite_server(default_server_options(64)); }
  static void TearDownTestSuite() { stop_suite_server(); }
};

// Starts a server of its own for one test; fails the test if it cannot.
std::unique_ptr<ServerProcess> own_server(const ServerOptions& opts) {
  std::string error;
  auto s = ServerProcess::start(opts, &error);
  EXPECT_NE(s, nullptr) << error;
  return s;
}

bool drained(const v1::Stats& s) {
  return s.waiting_requests() == 0 && s.running_requests() == 0 && s.pool().pages_kv() == 0;
}

TEST_F(Lifecycle, CancelledStreamFreesItsSlotAndPages) {
  const v1::Stats before = get_stats(stub());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  const std::vector<uint32_t> prompt = make_prompt(800, 4);
  const StreamResult r = run_generate(
      stub(), make_request("", prompt, 1500),
      [&](const StreamResult& so_far) {
        if (so_far.tokens.size() == 3) ctx.TryCancel();
      },
      &ctx);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::CANCELLED) << describe(r.status);
  EXPECT_GE(r.tokens.size(), 3u);
  EXPECT_LT(r.tokens.size(), 1500u);

  v1::Stats after;
  const bool freed = wait_until(
      [&] {
        after = get_stats(stub());
        return drained(after) && after.requests_cancelled() >= before.requests_cancelled() + 1;
      },
      std::chrono::seconds(5));
  EXPECT_TRUE(freed) << "after 5 s: running " << after.running_requests() << ", waiting "
                     << after.waiting_requests() << ", pages_kv " << after.pool().pages_kv()
                     << ", cancelled " << after.requests_cancelled() << " (was "
                     << before.requests_cancelled() << ")";
  EXPECT_EQ(after.requests_cancelled(), before.requests_cancelled() + 1);
  EXPECT_EQ(after.requests_completed(), before.requests_completed());
  // The server stopped generating for it soon after the cancel.
  EXPECT_LT(after.tokens_generated() - before.tokens_generated(), 1000u);
  EXPECT_EQ(after.pool().pages_free(), after.pool().pages_total() - after.pool().pages_adapter());
}

TEST_F(Lifecycle, BurstOfFortyMixedRequestsLeavesNothingBehind) {
  for (int a = 0; a < 8; ++a) {
    ASSERT_TRUE(
        load_adapter(stub(), "burst-" + std::to_string(a), SynthData::adapter_name(a)).ok());
  }
  const v1::Stats before = get_stats(stub());
  constexpr int kRequests = 40;
  struct Case {
    int adapter = -1;
    std::vector<uint32_t> prompt;
    int max_new = 0;
    enum Kind { kNormal, kCancel, kInvalid } kind = kNormal;
  };
  std::vector<Case> cases(kRequests);
  std::vector<OfflineJob> jobs;
  for (int i = 0; i < kRequests; ++i) {
    Case& c = cases[i];
    c.adapter = i % 5 == 4 ? -1 : i % 8;
    c.prompt = make_prompt(900 + i, 2 + (i * 13) % 60);
    c.max_new = 3 + (i * 17) % 40;
    c.kind = i % 10 == 3 ? Case::kCancel : i % 10 == 8 ? Case::kInvalid : Case::kNormal;
    if (c.kind == Case::kCancel) c.max_new = 1500;
    if (c.kind == Case::kInvalid) c.prompt.push_back(kVocab + 5);
    if (c.kind == Case::kNormal) jobs.push_back(offline_job(c.adapter, c.prompt, c.max_new));
  }
  const std::vector<OfflineResult> want = run_offline_many(jobs);

  std::vector<StreamResult> got(kRequests);
  std::vector<std::thread> threads;
  for (int i = 0; i < kRequests; ++i) {
    threads.emplace_back([&, i] {
      auto s = server()->stub();
      const Case& c = cases[i];
      const auto req = make_request(c.adapter < 0 ? "" : "burst-" + std::to_string(c.adapter),
                                    c.prompt, c.max_new);
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
      got[i] = run_generate(
          s.get(), req,
          [&](const StreamResult& r) {
            if (c.kind == Case::kCancel && r.tokens.size() == 2) ctx.TryCancel();
          },
          &ctx);
    });
  }
  for (auto& t : threads) t.join();
  size_t k = 0;
  int normal = 0, cancelled = 0;
  for (int i = 0; i < kRequests; ++i) {
    const Case& c = cases[i];
    switch (c.kind) {
      case Case::kNormal:
        EXPECT_TRUE(matches_offline(got[i], want[k++], c.prompt.size())) << "request " << i;
        ++normal;
        break;
      case Case::kCancel:
        EXPECT_EQ(got[i].status.error_code(), grpc::StatusCode::CANCELLED)
            << "request " << i << ": " << describe(got[i].status);
        ++cancelled;
        break;
      case Case::kInvalid:
        EXPECT_EQ(got[i].status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
            << "request " << i << ": " << describe(got[i].status);
        break;
    }
  }
  v1::Stats after;
  const bool ok = wait_until(
      [&] {
        after = get_stats(stub());
        return drained(after) &&
               after.requests_cancelled() >= before.requests_cancelled() + cancelled;
      },
      std::chrono::seconds(5));
  EXPECT_TRUE(ok) << "not drained: waiting " << after.waiting_requests() << ", running "
                  << after.running_requests() << ", pages_kv " << after.pool().pages_kv();
  EXPECT_EQ(after.waiting_requests(), 0u);
  EXPECT_EQ(after.running_requests(), 0u);
  EXPECT_EQ(after.pool().pages_kv(), 0u);
  EXPECT_EQ(after.pool().pages_free(), after.pool().pages_total() - after.pool().pages_adapter());
  EXPECT_EQ(after.requests_completed(), before.requests_completed() + normal);
  EXPECT_EQ(after.requests_cancelled(), before.requests_cancelled() + cancelled);
  EXPECT_EQ(after.requests_failed(), before.requests_failed());
  for (const v1::AdapterInfo& a : list_adapters(stub())) {
    EXPECT_EQ(a.in_flight(), 0u) << a.adapter_id();
  }
}

TEST_F(Lifecycle, HealthCheckReportsServing) {
  auto health = grpc::health::v1::Health::NewStub(server()->channel());
  // "" is the whole server; the service name is what per-service probes ask.
  for (const std::string service : {"", "loraserve.v1.LoraServe"}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    const grpc::Status s = health->Check(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << "service '" << service << "': " << describe(s);
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service("no.such.Service");
  grpc::health::v1::HealthCheckResponse resp;
  EXPECT_EQ(health->Check(&ctx, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST(LifecycleOwnServer, FullQueueIsResourceExhausted) {
  ASSERT_TRUE(synth_data().error.empty()) << synth_data().error;
  ServerOptions o = default_server_options(64);
  o.extra_args.insert(o.extra_args.end(), {"--max-running", "1", "--max-queue", "1"});
  // The check needs the long request still running while the third is
  // sent (about a second of tiny-model decoding); on a starved machine it
  // may end first, which proves nothing either way: then try again.
  for (int attempt = 1;; ++attempt) {
    auto server = own_server(o);
    ASSERT_NE(server, nullptr);
    auto stub = server->stub();

    grpc::ClientContext long_ctx;
    long_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    std::atomic<int> long_tokens{0};
    StreamResult long_result;
    std::thread long_thread([&] {
      auto s = server->stub();
      long_result = run_generate(
          s.get(), make_request("", make_prompt(1000, 4), 2000),
          [&](const StreamResult& r) { long_tokens = static_cast<int>(r.tokens.size()); },
          &long_ctx);
    });
    ASSERT_TRUE(wait_until([&] { return long_tokens.load() >= 1; }, std::chrono::seconds(20)));

    const std::vector<uint32_t> waiting_prompt = make_prompt(1001, 5);
    StreamResult waiting_result;
    std::thread waiting_thread([&] {
      auto s = server->stub();
      waiting_result = run_generate(s.get(), make_request("", waiting_prompt, 6));
    });
    const bool queued = wait_until([&] { return get_stats(stub.get()).waiting_requests() == 1; },
                                   std::chrono::seconds(10));
    const StreamResult third =
        queued ? run_generate(stub.get(), make_request("", make_prompt(1002, 5), 6))
               : StreamResult{};
    const bool long_still_running = long_tokens.load() < 2000;
    long_ctx.TryCancel();
    long_thread.join();
    waiting_thread.join();
    if ((!queued || !long_still_running) && attempt < 3) continue;

    EXPECT_TRUE(queued) << "the second request never showed as waiting";
    EXPECT_TRUE(long_still_running) << "the running request ended: the queue was not full";
    EXPECT_TRUE(has_code(third.status, grpc::StatusCode::RESOURCE_EXHAUSTED, "queue"))
        << describe(third.status);
    EXPECT_EQ(third.messages, 0);
    EXPECT_EQ(long_result.status.error_code(), grpc::StatusCode::CANCELLED)
        << describe(long_result.status);
    EXPECT_TRUE(matches_offline(waiting_result, run_offline(offline_job(-1, waiting_prompt, 6)),
                                waiting_prompt.size()));
    break;
  }
}

TEST(LifecycleOwnServer, RestartMapsThePackedWeightsTheFirstStartWrote) {
  ASSERT_TRUE(synth_data().error.empty()) << synth_data().error;
  char tmpl[] = "/tmp/loraserve-weights-cache-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string cache = std::string(tmpl) + "/cache";
  ServerOptions o = default_server_options(64);
  o.extra_args = {"--log-level", "info", "--cpu-weights-cache", cache};
  const std::vector<uint32_t> prompt = make_prompt(1100, 7);
  const OfflineResult want = run_offline(offline_job(-1, prompt, 8));
  ASSERT_TRUE(want.ok) << want.error;
  // The first start packs, listens and writes the entry in the background;
  // once its log says the entry is written it is killed (SIGKILL), and the
  // second start maps every matrix.
  const char* expect_log[] = {", 0 mapped from the cache", " mapped from the cache in " };
  for (int start = 0; start < 2; ++start) {
    SCOPED_TRACE(start == 0 ? "first start" : "restart");
    auto server = own_server(o);
    ASSERT_NE(server, nullptr);
    const std::string log = server->log();
    if (log.find("mapped weights") != std::string::npos) {
      std::filesystem::remove_all(tmpl);
      GTEST_SKIP() << "no AVX512-BF16: weights are read in place, nothing is packed";
    }
    EXPECT_NE(log.find(expect_log[start]), std::string::npos) << log;
    if (start == 1) {
      EXPECT_NE(log.find(", 0 packed)"), std::string::npos) << log;
    }
    auto stub = server->stub();
    EXPECT_TRUE(matches_offline(run_generate(stub.get(), make_request("", prompt, 8)), want,
                                prompt.size()));
    if (start == 0) {
      EXPECT_TRUE(wait_until(
          [&] { return server->log().find("packed weights to " + cache) != std::string::npos; },
          std::chrono::seconds(60)))
          << server->log();
    }
  }
  std::filesystem::remove_all(tmpl);
}

TEST(LifecycleOwnServer, SmallPoolEvictsAndPreemptsButOutputsStayExact) {
  ASSERT_TRUE(synth_data().error.empty()) << synth_data().error;
  // Tiny model: a page is 16 KiB; 16 tokens of KV take 4 pages (one per
  // layer); a rank-64 image takes 112 pages. 4 MiB = 256 pages: one rank-64
  // adapter plus a handful of ~100-token sequences, far less than the 16
  // adapters' 840 pages.
  ServerOptions o = default_server_options(4);
  auto server = own_server(o);
  ASSERT_NE(server, nullptr);
  auto stub = server->stub();
  uint64_t adapter_bytes = 0;
  for (int a = 0; a < kNumAdapters; ++a) {
    v1::AdapterInfo info;
    const grpc::Status s =
        load_adapter(stub.get(), "small-" + std::to_string(a), SynthData::adapter_name(a), &info);
    ASSERT_TRUE(s.ok()) << describe(s);
    adapter_bytes += info.bytes();
  }
  const v1::Stats start = get_stats(stub.get());
  const uint64_t page = start.pool().page_bytes();
  ASSERT_GT(page, 0u);
  std::printf("small pool: %u pages of %lu bytes; 16 adapters need %lu pages\n",
              start.pool().pages_total(), static_cast<unsigned long>(page),
              static_cast<unsigned long>(adapter_bytes / page));
  ASSERT_GT(adapter_bytes, start.pool().pages_total() * page)
      << "the pool holds every adapter: this test would not force eviction";

  std::vector<OfflineJob> jobs;
  for (int a = 0; a < kNumAdapters; ++a)
    jobs.push_back(offline_job(a, make_prompt(1100 + a, 20), 80));
  const std::vector<OfflineResult> want = run_offline_many(jobs);
  std::vector<StreamResult> got(jobs.size());
  std::vector<std::thread> threads;
  for (int a = 0; a < kNumAdapters; ++a) {
    threads.emplace_back([&, a] {
      auto s = server->stub();
      got[a] =
          run_generate(s.get(), make_request("small-" + std::to_string(a), jobs[a].prompt, 80));
    });
  }
  for (auto& t : threads) t.join();
  for (int a = 0; a < kNumAdapters; ++a) {
    EXPECT_TRUE(matches_offline(got[a], want[a], jobs[a].prompt.size())) << "adapter " << a;
  }
  v1::Stats end;
  EXPECT_TRUE(wait_until(
      [&] {
        end = get_stats(stub.get());
        return drained(end);
      },
      std::chrono::seconds(5)));
  std::printf(
      "small pool: steps %lu, evictions %lu, swap_ins %lu, preemptions "
      "%lu, bytes_copied %lu\n",
      static_cast<unsigned long>(end.steps()), static_cast<unsigned long>(end.pool().evictions()),
      static_cast<unsigned long>(end.pool().swap_ins()),
      static_cast<unsigned long>(end.preemptions()),
      static_cast<unsigned long>(end.pool().bytes_copied()));
  EXPECT_GT(end.pool().evictions(), 0u);
  EXPECT_GE(end.pool().swap_ins(), static_cast<uint64_t>(kNumAdapters));
  EXPECT_EQ(end.requests_failed(), 0u);
  EXPECT_EQ(end.pool().pages_free(), end.pool().pages_total() - end.pool().pages_adapter());
  EXPECT_TRUE(server->running()) << server->log();
}

TEST(LifecycleOwnServer, SigtermExitsZeroWithinGraceAndStreamsEndCleanly) {
  ASSERT_TRUE(synth_data().error.empty()) << synth_data().error;
  ServerOptions o = default_server_options(64);
  o.extra_args.insert(o.extra_args.end(), {"--shutdown-grace-s", "1"});
  auto server = own_server(o);
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(load_adapter(server->stub().get(), "term-a2", SynthData::adapter_name(2)).ok());

  // One stream that can finish inside the grace period, one that cannot.
  const std::vector<uint32_t> short_prompt = make_prompt(1200, 6),
                              long_prompt = make_prompt(1201, 4);
  const int short_n = 40, long_n = 2000;
  const std::vector<OfflineResult> want = run_offline_many(
      {offline_job(2, short_prompt, short_n), offline_job(-1, long_prompt, long_n)});
  BackgroundStream long_stream(server.get(), make_request("", long_prompt, long_n));
  ASSERT_TRUE(wait_until([&] { return long_stream.tokens_seen() >= 3; }, std::chrono::seconds(20)));
  BackgroundStream short_stream(server.get(), make_request("term-a2", short_prompt, short_n));
  ASSERT_TRUE(wait_until([&] { return short_stream.tokens_seen() >= 1 || short_stream.ended(); },
                         std::chrono::seconds(20)));

  const auto t0 = std::chrono::steady_clock::now();
  int status = 0;  // terminate() sends SIGTERM and waits
  const bool exited = server->terminate(std::chrono::milliseconds(1000 + 5000), &status);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(exited) << "the server did not exit within the grace period + 5 s; log:\n"
                      << server->log();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "wait status " << status << "; log:\n"
      << server->log();
  std::printf("SIGTERM: server exited after %.2f s\n", secs);

  // Each stream either completed exactly, or ended early with a clean status
  // and a correct prefix of its tokens.
  auto clean = [](const StreamResult& r, const OfflineResult& w, size_t plen, const char* name) {
    if (r.status.ok() && r.got_final && r.final_msg.finish_reason() == v1::FINISH_REASON_LENGTH) {
      EXPECT_TRUE(matches_offline(r, w, plen)) << name;
      std::printf("SIGTERM: %s stream completed (%zu tokens)\n", name, r.tokens.size());
      return;
    }
    const grpc::StatusCode c = r.status.error_code();
    const bool cancelled_final =
        r.status.ok() && r.got_final && r.final_msg.finish_reason() == v1::FINISH_REASON_CANCELLED;
    EXPECT_TRUE(cancelled_final || c == grpc::StatusCode::CANCELLED ||
                c == grpc::StatusCode::UNAVAILABLE || c == grpc::StatusCode::ABORTED)
        << name << ": " << describe(r.status);
    EXPECT_EQ(r.protocol_error, "") << name;
    ASSERT_LE(r.tokens.size(), w.tokens.size()) << name;
    EXPECT_TRUE(std::equal(r.tokens.begin(), r.tokens.end(), w.tokens.begin())) << name;
    std::printf("SIGTERM: %s stream ended early with %s after %zu tokens\n", name,
                describe(r.status).c_str(), r.tokens.size());
  };
  clean(short_stream.result(), want[0], short_prompt.size(), "short");
  clean(long_stream.result(), want[1], long_prompt.size(), "long");
  EXPECT_EQ(short_stream.result().status.error_code(), grpc::StatusCode::OK)
      << "a 40-token stream should finish within a 1 s grace period";
}

}  // namespace
}  // namespace loraserve::e2e
