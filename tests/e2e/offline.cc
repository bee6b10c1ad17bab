#include "tests/e2e/offline.h"

#include <sys/wait.h>

#include <atomic>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/e2e/server_process.h"

namespace loraserve::e2e {

namespace {

std::string join_ids(const std::vector<uint32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

std::string cache_key(const OfflineJob& job) {
  return job.model + "|" + job.adapter + "|" + join_ids(job.prompt) + "|" +
         std::to_string(job.max_new_tokens);
}

std::mutex g_cache_mu;
std::map<std::string, OfflineResult> g_cache;  // guarded by g_cache_mu

OfflineResult run_uncached(const OfflineJob& job) {
  OfflineResult r;
  std::vector<std::string> argv = {loraserve_bin(),
                                   "generate",
                                   "--model",
                                   job.model,
                                   "--prompt-ids",
                                   join_ids(job.prompt),
                                   "--max-new-tokens",
                                   std::to_string(job.max_new_tokens),
                                   "--json",
                                   "--pool-mb",
                                   "16"};
  if (!job.adapter.empty()) {
    argv.push_back("--adapter");
    argv.push_back(job.adapter);
  }
  std::string out, err;
  const int status = run_process(argv, &out, &err);
  if (status < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    r.error = "loraserve generate failed (status " + std::to_string(status) + "): " + err;
    return r;
  }
  try {
    const nlohmann::json j = nlohmann::json::parse(out);
    for (const auto& t : j.at("tokens")) r.tokens.push_back(t.get<uint32_t>());
    for (const auto& lp : j.at("logprobs")) r.logprobs.push_back(lp.get<float>());
  } catch (const std::exception& e) {
    r.error = std::string("cannot parse loraserve generate output: ") + e.what() + ": " + out;
    return r;
  }
  if (r.tokens.size() != static_cast<size_t>(job.max_new_tokens) ||
      r.logprobs.size() != r.tokens.size()) {
    r.error = "loraserve generate returned " + std::to_string(r.tokens.size()) + " tokens and " +
              std::to_string(r.logprobs.size()) + " logprobs for max_new_tokens " +
              std::to_string(job.max_new_tokens);
    return r;
  }
  r.ok = true;
  return r;
}

}  // namespace

OfflineResult run_offline(const OfflineJob& job) {
  const std::string key = cache_key(job);
  {
    std::lock_guard<std::mutex> lock(g_cache_mu);
    auto it = g_cache.find(key);
    if (it != g_cache.end()) return it->second;
  }
  OfflineResult r = run_uncached(job);
  if (r.ok) {
    std::lock_guard<std::mutex> lock(g_cache_mu);
    g_cache[key] = r;
  }
  return r;
}

std::vector<OfflineResult> run_offline_many(const std::vector<OfflineJob>& jobs, int parallelism) {
  std::vector<OfflineResult> results(jobs.size());
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < jobs.size(); i = next++) results[i] = run_offline(jobs[i]);
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < std::max(1, parallelism); ++i) threads.emplace_back(worker);
  for (auto& t : threads) t.join();
  return results;
}

}  // namespace loraserve::e2e
