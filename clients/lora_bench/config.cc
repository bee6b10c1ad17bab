#include "clients/lora_bench/config.h"

#include <cstdio>
#include <stdexcept>

namespace loraserve::bench {
namespace {

// "A:B" (inclusive) or "A" (fixed), A <= B, A >= 1.
IntRange parse_range(const std::string& text, const std::string& flag) {
  IntRange r;
  const size_t colon = text.find(':');
  try {
    size_t used = 0;
    const std::string a = text.substr(0, colon);
    const unsigned long lo = std::stoul(a, &used);
    if (used != a.size()) throw std::invalid_argument(a);
    unsigned long hi = lo;
    if (colon != std::string::npos) {
      const std::string b = text.substr(colon + 1);
      hi = std::stoul(b, &used);
      if (used != b.size()) throw std::invalid_argument(b);
    }
    if (lo < 1 || hi < lo || hi > 1000000) throw std::out_of_range(text);
    r.lo = static_cast<uint32_t>(lo);
    r.hi = static_cast<uint32_t>(hi);
  } catch (const std::exception&) {
    throw CLI::ValidationError(flag, "expected A:B with 1 <= A <= B, got '" + text + "'");
  }
  return r;
}

}  // namespace

std::string adapter_name(int index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "adapter-%03d", index);
  return buf;
}

void add_flags(CLI::App& app, BenchConfig* c) {
  app.add_option("--addr", c->addr, "Server host:port (gRPC: setup, stats, and --api grpc requests)")
      ->capture_default_str();
  app.add_option("--api", c->api,
                 "Transport of the requests: grpc (Generate streams) or openai (POST "
                 "/v1/completions with SSE to --http-addr)")
      ->check(CLI::IsMember({"grpc", "openai"}))
      ->capture_default_str();
  app.add_option("--http-addr", c->http_addr, "host:port of the server's --http-listen (--api openai)");
  app.add_option("--api-key", c->api_key, "API key of a --tenants server (default: $LORASERVE_API_KEY)")
      ->envname("LORASERVE_API_KEY");
  app.add_option("--connections", c->connections, "HTTP/2 connections to spread streams over")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();

  app.add_option("--duration-s", c->duration_s, "Stop issuing requests after this many seconds")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--num-requests", c->num_requests, "Stop issuing after this many requests");
  app.add_option("--drain-s", c->drain_s,
                 "After the bound, wait this long for in-flight requests, then cancel them")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--request-timeout-s", c->request_timeout_s, "Per-request deadline (0 = none)")
      ->check(CLI::NonNegativeNumber);

  app.add_option("--rate", c->rate, "Open loop: mean arrival rate, requests/s")
      ->check(CLI::PositiveNumber);
  app.add_option("--cv", c->cv,
                 "Coefficient of variation of the gaps: 1 = Poisson, else gamma")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--users", c->users, "Closed loop: this many concurrent users")
      ->check(CLI::Range(1, 1000000));

  app.add_option("--num-adapters", c->num_adapters,
                 "Requests pick from adapter-000..adapter-(N-1); 0 = base model")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  app.add_option("--popularity", c->popularity, "Adapter popularity: uniform | powerlaw")
      ->check(CLI::IsMember({"uniform", "powerlaw"}))
      ->capture_default_str();
  app.add_option("--alpha", c->alpha, "Power-law exponent: P(i) ~ 1/(i+1)^alpha")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("--base-only", c->base_only, "Send every request to the base model");
  app.add_option("--trace", c->trace,
                 "JSONL trace: {\"arrival_s\", \"adapter\", \"prompt_len\"|\"prompt_ids\", "
                 "\"output_len\"} per line")
      ->check(CLI::ExistingFile);
  app.add_option_function<std::string>(
      "--prompt-len",
      [c](const std::string& s) { c->prompt_len = parse_range(s, "--prompt-len"); },
      "Prompt length range A:B (uniform, inclusive) [16:64]");
  app.add_option_function<std::string>(
      "--output-len",
      [c](const std::string& s) { c->output_len = parse_range(s, "--output-len"); },
      "Output length range A:B, enforced with ignore_eos [16:64]");
  app.add_option("--vocab", c->vocab, "Prompt token ids are drawn from [0, vocab)")
      ->check(CLI::Range(1u, 1u << 30))
      ->capture_default_str();
  app.add_option("--seed", c->seed, "Workload seed (same seed, same requests)")
      ->capture_default_str();
  app.add_option("--temperature", c->temperature, "Sampling temperature (0 = greedy)")
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();

  app.add_option("--tls-ca", c->tls_ca, "PEM CA bundle: connect with TLS");
  app.add_option("--tls-cert", c->tls_cert, "PEM client certificate for mutual TLS");
  app.add_option("--tls-key", c->tls_key, "PEM private key of --tls-cert");
  app.add_option("--setup", c->setup_dir,
                 "Register DIR/adapters/adapter-000.. (--num-adapters of them) via LoadAdapter "
                 "first; the server's --adapter-root must be DIR/adapters");
  app.add_option("--setup-files", c->setup_files,
                 "Register the N adapter ids over the first K directories only (adapter i "
                 "loads adapter-(i mod K)): thousands of ids without thousands of files; the "
                 "server keeps one host copy per file and pool pages per id")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--setup-concurrency", c->setup_concurrency, "Parallel LoadAdapter calls")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();

  app.add_option("--ttft-slo-ms", c->ttft_slo_ms, "TTFT target for SLO attainment")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--itl-slo-ms", c->itl_slo_ms, "Inter-token latency target for SLO attainment")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();

  app.add_option("--json", c->json_path, "Write the full report as JSON to FILE");
  app.add_flag("--progress", c->progress, "Progress line on stderr even when it is not a tty");
  app.add_flag("--quiet", c->quiet, "No table on stdout");
  app.footer(
      "Exit codes: 0 all requests succeeded; 3 the run finished but some requests failed "
      "(counted by gRPC code in the report); 1 the run could not happen (server unreachable, "
      "setup failed, bad trace); 2 bad flags.");
}

std::string validate(const BenchConfig& c) {
  if (c.duration_s <= 0 && c.num_requests == 0) {
    return "give a bound: --duration-s and/or --num-requests";
  }
  if (c.rate > 0 && c.users > 0) return "--rate and --users exclude each other";
  if (c.api == "openai" && c.http_addr.empty()) return "--api openai needs --http-addr";
  if (c.trace.empty() && c.rate <= 0 && c.users <= 0) {
    return "choose --rate (open loop) or --users (closed loop), or give a --trace";
  }
  if (!c.trace.empty() && c.rate > 0) {
    return "--trace gives the arrival times: drop --rate (or use --users to replay it closed-loop)";
  }
  if (!c.setup_dir.empty() && c.num_adapters == 0) {
    return "--setup needs --num-adapters N (how many adapters to register)";
  }
  if (c.setup_files > 0 && c.setup_dir.empty()) return "--setup-files needs --setup DIR";
  return "";
}

}  // namespace loraserve::bench
