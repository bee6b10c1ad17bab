// AdapterAdmin: loading, uploading, unloading and listing adapters for a
// caller, written once for every transport (gRPC's LoadAdapter & co., the
// HTTP /v1/load_lora_adapter & co., start-up preloading). It applies the
// tenant rules (owner, visibility, adapter quotas), confines paths to
// --adapter-root, validates files against the base model, and keeps the
// scheduler's registry and the TenantDirectory's records in step.
//
// Thread-safe (the scheduler and the directory are). Loading reads files
// and waits for the engine between steps: call it from a thread that may
// block.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "checkpoint/lora_adapter.h"
#include "common/status.h"
#include "scheduler/scheduler.h"
#include "server/tenant_directory.h"

namespace loraserve {

// An adapter as the API shows it.
struct AdapterView {
  std::string id;  // the id its owner uses
  AdapterSummary summary;
  std::optional<AdapterOwnership> ownership;  // none when the directory has no record
};

// Who an adapter is loaded for: the caller, or (admins) a named tenant or
// everyone.
struct AdapterOwnerChoice {
  std::string owner_tenant;  // "" = the caller
  bool is_public = false;
};

class AdapterAdmin {
 public:
  // `adapter_root` "" = loading by path is refused (uploads still work).
  AdapterAdmin(Scheduler* scheduler, TenantDirectory* tenants, std::string adapter_root);

  // Registers an adapter already read for `owner` ("" open mode, a tenant,
  // or "public") under `id`; quotas apply. ALREADY_EXISTS when taken.
  StatusOr<AdapterView> register_adapter(const std::string& owner, const std::string& id,
                                         const LoraAdapter& adapter);
  // `path` relative to --adapter-root.
  StatusOr<AdapterView> load(const Caller& caller, const std::string& id, const std::string& path,
                             const AdapterOwnerChoice& choice);
  // An adapter sent as its files' bytes.
  StatusOr<AdapterView> upload(const Caller& caller, const std::string& id,
                               const AdapterOwnerChoice& choice, const std::string& config_json,
                               std::string safetensors);
  // Refused (FAILED_PRECONDITION) while requests use it; NOT_FOUND when the
  // caller has no adapter by that id.
  Status unload(const Caller& caller, const std::string& id, const std::string& owner_tenant);
  // Every adapter the caller may use (its own and public ones).
  std::vector<AdapterView> list(const Caller& caller);

  const std::string& adapter_root() const { return adapter_root_; }

 private:
  std::optional<AdapterView> describe(const std::string& scheduler_id);

  Scheduler* scheduler_;
  TenantDirectory* tenants_;
  std::string adapter_root_;
};

}  // namespace loraserve
