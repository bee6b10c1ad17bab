#include "memory/durable_adapter_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/sha256.h"

namespace loraserve {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// The status for a failed system call on `what`: a full disk or quota is
// RESOURCE_EXHAUSTED (the client may retry elsewhere), the rest INTERNAL.
Status io_error(const std::string& what, int err) {
  const std::string msg = "adapter store: " + what + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT || err == EFBIG) return resource_exhausted(msg);
  return internal_error(msg);
}

Status sync_dir(const std::string& dir) {
  const int err = loraserve::fsync_dir(dir);
  return err == 0 ? ok_status() : io_error("fsync " + dir, err);
}

Status make_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return io_error("mkdir " + dir, errno);
  return ok_status();
}

// Creates `path` (which must not exist), writes all of `bytes`, fsyncs.
// On failure the partial file is removed.
Status write_new_file(const std::string& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return io_error("create " + path, errno);
  size_t done = 0;
  Status st;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      st = io_error("write " + path, n < 0 ? errno : ENOSPC);
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (st.ok() && ::fsync(fd) != 0) st = io_error("fsync " + path, errno);
  if (::close(fd) != 0 && st.ok()) st = io_error("close " + path, errno);
  if (!st.ok()) ::unlink(path.c_str());
  return st;
}

std::string unique_suffix() {
  static thread_local std::mt19937_64 rng(std::random_device{}() ^
                                          static_cast<uint64_t>(::getpid()) << 32);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%d.%016llx", static_cast<int>(::getpid()),
                static_cast<unsigned long long>(rng()));
  return buf;
}

// Holds an exclusive flock on a lock file for its lifetime.
class FileLock {
 public:
  static StatusOr<std::unique_ptr<FileLock>> acquire(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return io_error("open lock " + path, errno);
    while (::flock(fd, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return io_error("flock " + path, err);
    }
    return std::unique_ptr<FileLock>(new FileLock(fd));
  }
  ~FileLock() { ::close(fd_); }  // closing releases the flock

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_;
};

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool older_than(const fs::path& p, int64_t seconds) {
  struct stat st {};
  if (::lstat(p.c_str(), &st) != 0) return false;
  const int64_t age = static_cast<int64_t>(::time(nullptr)) - static_cast<int64_t>(st.st_mtime);
  return age >= seconds;
}

// A file name of one adapter's files: no directories, no dot files.
bool valid_file_name(const std::string& name) {
  if (name.empty() || name.size() > 128 || name[0] == '.') return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) {
      return false;
    }
  }
  return true;
}

}  // namespace

// ---- records as JSON ----

std::string stored_adapter_to_json(const StoredAdapter& a) {
  json files = json::object();
  for (const auto& [name, f] : a.files) files[name] = {{"sha256", f.sha256}, {"bytes", f.bytes}};
  json j = {{"id", a.id},
            {"public_id", a.public_id},
            {"owner", a.owner},
            {"is_public", a.is_public},
            {"version", a.version},
            {"rank", a.rank},
            {"target_modules", a.target_modules},
            {"created_unix_ms", a.created_unix_ms},
            {"source", a.source},
            {"files", files}};
  return j.dump(2) + "\n";
}

StatusOr<StoredAdapter> stored_adapter_from_json(const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return data_loss("adapter record is not a JSON object");
  StoredAdapter a;
  try {
    a.id = j.at("id").get<std::string>();
    a.public_id = j.value("public_id", a.id);
    a.owner = j.value("owner", "");
    a.is_public = j.value("is_public", false);
    a.version = j.at("version").get<uint64_t>();
    a.rank = j.value("rank", 0);
    a.target_modules = j.value("target_modules", std::vector<std::string>{});
    a.created_unix_ms = j.value("created_unix_ms", int64_t{0});
    a.source = j.value("source", "");
    for (const auto& [name, f] : j.at("files").items()) {
      if (!valid_file_name(name)) return data_loss("adapter record names a bad file \"" + name + "\"");
      a.files[name] = StoredAdapterFile{f.at("sha256").get<std::string>(),
                                        f.at("bytes").get<uint64_t>()};
    }
  } catch (const json::exception& e) {
    return data_loss(std::string("adapter record: ") + e.what());
  }
  if (a.id.empty() || a.version == 0 || a.files.empty()) {
    return data_loss("adapter record lacks id, version or files");
  }
  return a;
}

// ---- the store ----

StatusOr<std::unique_ptr<DurableAdapterStore>> DurableAdapterStore::open(const std::string& dir,
                                                                         int64_t stale_after_s) {
  if (dir.empty()) return invalid_argument("adapter store: empty directory");
  LS_RETURN_IF_ERROR(make_dir(dir));
  for (const char* sub : {"records", "objects", "tmp", "locks"}) {
    LS_RETURN_IF_ERROR(make_dir(dir + "/" + sub));
  }
  if (::access((dir + "/tmp").c_str(), W_OK) != 0) {
    return permission_denied("adapter store " + dir + " is not writable");
  }
  std::unique_ptr<DurableAdapterStore> store(new DurableAdapterStore(dir));
  store->collect_garbage(stale_after_s);
  return store;
}

std::string DurableAdapterStore::key_of(const std::string& id) const {
  static const char kHex[] = "0123456789ABCDEF";
  std::string key;
  for (unsigned char c : id) {
    if (std::isalnum(c) || c == '.' || c == '_' || c == '-') {
      key.push_back(static_cast<char>(c));
    } else {
      key.push_back('%');
      key.push_back(kHex[c >> 4]);
      key.push_back(kHex[c & 15]);
    }
  }
  // A key of dots only would name a directory entry of its own.
  if (key.find_first_not_of('.') == std::string::npos) key = "%2E" + key.substr(1);
  return key;
}

std::string DurableAdapterStore::record_path(const std::string& id) const {
  return dir_ + "/records/" + key_of(id) + ".json";
}

std::string DurableAdapterStore::object_dir(const std::string& id, uint64_t version) const {
  return dir_ + "/objects/" + key_of(id) + "/v" + std::to_string(version);
}

StatusOr<StoredAdapter> DurableAdapterStore::put(StoredAdapter meta,
                                                 const std::map<std::string, std::string>& files,
                                                 bool replace) {
  if (meta.id.empty()) return invalid_argument("adapter store: empty id");
  if (files.empty()) return invalid_argument("adapter store: no files for " + meta.id);
  for (const auto& [name, bytes] : files) {
    if (!valid_file_name(name)) return invalid_argument("adapter store: bad file name " + name);
  }
  const std::string key = key_of(meta.id);
  LS_ASSIGN_OR_RETURN(auto lock, FileLock::acquire(dir_ + "/locks/" + key + ".lock"));

  uint64_t previous = 0;
  auto existing = get(meta.id);
  if (existing.ok()) {
    if (!replace) return Status(StatusCode::kAlreadyExists, "adapter '" + meta.public_id +
                                                                "' is already stored (replace it explicitly)");
    previous = existing->version;
  } else if (existing.status().code() != StatusCode::kNotFound) {
    return existing.status();
  }
  meta.version = previous + 1;
  meta.created_unix_ms = now_unix_ms();
  meta.files.clear();
  for (const auto& [name, bytes] : files) {
    meta.files[name] = StoredAdapterFile{sha256_hex(bytes), bytes.size()};
  }

  // 1. The files, staged in tmp/ and renamed into objects/<key>/v<N>.
  const std::string staging = dir_ + "/tmp/" + key + "." + unique_suffix();
  LS_RETURN_IF_ERROR(make_dir(staging));
  auto cleanup = [&staging] {
    std::error_code ec;
    fs::remove_all(staging, ec);
  };
  for (const auto& [name, bytes] : files) {
    Status st = write_new_file(staging + "/" + name, bytes);
    if (!st.ok()) {
      cleanup();
      return st;
    }
  }
  Status st = sync_dir(staging);
  const std::string parent = dir_ + "/objects/" + key;
  if (st.ok()) st = make_dir(parent);
  const std::string target = object_dir(meta.id, meta.version);
  if (st.ok()) {
    // A version directory without a record is what a crash leaves: ours to replace.
    std::error_code ec;
    fs::remove_all(target, ec);
    if (::rename(staging.c_str(), target.c_str()) != 0) st = io_error("rename to " + target, errno);
  }
  if (st.ok()) st = sync_dir(parent);
  if (st.ok()) st = sync_dir(dir_ + "/objects");
  if (!st.ok()) {
    cleanup();
    return st;
  }

  // 2. The record, last: it names only files that are complete on disk.
  const std::string rec_tmp = dir_ + "/tmp/" + key + ".json." + unique_suffix();
  st = write_new_file(rec_tmp, stored_adapter_to_json(meta));
  if (st.ok() && ::rename(rec_tmp.c_str(), record_path(meta.id).c_str()) != 0) {
    st = io_error("rename to " + record_path(meta.id), errno);
  }
  if (st.ok()) st = sync_dir(dir_ + "/records");
  if (!st.ok()) {
    ::unlink(rec_tmp.c_str());
    std::error_code ec;
    fs::remove_all(target, ec);
    return st;
  }
  // Versions before the previous one have no reader left to serve.
  if (previous > 1) {
    std::error_code ec;
    fs::remove_all(object_dir(meta.id, previous - 1), ec);
  }
  return meta;
}

StatusOr<StoredAdapter> DurableAdapterStore::get(const std::string& id) const {
  const std::string path = record_path(id);
  if (!file_exists(path)) return not_found("adapter '" + id + "' is not in the adapter store");
  auto text = read_file(path);
  // Removed between the check and the read: as good as never there.
  if (!text.ok()) return not_found("adapter '" + id + "' is not in the adapter store");
  auto rec = stored_adapter_from_json(*text);
  if (!rec.ok()) return rec.status().with_context(path);
  if (rec->id != id) return data_loss(path + ": record of '" + rec->id + "' under the key of '" + id + "'");
  return rec;
}

std::vector<StoredAdapter> DurableAdapterStore::list(std::vector<std::string>* problems) const {
  std::vector<StoredAdapter> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_ + "/records", ec)) {
    const std::string name = entry.path().filename().string();
    if (!ends_with(name, ".json") || name[0] == '.') continue;
    auto text = read_file(entry.path().string());
    if (!text.ok()) continue;  // removed while listing
    auto rec = stored_adapter_from_json(*text);
    if (!rec.ok()) {
      if (problems) problems->push_back(entry.path().string() + ": " + rec.status().message());
      continue;
    }
    out.push_back(std::move(*rec));
  }
  if (ec && problems) problems->push_back(dir_ + "/records: " + ec.message());
  std::sort(out.begin(), out.end(),
            [](const StoredAdapter& a, const StoredAdapter& b) { return a.id < b.id; });
  return out;
}

StatusOr<std::string> DurableAdapterStore::verified_dir(const StoredAdapter& record) const {
  const std::string dir = object_dir(record.id, record.version);
  for (const auto& [name, want] : record.files) {
    const std::string path = dir + "/" + name;
    auto bytes = read_file(path);
    if (!bytes.ok()) {
      return not_found("adapter '" + record.public_id + "' version " +
                       std::to_string(record.version) + ": " + path + " is missing");
    }
    if (bytes->size() != want.bytes || sha256_hex(*bytes) != want.sha256) {
      return data_loss("adapter '" + record.public_id + "': " + path +
                       " does not match its recorded sha256 (the stored file is corrupt)");
    }
  }
  return dir;
}

Status DurableAdapterStore::remove(const std::string& id, uint64_t version) {
  const std::string key = key_of(id);
  LS_ASSIGN_OR_RETURN(auto lock, FileLock::acquire(dir_ + "/locks/" + key + ".lock"));
  LS_ASSIGN_OR_RETURN(StoredAdapter current, get(id));
  if (version != 0 && current.version != version) {
    return failed_precondition("adapter '" + current.public_id + "' is at version " +
                               std::to_string(current.version) + ", not " +
                               std::to_string(version));
  }
  if (::unlink(record_path(id).c_str()) != 0) return io_error("unlink " + record_path(id), errno);
  LS_RETURN_IF_ERROR(sync_dir(dir_ + "/records"));
  std::error_code ec;
  fs::remove_all(dir_ + "/objects/" + key, ec);  // unreferenced now; best effort
  return ok_status();
}

void DurableAdapterStore::collect_garbage(int64_t stale_after_s) const {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_ + "/tmp", ec)) {
    if (older_than(entry.path(), stale_after_s)) fs::remove_all(entry.path(), ec);
  }
  // Version directories no record names (a crash between the files and the
  // record, or a replica that died mid-upload), once they are old enough.
  for (const auto& adapter : fs::directory_iterator(dir_ + "/objects", ec)) {
    const std::string key = adapter.path().filename().string();
    auto text = read_file(dir_ + "/records/" + key + ".json");
    uint64_t current = 0;
    if (text.ok()) {
      auto rec = stored_adapter_from_json(*text);
      if (rec.ok()) current = rec->version;
    }
    std::error_code ec2;
    for (const auto& version : fs::directory_iterator(adapter.path(), ec2)) {
      const std::string v = version.path().filename().string();
      const uint64_t n = v.size() > 1 && v[0] == 'v' ? std::strtoull(v.c_str() + 1, nullptr, 10) : 0;
      // Keep the current version and the one before it (in-flight readers).
      if (n != 0 && current != 0 && (n == current || n + 1 == current)) continue;
      if (older_than(version.path(), stale_after_s)) fs::remove_all(version.path(), ec2);
    }
  }
}

}  // namespace loraserve
