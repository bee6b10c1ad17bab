#include "engine/packed_weights_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <ctime>
#include <random>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "common/file_util.h"
#include "common/sha256.h"

namespace loraserve {
namespace {

using json = nlohmann::json;

constexpr char kMagic[8] = {'L', 'S', 'P', 'A', 'C', 'K', 'W', '1'};
constexpr size_t kAlign = 4096;
constexpr uint64_t kMaxHeader = uint64_t{64} << 20;
constexpr const char* kSuffix = ".lsw";
constexpr size_t kHashChunk = size_t{8} << 20;
constexpr int64_t kAbandonedAfterS = 600;  // a temporary unchanged this long has no writer

size_t align_up(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }
constexpr size_t kPayloadAlign = size_t{2} << 20;  // in the file: see write_entry
size_t round_up_to(size_t v, size_t a) { return (v + a - 1) / a * a; }

Status io_error(const std::string& what, int err) {
  const std::string msg = "packed-weights cache: " + what + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT || err == EFBIG) return resource_exhausted(msg);
  return internal_error(msg);
}

json identity_json(const FileIdentity& id) {
  return json{{"device", id.device}, {"inode", id.inode}, {"size", id.size},
              {"mtime_ns", id.mtime_ns}, {"ctime_ns", id.ctime_ns}};
}

bool identity_from_json(const json& j, FileIdentity* id) {
  if (!j.is_object()) return false;
  for (const char* k : {"device", "inode", "size", "mtime_ns", "ctime_ns"}) {
    if (!j.contains(k) || !j[k].is_number_integer()) return false;
  }
  id->device = j["device"].get<uint64_t>();
  id->inode = j["inode"].get<uint64_t>();
  id->size = j["size"].get<int64_t>();
  id->mtime_ns = j["mtime_ns"].get<int64_t>();
  id->ctime_ns = j["ctime_ns"].get<int64_t>();
  return true;
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

// Reads the JSON header of the entry open on `fd` (`size` bytes); the data
// section starts at *data_start. Fails on anything but a well-formed header.
StatusOr<json> read_header(int fd, size_t size, size_t* data_start) {
  char head[16];
  if (size < sizeof head || ::pread(fd, head, sizeof head, 0) != static_cast<ssize_t>(sizeof head) ||
      std::memcmp(head, kMagic, sizeof kMagic) != 0) {
    return data_loss("not a packed-weights entry (magic)");
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(head[8 + i]);
  if (n == 0 || n > kMaxHeader || n > size - sizeof head) return data_loss("header length out of range");
  std::string text(static_cast<size_t>(n), '\0');
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t r = ::pread(fd, text.data() + done, text.size() - done,
                              static_cast<off_t>(sizeof head + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return data_loss("header cut short");
    done += static_cast<size_t>(r);
  }
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("layout") || !j["layout"].is_string() ||
      !j.contains("source") || !j["source"].is_string() || !j.contains("tensors") ||
      !j["tensors"].is_object()) {
    return data_loss("malformed header");
  }
  *data_start = align_up(sizeof head + static_cast<size_t>(n));
  if (*data_start > size) return data_loss("cut short before its data section");
  return j;
}

Status write_all(int fd, const void* data, size_t bytes, size_t offset, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const size_t chunk = std::min<size_t>(bytes, size_t{1} << 30);
    const ssize_t n = ::pwrite(fd, p, chunk, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return io_error("write " + path, n < 0 ? errno : ENOSPC);
    p += n;
    offset += static_cast<size_t>(n);
    bytes -= static_cast<size_t>(n);
  }
  return ok_status();
}

// Unmaps the whole pages inside [data, data + bytes) of a read-only shared
// file mapping from this process; they stay in the page cache.
void drop_pages(const void* data, size_t bytes) {
  const uintptr_t begin = align_up(reinterpret_cast<uintptr_t>(data));
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) / kAlign * kAlign;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

Status sync_dir(const std::string& dir) {
  const int err = loraserve::fsync_dir(dir);
  return err == 0 ? ok_status() : io_error("fsync " + dir, err);
}

}  // namespace

struct PackedWeightsCache::Entry {
  // What the entry records of its checkpoint, copied here: the write may
  // run after the checkpoint is closed (the backend writes in the
  // background, and a packed backend does not keep the checkpoint open).
  std::string source;  // real_path
  FileIdentity identity;
  std::string path;  // the entry file
  bool looked = false;
  void* map = nullptr;  // the entry file, read-only and shared
  size_t map_size = 0;
  size_t data_start = 0;
  json tensors;                        // the header's, when mapped
  std::map<std::string, Payload> used;  // found or added: what a rewrite holds
  bool dirty = false;                   // something was added
  ~Entry() {
    if (map != nullptr) munmap(map, map_size);
  }
};

PackedWeightsCache::PackedWeightsCache(std::string dir, std::string layout)
    : dir_(std::move(dir)), layout_(std::move(layout)) {}

PackedWeightsCache::~PackedWeightsCache() = default;

StatusOr<std::unique_ptr<PackedWeightsCache>> PackedWeightsCache::open(const std::string& dir,
                                                                       const std::string& layout) {
  if (dir.empty()) return invalid_argument("packed-weights cache: empty directory");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return io_error("create " + dir, ec.value());
  if (::access(dir.c_str(), W_OK | X_OK) != 0) return io_error("write to " + dir, errno);
  std::unique_ptr<PackedWeightsCache> cache(new PackedWeightsCache(dir, layout));
  cache->sweep();
  return cache;
}

namespace {
// The checkpoint's absolute path: what an entry records, so that a sweep run
// from any working directory finds it.
std::string real_path(const SafetensorsFile& source) {
  std::error_code ec;
  std::string real = std::filesystem::weakly_canonical(source.path(), ec).string();
  return ec ? source.path() : real;
}
}  // namespace

std::string PackedWeightsCache::entry_path(const SafetensorsFile& source) const {
  const std::string real = real_path(source);
  const FileIdentity& id = source.identity();
  const std::string key = sha256_hex({layout_, std::string(1, '\0'), real, std::string(1, '\0'),
                                      identity_json(id).dump()});
  return dir_ + "/" + key.substr(0, 32) + kSuffix;
}

void PackedWeightsCache::sweep() {
  DIR* d = ::opendir(dir_.c_str());
  if (d == nullptr) return;
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
  ::closedir(d);
  for (const std::string& name : names) {
    const std::string path = dir_ + "/" + name;
    const size_t tmp = name.find(std::string(kSuffix) + ".tmp.");
    if (tmp != std::string::npos) {
      // NAME.lsw.tmp.PID.R: a write in progress, unless its writer is gone
      // (killed part-way). A writer in another PID namespace (a container
      // sharing the volume) looks gone, so the file must also have stopped
      // changing: a live writer touches it every few seconds.
      const long pid = std::strtol(name.c_str() + tmp + std::strlen(kSuffix) + 5, nullptr, 10);
      struct stat st {};
      const bool idle = ::stat(path.c_str(), &st) == 0 &&
                        std::time(nullptr) - st.st_mtim.tv_sec > kAbandonedAfterS;
      if (pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH && idle &&
          ::unlink(path.c_str()) == 0) {
        stats_.entries_removed++;
      }
      continue;
    }
    if (name.size() <= std::strlen(kSuffix) || name.compare(name.size() - 4, 4, kSuffix) != 0) continue;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st {};
    std::string why;
    if (fstat(fd, &st) == 0) {
      size_t data_start = 0;
      StatusOr<json> header = read_header(fd, static_cast<size_t>(st.st_size), &data_start);
      FileIdentity recorded;
      if (!header.ok()) {
        why = header.status().message();
      } else if (!header->contains("identity") || !identity_from_json((*header)["identity"], &recorded)) {
        why = "no source identity";
      } else {
        StatusOr<FileIdentity> now = stat_identity((*header)["source"].get<std::string>());
        if (!now.ok()) why = "its checkpoint is gone";
        else if (*now != recorded) why = "its checkpoint has changed";
      }
    }
    ::close(fd);
    if (!why.empty() && ::unlink(path.c_str()) == 0) {
      spdlog::info("packed-weights cache: removed {} ({})", path, why);
      stats_.entries_removed++;
    }
  }
}

PackedWeightsCache::Entry& PackedWeightsCache::entry_for(const SafetensorsFile& source) {
  std::unique_ptr<Entry>& slot = entries_[&source];
  if (!slot) slot = std::make_unique<Entry>();
  Entry& e = *slot;
  if (e.looked) return e;
  e.looked = true;
  e.source = real_path(source);
  e.identity = source.identity();
  e.path = entry_path(source);
  const std::string& path = e.path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return e;  // not written yet: every tensor is a miss
  std::string why;
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    why = std::strerror(errno);
  } else {
    size_t data_start = 0;
    StatusOr<json> header = read_header(fd, static_cast<size_t>(st.st_size), &data_start);
    FileIdentity recorded;
    if (!header.ok()) {
      why = header.status().message();
    } else if ((*header)["layout"] != layout_) {
      why = "layout " + (*header)["layout"].get<std::string>() + ", expected " + layout_;
    } else if (!header->contains("identity") ||
               !identity_from_json((*header)["identity"], &recorded) ||
               recorded != source.identity()) {
      why = "written for another version of " + source.path();
    } else {
      void* map = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
      if (map == MAP_FAILED) {
        why = std::string("mmap: ") + std::strerror(errno);
      } else {
        // Huge pages where the page cache has them (a hint; may fail).
        madvise(map, static_cast<size_t>(st.st_size), MADV_HUGEPAGE);
        e.map = map;
        e.map_size = static_cast<size_t>(st.st_size);
        e.data_start = data_start;
        e.tensors = (*header)["tensors"];
      }
    }
  }
  ::close(fd);
  if (!why.empty()) spdlog::warn("packed-weights cache: not using {}: {}", path, why);
  return e;
}

const void* PackedWeightsCache::find(const TensorInfo& t, size_t bytes) {
  if (t.mapped_file == nullptr || t.shape.size() != 2) return nullptr;
  Entry& e = entry_for(*t.mapped_file);
  auto miss = [&](const std::string& why) -> const void* {
    if (!why.empty()) spdlog::warn("packed-weights cache: {}: {}; packing it again", t.name, why);
    stats_.misses++;
    return nullptr;
  };
  if (e.map == nullptr || !e.tensors.contains(t.name)) return miss("");
  const json& j = e.tensors[t.name];
  for (const char* k : {"rows", "cols", "offset", "bytes"}) {
    if (!j.contains(k) || !j[k].is_number_unsigned()) return miss("malformed entry");
  }
  if (!j.contains("xxh3") || !j["xxh3"].is_string()) return miss("malformed entry");
  const uint64_t offset = j["offset"], stored = j["bytes"];
  if (j["rows"] != t.shape[0] || j["cols"] != t.shape[1] || stored != bytes) {
    return miss("stored with another shape or size");
  }
  if (offset % kAlign != 0 || offset > e.map_size - e.data_start ||
      bytes > e.map_size - e.data_start - offset) {
    return miss("outside the entry file (truncated?)");
  }
  const char* data = static_cast<const char*>(e.map) + e.data_start + offset;
  if (checksum(data, bytes) != j["xxh3"]) {
    // The check read the payload in; it will not be used, so its pages
    // leave the process (else a stale entry holds the model twice in RSS
    // beside the copy the backend packs now).
    drop_pages(data, bytes);
    return miss("checksum mismatch");
  }
  e.used[t.name] = Payload{data, bytes, t.shape[0], t.shape[1]};
  stats_.hits++;
  return data;
}

std::string PackedWeightsCache::checksum(const void* data, size_t bytes) const {
  const char* p = static_cast<const char*>(data);
  const int64_t chunks = static_cast<int64_t>(std::max<size_t>(1, (bytes + kHashChunk - 1) / kHashChunk));
  std::vector<uint64_t> sums(static_cast<size_t>(chunks));
  auto run = [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      const size_t at = static_cast<size_t>(c) * kHashChunk;
      sums[static_cast<size_t>(c)] = XXH3_64bits(p + at, std::min(kHashChunk, bytes - at));
    }
  };
  if (parallel_for_) {
    parallel_for_(chunks, run);
  } else {
    run(0, chunks);
  }
  return hex64(XXH3_64bits(sums.data(), sums.size() * sizeof(uint64_t)));
}

void PackedWeightsCache::add(const TensorInfo& t, const void* packed, size_t bytes) {
  if (t.mapped_file == nullptr || t.shape.size() != 2) return;
  Entry& e = entry_for(*t.mapped_file);
  e.used[t.name] = Payload{packed, bytes, t.shape[0], t.shape[1]};
  e.dirty = true;
}

Status PackedWeightsCache::write_pending() {
  Status first = ok_status();
  for (auto& [source, e] : entries_) {
    if (!e->dirty) continue;
    e->dirty = false;
    Status s = write_entry(*e);
    if (!s.ok() && first.ok()) first = std::move(s);
  }
  return first;
}

Status PackedWeightsCache::write_entry(const Entry& e) {
  const std::map<std::string, Payload>& tensors = e.used;
  json header;
  header["layout"] = layout_;
  header["source"] = e.source;
  header["identity"] = identity_json(e.identity);
  json& index = header["tensors"] = json::object();
  for (const auto& [name, p] : tensors) {
    index[name] = json{{"rows", p.rows}, {"cols", p.cols}, {"bytes", p.bytes},
                       {"xxh3", checksum(p.data, p.bytes)}};
  }
  // Each payload starts on a 2 MiB boundary of the file (the holes between
  // them are never written: a sparse file), so that the page cache can hold
  // and map it in huge pages throughout: with 4 KiB alignment about a third
  // of a 1.2 B model's entry was mapped in 4 KiB pages, and prefill from the
  // entry ran 5-10% slower than from packed memory (docs/benchmarks.md).
  // Offsets count from the data start, which the header's own length sets:
  // lay out until that length stops moving.
  std::string head;
  size_t data_start = 0;
  for (int pass = 0; pass < 8; ++pass) {
    size_t at = round_up_to(data_start, kPayloadAlign);
    for (const auto& [name, p] : tensors) {
      index[name]["offset"] = at - data_start;
      at = round_up_to(at + p.bytes, kPayloadAlign);
    }
    const std::string text = header.dump();
    head.assign(kMagic, sizeof kMagic);
    for (int i = 0; i < 8; ++i) head.push_back(static_cast<char>((text.size() >> (8 * i)) & 0xff));
    head += text;
    if (align_up(head.size()) == data_start) break;
    data_start = align_up(head.size());
  }
  if (align_up(head.size()) != data_start) return internal_error("packed-weights cache: header layout");
  head.resize(data_start, '\0');

  const std::string& path = e.path;
  // The random part keeps writers with the same PID in different containers apart.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." +
                          hex64(std::random_device{}() ^ (uint64_t{std::random_device{}()} << 32));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return io_error("create " + tmp, errno);
  Status st = write_all(fd, head.data(), head.size(), 0, tmp);
  size_t written = 0;
  for (const auto& [name, p] : tensors) {
    if (!st.ok()) break;
    st = write_all(fd, p.data, p.bytes, data_start + index[name]["offset"].get<size_t>(), tmp);
    written += p.bytes;
  }
  // The file ends at the last payload's end; a reader checks every payload
  // lies inside it.
  if (st.ok() && ::fsync(fd) != 0) st = io_error("fsync " + tmp, errno);
  if (::close(fd) != 0 && st.ok()) st = io_error("close " + tmp, errno);
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) st = io_error("rename " + tmp, errno);
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  stats_.entries_written++;
  stats_.bytes_written += static_cast<int64_t>(written);
  return sync_dir(dir_);
}

}  // namespace loraserve
