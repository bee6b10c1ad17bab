#include "clients/lora_bench/workload.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

namespace loraserve::bench {
namespace {

// Uniform double in [0, 1) from 53 random bits (portable, unlike std:: distributions).
double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

uint32_t uniform_in(std::mt19937_64& rng, IntRange r) {
  return r.lo + static_cast<uint32_t>(rng() % (static_cast<uint64_t>(r.hi - r.lo) + 1));
}

std::vector<uint32_t> random_prompt(std::mt19937_64& rng, uint32_t len, uint32_t vocab) {
  std::vector<uint32_t> ids(len);
  for (uint32_t& id : ids) id = static_cast<uint32_t>(rng() % vocab);
  return ids;
}

// Seeds of the independent streams: fixed offsets of the user's seed.
constexpr uint64_t kArrivalStream = 0x9e3779b97f4a7c15ull;
constexpr uint64_t kAdapterStream = 0xbf58476d1ce4e5b9ull;
constexpr uint64_t kLengthStream = 0x94d049bb133111ebull;

class SyntheticWorkload : public Workload {
 public:
  explicit SyntheticWorkload(const BenchConfig& cfg)
      : cfg_(cfg),
        arrival_rng_(cfg.seed ^ kArrivalStream),
        adapter_rng_(cfg.seed ^ kAdapterStream),
        length_rng_(cfg.seed ^ kLengthStream) {
    if (!cfg.base_only && cfg.num_adapters > 0) {
      std::vector<double> w = power_law_weights(cfg.num_adapters,
                                                cfg.popularity == "powerlaw" ? cfg.alpha : 0.0);
      cdf_.resize(w.size());
      double sum = 0;
      for (size_t i = 0; i < w.size(); ++i) cdf_[i] = (sum += w[i]);
      for (double& c : cdf_) c /= sum;
    }
    if (cfg.rate > 0 && cfg.cv != 1.0) {
      const double shape = 1.0 / (cfg.cv * cfg.cv);
      gamma_ = std::gamma_distribution<double>(shape, 1.0 / (cfg.rate * shape));
    }
  }

  std::optional<RequestSpec> next() override {
    RequestSpec r;
    r.index = index_++;
    if (cfg_.rate > 0) {
      double gap = cfg_.cv == 1.0 ? -std::log1p(-uniform01(arrival_rng_)) / cfg_.rate
                                  : gamma_(arrival_rng_);
      // The first request goes at t = 0; gaps separate the following ones.
      if (r.index > 0) clock_s_ += gap;
      r.arrival_s = clock_s_;
    }
    if (!cdf_.empty()) {
      const double u = uniform01(adapter_rng_);
      const size_t i = static_cast<size_t>(std::upper_bound(cdf_.begin(), cdf_.end(), u) -
                                           cdf_.begin());
      r.adapter_id = adapter_name(static_cast<int>(std::min(i, cdf_.size() - 1)));
    }
    const uint32_t plen = uniform_in(length_rng_, cfg_.prompt_len);
    r.output_len = uniform_in(length_rng_, cfg_.output_len);
    r.prompt_ids = random_prompt(length_rng_, plen, cfg_.vocab);
    return r;
  }

 private:
  const BenchConfig& cfg_;
  std::mt19937_64 arrival_rng_, adapter_rng_, length_rng_;
  std::gamma_distribution<double> gamma_;
  std::vector<double> cdf_;  // cumulative adapter popularity, normalised
  uint64_t index_ = 0;
  double clock_s_ = 0;
};

class TraceWorkload : public Workload {
 public:
  explicit TraceWorkload(std::vector<RequestSpec> specs) : specs_(std::move(specs)) {}
  std::optional<RequestSpec> next() override {
    if (pos_ >= specs_.size()) return std::nullopt;
    return std::move(specs_[pos_++]);
  }

 private:
  std::vector<RequestSpec> specs_;
  size_t pos_ = 0;
};

}  // namespace

std::vector<double> power_law_weights(int n, double alpha) {
  std::vector<double> w(static_cast<size_t>(std::max(n, 0)));
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::pow(static_cast<double>(i + 1), -alpha);
  return w;
}

std::unique_ptr<Workload> make_synthetic_workload(const BenchConfig& cfg) {
  return std::make_unique<SyntheticWorkload>(cfg);
}

std::unique_ptr<Workload> load_trace_workload(const BenchConfig& cfg, std::string* error) {
  std::ifstream in(cfg.trace);
  if (!in) {
    *error = "cannot open trace " + cfg.trace;
    return nullptr;
  }
  std::mt19937_64 rng(cfg.seed ^ kLengthStream);
  std::vector<RequestSpec> specs;
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    const size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    const std::string where = cfg.trace + ":" + std::to_string(lineno) + ": ";
    try {
      const nlohmann::json j = nlohmann::json::parse(line);
      RequestSpec r;
      r.arrival_s = j.value("arrival_s", 0.0);
      if (!std::isfinite(r.arrival_s) || r.arrival_s < 0) throw std::runtime_error("bad arrival_s");
      if (j.contains("adapter") && !j["adapter"].is_null()) {
        const auto& a = j["adapter"];
        if (a.is_number_integer()) {
          r.adapter_id = adapter_name(a.get<int>());
        } else {
          r.adapter_id = a.get<std::string>();
        }
      }
      if (cfg.base_only) r.adapter_id.clear();
      if (j.contains("prompt_ids")) {
        r.prompt_ids = j["prompt_ids"].get<std::vector<uint32_t>>();
      } else if (j.contains("prompt_len")) {
        r.prompt_ids = random_prompt(rng, j["prompt_len"].get<uint32_t>(), cfg.vocab);
      } else {
        r.prompt_ids = random_prompt(rng, uniform_in(rng, cfg.prompt_len), cfg.vocab);
      }
      r.output_len = j.contains("output_len") ? j["output_len"].get<uint32_t>()
                                              : uniform_in(rng, cfg.output_len);
      if (r.prompt_ids.empty()) throw std::runtime_error("empty prompt");
      if (r.output_len == 0) throw std::runtime_error("output_len must be >= 1");
      specs.push_back(std::move(r));
    } catch (const std::exception& e) {
      *error = where + e.what();
      return nullptr;
    }
  }
  if (specs.empty()) {
    *error = "trace " + cfg.trace + " has no requests";
    return nullptr;
  }
  std::stable_sort(specs.begin(), specs.end(), [](const RequestSpec& a, const RequestSpec& b) {
    return a.arrival_s < b.arrival_s;
  });
  for (size_t i = 0; i < specs.size(); ++i) specs[i].index = i;
  return std::make_unique<TraceWorkload>(std::move(specs));
}

}  // namespace loraserve::bench
