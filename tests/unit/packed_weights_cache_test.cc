// PackedWeightsCache on its own: what a later start may map, and every way
// an entry can be wrong (another version of the checkpoint, another layout,
// a flipped byte, a truncated file, a killed writer) ending as a miss or a
// removed file, never as bytes served. The cpu-bf16 backend's use of it is
// in cpu_bf16_backend_test (PackedWeightsCache*).
#include "engine/packed_weights_cache.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/support/test_util.h"

namespace loraserve {
namespace {

namespace fs = std::filesystem;
using testing_util::TempDir;

constexpr const char* kLayout = "test-layout-v1";

// A checkpoint with two matrices and a vector (never cached: not 2-D).
void write_checkpoint(const std::string& path, char fill) {
  std::vector<TensorToWrite> ts;
  ts.push_back({"a", DType::kBF16, {4, 6}, std::string(4 * 6 * 2, fill)});
  ts.push_back({"b", DType::kBF16, {3, 2}, std::string(3 * 2 * 2, fill)});
  ts.push_back({"norm", DType::kF32, {4}, std::string(16, fill)});
  ASSERT_TRUE(write_safetensors(path, ts).ok());
}

// What a backend would pack for `t`: bytes that depend on its name, longer
// than the tensor (as panels are, with padding).
std::string packed_of(const TensorInfo& t) {
  std::string out(t.nbytes + 100, '\0');
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>(t.name[0] + i * 7);
  return out;
}

class PackedWeightsCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ckpt_ = dir_.path() + "/model.safetensors";
    cache_dir_ = dir_.path() + "/cache/nested";  // parents are created
    write_checkpoint(ckpt_, 'x');
  }

  // One start: opens the checkpoint and the cache, finds or adds every
  // matrix, writes. Returns how many matrices were found.
  int64_t start(const std::string& layout = kLayout) {
    auto file = SafetensorsFile::open(ckpt_);
    EXPECT_TRUE(file.ok()) << file.status();
    auto cache = PackedWeightsCache::open(cache_dir_, layout);
    EXPECT_TRUE(cache.ok()) << cache.status();
    if (!file.ok() || !cache.ok()) return -1;
    std::vector<std::string> keep;
    keep.reserve(3);
    for (const auto& [name, t] : (*file)->tensors()) {
      const std::string want = packed_of(t);
      const void* hit = (*cache)->find(t, want.size());
      if (hit != nullptr) {
        EXPECT_EQ(std::memcmp(hit, want.data(), want.size()), 0) << name;
      } else {
        keep.push_back(want);
        (*cache)->add(t, keep.back().data(), keep.back().size());
      }
    }
    EXPECT_TRUE((*cache)->write_pending().ok());
    entry_ = (*cache)->entry_path(**file);
    return (*cache)->stats().hits;
  }

  std::vector<std::string> files() const {
    std::vector<std::string> out;
    for (const auto& f : fs::directory_iterator(cache_dir_)) out.push_back(f.path().filename());
    return out;
  }

  TempDir dir_;
  std::string ckpt_, cache_dir_, entry_;
};

TEST_F(PackedWeightsCacheTest, SecondStartMapsWhatTheFirstPacked) {
  EXPECT_EQ(start(), 0);
  ASSERT_TRUE(fs::exists(entry_));
  EXPECT_EQ(files().size(), 1u);  // one entry per checkpoint file, no temporaries
  EXPECT_EQ(start(), 2);          // both matrices; the vector is never cached
  EXPECT_EQ(files().size(), 1u);
}

TEST_F(PackedWeightsCacheTest, WritesAfterItsCheckpointIsClosed) {
  // The backend writes in the background, after the engine has let go of the
  // checkpoint (a packed backend does not keep it mapped): the entry must
  // be written from what add() recorded, not from the closed file.
  std::string entry;
  std::vector<std::string> keep;
  auto cache = PackedWeightsCache::open(cache_dir_, kLayout);
  ASSERT_TRUE(cache.ok()) << cache.status();
  {
    auto file = SafetensorsFile::open(ckpt_);
    ASSERT_TRUE(file.ok()) << file.status();
    keep.reserve(3);
    for (const auto& [name, t] : (*file)->tensors()) {
      keep.push_back(packed_of(t));
      (*cache)->add(t, keep.back().data(), keep.back().size());
    }
    entry = (*cache)->entry_path(**file);
  }
  ASSERT_TRUE((*cache)->write_pending().ok());
  EXPECT_TRUE(fs::exists(entry));
  EXPECT_EQ(start(), 2);
  EXPECT_EQ(entry_, entry);
}

TEST_F(PackedWeightsCacheTest, ASizeOtherThanTheStoredOneIsAMiss) {
  ASSERT_EQ(start(), 0);
  auto file = SafetensorsFile::open(ckpt_);
  auto cache = PackedWeightsCache::open(cache_dir_, kLayout);
  ASSERT_TRUE(file.ok() && cache.ok());
  const TensorInfo* a = (*file)->find("a");
  EXPECT_EQ((*cache)->find(*a, packed_of(*a).size() + 2), nullptr);
  EXPECT_NE((*cache)->find(*a, packed_of(*a).size()), nullptr);
}

TEST_F(PackedWeightsCacheTest, AnotherLayoutIsAMiss) {
  ASSERT_EQ(start(), 0);
  EXPECT_EQ(start("test-layout-v2"), 0);
}

TEST_F(PackedWeightsCacheTest, ARewrittenCheckpointIsAMissAndItsOldEntryIsRemoved) {
  ASSERT_EQ(start(), 0);
  const std::string old_entry = entry_;
  // Same path, same shapes, new bytes: the entry must not serve the old ones.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a new mtime on any clock
  write_checkpoint(ckpt_, 'y');
  EXPECT_EQ(start(), 0);
  EXPECT_NE(entry_, old_entry);
  EXPECT_FALSE(fs::exists(old_entry)) << "the sweep keeps entries of live checkpoints only";
  EXPECT_EQ(start(), 2);
}

TEST_F(PackedWeightsCacheTest, ADeletedCheckpointsEntryIsSwept) {
  ASSERT_EQ(start(), 0);
  fs::remove(ckpt_);
  auto cache = PackedWeightsCache::open(cache_dir_, kLayout);
  ASSERT_TRUE(cache.ok());
  EXPECT_EQ((*cache)->stats().entries_removed, 1);
  EXPECT_TRUE(files().empty());
}

TEST_F(PackedWeightsCacheTest, AnEntryOfARelativePathSurvivesASweepFromElsewhere) {
  // A server started with --model ./m records the checkpoint's absolute path:
  // a later start from another directory must not take it for deleted.
  const fs::path cwd = fs::current_path();
  fs::current_path(dir_.path());
  ckpt_ = "model.safetensors";
  const int64_t first = start();
  fs::current_path("/");
  auto cache = PackedWeightsCache::open(cache_dir_, kLayout);
  fs::current_path(cwd);
  EXPECT_EQ(first, 0);
  ASSERT_TRUE(cache.ok());
  EXPECT_EQ((*cache)->stats().entries_removed, 0);
  ckpt_ = dir_.path() + "/model.safetensors";  // the same file by its absolute path
  EXPECT_EQ(start(), 2);
}

TEST_F(PackedWeightsCacheTest, PayloadsStartOnHugePageBoundariesOfTheFile) {
  // So that the page cache can map each payload in 2 MiB pages (the reason
  // is in write_entry). Read off the file as the format documents it: magic,
  // u64 LE header length, JSON, data start at the next 4096.
  ASSERT_EQ(start(), 0);
  std::ifstream f(entry_, std::ios::binary);
  char magic[8];
  uint64_t len = 0;
  ASSERT_TRUE(f.read(magic, 8) && f.read(reinterpret_cast<char*>(&len), 8));
  EXPECT_EQ(std::string(magic, 8), "LSPACKW1");
  std::string text(len, '\0');
  ASSERT_TRUE(f.read(text.data(), static_cast<std::streamsize>(len)));
  const nlohmann::json header = nlohmann::json::parse(text);
  const uint64_t data_start = (16 + len + 4095) / 4096 * 4096;
  ASSERT_EQ(header["tensors"].size(), 2u);
  uint64_t end = 0;
  for (const auto& [name, t] : header["tensors"].items()) {
    const uint64_t at = data_start + t["offset"].get<uint64_t>();
    EXPECT_EQ(at % (uint64_t{2} << 20), 0u) << name;
    end = std::max(end, at + t["bytes"].get<uint64_t>());
  }
  EXPECT_EQ(fs::file_size(entry_), end);  // the file ends at the last payload
  EXPECT_EQ(start(), 2);
}

TEST_F(PackedWeightsCacheTest, AFlippedByteFailsThatPayloadOnly) {
  ASSERT_EQ(start(), 0);
  {
    std::fstream f(entry_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-1, std::ios::end);  // the last byte of the last payload ("b")
    const char c = static_cast<char>(f.get() ^ 1);
    f.seekp(-1, std::ios::end);
    f.put(c);
  }
  EXPECT_EQ(start(), 1);  // "a" still maps; "b" is packed again and rewritten
  EXPECT_EQ(start(), 2);
}

TEST_F(PackedWeightsCacheTest, ATruncatedEntryServesNothingPastItsEnd) {
  ASSERT_EQ(start(), 0);
  fs::resize_file(entry_, fs::file_size(entry_) - 1);
  EXPECT_EQ(start(), 1);
  fs::resize_file(entry_, 1000);  // the header whole, the data section gone
  {
    auto swept = PackedWeightsCache::open(cache_dir_, kLayout);
    ASSERT_TRUE(swept.ok());
    EXPECT_EQ((*swept)->stats().entries_removed, 1) << "a header without its data is no entry";
  }
  EXPECT_EQ(start(), 0);
  fs::resize_file(entry_, 10);  // not even a header
  EXPECT_EQ(start(), 0);
  EXPECT_EQ(start(), 2);
}

TEST_F(PackedWeightsCacheTest, GarbageInTheDirectoryIsSweptOrLeftAlone) {
  ASSERT_EQ(start(), 0);
  // An entry that is not one; a temporary whose writer is gone and that has
  // not changed for an hour; one of a writer that is not running here but
  // wrote a moment ago (another PID namespace: kept); a live writer's (this
  // process); and a file that is not the cache's.
  { std::ofstream(cache_dir_ + "/0123.lsw") << "not an entry"; }
  { std::ofstream(cache_dir_ + "/0123.lsw.tmp.999999999.a") << "half written"; }
  fs::last_write_time(cache_dir_ + "/0123.lsw.tmp.999999999.a",
                      fs::file_time_type::clock::now() - std::chrono::hours(1));
  const std::string elsewhere = "0123.lsw.tmp.999999998.b";
  { std::ofstream(cache_dir_ + "/" + elsewhere) << "being written in another container"; }
  const std::string live = "0123.lsw.tmp." + std::to_string(::getpid()) + ".c";
  { std::ofstream(cache_dir_ + "/" + live) << "being written"; }
  { std::ofstream(cache_dir_ + "/README") << "mine"; }
  auto cache = PackedWeightsCache::open(cache_dir_, kLayout);
  ASSERT_TRUE(cache.ok());
  EXPECT_EQ((*cache)->stats().entries_removed, 2);
  auto names = files();
  std::sort(names.begin(), names.end());
  std::vector<std::string> want = {fs::path(entry_).filename(), elsewhere, live, "README"};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(names, want);
}

TEST_F(PackedWeightsCacheTest, TensorsInMemoryAreNeverCached) {
  std::vector<TensorToWrite> ts = {{"a", DType::kBF16, {2, 2}, std::string(8, 'x')}};
  ASSERT_TRUE(write_safetensors(dir_.path() + "/mem.safetensors", ts).ok());
  auto bytes = testing_util::read_file(dir_.path() + "/mem.safetensors");
  auto file = SafetensorsFile::from_bytes(bytes, "upload");
  ASSERT_TRUE(file.ok()) << file.status();
  auto cache = PackedWeightsCache::open(cache_dir_, kLayout);
  ASSERT_TRUE(cache.ok());
  const TensorInfo* a = (*file)->find("a");
  EXPECT_EQ((*cache)->find(*a, 8), nullptr);
  (*cache)->add(*a, "12345678", 8);
  EXPECT_TRUE((*cache)->write_pending().ok());
  EXPECT_TRUE(files().empty());
}

TEST_F(PackedWeightsCacheTest, ADirectoryThatCannotBeMadeIsAnError) {
  { std::ofstream(dir_.path() + "/file") << "x"; }
  auto cache = PackedWeightsCache::open(dir_.path() + "/file/cache", kLayout);
  EXPECT_FALSE(cache.ok());
  EXPECT_NE(cache.status().message().find("packed-weights cache"), std::string::npos);
}

TEST_F(PackedWeightsCacheTest, AWriteThatFailsLeavesNoFile) {
  auto file = SafetensorsFile::open(ckpt_);
  auto cache = PackedWeightsCache::open(cache_dir_, kLayout);
  ASSERT_TRUE(file.ok() && cache.ok());
  const TensorInfo* a = (*file)->find("a");
  const std::string want = packed_of(*a);
  ASSERT_EQ((*cache)->find(*a, want.size()), nullptr);
  (*cache)->add(*a, want.data(), want.size());
  fs::remove_all(cache_dir_);  // the directory went away under the server
  EXPECT_FALSE((*cache)->write_pending().ok());
  EXPECT_FALSE(fs::exists(cache_dir_));
}

}  // namespace
}  // namespace loraserve
