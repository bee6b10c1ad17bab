#include "server/tenant_directory.h"

namespace loraserve {

namespace {
constexpr const char* kPublic = "public";

Status quota_error(const std::string& quota, int64_t limit, const std::string& tenant) {
  return resource_exhausted("quota " + quota + " (" + std::to_string(limit) +
                            ") reached for tenant '" + tenant + "'");
}
}  // namespace

std::string directory_id_of(const std::string& engine_id) {
  const size_t at = engine_id.rfind("@v");
  if (at == std::string::npos || at + 2 == engine_id.size()) return engine_id;
  for (size_t i = at + 2; i < engine_id.size(); ++i) {
    if (engine_id[i] < '0' || engine_id[i] > '9') return engine_id;
  }
  return engine_id.substr(0, at);
}

std::string engine_id_for(const std::string& directory_id, uint64_t version) {
  return version <= 1 ? directory_id : directory_id + "@v" + std::to_string(version);
}

TenantDirectory::TenantDirectory(std::shared_ptr<const TenantConfig> config)
    : config_(std::move(config)) {}

bool TenantDirectory::open_mode() const {
  std::lock_guard<std::mutex> lock(mu_);
  return config_ == nullptr;
}

void TenantDirectory::set_config(std::shared_ptr<const TenantConfig> config) {
  std::lock_guard<std::mutex> lock(mu_);
  config_ = std::move(config);
}

std::shared_ptr<const TenantConfig> TenantDirectory::config() const {
  std::lock_guard<std::mutex> lock(mu_);
  return config_;
}

StatusOr<Caller> TenantDirectory::authenticate(const std::string* authorization) const {
  std::shared_ptr<const TenantConfig> cfg = config();
  if (cfg == nullptr) {
    Caller open;
    open.admin = true;
    return open;
  }
  static const std::string kBearer = "Bearer ";
  if (authorization == nullptr || authorization->compare(0, kBearer.size(), kBearer) != 0) {
    return Status(StatusCode::kUnauthenticated,
                  "missing API key: send metadata 'authorization: Bearer <key>'");
  }
  const Tenant* t = cfg->authenticate(authorization->substr(kBearer.size()));
  if (t == nullptr) return Status(StatusCode::kUnauthenticated, "invalid API key");
  Caller c;
  c.tenant = t->name;
  c.admin = t->role == TenantRole::kAdmin;
  c.quotas = t->quotas;
  return c;
}

std::string TenantDirectory::scheduler_id(const std::string& owner, const std::string& id) {
  return owner.empty() ? id : owner + "/" + id;
}

StatusOr<std::string> TenantDirectory::resolve(const Caller& caller, const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto key = [](const auto& it) {
    return it->second.engine_id.empty() ? it->first : it->second.engine_id;
  };
  auto own = adapters_.find(scheduler_id(caller.tenant, id));
  if (own != adapters_.end()) return key(own);
  if (config_ != nullptr) {
    auto pub = adapters_.find(scheduler_id(kPublic, id));
    if (pub != adapters_.end()) return key(pub);
  }
  return not_found("adapter '" + id + "' is not loaded");
}

StatusOr<std::string> TenantDirectory::owner_for(const Caller& caller,
                                                 const std::string& owner_tenant,
                                                 bool is_public) const {
  if (!caller.admin && (is_public || !owner_tenant.empty())) {
    return permission_denied("public adapters and loading for another tenant need the admin role");
  }
  std::shared_ptr<const TenantConfig> cfg = config();
  if (cfg == nullptr) {
    if (is_public || !owner_tenant.empty()) {
      return invalid_argument("is_public and owner_tenant need --tenants (the server runs open)");
    }
    return std::string();
  }
  if (is_public) return std::string(kPublic);
  if (owner_tenant.empty()) return caller.tenant;
  if (owner_tenant == kPublic) return std::string(kPublic);
  if (cfg->find(owner_tenant) == nullptr) return not_found("no tenant '" + owner_tenant + "'");
  return owner_tenant;
}

Status TenantDirectory::reserve_adapter(const std::string& owner, int64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  TenantAccount& a = account(owner);
  const Tenant* t = config_ ? config_->find(owner) : nullptr;
  if (t != nullptr) {
    if (t->quotas.max_adapters >= 0 && a.adapters + 1 > t->quotas.max_adapters) {
      a.rejected += 1;
      return quota_error("max_adapters", t->quotas.max_adapters, owner);
    }
    if (t->quotas.max_adapter_bytes >= 0 && a.adapter_bytes + bytes > t->quotas.max_adapter_bytes) {
      a.rejected += 1;
      return quota_error("max_adapter_bytes", t->quotas.max_adapter_bytes, owner);
    }
  }
  a.adapters += 1;
  a.adapter_bytes += bytes;
  return ok_status();
}

void TenantDirectory::release_adapter(const std::string& owner, int64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  TenantAccount& a = account(owner);
  a.adapters -= 1;
  a.adapter_bytes -= bytes;
}

void TenantDirectory::add_adapter(const std::string& scheduler_id, AdapterOwnership info) {
  std::lock_guard<std::mutex> lock(mu_);
  adapters_[scheduler_id] = std::move(info);
}

StatusOr<AdapterOwnership> TenantDirectory::remove_adapter(const std::string& scheduler_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = adapters_.find(scheduler_id);
  if (it == adapters_.end()) return not_found("adapter is not loaded");
  AdapterOwnership info = it->second;
  adapters_.erase(it);
  return info;
}

StatusOr<AdapterOwnership> TenantDirectory::ownership(const std::string& scheduler_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = adapters_.find(directory_id_of(scheduler_id));
  if (it == adapters_.end()) return not_found("adapter is not loaded");
  return it->second;
}

std::vector<std::pair<std::string, AdapterOwnership>> TenantDirectory::visible_adapters(
    const Caller& caller) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<std::string, AdapterOwnership>> out;
  for (const auto& [id, info] : adapters_) {
    if (caller.admin || info.owner == caller.tenant || info.is_public) out.emplace_back(id, info);
  }
  return out;
}

Status TenantDirectory::begin_request(const Caller& caller, int64_t tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  TenantAccount& a = account(caller.tenant);
  const TenantQuotas& q = caller.quotas;
  if (q.max_concurrent_requests >= 0 && a.in_flight + 1 > q.max_concurrent_requests) {
    a.rejected += 1;
    return quota_error("max_concurrent_requests", q.max_concurrent_requests, caller.tenant);
  }
  if (q.max_queued_tokens >= 0 && a.queued_tokens + tokens > q.max_queued_tokens) {
    a.rejected += 1;
    return quota_error("max_queued_tokens", q.max_queued_tokens, caller.tenant);
  }
  a.requests += 1;
  a.in_flight += 1;
  a.queued_tokens += tokens;
  return ok_status();
}

void TenantDirectory::end_request(const Caller& caller, int64_t tokens, RequestOutcome outcome,
                                  uint32_t prompt_tokens, uint32_t completion_tokens,
                                  double queue_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  TenantAccount& a = account(caller.tenant);
  a.in_flight -= 1;
  a.queued_tokens -= tokens;
  a.prompt_tokens += prompt_tokens;
  a.completion_tokens += completion_tokens;
  a.queue_ms_total += queue_ms;
  a.finished += 1;
  if (outcome == RequestOutcome::kAborted) a.aborted += 1;
  if (outcome == RequestOutcome::kCancelled) a.cancelled += 1;
}

std::vector<TenantAccount> TenantDirectory::accounts(const Caller& caller) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, TenantAccount> all = accounts_;
  // Every configured tenant appears, even before its first request.
  if (config_ != nullptr) {
    for (const Tenant& t : config_->tenants()) all[t.name].tenant = t.name;
  }
  all[caller.tenant].tenant = caller.tenant;
  std::vector<TenantAccount> out;
  for (const auto& [name, a] : all) {
    if (caller.admin || name == caller.tenant) out.push_back(a);
  }
  return out;
}

TenantAccount& TenantDirectory::account(const std::string& tenant) {
  TenantAccount& a = accounts_[tenant];
  a.tenant = tenant;
  return a;
}

}  // namespace loraserve
