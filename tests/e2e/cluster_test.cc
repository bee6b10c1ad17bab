// Scale-out on loopback: deploy/local/cluster.sh runs three replicas on one
// --adapter-store behind the adapter-affine nginx front. Adapters uploaded
// through the front are served by every replica and resident on one only;
// a kill -9 of a replica costs only the requests it had in flight; a full
// restart keeps every adapter. Outputs are compared with `loraserve
// generate` on each adapter's own directory.
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <sstream>
#include <thread>

#include "tests/e2e/e2e_util.h"

namespace loraserve::e2e {
namespace {

namespace fs = std::filesystem;

constexpr int kReplicas = 3;
constexpr int kAdapters = 6;

std::string cluster_script() { return std::string(LORASERVE_SOURCE_DIR) + "/deploy/local/cluster.sh"; }
std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}
std::string adapter_id(int i) { return "c" + std::to_string(i); }

struct Replica {
  pid_t pid = 0;
  std::string grpc, http;
};

class Cluster : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string tag = std::to_string(getpid());
    dir_ = (fs::temp_directory_path() / ("loraserve-cluster-" + tag)).string();
    store_ = (fs::temp_directory_path() / ("loraserve-cluster-store-" + tag)).string();
    fs::remove_all(dir_);
    fs::remove_all(store_);
  }
  static void TearDownTestSuite() {
    down();
    fs::remove_all(dir_);
    fs::remove_all(store_);
  }
  void SetUp() override {
    ASSERT_TRUE(synth_data().error.empty()) << synth_data().error;
    if (!fs::exists(dir_ + "/front.grpc")) {
      ASSERT_TRUE(up());
    }
  }

  static bool up() {
    std::string out, err;
    const int st = run_process(
        {"/bin/bash", cluster_script(), "up", dir_, "--replicas", std::to_string(kReplicas), "--model",
         synth_data().model, "--adapter-root", synth_data().adapters, "--adapter-store", store_,
         "--bin", fs::path(loraserve_bin()).parent_path().string(), "--", "--pool-mb", "64",
         "--adapter-store-poll-s", "0.2"},
        &out, &err);
    EXPECT_EQ(st, 0) << "cluster.sh up: " << out << err;
    return st == 0;
  }
  static void down() {
    std::string out, err;
    EXPECT_EQ(run_process({"/bin/bash", cluster_script(), "down", dir_}, &out, &err), 0) << out << err;
  }
  static std::vector<Replica> replicas() {
    std::vector<Replica> out;
    std::istringstream in(read_file(dir_ + "/replicas.txt"));
    Replica r;
    while (in >> r.pid >> r.grpc >> r.http) out.push_back(r);
    return out;
  }
  static std::shared_ptr<grpc::Channel> front() {
    return grpc::CreateChannel(trim(read_file(dir_ + "/front.grpc")),
                               grpc::InsecureChannelCredentials());
  }

  static std::string dir_, store_;
};
std::string Cluster::dir_, Cluster::store_;

// What the bundled clients do: the adapter id rides as `x-lora-adapter`, the
// header nginx hashes on.
void route_to(grpc::ClientContext* ctx, const std::string& adapter) {
  ctx->AddMetadata("x-lora-adapter", adapter);
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
}

grpc::Status upload_via(v1::LoraServe::Stub* stub, const std::string& id, int adapter_index) {
  const SynthData& d = synth_data();
  grpc::ClientContext ctx;
  route_to(&ctx, id);
  v1::AdapterInfo info;
  auto writer = stub->UploadAdapter(&ctx, &info);
  v1::UploadAdapterChunk first;
  first.set_adapter_id(id);
  first.set_adapter_config_json(read_file(d.adapter_dir(adapter_index) + "/adapter_config.json"));
  first.set_safetensors_data(read_file(d.adapter_dir(adapter_index) + "/adapter_model.safetensors"));
  writer->Write(first);
  writer->WritesDone();
  return writer->Finish();
}

StreamResult generate_via(v1::LoraServe::Stub* stub, const std::string& id,
                          const std::vector<uint32_t>& prompt, int n) {
  grpc::ClientContext ctx;
  route_to(&ctx, id);
  return run_generate(stub, make_request(id, prompt, n), {}, &ctx);
}

// Which replicas have loaded each adapter.
std::map<std::string, int> loaded_counts(const std::vector<Replica>& rs) {
  std::map<std::string, int> n;
  for (const Replica& r : rs) {
    auto stub = v1::LoraServe::NewStub(grpc::CreateChannel(r.grpc, grpc::InsecureChannelCredentials()));
    for (const v1::AdapterInfo& a : list_adapters(stub.get())) n[a.adapter_id()] += a.loaded() ? 1 : 0;
  }
  return n;
}

std::vector<uint32_t> prompt_of(int i) { return make_prompt(5000 + i, 6); }

std::vector<OfflineResult> references(int n_tokens) {
  std::vector<OfflineJob> jobs;
  for (int i = 0; i < kAdapters; ++i) jobs.push_back(offline_job(i, prompt_of(i), n_tokens));
  return run_offline_many(jobs);
}

TEST_F(Cluster, AdaptersUploadedThroughTheFrontAreServedExactlyAndResidentOnOneReplica) {
  auto stub = v1::LoraServe::NewStub(front());
  for (int i = 0; i < kAdapters; ++i) {
    const grpc::Status s = upload_via(stub.get(), adapter_id(i), i);
    ASSERT_TRUE(s.ok()) << adapter_id(i) << ": " << describe(s);
  }
  const std::vector<OfflineResult> want = references(8);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < kAdapters; ++i) {
      ASSERT_TRUE(want[i].ok) << want[i].error;
      EXPECT_TRUE(matches_offline(generate_via(stub.get(), adapter_id(i), prompt_of(i), 8), want[i],
                                  prompt_of(i).size()))
          << adapter_id(i) << " round " << round;
    }
  }
  // HTTP through the front hashes on the body's "model" (and "lora_name"
  // for loads) over the replicas' HTTP ports: its own ring, so adapters
  // used over HTTP stay on one replica too.
  const std::string http = trim(read_file(dir_ + "/front.http"));
  for (int i = 0; i < 3; ++i) {
    std::string out, err;
    const int st = run_process(
        {"/usr/bin/python3", "-c",
         "import json,sys,urllib.request as u\n"
         "def post(path, body):\n"
         "  r = u.Request('http://' + sys.argv[1] + path, json.dumps(body).encode(),\n"
         "                {'content-type': 'application/json'})\n"
         "  return json.load(u.urlopen(r, timeout=60))\n"
         "post('/v1/load_lora_adapter', {'lora_name': sys.argv[2], 'lora_path': sys.argv[3]})\n"
         "for _ in range(3):\n"
         "  c = post('/v1/completions', {'model': sys.argv[2], 'prompt': [5, 9, 11],\n"
         "                               'max_tokens': 3, 'temperature': 0})\n"
         "  assert c['usage']['completion_tokens'] >= 1, c\n",
         http, "h" + std::to_string(i), SynthData::adapter_name(i)},
        &out, &err);
    EXPECT_EQ(st, 0) << "h" << i << ": " << err;
  }
  const std::map<std::string, int> n = loaded_counts(replicas());
  std::vector<std::string> ids = {"h0", "h1", "h2"};
  for (int i = 0; i < kAdapters; ++i) ids.push_back(adapter_id(i));
  for (const std::string& id : ids) {
    auto it = n.find(id);
    ASSERT_NE(it, n.end()) << id << " is listed by no replica";
    EXPECT_EQ(it->second, 1) << id << " is loaded on " << it->second << " replicas: affinity broken";
  }
}

TEST_F(Cluster, KillNineOfAReplicaCostsOnlyItsInFlightRequests) {
  auto stub = v1::LoraServe::NewStub(front());
  for (int i = 0; i < kAdapters; ++i) (void)upload_via(stub.get(), adapter_id(i), i);  // may exist
  ASSERT_TRUE(generate_via(stub.get(), "c0", prompt_of(0), 2).status.ok());
  // The replica holding c0 dies with requests in flight.
  pid_t victim = 0;
  for (const Replica& r : replicas()) {
    auto rs = v1::LoraServe::NewStub(grpc::CreateChannel(r.grpc, grpc::InsecureChannelCredentials()));
    const auto list = list_adapters(rs.get());
    const v1::AdapterInfo* a = find_adapter(list, "c0");
    if (a != nullptr && a->loaded()) victim = r.pid;
  }
  ASSERT_NE(victim, 0) << "no replica has c0 loaded";
  std::vector<std::thread> inflight;
  std::atomic<int> lost{0};
  for (int k = 0; k < 4; ++k) {
    inflight.emplace_back([&] {
      auto s = v1::LoraServe::NewStub(front());
      if (!generate_via(s.get(), "c0", prompt_of(0), 400).status.ok()) lost++;
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  for (auto& t : inflight) t.join();
  const std::vector<OfflineResult> want = references(8);
  int failures = 0;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < kAdapters; ++i) {
      const StreamResult r = generate_via(stub.get(), adapter_id(i), prompt_of(i), 8);
      if (!r.status.ok()) ++failures;
      EXPECT_TRUE(matches_offline(r, want[i], prompt_of(i).size())) << adapter_id(i);
    }
  }
  EXPECT_EQ(failures, 0) << "requests after the kill failed";
  std::printf("kill -9 of a replica: %d of 4 in-flight requests lost, 0 of %d later ones\n",
              lost.load(), 3 * kAdapters);
}

TEST_F(Cluster, AFullRestartKeepsEveryAdapter) {
  auto stub = v1::LoraServe::NewStub(front());
  for (int i = 0; i < kAdapters; ++i) (void)upload_via(stub.get(), adapter_id(i), i);
  down();
  ASSERT_TRUE(up());
  stub = v1::LoraServe::NewStub(front());
  const auto list = list_adapters(stub.get());
  const std::vector<OfflineResult> want = references(8);
  for (int i = 0; i < kAdapters; ++i) {
    EXPECT_NE(find_adapter(list, adapter_id(i)), nullptr) << adapter_id(i) << " lost in restart";
    EXPECT_TRUE(matches_offline(generate_via(stub.get(), adapter_id(i), prompt_of(i), 8), want[i],
                                prompt_of(i).size()))
        << adapter_id(i);
  }
}

}  // namespace
}  // namespace loraserve::e2e
