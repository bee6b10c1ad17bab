// Checkpoint matrices a backend has repacked for its kernels, kept on disk so
// that the next start maps them instead of packing again (issue #19: load
// under 3 s with the packed layout; replicas on one host share the pages).
//
// One entry file per checkpoint file and layout, in a directory of its own
// (model volumes are often read-only): DIR/<hash>.lsw, the hash over the
// layout, the checkpoint's path and its FileIdentity. An entry is
//   "LSPACKW1" | u64 LE JSON length | JSON header | zeros to 4096 | payloads
// at offsets from that data start, which the writer puts on 2 MiB boundaries
// of the file (huge pages in the page cache; readers need only 4096); the
// header names the layout, the source's path and identity, and per tensor
// its rows, cols, offset, bytes and checksum: XXH3-64 over the XXH3-64s of
// the payload's 8 MiB chunks, so that the threads share the check of a
// large matrix.
//
// Trust: an entry is used only when its layout and source identity match the
// open checkpoint, and each payload only when its XXH3 matches (checked as it
// is found); anything else is a miss, logged, packed again and rewritten.
// Entries are written to a temporary name, fsync'd, renamed into place and
// the directory fsync'd, so a crash leaves the old entry or the new one.
// open() removes entries whose checkpoint is gone or has changed, and
// temporaries whose writer no longer runs and that have not changed for 10
// minutes, so the directory holds about one copy of each model in use.
//
// Not thread-safe: the backend calls find and add from its loading thread,
// then write_pending (on a thread of its own) with nothing else in between;
// write_pending needs only the packed payloads, not the checkpoint files.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"
#include "common/status.h"

namespace loraserve {

class PackedWeightsCache {
 public:
  struct Stats {
    int64_t hits = 0;           // tensors mapped from an entry
    int64_t misses = 0;         // tensors the backend had to pack
    int64_t bytes_written = 0;  // payload bytes of entries written
    int64_t entries_written = 0;
    int64_t entries_removed = 0;  // by open()'s sweep
  };

  // Creates `dir` (and its parents) if missing and sweeps it. `layout` names
  // the packed format and its version; entries of another layout are misses.
  static StatusOr<std::unique_ptr<PackedWeightsCache>> open(const std::string& dir,
                                                            const std::string& layout);
  ~PackedWeightsCache();
  PackedWeightsCache(const PackedWeightsCache&) = delete;
  PackedWeightsCache& operator=(const PackedWeightsCache&) = delete;

  // `t` packed earlier into `bytes` bytes, read-only and valid while this
  // cache lives; nullptr on a miss (no entry, another version of the file,
  // another size, a checksum that does not match). Only tensors of open()ed
  // checkpoint files (t.mapped_file) can hit.
  const void* find(const TensorInfo& t, size_t bytes);
  // Records what the backend packed for `t` (which must stay valid until
  // write_pending returns; t's checkpoint file need not), so that its
  // file's entry is written.
  void add(const TensorInfo& t, const void* packed, size_t bytes);
  // Writes the entry of every checkpoint file with a tensor add()ed since the
  // last call, holding all of that file's tensors found or added. An error
  // (a full disk, a read-only directory) leaves no partial entry behind.
  Status write_pending();

  // How checksums split [0, n) chunks over threads (the backend's pool);
  // without one, on the calling thread.
  using ParallelFor = std::function<void(int64_t n, const std::function<void(int64_t, int64_t)>& fn)>;
  void set_parallel_for(ParallelFor pf) { parallel_for_ = std::move(pf); }

  const std::string& dir() const { return dir_; }
  const Stats& stats() const { return stats_; }
  // The entry file for `source` in this cache (for tests and log lines).
  std::string entry_path(const SafetensorsFile& source) const;

 private:
  struct Payload {
    const void* data = nullptr;
    size_t bytes = 0;
    int64_t rows = 0;
    int64_t cols = 0;
  };
  struct Entry;  // one checkpoint file's mapped entry and what was used from it
  PackedWeightsCache(std::string dir, std::string layout);
  Entry& entry_for(const SafetensorsFile& source);
  Status write_entry(const Entry& e);
  void sweep();
  std::string checksum(const void* data, size_t bytes) const;

  std::string dir_;
  std::string layout_;
  std::map<const SafetensorsFile*, std::unique_ptr<Entry>> entries_;
  Stats stats_;
  ParallelFor parallel_for_;
};

}  // namespace loraserve
