#include "server/adapter_admin.h"

#include <spdlog/spdlog.h>

#include "server/adapter_paths.h"

namespace loraserve {

AdapterAdmin::AdapterAdmin(Scheduler* scheduler, TenantDirectory* tenants, std::string adapter_root)
    : scheduler_(scheduler), tenants_(tenants), adapter_root_(std::move(adapter_root)) {}

std::optional<AdapterView> AdapterAdmin::describe(const std::string& scheduler_id) {
  auto a = scheduler_->describe_adapter(scheduler_id);
  if (!a.ok()) return std::nullopt;
  AdapterView v;
  v.summary = std::move(*a);
  auto own = tenants_->ownership(scheduler_id);
  if (own.ok()) v.ownership = *own;
  v.id = v.ownership ? v.ownership->public_id : v.summary.id;
  return v;
}

StatusOr<AdapterView> AdapterAdmin::register_adapter(const std::string& owner,
                                                     const std::string& id,
                                                     const LoraAdapter& adapter) {
  LS_RETURN_IF_ERROR(validate_adapter_id(id));
  const std::string sid = TenantDirectory::scheduler_id(owner, id);
  const int64_t bytes = scheduler_->adapter_image_bytes(adapter);
  LS_RETURN_IF_ERROR(tenants_->reserve_adapter(owner, bytes));
  Status s = scheduler_->register_adapter(sid, adapter);
  if (!s.ok()) {
    tenants_->release_adapter(owner, bytes);
    if (s.code() == StatusCode::kAlreadyExists) {
      return Status(StatusCode::kAlreadyExists, "adapter '" + id + "' is already loaded");
    }
    return s;
  }
  AdapterOwnership own;
  own.owner = owner;
  own.public_id = id;
  own.is_public = owner == "public";
  own.bytes = bytes;
  tenants_->add_adapter(sid, own);
  spdlog::info("adapter '{}' loaded for '{}': {} bytes", id, owner, bytes);
  std::optional<AdapterView> v = describe(sid);
  if (v) return *v;
  // Unloaded again between the two calls: report what was registered.
  AdapterView gone;
  gone.id = id;
  gone.ownership = own;
  return gone;
}

StatusOr<AdapterView> AdapterAdmin::load(const Caller& caller, const std::string& id,
                                         const std::string& path,
                                         const AdapterOwnerChoice& choice) {
  LS_RETURN_IF_ERROR(validate_adapter_id(id));
  LS_ASSIGN_OR_RETURN(std::string owner,
                      tenants_->owner_for(caller, choice.owner_tenant, choice.is_public));
  LS_ASSIGN_OR_RETURN(std::string dir, resolve_adapter_dir(adapter_root_, path));
  auto adapter = load_adapter_dir(dir, scheduler_->model_config());
  if (!adapter.ok()) return adapter.status().with_context("adapter '" + path + "'");
  return register_adapter(owner, id, **adapter);
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
  LS_ASSIGN_OR_RETURN(auto adapter,
                      LoraAdapter::load_bytes(config_json, std::move(safetensors),
                                              scheduler_->model_config(), "upload '" + id + "'"));
  return register_adapter(owner, id, *adapter);
}

Status AdapterAdmin::unload(const Caller& caller, const std::string& id,
                            const std::string& owner_tenant) {
  LS_RETURN_IF_ERROR(validate_adapter_id(id));
  LS_ASSIGN_OR_RETURN(std::string owner, tenants_->owner_for(caller, owner_tenant, false));
  const std::string sid = TenantDirectory::scheduler_id(owner, id);
  if (!tenants_->ownership(sid).ok()) return not_found("adapter '" + id + "' is not loaded");
  Status s = scheduler_->unregister_adapter(sid);
  if (!s.ok()) {
    if (s.code() == StatusCode::kFailedPrecondition) {
      return failed_precondition("adapter '" + id +
                                 "' is used by requests in flight; unload it when they finish");
    }
    return s;
  }
  auto removed = tenants_->remove_adapter(sid);
  if (removed.ok()) tenants_->release_adapter(removed->owner, removed->bytes);
  spdlog::info("adapter '{}' of '{}' unloaded", id, owner);
  return ok_status();
}

std::vector<AdapterView> AdapterAdmin::list(const Caller& caller) {
  std::vector<AdapterView> out;
  for (const auto& [sid, own] : tenants_->visible_adapters(caller)) {
    auto a = scheduler_->describe_adapter(sid);
    if (!a.ok()) continue;
    AdapterView v;
    v.id = own.public_id;
    v.summary = std::move(*a);
    v.ownership = own;
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace loraserve
