// TenantDirectory: identity, adapter ownership, quotas and per-tenant
// accounting for the gRPC service. Thread-safe (one mutex; nothing slow is
// done while holding it).
//
// Adapter ids are per tenant: tenant "acme" asking for "bot" means the
// scheduler's adapter "acme/bot", so two tenants may both own a "bot" and
// neither can tell the other's exists. Adapters an admin marks public live
// as "public/<id>" and are visible to everyone; a tenant's own id shadows a
// public one. In open mode (no --tenants) there is one implicit admin
// tenant "" and ids are used as given.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "server/tenant_config.h"

namespace loraserve {

struct Caller {
  std::string tenant;  // "" in open mode
  bool admin = false;
  TenantQuotas quotas;
};

struct AdapterOwnership {
  std::string owner;      // tenant, "public", or "" (open mode)
  std::string public_id;  // the id its owner uses
  bool is_public = false;
  int64_t bytes = 0;
  // The scheduler's key for the weights in use: the directory id for the
  // first version, "<id>@v<N>" after a replace, so the new weights can be
  // registered while requests still run on the old ones ('@' is not allowed
  // in adapter ids).
  std::string engine_id;
  uint64_t version = 1;
  bool stored = false;       // its files are in the --adapter-store
  std::string stored_digest;  // the stored weights' sha256 (a re-created id differs)
};

// The directory id of a scheduler key ("<id>@v<N>" -> "<id>").
std::string directory_id_of(const std::string& engine_id);
std::string engine_id_for(const std::string& directory_id, uint64_t version);

struct TenantAccount {
  std::string tenant;
  uint64_t requests = 0;
  int32_t in_flight = 0;
  int64_t queued_tokens = 0;  // prompt + max_new_tokens of requests in flight
  uint64_t prompt_tokens = 0;
  uint64_t completion_tokens = 0;
  double queue_ms_total = 0;
  uint64_t finished = 0;
  uint64_t aborted = 0;
  uint64_t rejected = 0;
  uint64_t cancelled = 0;
  int32_t adapters = 0;
  int64_t adapter_bytes = 0;
};

enum class RequestOutcome { kCompleted, kCancelled, kAborted, kFailed };

class TenantDirectory {
 public:
  // `config` null = open mode.
  explicit TenantDirectory(std::shared_ptr<const TenantConfig> config);

  bool open_mode() const;
  // Replaces the tenants (SIGHUP). Accounts and adapter ownership persist.
  void set_config(std::shared_ptr<const TenantConfig> config);
  std::shared_ptr<const TenantConfig> config() const;

  // From the `authorization` metadata value ("Bearer <key>"); UNAUTHENTICATED
  // for a missing, malformed or unknown key. Open mode: the admin caller.
  StatusOr<Caller> authenticate(const std::string* authorization) const;

  static std::string scheduler_id(const std::string& owner, const std::string& id);

  // The scheduler key `caller` means by `id` for Generate: its own adapter,
  // else a public one (the key of the version in use). NOT_FOUND otherwise
  // (whoever else owns one).
  StatusOr<std::string> resolve(const Caller& caller, const std::string& id) const;
  // Owner for a load/unload request: the caller, or (admin only) the named
  // tenant or "public". PERMISSION_DENIED for a non-admin asking for more;
  // NOT_FOUND for an unknown tenant.
  StatusOr<std::string> owner_for(const Caller& caller, const std::string& owner_tenant,
                                  bool is_public) const;

  // Adapter quota check and reservation; release_adapter undoes it.
  Status reserve_adapter(const std::string& owner, int64_t bytes);
  void release_adapter(const std::string& owner, int64_t bytes);
  void add_adapter(const std::string& scheduler_id, AdapterOwnership info);
  // Returns what was recorded (bytes) and forgets it.
  StatusOr<AdapterOwnership> remove_adapter(const std::string& scheduler_id);
  // Scheduler ids of the adapters `caller` may see, with their ownership.
  std::vector<std::pair<std::string, AdapterOwnership>> visible_adapters(const Caller& caller) const;
  // By directory id or by scheduler key (a versioned key maps to its id).
  StatusOr<AdapterOwnership> ownership(const std::string& scheduler_id) const;

  // Request quotas: max_concurrent_requests and max_queued_tokens.
  Status begin_request(const Caller& caller, int64_t tokens);
  void end_request(const Caller& caller, int64_t tokens, RequestOutcome outcome,
                   uint32_t prompt_tokens, uint32_t completion_tokens, double queue_ms);

  // The caller's account, or every tenant's for an admin.
  std::vector<TenantAccount> accounts(const Caller& caller) const;

 private:
  TenantAccount& account(const std::string& tenant);  // mu_ held

  mutable std::mutex mu_;
  std::shared_ptr<const TenantConfig> config_;            // guarded by mu_
  std::map<std::string, AdapterOwnership> adapters_;      // scheduler id -> owner; mu_
  std::map<std::string, TenantAccount> accounts_;         // tenant -> account; mu_
};

}  // namespace loraserve
