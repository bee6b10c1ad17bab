// AdapterAdmin: loading, uploading, unloading and listing adapters for a
// caller, written once for every transport (gRPC's LoadAdapter & co., the
// HTTP /v1/load_lora_adapter & co., start-up preloading). It applies the
// tenant rules (owner, visibility, adapter quotas), confines paths to
// --adapter-root, validates files against the base model, and keeps the
// scheduler's registry and the TenantDirectory's records in step.
//
// With an --adapter-store (DurableAdapterStore), what the API accepts is
// written there before it is acknowledged, so it survives restarts and is
// seen by every replica sharing the directory: an adapter this replica has
// not loaded is looked up in the store on first use (fetch_from_store), an
// unload removes the record, and sync_with_store() (called periodically)
// drops adapters another replica unloaded or replaced.
//
// Replace: the new version registers under a new scheduler key while
// requests already running finish on the old weights, which are unloaded
// when they end (reap).
//
// Thread-safe: mutations serialise on one mutex. Loading reads files and
// waits for the engine between steps: call it from a thread that may block.
#pragma once

#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/lora_adapter.h"
#include "common/status.h"
#include "memory/durable_adapter_store.h"
#include "scheduler/scheduler.h"
#include "server/tenant_directory.h"

namespace loraserve {

// An adapter as the API shows it.
struct AdapterView {
  std::string id;  // the id its owner uses
  AdapterSummary summary;
  std::optional<AdapterOwnership> ownership;  // none when the directory has no record
  bool loaded = true;  // false: in the store, loaded here on first use
};

// Who an adapter is loaded for: the caller, or (admins) a named tenant or
// everyone.
struct AdapterOwnerChoice {
  std::string owner_tenant;  // "" = the caller
  bool is_public = false;
  bool replace = false;  // an existing adapter of that id gets the new version
};

class AdapterAdmin {
 public:
  // `adapter_root` "" = loading by path is refused (uploads still work).
  // `store` null = nothing is persisted.
  AdapterAdmin(Scheduler* scheduler, TenantDirectory* tenants, std::string adapter_root,
               DurableAdapterStore* store = nullptr);

  // Registers an adapter already read for `owner` ("" open mode, a tenant,
  // or "public") under `id`; quotas apply. ALREADY_EXISTS when taken. Not
  // persisted: this is for adapters the server's own configuration names.
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
  // caller has no adapter by that id (loaded here or in the store).
  Status unload(const Caller& caller, const std::string& id, const std::string& owner_tenant);
  // Every adapter the caller may use (its own and public ones), including
  // stored ones not loaded on this replica yet.
  std::vector<AdapterView> list(const Caller& caller);

  // Loads the adapter `caller` means by `id` from the store (its own, else
  // a public one) when this replica has not loaded it. NOT_FOUND when the
  // store has neither (or there is no store); DATA_LOSS when its files no
  // longer match their digests.
  Status fetch_from_store(const Caller& caller, const std::string& id);
  // Drops adapters whose record another replica removed or replaced, and
  // unloads replaced weights whose requests have ended. Cheap without a
  // store; call it every second or so.
  void sync_with_store();

  const std::string& adapter_root() const { return adapter_root_; }
  DurableAdapterStore* store() const { return store_; }

 private:
  struct Retired {
    std::string engine_id;
    std::string owner;
  };
  // Writes the adapter to the store (when persisting) and returns its
  // version there.
  using Persist = std::function<StatusOr<StoredAdapter>(const StoredAdapter& meta)>;
  // Registers `adapter` as `owner`'s `id`: ALREADY_EXISTS when present and
  // !replace; else the quota is taken, `persist` runs (when given) and the
  // scheduler gets the weights. mu_ held.
  StatusOr<AdapterView> install(const std::string& owner, const std::string& id,
                                const LoraAdapter& adapter, bool replace, const Persist& persist,
                                const std::string& source);
  // Loads `record` from the store as it stands. mu_ held.
  Status install_stored(const StoredAdapter& record);
  // Stops routing to `own`'s weights and unloads them now or, while
  // requests use them, at a later reap. mu_ held.
  void retire(const std::string& sid, const AdapterOwnership& own);
  void reap();  // mu_ held
  std::optional<AdapterView> describe(const std::string& scheduler_id);

  Scheduler* scheduler_;
  TenantDirectory* tenants_;
  std::string adapter_root_;
  DurableAdapterStore* store_;
  std::mutex mu_;
  std::vector<Retired> retired_;  // mu_
};

}  // namespace loraserve
