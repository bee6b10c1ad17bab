#include "common/file_util.h"
#include "checkpoint/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <utility>

namespace loraserve {
namespace {

using json = nlohmann::json;

// A header larger than this is not a checkpoint we can trust (real ones are a
// few hundred KB even for 70B models); the Rust reference uses the same bound.
constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;

// numel of a validated shape, or false on overflow past `limit`.
bool checked_numel(const std::vector<int64_t>& shape, uint64_t limit, uint64_t* out) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    const uint64_t ud = static_cast<uint64_t>(d);
    if (ud != 0 && n > limit / ud) return false;
    n *= ud;
  }
  *out = n;
  return true;
}

// Bits per element of every dtype the safetensors format defines (the
// reference's Dtype enum); 0 for a name it does not define. loraserve reads
// BF16/F16/F32 only, but a file is checked against the whole format first.
int safetensors_dtype_bits(const std::string& s) {
  static const std::map<std::string, int> kBits = {
      {"BOOL", 8},    {"U8", 8},      {"I8", 8},       {"F8_E5M2", 8},   {"F8_E4M3", 8},
      {"F8_E8M0", 8}, {"F4", 4},      {"F6_E2M3", 6},  {"F6_E3M2", 6},   {"I16", 16},
      {"U16", 16},    {"F16", 16},    {"BF16", 16},    {"I32", 32},      {"U32", 32},
      {"F32", 32},    {"C64", 64},    {"F64", 64},     {"I64", 64},      {"U64", 64}};
  auto it = kBits.find(s);
  return it == kBits.end() ? 0 : it->second;
}

// Thrown from the parser callback to stop reading a header whose shape no
// safetensors header can have (the DOM is never built for it).
struct HeaderShapeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A valid header nests at most three deep ({name: {"shape": [dims]}}) and no
// array in it is longer than a tensor's rank, which PyTorch caps at 64; the
// callback refuses anything else while parsing, so a hostile 100 MB header
// cannot build a huge or deep document. It also records the first
// top-level key seen twice (JSON allows it; a safetensors header must not).
json::parser_callback_t header_guard(std::string* dup) {
  struct State {
    std::set<std::string> keys;
    std::vector<std::pair<bool, int64_t>> open;  // (is array, elements so far)
  };
  auto st = std::make_shared<State>();
  return [st, dup](int depth, json::parse_event_t ev, json& parsed) {
    constexpr int kMaxDepth = 3;
    constexpr int64_t kMaxArray = 64;
    auto count_element = [&] {
      if (!st->open.empty() && st->open.back().first && ++st->open.back().second > kMaxArray) {
        throw HeaderShapeError("an array holds more than " + std::to_string(kMaxArray) +
                               " elements (a tensor has at most 64 dimensions)");
      }
    };
    switch (ev) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= kMaxDepth) {
          throw HeaderShapeError("nested deeper than a safetensors header can be");
        }
        count_element();
        st->open.emplace_back(ev == json::parse_event_t::array_start, 0);
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!st->open.empty()) st->open.pop_back();
        break;
      case json::parse_event_t::key:
        if (depth == 1 && !st->keys.insert(parsed.get<std::string>()).second && dup->empty()) {
          *dup = parsed.get<std::string>();
        }
        break;
      case json::parse_event_t::value:
        count_element();
        break;
    }
    return true;
  };
}

Status errno_status(const std::string& what, const std::string& path, int err) {
  std::string msg = what + " " + path + ": " + std::strerror(err);
  if (err == ENOENT || err == ENOTDIR) return not_found(msg);
  if (err == EACCES || err == EPERM) return permission_denied(msg);
  return internal_error(msg);
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {
FileIdentity identity_of(const struct stat& st) {
  FileIdentity id;
  id.device = static_cast<uint64_t>(st.st_dev);
  id.inode = static_cast<uint64_t>(st.st_ino);
  id.size = static_cast<int64_t>(st.st_size);
  id.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  id.ctime_ns = static_cast<int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
  return id;
}
}  // namespace

StatusOr<FileIdentity> stat_identity(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno_status("cannot stat", path, errno);
  return identity_of(st);
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) munmap(map_, map_size_);
}

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_status("cannot open", path, errno);
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return errno_status("cannot stat", path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return invalid_argument(path + ": not a regular file");
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->identity_ = identity_of(st);
  const size_t size = static_cast<size_t>(st.st_size);
  if (size > 0) {
    void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return errno_status("cannot mmap", path, err);
    }
    file->map_ = map;
    file->map_size_ = size;
  }
  ::close(fd);  // the mapping keeps the file alive
  Status s = file->parse(static_cast<const uint8_t*>(file->map_), size);
  if (!s.ok()) return s.with_context(path);
  return file;
}

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::from_bytes(std::string bytes,
                                                                       const std::string& label) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = label;
  file->owned_bytes_ = std::move(bytes);
  Status s = file->parse(reinterpret_cast<const uint8_t*>(file->owned_bytes_.data()),
                         file->owned_bytes_.size());
  if (!s.ok()) return s.with_context(label);
  return file;
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

Status SafetensorsFile::parse(const uint8_t* base, size_t size) {
  if (size < 8) {
    return data_loss("truncated file: " + std::to_string(size) +
                     " bytes, shorter than the 8-byte header length");
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | base[i];  // little-endian
  if (n > kMaxHeaderBytes) {
    return data_loss("corrupt header: header length " + std::to_string(n) + " exceeds the " +
                     std::to_string(kMaxHeaderBytes) + "-byte limit");
  }
  if (n > size - 8) {
    return data_loss("truncated file: header length " + std::to_string(n) +
                     " goes beyond the file's " + std::to_string(size - 8) +
                     " bytes after the length prefix");
  }
  const uint8_t* header = base + 8;
  const uint8_t* data = header + n;
  const uint64_t data_size = size - 8 - n;

  // nlohmann's lexer takes a NUL byte as the end of input, so "{...}\0junk"
  // would parse; JSON has no raw NUL anywhere (strings escape it), so a
  // header holding one is corrupt, as the reference's parser finds.
  if (const void* nul = std::memchr(header, 0, n)) {
    return data_loss("corrupt header: NUL byte at header offset " +
                     std::to_string(static_cast<const uint8_t*>(nul) - header));
  }
  json root;
  std::string dup;
  try {
    root = json::parse(header, header + n, header_guard(&dup));
  } catch (const HeaderShapeError& e) {
    return data_loss(std::string("corrupt header: ") + e.what());
  } catch (const json::exception& e) {
    return data_loss(std::string("corrupt header: ") + e.what());
  }
  if (!root.is_object()) return data_loss("corrupt header: the header is not a JSON object");
  if (!dup.empty()) return data_loss("corrupt header: key \"" + dup + "\" appears twice");

  struct Range {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Range> ranges;
  std::string unsupported;  // the first tensor of a known dtype loraserve cannot read
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& name = it.key();
    const json& entry = it.value();
    if (name == "__metadata__") {
      if (entry.is_null()) continue;
      if (!entry.is_object()) return data_loss("corrupt header: __metadata__ is not an object");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) {
          return data_loss("corrupt header: __metadata__ value for \"" + m.key() +
                           "\" is not a string");
        }
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor " + name + ": ";
    if (!entry.is_object()) return data_loss("corrupt header: " + where + "entry is not an object");
    auto dt = entry.find("dtype");
    auto sh = entry.find("shape");
    auto off = entry.find("data_offsets");
    if (dt == entry.end() || !dt->is_string())
      return data_loss("corrupt header: " + where + "missing or non-string dtype");
    if (sh == entry.end() || !sh->is_array())
      return data_loss("corrupt header: " + where + "missing or non-array shape");
    if (off == entry.end() || !off->is_array() || off->size() != 2)
      return data_loss("corrupt header: " + where + "data_offsets must be [begin, end]");

    TensorInfo info;
    info.name = name;
    const std::string dtype_str = dt->get<std::string>();
    const int bits = safetensors_dtype_bits(dtype_str);
    if (bits == 0) {
      return data_loss("corrupt header: " + where + "unknown dtype \"" + dtype_str + "\"");
    }
    if (!parse_dtype(dtype_str, &info.dtype) && unsupported.empty()) {
      unsupported = where + "unsupported dtype " + dtype_str + " (supported: BF16, F16, F32)";
    }
    for (const json& d : *sh) {
      if (!d.is_number_integer() || (!d.is_number_unsigned() && d.get<int64_t>() < 0) ||
          d.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return data_loss("corrupt header: " + where + "shape " + sh->dump() +
                         " must hold non-negative integers");
      }
      info.shape.push_back(d.get<int64_t>());
    }
    for (const json& o : *off) {
      if (!o.is_number_integer() || (!o.is_number_unsigned() && o.get<int64_t>() < 0)) {
        return data_loss("corrupt header: " + where + "data_offsets " + off->dump() +
                         " must hold non-negative integers");
      }
    }
    const uint64_t begin = (*off)[0].get<uint64_t>();
    const uint64_t end = (*off)[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      return data_loss(where + "data range [" + std::to_string(begin) + "," + std::to_string(end) +
                       ") outside the file's " + std::to_string(data_size) + " data bytes");
    }
    // Sizes in bits, as the reference does, so sub-byte dtypes are exact.
    uint64_t numel = 0;
    const bool fits = checked_numel(info.shape, std::numeric_limits<uint64_t>::max() / bits, &numel);
    const uint64_t nbits = fits ? numel * bits : 0;
    if (fits && nbits % 8 != 0) {
      return data_loss(where + "shape " + shape_string(info.shape) + " of " + dtype_str +
                       " is not a whole number of bytes");
    }
    if (!fits || nbits / 8 != end - begin) {
      return data_loss(where + "shape " + shape_string(info.shape) + " of " + dtype_str +
                       " needs " + (fits ? std::to_string(nbits / 8) : "too many") +
                       " bytes but data_offsets [" + std::to_string(begin) + "," +
                       std::to_string(end) + ") span " + std::to_string(end - begin));
    }
    info.data = data + begin;
    info.mapped_file = map_ != nullptr ? this : nullptr;
    info.nbytes = static_cast<size_t>(end - begin);
    auto inserted = tensors_.emplace(name, std::move(info));
    ranges.push_back({begin, end, &inserted.first->first});
  }

  // As the reference does: sorted by (begin, end), the tensors must tile
  // the data section from byte 0 with no gap and no overlap, and end exactly
  // where the file ends. A header length one byte off, bytes appended after
  // the last tensor or a range pointing at the wrong bytes all fail here.
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;
  const Range* prev = nullptr;
  for (const Range& r : ranges) {
    if (r.begin < covered) {
      return data_loss("tensors " + *prev->name + " [" + std::to_string(prev->begin) + "," +
                       std::to_string(prev->end) + ") and " + *r.name + " [" +
                       std::to_string(r.begin) + "," + std::to_string(r.end) + ") overlap");
    }
    if (r.begin > covered) {
      return data_loss("tensor " + *r.name + " starts at data byte " + std::to_string(r.begin) +
                       " but " +
                       (prev ? "the tensor before it, " + *prev->name + ", ends at " +
                                   std::to_string(prev->end)
                             : std::string("no tensor starts at 0")) +
                       ": " + std::to_string(r.begin - covered) + " bytes belong to no tensor");
    }
    covered = r.end;
    prev = &r;
  }
  if (covered != data_size) {
    return data_loss("the tensors cover " + std::to_string(covered) + " bytes but the data " +
                     "section holds " + std::to_string(data_size) + ": " +
                     std::to_string(data_size - covered) +
                     " byte(s) after the last tensor (a wrong header length, or bytes appended)");
  }
  if (!unsupported.empty()) {
    tensors_.clear();
    metadata_.clear();
    return invalid_argument(unsupported);
  }
  return ok_status();
}

Status write_safetensors_streaming(const std::string& path, std::vector<TensorSpec> specs,
                                   const TensorFillFn& fill,
                                   const std::map<std::string, std::string>& metadata) {
  std::sort(specs.begin(), specs.end(),
            [](const TensorSpec& a, const TensorSpec& b) { return a.name < b.name; });
  json header = json::object();
  if (!metadata.empty()) {
    json meta = json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = meta;
  }
  std::vector<uint64_t> sizes;
  uint64_t offset = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& t = specs[i];
    if (t.name == "__metadata__" || t.name.empty())
      return invalid_argument("invalid tensor name \"" + t.name + "\"");
    if (i > 0 && specs[i - 1].name == t.name)
      return invalid_argument("tensor " + t.name + " given twice");
    for (int64_t d : t.shape) {
      if (d < 0)
        return invalid_argument("tensor " + t.name + ": negative dimension in shape " +
                                shape_string(t.shape));
    }
    uint64_t numel = 0;
    if (!checked_numel(t.shape, std::numeric_limits<uint64_t>::max() / 8, &numel))
      return invalid_argument("tensor " + t.name + ": shape " + shape_string(t.shape) +
                              " is too large");
    const uint64_t nbytes = numel * dtype_size(t.dtype);
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + nbytes}}};
    sizes.push_back(nbytes);
    offset += nbytes;
  }
  std::string text = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned, as the
  // reference implementation does.
  text.append((8 - text.size() % 8) % 8, ' ');

  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return errno_status("cannot create", tmp, errno);
  auto fail = [&](const std::string& what) {
    const int err = errno;
    std::fclose(f);
    std::remove(tmp.c_str());
    return errno_status(what, tmp, err);
  };
  uint8_t len[8];
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  if (std::fwrite(len, 1, 8, f) != 8 || std::fwrite(text.data(), 1, text.size(), f) != text.size())
    return fail("cannot write");
  std::string bytes;
  for (size_t i = 0; i < specs.size(); ++i) {
    bytes.clear();
    Status s = fill(specs[i], &bytes);
    if (s.ok() && bytes.size() != sizes[i]) {
      s = invalid_argument("tensor " + specs[i].name + ": " + std::to_string(bytes.size()) +
                           " bytes given, shape " + shape_string(specs[i].shape) + " of " +
                           dtype_name(specs[i].dtype) + " needs " + std::to_string(sizes[i]));
    }
    if (!s.ok()) {
      std::fclose(f);
      std::remove(tmp.c_str());
      return s;
    }
    if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size())
      return fail("cannot write");
  }
  if (std::fflush(f) != 0) return fail("cannot write");
  if (std::fclose(f) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return errno_status("cannot close", tmp, err);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return errno_status("cannot rename into", path, err);
  }
  return ok_status();
}

Status write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  std::map<std::string, const TensorToWrite*> by_name;
  for (const TensorToWrite& t : tensors) {
    specs.push_back({t.name, t.dtype, t.shape});
    if (!by_name.emplace(t.name, &t).second)
      return invalid_argument("tensor " + t.name + " given twice");
  }
  return write_safetensors_streaming(
      path, std::move(specs),
      [&](const TensorSpec& spec, std::string* bytes) {
        *bytes = by_name.at(spec.name)->bytes;
        return ok_status();
      },
      metadata);
}

void drop_mapped_pages(const TensorInfo& t) {
  if (t.mapped_file == nullptr || t.data == nullptr) return;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(t.data) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(t.data) + t.nbytes) / page * page;
  // MADV_DONTNEED on a private, never-written file mapping only unmaps the
  // page-cache pages; a failure leaves them resident, which is harmless.
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace loraserve
