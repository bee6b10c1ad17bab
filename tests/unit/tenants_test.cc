#include "server/tenant_config.h"

#include <gtest/gtest.h>

#include "server/tenant_directory.h"

namespace loraserve {
namespace {

const char* kKeyA = "key-for-tenant-a-0123456789";
const char* kKeyB = "key-for-tenant-b-0123456789";
const char* kKeyAdmin = "key-for-the-admin-012345678";

AdapterOwnership owned(std::string owner, std::string public_id, bool is_public, int64_t bytes) {
  AdapterOwnership o;
  o.owner = std::move(owner);
  o.public_id = std::move(public_id);
  o.is_public = is_public;
  o.bytes = bytes;
  return o;
}

std::string config_text() {
  return std::string("tenants:\n") +
         "  - name: a\n    keys: [\"" + hash_api_key(kKeyA) + "\"]\n" +
         "    quotas: {max_adapters: 1, max_adapter_bytes: 1000, max_concurrent_requests: 2, "
         "max_queued_tokens: 100}\n" +
         "  - name: b\n    keys: [\"" + hash_api_key(kKeyB) + "\"]\n" +
         "  - name: ops\n    role: admin\n    keys: [\"" + hash_api_key(kKeyAdmin) + "\"]\n";
}

TEST(ApiKeys, SaltedHashesVerifyOnlyTheirKey) {
  const std::string h1 = hash_api_key("secret-key-000000000");
  const std::string h2 = hash_api_key("secret-key-000000000");
  EXPECT_NE(h1, h2);  // fresh salt each time
  EXPECT_TRUE(verify_api_key("secret-key-000000000", h1));
  EXPECT_TRUE(verify_api_key("secret-key-000000000", h2));
  EXPECT_FALSE(verify_api_key("secret-key-000000001", h1));
  EXPECT_FALSE(verify_api_key("secret-key-000000000", "sha256$zz$00"));
  EXPECT_FALSE(verify_api_key("x", "plain"));
  // sha256("" || "abc"), independently known.
  EXPECT_EQ(hash_api_key_with_salt("abc", ""),
            "sha256$$ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(TenantConfig, ParsesYamlAndJsonAndAuthenticates) {
  auto cfg = TenantConfig::parse(config_text());
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  ASSERT_EQ(cfg->tenants().size(), 3u);
  EXPECT_EQ(cfg->authenticate(kKeyA)->name, "a");
  EXPECT_EQ(cfg->authenticate(kKeyAdmin)->role, TenantRole::kAdmin);
  EXPECT_EQ(cfg->authenticate("wrong"), nullptr);
  EXPECT_EQ(cfg->authenticate(""), nullptr);
  EXPECT_EQ(cfg->find("a")->quotas.max_concurrent_requests, 2);
  EXPECT_EQ(cfg->find("b")->quotas.max_adapters, -1);

  const std::string json = "{\"tenants\": [{\"name\": \"j\", \"keys\": [\"" + hash_api_key(kKeyB) +
                           "\"], \"adapters\": [{\"id\": \"x\", \"path\": \"p\", \"public\": true}]}]}";
  auto j = TenantConfig::parse(json);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_TRUE(j->find("j")->adapters[0].is_public);
}

TEST(TenantConfig, RefusesMalformedFilesNamingTheProblem) {
  const std::string h = hash_api_key(kKeyA);
  struct Case {
    std::string text;
    std::string mention;
  };
  const std::vector<Case> cases = {
      {"tenants: [", "YAML"},
      {"users: []", "tenants"},
      {"tenants: []", "empty"},
      {"tenants:\n  - name: public\n    keys: [\"" + h + "\"]\n", "public"},
      {"tenants:\n  - name: a\n    keys: [\"plaintext-key\"]\n", "hash"},
      {"tenants:\n  - name: a\n    keys: []\n", "keys"},
      {"tenants:\n  - name: a\n    role: root\n    keys: [\"" + h + "\"]\n", "role"},
      {"tenants:\n  - name: a\n    keys: [\"" + h + "\"]\n    quotas: {max_gpus: 1}\n", "max_gpus"},
      {"tenants:\n  - name: a\n    keys: [\"" + h + "\"]\n  - name: a\n    keys: [\"" +
           hash_api_key(kKeyB) + "\"]\n",
       "duplicate"},
  };
  for (const Case& c : cases) {
    auto cfg = TenantConfig::parse(c.text);
    ASSERT_FALSE(cfg.ok()) << c.text;
    EXPECT_EQ(cfg.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(cfg.status().message().find(c.mention), std::string::npos)
        << cfg.status() << " should mention " << c.mention;
  }
}

TEST(TenantDirectory, AdaptersArePrivatePublicOnesShared) {
  auto cfg = TenantConfig::parse(config_text());
  ASSERT_TRUE(cfg.ok());
  TenantDirectory dir(std::make_shared<const TenantConfig>(std::move(*cfg)));
  const std::string bearer_a = std::string("Bearer ") + kKeyA;
  const std::string bearer_b = std::string("Bearer ") + kKeyB;
  const std::string bearer_ops = std::string("Bearer ") + kKeyAdmin;
  auto a = dir.authenticate(&bearer_a);
  auto b = dir.authenticate(&bearer_b);
  auto ops = dir.authenticate(&bearer_ops);
  ASSERT_TRUE(a.ok() && b.ok() && ops.ok());
  const std::string bad = "Bearer nope";
  const std::string no_scheme = kKeyA;
  EXPECT_EQ(dir.authenticate(nullptr).status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(dir.authenticate(&bad).status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(dir.authenticate(&no_scheme).status().code(), StatusCode::kUnauthenticated);

  dir.add_adapter("a/bot", owned("a", "bot", false, 10));
  dir.add_adapter("public/shared", owned("public", "shared", true, 10));
  EXPECT_EQ(*dir.resolve(*a, "bot"), "a/bot");
  EXPECT_EQ(dir.resolve(*b, "bot").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(*dir.resolve(*b, "shared"), "public/shared");
  EXPECT_EQ(dir.visible_adapters(*b).size(), 1u);
  EXPECT_EQ(dir.visible_adapters(*ops).size(), 2u);

  EXPECT_EQ(dir.owner_for(*a, "", true).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(dir.owner_for(*a, "b", false).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(*dir.owner_for(*ops, "b", false), "b");
  EXPECT_EQ(*dir.owner_for(*ops, "", true), "public");
  EXPECT_EQ(dir.owner_for(*ops, "nobody", false).status().code(), StatusCode::kNotFound);
}

TEST(TenantDirectory, QuotasTripWithTheirNames) {
  auto cfg = TenantConfig::parse(config_text());
  ASSERT_TRUE(cfg.ok());
  TenantDirectory dir(std::make_shared<const TenantConfig>(std::move(*cfg)));
  const std::string bearer_a = std::string("Bearer ") + kKeyA;
  auto a = dir.authenticate(&bearer_a);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(dir.reserve_adapter("a", 600).ok());
  Status s = dir.reserve_adapter("a", 100);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("max_adapters"), std::string::npos);
  dir.release_adapter("a", 600);
  s = dir.reserve_adapter("a", 1001);
  EXPECT_NE(s.message().find("max_adapter_bytes"), std::string::npos);

  ASSERT_TRUE(dir.begin_request(*a, 40).ok());
  s = dir.begin_request(*a, 70);
  EXPECT_NE(s.message().find("max_queued_tokens"), std::string::npos);
  ASSERT_TRUE(dir.begin_request(*a, 10).ok());
  s = dir.begin_request(*a, 1);
  EXPECT_NE(s.message().find("max_concurrent_requests"), std::string::npos);
  dir.end_request(*a, 40, RequestOutcome::kCompleted, 5, 7, 1.5);
  EXPECT_TRUE(dir.begin_request(*a, 1).ok());
  auto accounts = dir.accounts(*a);
  ASSERT_EQ(accounts.size(), 1u);
  EXPECT_EQ(accounts[0].rejected, 4u);
  EXPECT_EQ(accounts[0].completion_tokens, 7u);
  EXPECT_EQ(accounts[0].in_flight, 2);
}

TEST(TenantDirectory, OpenModeIsOneAdminTenant) {
  TenantDirectory dir(nullptr);
  auto c = dir.authenticate(nullptr);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->admin);
  EXPECT_EQ(TenantDirectory::scheduler_id("", "x"), "x");
  EXPECT_EQ(dir.owner_for(*c, "", true).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace loraserve
