// Tenants over the real server: three tenants (two users and an admin) with
// API keys and quotas. A tenant cannot see, use or unload another's adapter
// (NOT_FOUND, not PERMISSION_DENIED), wrong or missing keys are
// UNAUTHENTICATED, quotas trip with their names, public adapters serve
// everyone, and SIGHUP swaps the keys. Then TLS: only clients that trust the
// server's CA (and, with --tls-client-ca, present a certificate) get in.
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include "server/tenant_config.h"
#include "tests/e2e/e2e_util.h"

namespace loraserve::e2e {
namespace {

namespace fs = std::filesystem;

const char* kAlice = "alice-key-0123456789abcdef";
const char* kBob = "bob-key-0123456789abcdef";
const char* kBobNew = "bob-new-key-0123456789abcdef";
const char* kOps = "ops-key-0123456789abcdef";

std::string tenants_yaml(const char* bob_key) {
  return std::string("tenants:\n") +
         "  - name: alice\n    keys: [\"" + hash_api_key(kAlice) + "\"]\n" +
         "    quotas: {max_adapters: 2, max_concurrent_requests: 2}\n" +
         "  - name: bob\n    keys: [\"" + hash_api_key(bob_key) + "\"]\n" +
         "    quotas: {max_queued_tokens: 50}\n" +
         "  - name: ops\n    role: admin\n    keys: [\"" + hash_api_key(kOps) + "\"]\n";
}

std::string tenants_path() { return synth_data().root + "/tenants.yaml"; }

class Tenants : public ServerSuite {
 protected:
  static void SetUpTestSuite() {
    std::ofstream(tenants_path()) << tenants_yaml(kBob);
    ServerOptions opts = default_server_options(64);
    opts.extra_args = {"--tenants", tenants_path()};
    start_suite_server(opts);
  }
  static void TearDownTestSuite() { stop_suite_server(); }

  // A context carrying `key` (nullptr: none).
  static void auth(grpc::ClientContext* ctx, const char* key) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    if (key != nullptr) ctx->AddMetadata("authorization", std::string("Bearer ") + key);
  }
  grpc::Status load(const char* key, const std::string& id, int adapter, bool is_public = false,
                    const std::string& owner = "") {
    grpc::ClientContext ctx;
    auth(&ctx, key);
    v1::LoadAdapterRequest req;
    req.set_adapter_id(id);
    req.set_path(SynthData::adapter_name(adapter));
    req.set_is_public(is_public);
    req.set_owner_tenant(owner);
    v1::AdapterInfo info;
    return stub()->LoadAdapter(&ctx, req, &info);
  }
  grpc::Status unload(const char* key, const std::string& id) {
    grpc::ClientContext ctx;
    auth(&ctx, key);
    v1::UnloadAdapterRequest req;
    req.set_adapter_id(id);
    v1::UnloadAdapterResponse resp;
    return stub()->UnloadAdapter(&ctx, req, &resp);
  }
  std::vector<v1::AdapterInfo> list(const char* key, grpc::Status* status = nullptr) {
    grpc::ClientContext ctx;
    auth(&ctx, key);
    v1::ListAdaptersResponse resp;
    grpc::Status s = stub()->ListAdapters(&ctx, v1::ListAdaptersRequest(), &resp);
    if (status) *status = s;
    return {resp.adapters().begin(), resp.adapters().end()};
  }
  StreamResult gen(const char* key, const std::string& adapter, const std::vector<uint32_t>& prompt,
                   int n) {
    grpc::ClientContext ctx;
    auth(&ctx, key);
    return run_generate(stub(), make_request(adapter, prompt, n), {}, &ctx);
  }
  v1::Stats stats(const char* key) {
    grpc::ClientContext ctx;
    auth(&ctx, key);
    v1::Stats s;
    EXPECT_TRUE(stub()->GetStats(&ctx, v1::GetStatsRequest(), &s).ok());
    return s;
  }
};

TEST_F(Tenants, MissingOrWrongKeysAreUnauthenticated) {
  grpc::Status s;
  list(nullptr, &s);
  EXPECT_TRUE(has_code(s, grpc::StatusCode::UNAUTHENTICATED, "API key"));
  list("not-a-key", &s);
  EXPECT_TRUE(has_code(s, grpc::StatusCode::UNAUTHENTICATED, "invalid"));
  EXPECT_TRUE(has_code(gen(nullptr, "", make_prompt(1, 4), 2).status,
                       grpc::StatusCode::UNAUTHENTICATED, "API key"));
  EXPECT_TRUE(has_code(load("wrong", "x", 0), grpc::StatusCode::UNAUTHENTICATED, "invalid"));
  // The base model serves any authenticated tenant.
  EXPECT_TRUE(gen(kBob, "", make_prompt(2, 4), 3).status.ok());
}

TEST_F(Tenants, AdaptersArePrivateAndIdsDoNotCollide) {
  ASSERT_TRUE(load(kAlice, "bot", 0).ok());
  // Bob cannot use, see or unload Alice's adapter, and is not told it exists.
  const std::vector<uint32_t> prompt = make_prompt(30, 6);
  EXPECT_TRUE(has_code(gen(kBob, "bot", prompt, 4).status, grpc::StatusCode::NOT_FOUND, "bot"));
  EXPECT_EQ(find_adapter(list(kBob), "bot"), nullptr);
  EXPECT_TRUE(has_code(unload(kBob, "bot"), grpc::StatusCode::NOT_FOUND, "bot"));
  // Bob's own "bot" is a different adapter.
  ASSERT_TRUE(load(kBob, "bot", 1).ok());
  const StreamResult a = gen(kAlice, "bot", prompt, 8);
  const StreamResult b = gen(kBob, "bot", prompt, 8);
  EXPECT_TRUE(matches_offline(a, run_offline(offline_job(0, prompt, 8)), prompt.size()));
  EXPECT_TRUE(matches_offline(b, run_offline(offline_job(1, prompt, 8)), prompt.size()));
  const auto alice_list = list(kAlice);
  ASSERT_NE(find_adapter(alice_list, "bot"), nullptr);
  EXPECT_EQ(find_adapter(alice_list, "bot")->owner(), "alice");
  EXPECT_EQ(find_adapter(alice_list, "bot")->rank(), 8u);
  // The admin sees both.
  int bots = 0;
  for (const auto& info : list(kOps)) bots += info.adapter_id() == "bot" ? 1 : 0;
  EXPECT_EQ(bots, 2);
  EXPECT_TRUE(unload(kAlice, "bot").ok());
  EXPECT_TRUE(unload(kBob, "bot").ok());
}

TEST_F(Tenants, PublicAdaptersServeEveryoneButOnlyAdminsPublish) {
  EXPECT_TRUE(has_code(load(kAlice, "shared", 2, /*is_public=*/true),
                       grpc::StatusCode::PERMISSION_DENIED, "admin"));
  EXPECT_TRUE(has_code(load(kAlice, "x", 2, false, "bob"), grpc::StatusCode::PERMISSION_DENIED,
                       "admin"));
  ASSERT_TRUE(load(kOps, "shared", 2, /*is_public=*/true).ok());
  const std::vector<uint32_t> prompt = make_prompt(31, 5);
  const OfflineResult want = run_offline(offline_job(2, prompt, 6));
  EXPECT_TRUE(matches_offline(gen(kAlice, "shared", prompt, 6), want, prompt.size()));
  EXPECT_TRUE(matches_offline(gen(kBob, "shared", prompt, 6), want, prompt.size()));
  // (The list outlives the pointer into it: ASan caught a read of a freed
  // temporary here.)
  const std::vector<v1::AdapterInfo> bobs = list(kBob);
  const v1::AdapterInfo* seen = find_adapter(bobs, "shared");
  ASSERT_NE(seen, nullptr);
  EXPECT_TRUE(seen->is_public());
  // A user cannot unload it; it is not theirs.
  EXPECT_TRUE(has_code(unload(kBob, "shared"), grpc::StatusCode::NOT_FOUND, "shared"));
  // The admin loads for a tenant too.
  ASSERT_TRUE(load(kOps, "gift", 3, false, "bob").ok());
  EXPECT_NE(find_adapter(list(kBob), "gift"), nullptr);
  EXPECT_EQ(find_adapter(list(kAlice), "gift"), nullptr);
  EXPECT_TRUE(unload(kBob, "gift").ok());
}

TEST_F(Tenants, QuotasTripWithTheRightCodeAndName) {
  ASSERT_TRUE(load(kAlice, "q1", 0).ok());
  ASSERT_TRUE(load(kAlice, "q2", 1).ok());
  EXPECT_TRUE(has_code(load(kAlice, "q3", 0), grpc::StatusCode::RESOURCE_EXHAUSTED, "max_adapters"));
  // Bob may queue 50 tokens: a 40-token prompt with 20 new tokens is over.
  EXPECT_TRUE(has_code(gen(kBob, "", make_prompt(5, 40), 20).status,
                       grpc::StatusCode::RESOURCE_EXHAUSTED, "max_queued_tokens"));
  EXPECT_TRUE(gen(kBob, "", make_prompt(5, 20), 20).status.ok());
  // Alice may run two requests at once.
  std::vector<std::unique_ptr<grpc::ClientContext>> ctxs;
  std::vector<std::thread> threads;
  std::atomic<int> started{0};
  for (int i = 0; i < 2; ++i) {
    ctxs.push_back(std::make_unique<grpc::ClientContext>());
    auth(ctxs.back().get(), kAlice);
    threads.emplace_back([&, i] {
      auto s = server()->stub();
      run_generate(s.get(), make_request("q1", make_prompt(40 + i, 4), 1500),
                   [&](const StreamResult& r) {
                     if (r.tokens.size() == 1) started++;
                   },
                   ctxs[i].get());
    });
  }
  ASSERT_TRUE(wait_until([&] { return started.load() == 2; }, std::chrono::seconds(20)));
  EXPECT_TRUE(has_code(gen(kAlice, "q2", make_prompt(6, 4), 4).status,
                       grpc::StatusCode::RESOURCE_EXHAUSTED, "max_concurrent_requests"));
  for (auto& c : ctxs) c->TryCancel();
  for (auto& t : threads) t.join();
  // Per-tenant accounting: Alice sees herself only; the admin sees everyone.
  // The server notices the cancellations asynchronously.
  v1::Stats mine;
  EXPECT_TRUE(wait_until(
      [&] {
        mine = stats(kAlice);
        return mine.tenants_size() == 1 && mine.tenants(0).cancelled() >= 2 &&
               mine.tenants(0).in_flight() == 0;
      },
      std::chrono::seconds(10)));
  ASSERT_EQ(mine.tenants_size(), 1);
  EXPECT_EQ(mine.tenants(0).tenant(), "alice");
  EXPECT_GE(mine.tenants(0).rejected(), 2u);
  EXPECT_EQ(mine.tenants(0).cancelled(), 2u);
  EXPECT_GE(stats(kOps).tenants_size(), 3);
  EXPECT_TRUE(wait_until([&] { return unload(kAlice, "q1").ok(); }, std::chrono::seconds(10)));
  EXPECT_TRUE(unload(kAlice, "q2").ok());
}

TEST_F(Tenants, SighupReloadsKeys) {
  std::ofstream(tenants_path()) << tenants_yaml(kBobNew);
  ASSERT_EQ(::kill(server()->pid(), SIGHUP), 0);
  grpc::Status s;
  EXPECT_TRUE(wait_until(
      [&] {
        list(kBobNew, &s);
        return s.ok();
      },
      std::chrono::seconds(10)))
      << describe(s);
  list(kBob, &s);
  EXPECT_TRUE(has_code(s, grpc::StatusCode::UNAUTHENTICATED, "invalid"));
  list(kAlice, &s);
  EXPECT_TRUE(s.ok());
  // Put the old key back for any test that runs after.
  std::ofstream(tenants_path()) << tenants_yaml(kBob);
  ::kill(server()->pid(), SIGHUP);
  EXPECT_TRUE(wait_until(
      [&] {
        list(kBob, &s);
        return s.ok();
      },
      std::chrono::seconds(10)));
}

// --- TLS ---

struct Certs {
  std::string dir, ca, server_cert, server_key, client_cert, client_key, other_ca;
  std::string error;
};

const Certs& certs() {
  static Certs c = [] {
    Certs out;
    out.dir = synth_data().root + "/tls";
    fs::create_directories(out.dir);
    const std::string d = out.dir;
    const std::string script =
        "set -e; cd " + d + "\n"
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
        "-subj /CN=loraserve-test-ca 2>/dev/null\n"
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.pem -days 2 "
        "-subj /CN=someone-else 2>/dev/null\n"
        "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.cnf\n"
        "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
        "-subj /CN=127.0.0.1 2>/dev/null\n"
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem "
        "-days 2 -extfile san.cnf 2>/dev/null\n"
        "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr "
        "-subj /CN=client 2>/dev/null\n"
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem "
        "-days 2 2>/dev/null\n";
    std::string o, e;
    if (run_process({"/bin/sh", "-c", script}, &o, &e) != 0) out.error = "openssl failed: " + e;
    out.ca = d + "/ca.pem";
    out.other_ca = d + "/other.pem";
    out.server_cert = d + "/server.pem";
    out.server_key = d + "/server.key";
    out.client_cert = d + "/client.pem";
    out.client_key = d + "/client.key";
    return out;
  }();
  return c;
}

grpc::Status list_over(const std::string& addr, std::shared_ptr<grpc::ChannelCredentials> creds) {
  auto stub = v1::LoraServe::NewStub(grpc::CreateChannel(addr, creds));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  ctx.AddMetadata("authorization", std::string("Bearer ") + kOps);
  v1::ListAdaptersResponse resp;
  return stub->ListAdapters(&ctx, v1::ListAdaptersRequest(), &resp);
}

grpc::SslCredentialsOptions trust(const std::string& ca, const std::string& cert = "",
                                  const std::string& key = "") {
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = read_file(ca);
  if (!cert.empty()) {
    o.pem_cert_chain = read_file(cert);
    o.pem_private_key = read_file(key);
  }
  return o;
}

TEST(Tls, OnlyClientsTrustingTheCaGetInAndPlaintextIsRefused) {
  const Certs& c = certs();
  ASSERT_TRUE(c.error.empty()) << c.error;
  std::ofstream(tenants_path()) << tenants_yaml(kBob);
  ServerOptions opts = default_server_options(32);
  opts.extra_args = {"--tenants", tenants_path(), "--tls-cert", c.server_cert, "--tls-key",
                     c.server_key};
  std::string err;
  auto server = ServerProcess::start(opts, &err);
  ASSERT_NE(server, nullptr) << err;
  const std::string addr = server->address();
  EXPECT_TRUE(list_over(addr, grpc::SslCredentials(trust(c.ca))).ok());
  EXPECT_FALSE(list_over(addr, grpc::SslCredentials(trust(c.other_ca))).ok());
  // The key must never reach a TLS-only server in the clear: the handshake fails first.
  EXPECT_EQ(list_over(addr, grpc::InsecureChannelCredentials()).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

// lora-bench against a TLS server: connects with --tls-ca (a short bounded
// run completes), cannot without it, and a missing CA file is a flag error.
TEST(Tls, LoraBenchConnectsWithTheCa) {
  const Certs& c = certs();
  ASSERT_TRUE(c.error.empty()) << c.error;
  ServerOptions opts = default_server_options(32);
  opts.extra_args = {"--tls-cert", c.server_cert, "--tls-key", c.server_key};
  std::string err;
  auto server = ServerProcess::start(opts, &err);
  ASSERT_NE(server, nullptr) << err;
  const std::vector<std::string> common = {LORA_BENCH_BIN, "--addr", server->address(),
                                           "--base-only", "--users", "2", "--num-requests",
                                           "4", "--prompt-len", "4:8", "--output-len", "2:4",
                                           "--vocab", "1000", "--quiet"};
  std::string out, e;
  std::vector<std::string> with_ca = common;
  with_ca.insert(with_ca.end(), {"--tls-ca", c.ca});
  EXPECT_EQ(run_process(with_ca, &out, &e), 0) << e;
  EXPECT_NE(run_process(common, &out, &e), 0) << "plaintext reached a TLS-only server";
  std::vector<std::string> missing = common;
  missing.insert(missing.end(), {"--tls-ca", c.ca + ".missing"});
  const int status = run_process(missing, &out, &e);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << status;
  EXPECT_NE(e.find("cannot read"), std::string::npos) << e;
}

TEST(Tls, ClientCertificatesAreRequiredWithClientCa) {
  const Certs& c = certs();
  ASSERT_TRUE(c.error.empty()) << c.error;
  ServerOptions opts = default_server_options(32);
  opts.extra_args = {"--tls-cert", c.server_cert, "--tls-key", c.server_key, "--tls-client-ca",
                     c.ca};
  std::string err;
  auto server = ServerProcess::start(opts, &err);
  ASSERT_NE(server, nullptr) << err;
  const std::string addr = server->address();
  EXPECT_TRUE(list_over(addr, grpc::SslCredentials(trust(c.ca, c.client_cert, c.client_key))).ok());
  EXPECT_FALSE(list_over(addr, grpc::SslCredentials(trust(c.ca))).ok());
}

}  // namespace
}  // namespace loraserve::e2e
