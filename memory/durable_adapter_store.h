// DurableAdapterStore: the adapters the API accepted, on disk, so they
// survive a restart or a kill -9 and are shared by replicas that mount the
// same directory.
//
// Layout under DIR:
//   records/<key>.json          one record per adapter (id, owner, version,
//                               files with sha256, rank, targets, time)
//   objects/<key>/v<version>/   adapter_config.json, adapter_model.safetensors
//   tmp/                        staging; anything here is unfinished
//   locks/<key>.lock            flock'd while a writer changes that adapter
// where <key> is the adapter's scheduler id with every byte outside
// [A-Za-z0-9._-] percent-encoded.
//
// Crash safety: files are written to tmp/, fsync'd, renamed into place and
// the directory fsync'd; the record is written last the same way. A record
// therefore only ever names files that are complete on disk, and a kill -9
// at any moment leaves either the old state or the new one (plus garbage in
// tmp/ or an unreferenced objects/ version, removed later). Reading back
// verifies every file's sha256 (DATA_LOSS on mismatch).
//
// Replicas: writers of one adapter serialise on its lock file (flock), so
// "create unless it exists" and "replace version N by N+1" are atomic across
// processes. Readers never lock: a record is replaced by rename.
//
// Thread-safety: every method may be called from any thread; there is no
// in-memory state besides the directory path.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace loraserve {

struct StoredAdapterFile {
  std::string sha256;  // lowercase hex
  uint64_t bytes = 0;
};

struct StoredAdapter {
  std::string id;            // the scheduler id (owner-qualified)
  std::string public_id;     // the id its owner uses
  std::string owner;         // tenant name ("" in open mode, "public" for the server's)
  bool is_public = false;
  uint64_t version = 0;      // 1 on creation, +1 on each replace
  int32_t rank = 0;
  std::vector<std::string> target_modules;
  int64_t created_unix_ms = 0;
  std::string source;        // "upload" or the path under --adapter-root it was loaded from
  std::map<std::string, StoredAdapterFile> files;  // file name -> digest
};

class DurableAdapterStore {
 public:
  // Creates DIR's layout if needed and removes staging left by crashes
  // (older than `stale_after_s`, so a live replica's upload is not touched).
  static StatusOr<std::unique_ptr<DurableAdapterStore>> open(const std::string& dir,
                                                             int64_t stale_after_s = 600);

  // Writes the adapter's files and then its record. ALREADY_EXISTS when the
  // id is stored and !replace; with replace the version goes up by one and
  // the previous version's files stay until the next replace (in-flight
  // lazy loads of it still succeed). A full disk or any I/O error is
  // RESOURCE_EXHAUSTED / INTERNAL and changes nothing. Returns the record
  // as stored (version, digests, time filled in).
  StatusOr<StoredAdapter> put(StoredAdapter meta, const std::map<std::string, std::string>& files,
                              bool replace);

  // NOT_FOUND when the id has no record.
  StatusOr<StoredAdapter> get(const std::string& id) const;
  // Every record; unreadable ones are skipped and described in *problems.
  std::vector<StoredAdapter> list(std::vector<std::string>* problems = nullptr) const;
  // The directory holding the record's files after checking each one's
  // size and sha256: DATA_LOSS on any difference, NOT_FOUND when gone.
  StatusOr<std::string> verified_dir(const StoredAdapter& record) const;
  // Deletes the record (then its files). NOT_FOUND when absent; when
  // `version` is non-zero, FAILED_PRECONDITION unless it is the current one.
  Status remove(const std::string& id, uint64_t version = 0);

  const std::string& dir() const { return dir_; }

 private:
  explicit DurableAdapterStore(std::string dir) : dir_(std::move(dir)) {}
  std::string key_of(const std::string& id) const;
  std::string record_path(const std::string& id) const;
  std::string object_dir(const std::string& id, uint64_t version) const;
  void collect_garbage(int64_t stale_after_s) const;

  std::string dir_;
};

// Record <-> JSON, exposed for tests and tools.
std::string stored_adapter_to_json(const StoredAdapter& a);
StatusOr<StoredAdapter> stored_adapter_from_json(const std::string& text);

}  // namespace loraserve
