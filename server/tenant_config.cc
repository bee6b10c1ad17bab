#include "server/tenant_config.h"

#include "common/file_util.h"
#include "common/sha256.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

namespace loraserve {

namespace {

std::string to_hex(const unsigned char* p, size_t n) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[p[i] >> 4]);
    out.push_back(kDigits[p[i] & 15]);
  }
  return out;
}

bool from_hex(const std::string& hex, std::string* out) {
  if (hex.size() % 2) return false;
  out->clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    auto nib = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    const int hi = nib(hex[i]), lo = nib(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
  }
  return true;
}

bool valid_tenant_name(const std::string& name) {
  if (name.empty() || name.size() > 64 || name == "public") return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '-')) {
      return false;
    }
  }
  return true;
}

Status parse_quotas(const YAML::Node& q, const std::string& where, TenantQuotas* out) {
  if (!q) return ok_status();
  if (!q.IsMap()) return invalid_argument(where + ": quotas must be a map");
  for (const auto& kv : q) {
    const std::string key = kv.first.as<std::string>();
    int64_t v = 0;
    try {
      v = kv.second.as<int64_t>();
    } catch (const YAML::Exception&) {
      return invalid_argument(where + ": quota " + key + " must be an integer");
    }
    if (v < 0) return invalid_argument(where + ": quota " + key + " must not be negative");
    if (key == "max_adapters") out->max_adapters = v;
    else if (key == "max_adapter_bytes") out->max_adapter_bytes = v;
    else if (key == "max_concurrent_requests") out->max_concurrent_requests = v;
    else if (key == "max_queued_tokens") out->max_queued_tokens = v;
    else return invalid_argument(where + ": unknown quota '" + key + "'");
  }
  return ok_status();
}

}  // namespace

std::string hash_api_key_with_salt(const std::string& key, const std::string& salt_hex) {
  std::string salt;
  from_hex(salt_hex, &salt);
  return "sha256$" + salt_hex + "$" + sha256_hex({salt, key});
}

std::string hash_api_key(const std::string& key) {
  unsigned char salt[16];
  RAND_bytes(salt, sizeof(salt));
  return hash_api_key_with_salt(key, to_hex(salt, sizeof(salt)));
}

bool verify_api_key(const std::string& key, const std::string& stored) {
  const size_t a = stored.find('$');
  const size_t b = stored.find('$', a == std::string::npos ? a : a + 1);
  if (a == std::string::npos || b == std::string::npos || stored.substr(0, a) != "sha256") {
    return false;
  }
  std::string salt;
  if (!from_hex(stored.substr(a + 1, b - a - 1), &salt)) return false;
  const std::string want = stored.substr(b + 1);
  const std::string got = sha256_hex({salt, key});
  return want.size() == got.size() && CRYPTO_memcmp(want.data(), got.data(), got.size()) == 0;
}

StatusOr<TenantConfig> TenantConfig::load_file(const std::string& path) {
  StatusOr<std::string> text = read_file(path);
  if (!text.ok()) return Status(text.status().code(), "tenants file " + path + " cannot be read");
  auto cfg = parse(*text);
  if (!cfg.ok()) return cfg.status().with_context(path);
  return cfg;
}

StatusOr<TenantConfig> TenantConfig::parse(const std::string& text) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return invalid_argument(std::string("not YAML or JSON: ") + e.what());
  }
  if (!root.IsMap() || !root["tenants"] || !root["tenants"].IsSequence()) {
    return invalid_argument("expected a map with a 'tenants' list");
  }
  TenantConfig cfg;
  std::set<std::string> names;
  std::set<std::string> hashes;
  size_t index = 0;
  try {
    for (const YAML::Node& n : root["tenants"]) {
      const std::string where = "tenants[" + std::to_string(index++) + "]";
      if (!n.IsMap()) return invalid_argument(where + " must be a map");
      Tenant t;
      t.name = n["name"] ? n["name"].as<std::string>() : "";
      if (!valid_tenant_name(t.name)) {
        return invalid_argument(where + ": name must be 1-64 of [A-Za-z0-9_-] and not 'public'");
      }
      if (!names.insert(t.name).second) return invalid_argument(where + ": duplicate tenant " + t.name);
      const std::string role = n["role"] ? n["role"].as<std::string>() : "user";
      if (role == "admin") t.role = TenantRole::kAdmin;
      else if (role != "user") return invalid_argument(where + ": role must be user or admin");
      if (!n["keys"] || !n["keys"].IsSequence() || n["keys"].size() == 0) {
        return invalid_argument(where + " (" + t.name + "): needs a non-empty 'keys' list of hashes");
      }
      for (const YAML::Node& k : n["keys"]) {
        const std::string h = k.as<std::string>();
        if (h.rfind("sha256$", 0) != 0 || std::count(h.begin(), h.end(), '$') != 2) {
          return invalid_argument(where + " (" + t.name +
                                  "): keys must be salted hashes from `loraserve hash-key`");
        }
        if (!hashes.insert(h).second) return invalid_argument(where + ": a key hash is listed twice");
        t.key_hashes.push_back(h);
      }
      LS_RETURN_IF_ERROR(parse_quotas(n["quotas"], where + " (" + t.name + ")", &t.quotas));
      if (n["adapters"]) {
        if (!n["adapters"].IsSequence()) return invalid_argument(where + ": adapters must be a list");
        for (const YAML::Node& a : n["adapters"]) {
          DeclaredAdapter d;
          d.id = a["id"] ? a["id"].as<std::string>() : "";
          d.path = a["path"] ? a["path"].as<std::string>() : "";
          d.is_public = a["public"] ? a["public"].as<bool>() : false;
          if (d.id.empty() || d.path.empty()) {
            return invalid_argument(where + ": every adapter needs an id and a path");
          }
          t.adapters.push_back(d);
        }
      }
      cfg.tenants_.push_back(std::move(t));
    }
  } catch (const YAML::Exception& e) {
    return invalid_argument(std::string("malformed tenants file: ") + e.what());
  }
  if (cfg.tenants_.empty()) return invalid_argument("the tenants list is empty");
  return cfg;
}

const Tenant* TenantConfig::authenticate(const std::string& api_key) const {
  if (api_key.empty()) return nullptr;
  const Tenant* found = nullptr;
  // Check every hash so the time taken does not tell which tenant matched.
  for (const Tenant& t : tenants_) {
    for (const std::string& h : t.key_hashes) {
      if (verify_api_key(api_key, h) && found == nullptr) found = &t;
    }
  }
  return found;
}

const Tenant* TenantConfig::find(const std::string& name) const {
  for (const Tenant& t : tenants_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

}  // namespace loraserve
