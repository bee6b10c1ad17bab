// Tenants: who may call the server, with which role and quotas.
//
// Read from `--tenants FILE` (YAML or JSON; JSON is read as YAML):
//   tenants:
//     - name: acme                      # [A-Za-z0-9_-], not "public"
//       role: user                      # user | admin
//       keys: ["sha256$<salt hex>$<hex of sha256(salt bytes || key)>"]
//       quotas: {max_adapters: 10, max_adapter_bytes: 1000000000,
//                max_concurrent_requests: 8, max_queued_tokens: 100000}
//       adapters: [{id: support-bot, path: acme/support, public: false}]
// API keys are never stored in clear: `loraserve hash-key` prints the line
// for a key. A missing quota is unlimited. Immutable once loaded; the server
// swaps in a new one on SIGHUP.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace loraserve {

enum class TenantRole { kUser, kAdmin };

struct TenantQuotas {
  int64_t max_adapters = -1;             // -1 = unlimited
  int64_t max_adapter_bytes = -1;        // pool image bytes of its adapters
  int64_t max_concurrent_requests = -1;  // Generate calls in flight
  int64_t max_queued_tokens = -1;        // prompt + max_new_tokens of its requests in flight
};

struct DeclaredAdapter {
  std::string id;
  std::string path;  // relative to --adapter-root
  bool is_public = false;
};

struct Tenant {
  std::string name;
  TenantRole role = TenantRole::kUser;
  std::vector<std::string> key_hashes;
  TenantQuotas quotas;
  std::vector<DeclaredAdapter> adapters;
};

class TenantConfig {
 public:
  // INVALID_ARGUMENT naming the entry for anything malformed; NOT_FOUND
  // when the file is missing.
  static StatusOr<TenantConfig> load_file(const std::string& path);
  static StatusOr<TenantConfig> parse(const std::string& text);

  // The tenant whose key this is, or null (constant-time per stored hash).
  const Tenant* authenticate(const std::string& api_key) const;
  const Tenant* find(const std::string& name) const;
  const std::vector<Tenant>& tenants() const { return tenants_; }

 private:
  std::vector<Tenant> tenants_;
};

// "sha256$<salt hex>$<digest hex>" for `key` with a fresh random salt.
std::string hash_api_key(const std::string& key);
// Same with a given salt (hex), for tests.
std::string hash_api_key_with_salt(const std::string& key, const std::string& salt_hex);
bool verify_api_key(const std::string& key, const std::string& stored_hash);

}  // namespace loraserve
