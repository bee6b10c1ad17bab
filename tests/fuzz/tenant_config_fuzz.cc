// libFuzzer target for the tenants file (server/tenant_config.h), YAML or
// JSON, through TenantConfig::parse. Checks: never a crash, hang, UB or an
// escaping exception (yaml-cpp throws; parse must turn every one into a
// status); a refusal is INVALID_ARGUMENT; an accepted file has tenants with
// valid, unique names (never "public"), at least one key hash each, and
// authenticating any key against it is safe.
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>

#include "server/tenant_config.h"

using namespace loraserve;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto cfg = TenantConfig::parse(text);
  if (!cfg.ok()) {
    if (cfg.status().code() != StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  if (cfg->tenants().empty()) std::abort();
  std::set<std::string> names;
  for (const Tenant& t : cfg->tenants()) {
    if (t.name.empty() || t.name == "public" || !names.insert(t.name).second) std::abort();
    if (t.key_hashes.empty()) std::abort();
    if (cfg->find(t.name) != &t) std::abort();
    for (const std::string& h : t.key_hashes) (void)verify_api_key("fuzz-key", h);
  }
  (void)cfg->authenticate("fuzz-key");
  (void)cfg->authenticate("");
  return 0;
}
