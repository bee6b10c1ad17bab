// The durable adapter store over the real server: what the API accepted
// survives a restart and a kill -9 (also in the middle of an upload), two
// servers on one --adapter-store serve each other's uploads and see each
// other's unloads, and a replace lets requests already running finish on
// the old weights. Outputs are compared with `loraserve generate` on the
// adapter's own directory, so a wrong or shifted adapter cannot pass.
#include <signal.h>

#include <filesystem>
#include <random>
#include <thread>

#include "tests/e2e/e2e_util.h"

namespace loraserve::e2e {
namespace {

namespace fs = std::filesystem;

struct AdapterFiles {
  std::string config, tensors;
};

AdapterFiles files_of(int i) {
  const SynthData& d = synth_data();
  return {read_file(d.adapter_dir(i) + "/adapter_config.json"),
          read_file(d.adapter_dir(i) + "/adapter_model.safetensors")};
}

class AdapterStore : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(synth_data().error.empty()) << synth_data().error;
    store_ = (fs::temp_directory_path() /
              ("loraserve-store-" + std::to_string(getpid()) + "-" +
               testing::UnitTest::GetInstance()->current_test_info()->name()))
                 .string();
    fs::remove_all(store_);
  }
  void TearDown() override { fs::remove_all(store_); }

  std::unique_ptr<ServerProcess> start(double poll_s = 0.2) {
    ServerOptions o = default_server_options(64);
    o.extra_args.insert(o.extra_args.end(), {"--adapter-store", store_, "--adapter-store-poll-s",
                                             std::to_string(poll_s)});
    std::string error;
    auto s = ServerProcess::start(o, &error);
    EXPECT_NE(s, nullptr) << error;
    return s;
  }

  std::string store_;
};

TEST_F(AdapterStore, UploadsAndLoadsSurviveARestartAndAKillNine) {
  const std::vector<uint32_t> prompt = make_prompt(4100, 9);
  const OfflineResult want3 = run_offline(offline_job(3, prompt, 12));
  const OfflineResult want5 = run_offline(offline_job(5, prompt, 12));
  ASSERT_TRUE(want3.ok && want5.ok) << want3.error << want5.error;
  {
    auto a = start();
    ASSERT_NE(a, nullptr);
    auto stub = a->stub();
    const AdapterFiles f3 = files_of(3);
    v1::AdapterInfo info;
    ASSERT_TRUE(upload_adapter(stub.get(), "up3", f3.config, f3.tensors, 1 << 16, &info).ok());
    EXPECT_TRUE(info.stored());
    EXPECT_EQ(info.version(), 1u);
    ASSERT_TRUE(load_adapter(stub.get(), "p5", SynthData::adapter_name(5)).ok());
    EXPECT_TRUE(matches_offline(run_generate(stub.get(), make_request("up3", prompt, 12)), want3,
                                prompt.size()));
    // The destructor SIGKILLs: no shutdown path runs.
  }
  for (int restart = 0; restart < 2; ++restart) {
    auto b = start();
    ASSERT_NE(b, nullptr);
    auto stub = b->stub();
    const auto list = list_adapters(stub.get());
    for (const char* id : {"up3", "p5"}) {
      const v1::AdapterInfo* e = find_adapter(list, id);
      ASSERT_NE(e, nullptr) << id << " is missing after restart " << restart;
      EXPECT_TRUE(e->stored());
      EXPECT_FALSE(e->loaded()) << "stored adapters load on first use";
    }
    EXPECT_TRUE(matches_offline(run_generate(stub.get(), make_request("up3", prompt, 12)), want3,
                                prompt.size()));
    EXPECT_TRUE(matches_offline(run_generate(stub.get(), make_request("p5", prompt, 12)), want5,
                                prompt.size()));
    EXPECT_TRUE(find_adapter(list_adapters(stub.get()), "up3")->loaded());
    if (restart == 0) {
      int st = 0;
      EXPECT_TRUE(b->terminate(std::chrono::seconds(20), &st));  // a clean stop this time
    }
  }
}

TEST_F(AdapterStore, UnloadIsForgottenAcrossRestartsAndAStoredIdCannotBeTakenTwice) {
  auto a = start();
  ASSERT_NE(a, nullptr);
  auto stub = a->stub();
  const AdapterFiles f3 = files_of(3);
  ASSERT_TRUE(upload_adapter(stub.get(), "x", f3.config, f3.tensors, 1 << 16).ok());
  EXPECT_TRUE(has_code(upload_adapter(stub.get(), "x", f3.config, f3.tensors, 1 << 16),
                       grpc::StatusCode::ALREADY_EXISTS, "replace"));
  EXPECT_TRUE(has_code(load_adapter(stub.get(), "x", SynthData::adapter_name(3)),
                       grpc::StatusCode::ALREADY_EXISTS, "already"));
  ASSERT_TRUE(unload_adapter(stub.get(), "x").ok());
  a.reset();
  auto b = start();
  ASSERT_NE(b, nullptr);
  auto stub_b = b->stub();
  EXPECT_EQ(find_adapter(list_adapters(stub_b.get()), "x"), nullptr);
  EXPECT_TRUE(has_code(run_generate(stub_b.get(), make_request("x", make_prompt(1, 4), 2)).status,
                       grpc::StatusCode::NOT_FOUND, "x"));
  EXPECT_TRUE(has_code(unload_adapter(stub_b.get(), "x"), grpc::StatusCode::NOT_FOUND, "x"));
}

// A kill -9 at random moments of a slow, chunked upload: after a restart the
// adapter is either served exactly or absent, never half there.
TEST_F(AdapterStore, KillNineDuringUploadsNeverLeavesAHalfAdapter) {
  const std::vector<uint32_t> prompt = make_prompt(4200, 6);
  const OfflineResult want = run_offline(offline_job(7, prompt, 8));
  ASSERT_TRUE(want.ok) << want.error;
  const AdapterFiles f7 = files_of(7);
  // How long one whole upload takes here, so the kills spread over it.
  int64_t upload_ms = 0;
  {
    auto a = start();
    ASSERT_NE(a, nullptr);
    auto stub = a->stub();
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(upload_adapter(stub.get(), "timed", f7.config, f7.tensors,
                               f7.tensors.size() / 64 + 1)
                    .ok());
    upload_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now() - t0)
                    .count();
  }
  std::mt19937 rng(11);
  int present = 0, absent = 0;
  for (int round = 0; round < 6; ++round) {
    const std::string id = "k" + std::to_string(round);
    {
      auto a = start();
      ASSERT_NE(a, nullptr);
      std::thread uploader([&] {
        auto stub = a->stub();
        (void)upload_adapter(stub.get(), id, f7.config, f7.tensors, f7.tensors.size() / 64 + 1);
      });
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % (upload_ms * 3 / 2 + 1)));
      ::kill(a->pid(), SIGKILL);
      uploader.join();
    }
    auto b = start();
    ASSERT_NE(b, nullptr);
    auto stub = b->stub();
    const StreamResult r = run_generate(stub.get(), make_request(id, prompt, 8));
    if (r.status.ok()) {
      ++present;
      EXPECT_TRUE(matches_offline(r, want, prompt.size())) << "round " << round;
    } else {
      ++absent;
      EXPECT_TRUE(has_code(r.status, grpc::StatusCode::NOT_FOUND, id)) << "round " << round;
      EXPECT_EQ(find_adapter(list_adapters(stub.get()), id), nullptr);
    }
  }
  std::printf("kill -9 during uploads of %lld ms: %d stored whole, %d absent, 0 half\n",
              static_cast<long long>(upload_ms), present, absent);
}

TEST_F(AdapterStore, TwoServersOnOneStoreServeEachOthersUploadsAndSeeUnloads) {
  const std::vector<uint32_t> prompt = make_prompt(4300, 7);
  const OfflineResult want3 = run_offline(offline_job(3, prompt, 10));
  ASSERT_TRUE(want3.ok) << want3.error;
  auto a = start();
  auto b = start();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  auto sa = a->stub();
  auto sb = b->stub();
  const AdapterFiles f3 = files_of(3);
  ASSERT_TRUE(upload_adapter(sa.get(), "shared", f3.config, f3.tensors, 1 << 16).ok());
  // B never saw the upload: it finds the adapter in the store on first use.
  EXPECT_TRUE(matches_offline(run_generate(sb.get(), make_request("shared", prompt, 10)), want3,
                              prompt.size()));
  EXPECT_TRUE(has_code(upload_adapter(sb.get(), "shared", f3.config, f3.tensors, 1 << 16),
                       grpc::StatusCode::ALREADY_EXISTS, "shared"));
  ASSERT_TRUE(unload_adapter(sa.get(), "shared").ok());
  EXPECT_TRUE(wait_until(
      [&] {
        return run_generate(sb.get(), make_request("shared", prompt, 2)).status.error_code() ==
               grpc::StatusCode::NOT_FOUND;
      },
      std::chrono::seconds(10)))
      << "B still serves an adapter A unloaded";
  EXPECT_EQ(find_adapter(list_adapters(sb.get()), "shared"), nullptr);
}

// Replace through A while a long request runs on A: that request finishes
// on the old weights; new requests on A and on B get the new ones.
TEST_F(AdapterStore, ReplaceKeepsRunningRequestsOnTheOldVersionEverywhere) {
  const std::vector<uint32_t> prompt = make_prompt(4400, 5);
  const OfflineResult old_long = run_offline(offline_job(3, prompt, 600));
  const OfflineResult new_short = run_offline(offline_job(9, prompt, 10));
  const OfflineResult old_short = run_offline(offline_job(3, prompt, 10));
  ASSERT_TRUE(old_long.ok && new_short.ok && old_short.ok);
  auto a = start();
  auto b = start();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  auto sa = a->stub();
  auto sb = b->stub();
  const AdapterFiles f3 = files_of(3), f9 = files_of(9);
  ASSERT_TRUE(upload_adapter(sa.get(), "v", f3.config, f3.tensors, 1 << 16).ok());
  EXPECT_TRUE(matches_offline(run_generate(sb.get(), make_request("v", prompt, 10)), old_short,
                              prompt.size()));

  BackgroundStream running(a.get(), make_request("v", prompt, 600));
  ASSERT_TRUE(wait_until([&] { return running.tokens_seen() >= 2; }, std::chrono::seconds(30)));
  v1::AdapterInfo info;
  const grpc::Status rep =
      upload_adapter(sa.get(), "v", f9.config, f9.tensors, 1 << 16, &info, /*replace=*/true);
  ASSERT_TRUE(rep.ok()) << describe(rep);
  EXPECT_EQ(info.version(), 2u);
  EXPECT_FALSE(running.ended()) << "the long request ended before the replace; make it longer";
  EXPECT_TRUE(matches_offline(run_generate(sa.get(), make_request("v", prompt, 10)), new_short,
                              prompt.size()));
  EXPECT_TRUE(matches_offline(running.result(), old_long, prompt.size()))
      << "the request running during the replace changed weights";
  EXPECT_TRUE(wait_until(
      [&] {
        const StreamResult r = run_generate(sb.get(), make_request("v", prompt, 10));
        return r.status.ok() && r.tokens == new_short.tokens;
      },
      std::chrono::seconds(10)))
      << "B kept serving the replaced version";
  // The old weights are unloaded once their request ended.
  EXPECT_TRUE(wait_until(
      [&] {
        const v1::Stats s = get_stats(sa.get());
        return s.running_requests() == 0;
      },
      std::chrono::seconds(10)));
  const auto list = list_adapters(sa.get());
  ASSERT_NE(find_adapter(list, "v"), nullptr);
  EXPECT_EQ(find_adapter(list, "v")->version(), 2u);
}

}  // namespace
}  // namespace loraserve::e2e
