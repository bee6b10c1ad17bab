// Read-only view of a `.safetensors` file through mmap.
//
// Format: 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets:[begin,end]}, "__metadata__": {...}},
// then the data section; offsets are relative to the data section. open()
// validates the whole file as Hugging Face's safetensors crate does before
// any tensor is handed out: N at most 100 MB and inside the file, the JSON
// well-formed (no key twice, nothing nested deeper than a header can be),
// __metadata__ a map of strings, every dtype one the format defines,
// product(shape) x dtype size == end - begin without overflow, and the
// ranges, sorted, tiling the data section exactly: starting at 0, no gaps,
// no overlaps, ending at the end of the file (so a header length one byte
// off, or bytes appended, are refused). Then dtypes loraserve cannot read
// (anything but BF16/F16/F32) are refused. Each failure names the tensor or
// field; open() prefixes the file's path, from_bytes() its label.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"

namespace loraserve {

class SafetensorsFile;

// What identifies one version of a file on disk (fstat at open): a file
// rewritten or replaced in place changes its ctime, which no user tool can
// set back, so a cache keyed by this never serves an old version's data.
struct FileIdentity {
  uint64_t device = 0;
  uint64_t inode = 0;
  int64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  bool operator==(const FileIdentity& o) const {
    return device == o.device && inode == o.inode && size == o.size && mtime_ns == o.mtime_ns &&
           ctime_ns == o.ctime_ns;
  }
  bool operator!=(const FileIdentity& o) const { return !(*this == o); }
};
// `path`'s identity now (stat); NOT_FOUND when it is gone.
StatusOr<FileIdentity> stat_identity(const std::string& path);

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // inside the mapping; valid while the file is open
  size_t nbytes = 0;
  // The open() file whose read-only mapping holds data; null for bytes in
  // memory (from_bytes).
  const SafetensorsFile* mapped_file = nullptr;

  int64_t numel() const;
};

// For a backend that has copied `t` and will not read it again: the whole
// pages inside t's bytes leave this process's resident set (they stay in the
// page cache and fault back in if anyone reads them), so that peak RSS does
// not hold the weights twice while a model loads. Safe only because the
// mapping is read-only and file-backed; a no-op for tensors in memory.
void drop_mapped_pages(const TensorInfo& t);

class SafetensorsFile {
 public:
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  // DATA_LOSS for a corrupt/truncated file, NOT_FOUND when missing,
  // INVALID_ARGUMENT for a well-formed file holding a dtype other than
  // BF16/F16/F32.
  static StatusOr<std::unique_ptr<SafetensorsFile>> open(const std::string& path);
  // Same validation over bytes already in memory (uploads); the bytes are copied.
  static StatusOr<std::unique_ptr<SafetensorsFile>> from_bytes(std::string bytes,
                                                               const std::string& label);

  const std::string& path() const { return path_; }
  // The file as open() found it (zero for from_bytes).
  const FileIdentity& identity() const { return identity_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  Status parse(const uint8_t* base, size_t size);

  std::string path_;
  FileIdentity identity_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::string owned_bytes_;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors to a safetensors file (sorted by name, 8-byte aligned header
// as the reference implementation does). Used by `loraserve synth` and tests.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::string bytes;  // exactly numel * dtype_size bytes
};
Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

// Streaming form for checkpoints too large to hold in memory (synth llama
// presets): the header is built from `specs`, then `fill` is called once per
// tensor in name order and must set `*bytes` to exactly numel * dtype_size
// bytes; only one tensor is held at a time. The file is written to a
// temporary name and renamed into place once complete.
struct TensorSpec {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
};
using TensorFillFn = std::function<Status(const TensorSpec& spec, std::string* bytes)>;
Status write_safetensors_streaming(const std::string& path, std::vector<TensorSpec> specs,
                                   const TensorFillFn& fill,
                                   const std::map<std::string, std::string>& metadata = {});

}  // namespace loraserve
