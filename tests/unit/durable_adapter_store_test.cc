// DurableAdapterStore: what was put is read back byte-exact with verified
// digests, replaces are versioned, two store objects on one directory (two
// replicas) see each other's writes, a kill -9 at any moment of a put never
// leaves a record whose files are incomplete, and a write that fails (file
// size limit standing in for a full disk) changes nothing.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <thread>

#include "common/sha256.h"
#include "memory/durable_adapter_store.h"
#include "tests/support/test_util.h"

namespace loraserve {
namespace {

using testing_util::TempDir;
namespace fs = std::filesystem;

StoredAdapter meta(const std::string& id) {
  StoredAdapter m;
  m.id = id;
  m.public_id = id;
  m.owner = "acme";
  m.rank = 8;
  m.target_modules = {"q_proj", "v_proj"};
  m.source = "upload";
  return m;
}

std::map<std::string, std::string> files(const std::string& tag, size_t bytes = 1000) {
  std::string weights(bytes, '\0');
  for (size_t i = 0; i < bytes; ++i) weights[i] = static_cast<char>((i * 131 + tag.size()) & 0xff);
  return {{"adapter_config.json", "{\"r\": 8, \"tag\": \"" + tag + "\"}"},
          {"adapter_model.safetensors", weights}};
}

TEST(DurableAdapterStore, PutGetListVerifyRoundTrip) {
  TempDir dir;
  auto store = DurableAdapterStore::open(dir.path() + "/store");
  ASSERT_TRUE(store.ok()) << store.status();
  auto put = (*store)->put(meta("acme:bot/v1"), files("a"), /*replace=*/false);
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(put->version, 1u);
  EXPECT_EQ(put->files.at("adapter_model.safetensors").sha256,
            sha256_hex(files("a").at("adapter_model.safetensors")));
  EXPECT_GT(put->created_unix_ms, 0);

  auto got = (*store)->get("acme:bot/v1");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->owner, "acme");
  EXPECT_EQ(got->target_modules, (std::vector<std::string>{"q_proj", "v_proj"}));
  auto dirpath = (*store)->verified_dir(*got);
  ASSERT_TRUE(dirpath.ok()) << dirpath.status();
  for (const auto& [name, bytes] : files("a")) {
    EXPECT_EQ(testing_util::read_file(*dirpath + "/" + name), bytes) << name;
  }
  ASSERT_EQ((*store)->list().size(), 1u);
  EXPECT_EQ((*store)->get("other").status().code(), StatusCode::kNotFound);
}

TEST(DurableAdapterStore, ExistingIdNeedsReplaceWhichBumpsTheVersion) {
  TempDir dir;
  auto store = DurableAdapterStore::open(dir.path());
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->put(meta("bot"), files("a"), false).ok());
  auto again = (*store)->put(meta("bot"), files("b"), false);
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists);
  auto v1 = (*store)->get("bot");
  ASSERT_TRUE(v1.ok());
  auto v2 = (*store)->put(meta("bot"), files("b"), true);
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_EQ(v2->version, 2u);
  // The previous version's files stay readable for requests still on it.
  EXPECT_TRUE((*store)->verified_dir(*v1).ok());
  auto cur = (*store)->get("bot");
  ASSERT_TRUE(cur.ok());
  auto d = (*store)->verified_dir(*cur);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(testing_util::read_file(*d + "/adapter_config.json"), files("b").at("adapter_config.json"));
  ASSERT_TRUE((*store)->put(meta("bot"), files("c"), true).ok());
  EXPECT_EQ((*store)->verified_dir(*v1).status().code(), StatusCode::kNotFound);  // v1 retired
}

TEST(DurableAdapterStore, CorruptFileIsDataLoss) {
  TempDir dir;
  auto store = DurableAdapterStore::open(dir.path());
  ASSERT_TRUE(store.ok());
  auto put = (*store)->put(meta("bot"), files("a"), false);
  ASSERT_TRUE(put.ok());
  auto d = (*store)->verified_dir(*put);
  ASSERT_TRUE(d.ok());
  std::string bytes = testing_util::read_file(*d + "/adapter_model.safetensors");
  bytes[bytes.size() / 2] ^= 1;  // one flipped bit
  fs::permissions(*d + "/adapter_model.safetensors", fs::perms::owner_write, fs::perm_options::add);
  testing_util::write_file(*d + "/adapter_model.safetensors", bytes);
  auto bad = (*store)->verified_dir(*put);
  EXPECT_EQ(bad.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(bad.status().message().find("sha256"), std::string::npos);
}

TEST(DurableAdapterStore, TwoReplicasShareOneDirectory) {
  TempDir dir;
  auto a = DurableAdapterStore::open(dir.path());
  auto b = DurableAdapterStore::open(dir.path());
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE((*a)->put(meta("x"), files("a"), false).ok());
  EXPECT_TRUE((*b)->get("x").ok());
  EXPECT_EQ((*b)->put(meta("x"), files("b"), false).status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ((*b)->remove("x", /*version=*/7).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE((*b)->remove("x", 1).ok());
  EXPECT_EQ((*a)->get("x").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE((*a)->list().empty());
  EXPECT_EQ((*a)->remove("x").code(), StatusCode::kNotFound);
}

// Concurrent creators of one id across processes: exactly one wins.
TEST(DurableAdapterStore, ConcurrentCreatesOfOneIdHaveOneWinner) {
  TempDir dir;
  ASSERT_TRUE(DurableAdapterStore::open(dir.path()).ok());
  constexpr int kProcs = 6;
  std::vector<pid_t> pids;
  for (int i = 0; i < kProcs; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto s = DurableAdapterStore::open(dir.path());
      if (!s.ok()) _exit(3);
      auto r = (*s)->put(meta("race"), files("p" + std::to_string(i), 200000), false);
      _exit(r.ok() ? 0 : r.status().code() == StatusCode::kAlreadyExists ? 1 : 2);
    }
    pids.push_back(pid);
  }
  int winners = 0, losers = 0;
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    winners += WEXITSTATUS(status) == 0;
    losers += WEXITSTATUS(status) == 1;
  }
  EXPECT_EQ(winners, 1);
  EXPECT_EQ(losers, kProcs - 1);
}

// kill -9 at random moments of a stream of puts: afterwards every record
// the store lists verifies, and a fresh open cleans what the kills left.
TEST(DurableAdapterStore, KillNineNeverLeavesAHalfAdapter) {
  TempDir dir;
  std::mt19937 rng(5);
  for (int round = 0; round < 12; ++round) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto s = DurableAdapterStore::open(dir.path());
      if (!s.ok()) _exit(3);
      for (int i = 0;; ++i) {
        const std::string id = "r" + std::to_string(round) + "-" + std::to_string(i % 5);
        (void)(*s)->put(meta(id), files(id + std::to_string(i), 1 << 20), /*replace=*/true);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng() % 60));
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    auto s = DurableAdapterStore::open(dir.path(), /*stale_after_s=*/0);
    ASSERT_TRUE(s.ok());
    std::vector<std::string> problems;
    for (const StoredAdapter& rec : (*s)->list(&problems)) {
      auto d = (*s)->verified_dir(rec);
      EXPECT_TRUE(d.ok()) << rec.id << " v" << rec.version << ": " << d.status();
    }
    EXPECT_TRUE(problems.empty()) << problems.front();
    EXPECT_TRUE(fs::is_empty(dir.path() + "/tmp")) << "staging left after a clean open";
  }
}

// A write that fails part-way (the file size limit stands in for a full
// disk: same code path, EFBIG instead of ENOSPC) is RESOURCE_EXHAUSTED and
// leaves the stored adapter as it was.
TEST(DurableAdapterStore, FailedWriteChangesNothing) {
  TempDir dir;
  {
    auto s = DurableAdapterStore::open(dir.path());
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE((*s)->put(meta("keep"), files("old", 1000), false).ok());
  }
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim {64 * 1024, 64 * 1024};
    setrlimit(RLIMIT_FSIZE, &lim);
    auto s = DurableAdapterStore::open(dir.path());
    if (!s.ok()) _exit(3);
    auto r = (*s)->put(meta("keep"), files("new", 1 << 20), /*replace=*/true);
    auto n = (*s)->put(meta("fresh"), files("new", 1 << 20), false);
    _exit(r.status().code() == StatusCode::kResourceExhausted &&
                  n.status().code() == StatusCode::kResourceExhausted
              ? 0
              : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the over-limit puts did not fail as RESOURCE_EXHAUSTED";
  auto s = DurableAdapterStore::open(dir.path());
  ASSERT_TRUE(s.ok());
  auto keep = (*s)->get("keep");
  ASSERT_TRUE(keep.ok());
  EXPECT_EQ(keep->version, 1u);
  ASSERT_TRUE((*s)->verified_dir(*keep).ok());
  EXPECT_EQ((*s)->get("fresh").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(fs::is_empty(dir.path() + "/tmp"));
}

TEST(DurableAdapterStore, RecordJsonRejectsGarbage) {
  EXPECT_EQ(stored_adapter_from_json("{").status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(stored_adapter_from_json(R"({"id": "x", "version": 1, "files": {"../../etc/passwd": {"sha256": "", "bytes": 1}}})")
                .status().code(),
            StatusCode::kDataLoss);
  auto ok = stored_adapter_from_json(stored_adapter_to_json([] {
    StoredAdapter a = meta("a:b/c");
    a.version = 3;
    a.files["adapter_config.json"] = {"ab", 2};
    return a;
  }()));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->id, "a:b/c");
  EXPECT_EQ(ok->version, 3u);
}

}  // namespace
}  // namespace loraserve
