#include "server/adapter_admin.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <map>

#include "common/file_util.h"
#include "server/adapter_paths.h"

namespace loraserve {

namespace {

constexpr const char* kConfigFile = "adapter_config.json";
constexpr const char* kWeightsFile = "adapter_model.safetensors";

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::vector<std::string> module_names(uint32_t mask) {
  std::vector<std::string> out;
  for (int m = 0; m < kNumLoraModules; ++m) {
    if (mask & (1u << m)) out.push_back(lora_module_name(static_cast<LoraModule>(m)));
  }
  return out;
}

std::string stored_digest(const StoredAdapter& r) {
  auto it = r.files.find(kWeightsFile);
  return it == r.files.end() ? "" : it->second.sha256;
}

}  // namespace

AdapterAdmin::AdapterAdmin(Scheduler* scheduler, TenantDirectory* tenants, std::string adapter_root,
                           DurableAdapterStore* store)
    : scheduler_(scheduler),
      tenants_(tenants),
      adapter_root_(std::move(adapter_root)),
      store_(store) {}

std::optional<AdapterView> AdapterAdmin::describe(const std::string& scheduler_id) {
  auto own = tenants_->ownership(scheduler_id);
  const std::string key = own.ok() && !own->engine_id.empty() ? own->engine_id : scheduler_id;
  auto a = scheduler_->describe_adapter(key);
  if (!a.ok()) return std::nullopt;
  AdapterView v;
  v.summary = std::move(*a);
  if (own.ok()) v.ownership = *own;
  v.id = v.ownership ? v.ownership->public_id : v.summary.id;
  return v;
}

StatusOr<AdapterView> AdapterAdmin::install(const std::string& owner, const std::string& id,
                                            const LoraAdapter& adapter, bool replace,
                                            const Persist& persist, const std::string& source) {
  const std::string sid = TenantDirectory::scheduler_id(owner, id);
  auto prev = tenants_->ownership(sid);
  if (prev.ok() && !replace) {
    return Status(StatusCode::kAlreadyExists,
                  "adapter '" + id + "' is already loaded (ask to replace it to load a new version)");
  }
  const int64_t bytes = scheduler_->adapter_image_bytes(adapter);
  // A replace moves the quota from the old version to the new one, so a
  // tenant at its adapter limit can still replace.
  if (prev.ok()) tenants_->release_adapter(prev->owner, prev->bytes);
  Status reserved = tenants_->reserve_adapter(owner, bytes);
  if (!reserved.ok()) {
    if (prev.ok()) (void)tenants_->reserve_adapter(prev->owner, prev->bytes);
    return reserved;
  }
  auto undo_quota = [&] {
    tenants_->release_adapter(owner, bytes);
    if (prev.ok()) (void)tenants_->reserve_adapter(prev->owner, prev->bytes);
  };

  AdapterOwnership own;
  own.owner = owner;
  own.public_id = id;
  own.is_public = owner == "public";
  own.bytes = bytes;
  own.version = prev.ok() ? prev->version + 1 : 1;
  std::optional<StoredAdapter> stored;
  if (persist) {
    StoredAdapter meta;
    meta.id = sid;
    meta.public_id = id;
    meta.owner = owner;
    meta.is_public = own.is_public;
    meta.rank = adapter.max_rank();
    meta.target_modules = module_names(adapter.module_mask());
    meta.created_unix_ms = now_ms();
    meta.source = source;
    auto put = persist(meta);
    if (!put.ok()) {
      undo_quota();
      if (put.status().code() == StatusCode::kAlreadyExists) {
        return Status(StatusCode::kAlreadyExists,
                      "adapter '" + id +
                          "' already exists in the adapter store (ask to replace it to store a "
                          "new version)");
      }
      return put.status().with_context("storing adapter '" + id + "'");
    }
    stored = *put;
    own.version = put->version;
    own.stored = true;
    own.stored_digest = stored_digest(*put);
  }
  own.engine_id = engine_id_for(sid, own.version);
  Status s = scheduler_->register_adapter(own.engine_id, adapter);
  if (!s.ok()) {
    undo_quota();
    // What the store took for this call goes too, unless it replaced a
    // version others may be serving.
    if (stored && !replace) (void)store_->remove(sid, stored->version);
    if (s.code() == StatusCode::kAlreadyExists) {
      return Status(StatusCode::kAlreadyExists, "adapter '" + id + "' is already loaded");
    }
    return s;
  }
  tenants_->add_adapter(sid, own);
  if (prev.ok()) {
    AdapterOwnership old = *prev;
    old.bytes = 0;  // its quota moved to the new version above
    retire(sid, old);
  }
  spdlog::info("adapter '{}' {} for '{}': {} bytes, version {}{}", id,
               prev.ok() ? "replaced" : "loaded", owner, bytes, own.version,
               own.stored ? " (stored)" : "");
  std::optional<AdapterView> v = describe(sid);
  if (v) return *v;
  AdapterView gone;  // unloaded again between the two calls: report what was registered
  gone.id = id;
  gone.ownership = own;
  return gone;
}

StatusOr<AdapterView> AdapterAdmin::register_adapter(const std::string& owner,
                                                     const std::string& id,
                                                     const LoraAdapter& adapter) {
  LS_RETURN_IF_ERROR(validate_adapter_id(id));
  std::lock_guard<std::mutex> lock(mu_);
  return install(owner, id, adapter, /*replace=*/false, nullptr, "");
}

StatusOr<AdapterView> AdapterAdmin::load(const Caller& caller, const std::string& id,
                                         const std::string& path,
                                         const AdapterOwnerChoice& choice) {
  LS_RETURN_IF_ERROR(validate_adapter_id(id));
  LS_ASSIGN_OR_RETURN(std::string owner,
                      tenants_->owner_for(caller, choice.owner_tenant, choice.is_public));
  LS_ASSIGN_OR_RETURN(std::string dir, resolve_adapter_dir(adapter_root_, path));
  if (store_ == nullptr) {
    auto adapter = load_adapter_dir(dir, scheduler_->model_config());
    if (!adapter.ok()) return adapter.status().with_context("adapter '" + path + "'");
    std::lock_guard<std::mutex> lock(mu_);
    return install(owner, id, **adapter, choice.replace, nullptr, path);
  }
  // Stored: the bytes validated are the bytes written, so a file changed
  // under --adapter-root later cannot differ from what was checked.
  auto config = read_file(dir + "/" + kConfigFile);
  if (!config.ok()) return config.status().with_context("adapter '" + path + "'");
  auto tensors = read_file(dir + "/" + kWeightsFile);
  if (!tensors.ok()) return tensors.status().with_context("adapter '" + path + "'");
  auto adapter = LoraAdapter::load_bytes(*config, *tensors, scheduler_->model_config(),
                                         "adapter '" + path + "'");
  if (!adapter.ok()) return adapter.status();
  std::lock_guard<std::mutex> lock(mu_);
  return install(
      owner, id, **adapter, choice.replace,
      [&](const StoredAdapter& meta) {
        return store_->put(meta, {{kConfigFile, *config}, {kWeightsFile, *tensors}},
                           choice.replace);
      },
      path);
}

StatusOr<AdapterView> AdapterAdmin::upload(const Caller& caller, const std::string& id,
                                           const AdapterOwnerChoice& choice,
                                           const std::string& config_json,
                                           std::string safetensors) {
  LS_RETURN_IF_ERROR(validate_adapter_id(id));
  LS_ASSIGN_OR_RETURN(std::string owner,
                      tenants_->owner_for(caller, choice.owner_tenant, choice.is_public));
  if (config_json.empty()) return invalid_argument("upload has no adapter_config_json");
  if (safetensors.empty()) return invalid_argument("upload has no safetensors_data");
  // The store needs the bytes after validation has consumed its copy.
  std::string kept = store_ != nullptr ? safetensors : std::string();
  LS_ASSIGN_OR_RETURN(auto adapter,
                      LoraAdapter::load_bytes(config_json, std::move(safetensors),
                                              scheduler_->model_config(), "upload '" + id + "'"));
  std::lock_guard<std::mutex> lock(mu_);
  Persist persist;
  if (store_ != nullptr) {
    persist = [&](const StoredAdapter& meta) {
      return store_->put(meta, {{kConfigFile, config_json}, {kWeightsFile, kept}}, choice.replace);
    };
  }
  return install(owner, id, *adapter, choice.replace, persist, "upload");
}

Status AdapterAdmin::unload(const Caller& caller, const std::string& id,
                            const std::string& owner_tenant) {
  LS_RETURN_IF_ERROR(validate_adapter_id(id));
  LS_ASSIGN_OR_RETURN(std::string owner, tenants_->owner_for(caller, owner_tenant, false));
  const std::string sid = TenantDirectory::scheduler_id(owner, id);
  std::lock_guard<std::mutex> lock(mu_);
  auto own = tenants_->ownership(sid);
  const bool in_store = store_ != nullptr && store_->get(sid).ok();
  if (!own.ok() && !in_store) return not_found("adapter '" + id + "' is not loaded");
  if (own.ok()) {
    Status s = scheduler_->unregister_adapter(own->engine_id.empty() ? sid : own->engine_id);
    if (!s.ok()) {
      if (s.code() == StatusCode::kFailedPrecondition) {
        return failed_precondition("adapter '" + id +
                                   "' is used by requests in flight; unload it when they finish");
      }
      return s;
    }
    auto removed = tenants_->remove_adapter(sid);
    if (removed.ok()) tenants_->release_adapter(removed->owner, removed->bytes);
  }
  if (in_store) {
    Status s = store_->remove(sid);
    // Another replica may have removed it in the meantime: still unloaded.
    if (!s.ok() && s.code() != StatusCode::kNotFound) {
      return s.with_context("removing adapter '" + id + "' from the adapter store");
    }
  }
  spdlog::info("adapter '{}' of '{}' unloaded{}", id, owner, in_store ? " and removed from the store" : "");
  return ok_status();
}

std::vector<AdapterView> AdapterAdmin::list(const Caller& caller) {
  std::vector<AdapterView> out;
  std::map<std::string, bool> listed;
  for (const auto& [sid, own] : tenants_->visible_adapters(caller)) {
    auto a = scheduler_->describe_adapter(own.engine_id.empty() ? sid : own.engine_id);
    if (!a.ok()) continue;
    AdapterView v;
    v.id = own.public_id;
    v.summary = std::move(*a);
    v.ownership = own;
    out.push_back(std::move(v));
    listed[sid] = true;
  }
  if (store_ == nullptr) return out;
  for (const StoredAdapter& r : store_->list()) {
    if (listed.count(r.id)) continue;
    if (!caller.admin && r.owner != caller.tenant && !r.is_public) continue;
    AdapterView v;
    v.id = r.public_id;
    v.loaded = false;
    v.summary.id = r.id;
    v.summary.rank = r.rank;
    v.summary.target_modules = r.target_modules;
    AdapterOwnership own;
    own.owner = r.owner;
    own.public_id = r.public_id;
    own.is_public = r.is_public;
    own.version = r.version;
    own.stored = true;
    own.stored_digest = stored_digest(r);
    v.ownership = own;
    out.push_back(std::move(v));
  }
  return out;
}

Status AdapterAdmin::install_stored(const StoredAdapter& record) {
  LS_ASSIGN_OR_RETURN(std::string dir, store_->verified_dir(record));
  auto adapter = load_adapter_dir(dir, scheduler_->model_config());
  if (!adapter.ok()) {
    return adapter.status().with_context("stored adapter '" + record.public_id + "'");
  }
  const std::string sid = record.id;
  const int64_t bytes = scheduler_->adapter_image_bytes(**adapter);
  LS_RETURN_IF_ERROR(tenants_->reserve_adapter(record.owner, bytes));
  AdapterOwnership own;
  own.owner = record.owner;
  own.public_id = record.public_id;
  own.is_public = record.is_public;
  own.bytes = bytes;
  own.version = record.version;
  own.stored = true;
  own.stored_digest = stored_digest(record);
  own.engine_id = engine_id_for(sid, record.version);
  Status s = scheduler_->register_adapter(own.engine_id, **adapter);
  if (!s.ok()) {
    tenants_->release_adapter(record.owner, bytes);
    return s;
  }
  tenants_->add_adapter(sid, own);
  spdlog::info("adapter '{}' of '{}' loaded from the store (version {})", record.public_id,
               record.owner, record.version);
  return ok_status();
}

Status AdapterAdmin::fetch_from_store(const Caller& caller, const std::string& id) {
  if (store_ == nullptr) return not_found("adapter '" + id + "' is not loaded");
  std::vector<std::string> candidates = {TenantDirectory::scheduler_id(caller.tenant, id)};
  if (!tenants_->open_mode()) candidates.push_back(TenantDirectory::scheduler_id("public", id));
  for (const std::string& sid : candidates) {
    auto record = store_->get(sid);
    if (!record.ok()) {
      if (record.status().code() == StatusCode::kNotFound) continue;
      return record.status().with_context("adapter store");
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (tenants_->ownership(sid).ok()) return ok_status();  // another request got it first
    return install_stored(*record);
  }
  return not_found("adapter '" + id + "' is not loaded");
}

void AdapterAdmin::retire(const std::string& sid, const AdapterOwnership& own) {
  const std::string key = own.engine_id.empty() ? sid : own.engine_id;
  Status s = scheduler_->unregister_adapter(key);
  if (s.ok()) {
    if (own.bytes > 0) tenants_->release_adapter(own.owner, own.bytes);
    return;
  }
  if (s.code() == StatusCode::kFailedPrecondition) {
    // Requests still run on these weights; they go when those end. The
    // quota moves now: the directory no longer routes to them.
    if (own.bytes > 0) tenants_->release_adapter(own.owner, own.bytes);
    retired_.push_back({key, own.owner});
    return;
  }
  spdlog::warn("retiring adapter weights '{}': {}", key, s.to_string());
}

void AdapterAdmin::reap() {
  std::vector<Retired> still;
  for (Retired& r : retired_) {
    Status s = scheduler_->unregister_adapter(r.engine_id);
    if (s.code() == StatusCode::kFailedPrecondition) still.push_back(std::move(r));
  }
  retired_ = std::move(still);
}

void AdapterAdmin::sync_with_store() {
  std::lock_guard<std::mutex> lock(mu_);
  reap();
  if (store_ == nullptr) return;
  std::map<std::string, StoredAdapter> records;
  for (StoredAdapter& r : store_->list()) records.emplace(r.id, std::move(r));
  Caller everyone;
  everyone.admin = true;
  for (const auto& [sid, own] : tenants_->visible_adapters(everyone)) {
    if (!own.stored) continue;
    auto it = records.find(sid);
    const bool gone = it == records.end();
    if (!gone && it->second.version == own.version && stored_digest(it->second) == own.stored_digest) {
      continue;
    }
    // Removed or replaced through another replica: stop routing to these
    // weights now; a replaced adapter loads its new version on next use.
    (void)tenants_->remove_adapter(sid);
    retire(sid, own);
    spdlog::info("adapter '{}' of '{}' {} in the adapter store", own.public_id, own.owner,
                 gone ? "was removed" : "has a new version");
  }
}

}  // namespace loraserve
