// The adapter admin API over the wire: unloading around in-flight requests,
// every way a LoadAdapter/UploadAdapter can be refused (while a healthy
// stream keeps running), and uploads that serve like path loads.
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "common/dtype.h"
#include "checkpoint/safetensors.h"
#include "tests/e2e/e2e_util.h"

namespace loraserve::e2e {
namespace {

namespace fs = std::filesystem;

class Adapters : public ServerSuite {
 protected:
  static void SetUpTestSuite() { start_suite_server(default_server_options(64)); }
  static void TearDownTestSuite() { stop_suite_server(); }
};

TEST_F(Adapters, UnloadIsRefusedWhileInUseThenSucceedsAndListAdaptersFollows) {
  const std::string id = "unload-a7";
  v1::AdapterInfo loaded;
  ASSERT_TRUE(load_adapter(stub(), id, SynthData::adapter_name(7), &loaded).ok());
  std::vector<v1::AdapterInfo> list = list_adapters(stub());
  const v1::AdapterInfo* a = find_adapter(list, id);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->rank(), 64u);
  EXPECT_EQ(a->in_flight(), 0u);
  EXPECT_GT(a->bytes(), 0u);
  EXPECT_EQ(a->bytes(), loaded.bytes());
  EXPECT_EQ(std::set<std::string>(a->target_modules().begin(), a->target_modules().end()),
            (std::set<std::string>{"q_proj", "k_proj", "v_proj", "o_proj"}));

  const std::vector<uint32_t> prompt = make_prompt(400, 6);
  const int n = 600;
  const OfflineResult want = run_offline(offline_job(7, prompt, n));
  BackgroundStream stream(server().get(), make_request(id, prompt, n));
  ASSERT_TRUE(wait_until([&] { return stream.tokens_seen() >= 2 || stream.ended(); },
                         std::chrono::seconds(20)));
  ASSERT_FALSE(stream.ended()) << "the stream ended too early to test unloading under it";

  list = list_adapters(stub());
  a = find_adapter(list, id);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->in_flight(), 1u);
  EXPECT_TRUE(a->resident()) << "an adapter a running request uses must be in the pool";

  const grpc::Status refused = unload_adapter(stub(), id);
  EXPECT_TRUE(has_code(refused, grpc::StatusCode::FAILED_PRECONDITION, id));
  EXPECT_TRUE(has_code(refused, grpc::StatusCode::FAILED_PRECONDITION, "in flight"));
  EXPECT_FALSE(stream.ended()) << "the refused unload should not have disturbed the stream yet";
  EXPECT_NE(find_adapter(list_adapters(stub()), id), nullptr);

  EXPECT_TRUE(matches_offline(stream.result(), want, prompt.size()));
  list = list_adapters(stub());
  a = find_adapter(list, id);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->in_flight(), 0u);

  const grpc::Status unloaded = unload_adapter(stub(), id);
  EXPECT_TRUE(unloaded.ok()) << describe(unloaded);
  EXPECT_EQ(find_adapter(list_adapters(stub()), id), nullptr);

  const StreamResult after = run_generate(stub(), make_request(id, prompt, 4));
  EXPECT_TRUE(has_code(after.status, grpc::StatusCode::NOT_FOUND, id));
  EXPECT_TRUE(after.tokens.empty());
  EXPECT_TRUE(has_code(unload_adapter(stub(), id), grpc::StatusCode::NOT_FOUND, id));

  // The id can be reused after unloading.
  ASSERT_TRUE(load_adapter(stub(), id, SynthData::adapter_name(7)).ok());
  EXPECT_TRUE(matches_offline(run_generate(stub(), make_request(id, prompt, 8)),
                              run_offline(offline_job(7, prompt, 8)), prompt.size()));
}

// Bad adapters written into the adapter root (and one outside it).
struct BadAdapters {
  std::string truncated = "e2e-bad-truncated";
  std::string shape = "e2e-bad-shape";
  std::string dora = "e2e-bad-dora";
  std::string link = "e2e-bad-link-outside";
  std::string error;

  BadAdapters() {
    const SynthData& d = synth_data();
    std::error_code ec;
    auto copy = [&](int i, const std::string& to) {
      fs::copy(d.adapter_dir(i), to,
               fs::copy_options::recursive | fs::copy_options::overwrite_existing, ec);
      if (ec) error += "copy to " + to + ": " + ec.message() + "; ";
    };
    // A truncated safetensors file.
    const std::string tdir = d.adapters + "/" + truncated;
    copy(1, tdir);
    const std::string tfile = tdir + "/adapter_model.safetensors";
    fs::resize_file(tfile, fs::file_size(tfile, ec) / 2, ec);
    if (ec) error += "truncate: " + ec.message() + "; ";

    // lora_A with in_features 128 where the base model has 256.
    const std::string sdir = d.adapters + "/" + shape;
    fs::create_directories(sdir, ec);
    fs::copy_file(d.adapter_dir(0) + "/adapter_config.json", sdir + "/adapter_config.json",
                  fs::copy_options::overwrite_existing, ec);
    auto file = SafetensorsFile::open(d.adapter_dir(0) + "/adapter_model.safetensors");
    if (!file.ok()) {
      error += file.status().to_string();
    } else {
      std::vector<TensorToWrite> out;
      bool changed = false;
      for (const auto& [name, t] : (*file)->tensors()) {
        TensorToWrite w;
        w.name = name;
        w.dtype = t.dtype;
        w.shape = t.shape;
        w.bytes.assign(static_cast<const char*>(t.data), t.nbytes);
        if (name == "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight") {
          w.shape = {t.shape[0], 128};
          w.bytes.resize(static_cast<size_t>(t.shape[0] * 128) * dtype_size(t.dtype));
          changed = true;
        }
        out.push_back(std::move(w));
      }
      if (!changed) error += "no layer-0 q_proj lora_A tensor in adapter-000; ";
      Status s = write_safetensors(sdir + "/adapter_model.safetensors", out);
      if (!s.ok()) error += s.to_string();
    }

    // use_dora true.
    const std::string ddir = d.adapters + "/" + dora;
    copy(2, ddir);
    nlohmann::json cfg =
        nlohmann::json::parse(read_file(ddir + "/adapter_config.json"), nullptr, false);
    cfg["use_dora"] = true;
    std::ofstream(ddir + "/adapter_config.json") << cfg.dump(2);

    // A valid adapter outside the root, reached through a symlink inside it.
    const std::string outside = d.root + "/outside-adapter";
    copy(3, outside);
    fs::remove(d.adapters + "/" + link, ec);
    fs::create_directory_symlink(outside, d.adapters + "/" + link, ec);
    if (ec) error += "symlink: " + ec.message() + "; ";
  }
};

TEST_F(Adapters, BadLoadsAreRefusedWithTheRightCodeWhileAHealthyStreamRuns) {
  BadAdapters bad;
  ASSERT_TRUE(bad.error.empty()) << bad.error;
  ASSERT_TRUE(load_adapter(stub(), "bad-healthy", SynthData::adapter_name(1)).ok());
  const std::vector<uint32_t> prompt = make_prompt(500, 7);
  const int n = 1000;
  const OfflineResult want = run_offline(offline_job(1, prompt, n));
  BackgroundStream healthy(server().get(), make_request("bad-healthy", prompt, n));
  ASSERT_TRUE(wait_until([&] { return healthy.tokens_seen() >= 1 || healthy.ended(); },
                         std::chrono::seconds(20)));

  using grpc::StatusCode;
  EXPECT_TRUE(
      has_code(load_adapter(stub(), "bad-1", "../x"), StatusCode::PERMISSION_DENIED, "root"));
  EXPECT_TRUE(
      has_code(load_adapter(stub(), "bad-2", "../model"), StatusCode::PERMISSION_DENIED, "root"));
  EXPECT_TRUE(
      has_code(load_adapter(stub(), "bad-3", "/etc"), StatusCode::PERMISSION_DENIED, "relative"));
  EXPECT_TRUE(has_code(load_adapter(stub(), "bad-4", SynthData::adapter_name(0) + "/../../model"),
                       StatusCode::PERMISSION_DENIED, "root"));
  EXPECT_TRUE(
      has_code(load_adapter(stub(), "bad-5", bad.link), StatusCode::PERMISSION_DENIED, "outside"));
  EXPECT_TRUE(has_code(load_adapter(stub(), "bad-6", "e2e-no-such-dir"), StatusCode::NOT_FOUND,
                       "e2e-no-such-dir"));
  EXPECT_TRUE(has_code(load_adapter(stub(), "a b", SynthData::adapter_name(0)),
                       StatusCode::INVALID_ARGUMENT, "adapter_id"));
  EXPECT_TRUE(has_code(load_adapter(stub(), "", SynthData::adapter_name(0)),
                       StatusCode::INVALID_ARGUMENT, "adapter_id"));
  EXPECT_TRUE(has_code(load_adapter(stub(), "bad-7", ""), StatusCode::INVALID_ARGUMENT, "path"));
  EXPECT_TRUE(
      has_code(load_adapter(stub(), "bad-8", bad.truncated), StatusCode::DATA_LOSS, bad.truncated));
  const grpc::Status shape = load_adapter(stub(), "bad-9", bad.shape);
  EXPECT_TRUE(has_code(shape, StatusCode::FAILED_PRECONDITION, "q_proj"));
  EXPECT_TRUE(has_code(shape, StatusCode::FAILED_PRECONDITION, "lora_A"));
  EXPECT_TRUE(
      has_code(load_adapter(stub(), "bad-10", bad.dora), StatusCode::UNIMPLEMENTED, "dora"));

  ASSERT_TRUE(load_adapter(stub(), "bad-dup", SynthData::adapter_name(2)).ok());
  EXPECT_TRUE(has_code(load_adapter(stub(), "bad-dup", SynthData::adapter_name(3)),
                       StatusCode::ALREADY_EXISTS, "bad-dup"));
  // The duplicate did not replace the first registration (rank 32, not 64).
  const std::vector<v1::AdapterInfo> list = list_adapters(stub());
  ASSERT_NE(find_adapter(list, "bad-dup"), nullptr);
  EXPECT_EQ(find_adapter(list, "bad-dup")->rank(), 32u);
  for (const std::string id : {"bad-1", "bad-2", "bad-3", "bad-4", "bad-5", "bad-6", "a b", "bad-7",
                               "bad-8", "bad-9", "bad-10"}) {
    EXPECT_EQ(find_adapter(list, id), nullptr) << id << " was registered despite the error";
  }

  EXPECT_FALSE(healthy.ended()) << "the healthy stream ended before the bad loads were done";
  EXPECT_TRUE(matches_offline(healthy.result(), want, prompt.size()));
}

TEST_F(Adapters, UploadOfGarbageIsDataLossAndUploadOfAValidAdapterServesLikeAPathLoad) {
  const SynthData& d = synth_data();
  const std::string config = read_file(d.adapter_dir(3) + "/adapter_config.json");
  const std::string tensors = read_file(d.adapter_dir(3) + "/adapter_model.safetensors");
  ASSERT_FALSE(config.empty());
  ASSERT_GT(tensors.size(), 100000u);
  v1::AdapterInfo info;

  std::string garbage(5000, '\0');
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>((i * 131 + 7) % 251);
  const grpc::Status g = upload_adapter(stub(), "up-garbage", config, garbage, 1000, &info);
  EXPECT_EQ(g.error_code(), grpc::StatusCode::DATA_LOSS) << describe(g);
  const grpc::Status cut =
      upload_adapter(stub(), "up-cut", config, tensors.substr(0, tensors.size() - 1000), 1 << 16, &info);
  EXPECT_EQ(cut.error_code(), grpc::StatusCode::DATA_LOSS) << describe(cut);
  const grpc::Status no_tensors = upload_adapter(stub(), "up-empty", config, "", 1, &info);
  EXPECT_EQ(no_tensors.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << describe(no_tensors);
  const grpc::Status bad_id = upload_adapter(stub(), "up bad", config, tensors, 1 << 16, &info);
  EXPECT_EQ(bad_id.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << describe(bad_id);

  // In 10 chunks, so the server must reassemble them.
  info.Clear();
  const grpc::Status up = upload_adapter(stub(), "up-a3", config, tensors, tensors.size() / 10 + 1, &info);
  ASSERT_TRUE(up.ok()) << describe(up);
  EXPECT_EQ(info.adapter_id(), "up-a3");
  EXPECT_EQ(info.rank(), 64u);
  ASSERT_TRUE(load_adapter(stub(), "path-a3", SynthData::adapter_name(3)).ok());
  const std::vector<v1::AdapterInfo> list = list_adapters(stub());
  ASSERT_NE(find_adapter(list, "path-a3"), nullptr);
  EXPECT_EQ(find_adapter(list, "up-a3")->bytes(), find_adapter(list, "path-a3")->bytes());
  EXPECT_EQ(find_adapter(list, "up-garbage"), nullptr);
  EXPECT_EQ(find_adapter(list, "up-cut"), nullptr);

  const std::vector<uint32_t> prompt = make_prompt(600, 11);
  const OfflineResult want = run_offline(offline_job(3, prompt, 20));
  const StreamResult via_upload = run_generate(stub(), make_request("up-a3", prompt, 20));
  const StreamResult via_path = run_generate(stub(), make_request("path-a3", prompt, 20));
  EXPECT_TRUE(matches_offline(via_upload, want, prompt.size()));
  EXPECT_TRUE(matches_offline(via_path, want, prompt.size()));
  EXPECT_EQ(via_upload.tokens, via_path.tokens);
}

}  // namespace
}  // namespace loraserve::e2e
