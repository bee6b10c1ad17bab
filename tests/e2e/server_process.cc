#include "tests/e2e/server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace loraserve::e2e {

namespace {

std::string make_temp_dir(const char* prefix) {
  std::string tmpl =
      (std::filesystem::temp_directory_path() / (std::string(prefix) + "XXXXXX")).string();
  if (mkdtemp(tmpl.data()) == nullptr) return "";
  return tmpl;
}

// posix_spawn with stdout/stderr redirected to files; stdin from /dev/null.
pid_t spawn(const std::vector<std::string>& argv, const std::string& out_path,
            const std::string& err_path, std::string* error) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (err_path == out_path) {
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
  } else {
    posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  }
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    *error = "posix_spawn " + argv[0] + ": " + std::strerror(rc);
    return -1;
  }
  return pid;
}

}  // namespace

const char* loraserve_bin() {
  // LORASERVE_E2E_BIN runs the suite against another build of the server.
  const char* env = std::getenv("LORASERVE_E2E_BIN");
  return env != nullptr && *env != '\0' ? env : LORASERVE_BIN;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int run_process(const std::vector<std::string>& argv, std::string* out, std::string* err_out) {
  const std::string dir = make_temp_dir("loraserve-e2e-run-");
  if (dir.empty()) {
    *err_out = "mkdtemp failed";
    return -1;
  }
  const std::string out_path = dir + "/stdout", err_path = dir + "/stderr";
  std::string error;
  const pid_t pid = spawn(argv, out_path, err_path, &error);
  int status = -1;
  if (pid < 0) {
    *err_out = error;
  } else {
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    *out = read_file(out_path);
    *err_out = read_file(err_path);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return status;
}

std::unique_ptr<ServerProcess> ServerProcess::start(const ServerOptions& opts, std::string* error) {
  std::unique_ptr<ServerProcess> p(new ServerProcess());
  p->work_dir_ = make_temp_dir("loraserve-e2e-server-");
  if (p->work_dir_.empty()) {
    *error = "mkdtemp failed";
    return nullptr;
  }
  p->log_path_ = p->work_dir_ + "/server.log";
  const std::string port_file = p->work_dir_ + "/port";
  std::vector<std::string> argv = {
      loraserve_bin(), "serve",       "--model", opts.model,  "--listen",
      "127.0.0.1:0",   "--port-file", port_file, "--pool-mb", std::to_string(opts.pool_mb)};
  if (!opts.adapter_root.empty()) {
    argv.push_back("--adapter-root");
    argv.push_back(opts.adapter_root);
  }
  argv.insert(argv.end(), opts.extra_args.begin(), opts.extra_args.end());
  p->pid_ = spawn(argv, p->log_path_, p->log_path_, error);
  if (p->pid_ < 0) return nullptr;

  const auto deadline = std::chrono::steady_clock::now() + opts.start_timeout;
  for (;;) {
    // The server writes "PORT\n"; only a complete line counts.
    const std::string text = read_file(port_file);
    if (!text.empty() && text.back() == '\n') {
      p->port_ = std::atoi(text.c_str());
      break;
    }
    if (!p->running()) {
      *error = "loraserve serve exited (status " + std::to_string(p->exit_status_) +
               ") before listening; its log:\n" + p->log();
      return nullptr;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      *error = "loraserve serve wrote no port file within " +
               std::to_string(opts.start_timeout.count()) + " ms; its log:\n" + p->log();
      return nullptr;  // the destructor kills it
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (p->port_ <= 0) {
    *error = "bad port file contents; log:\n" + p->log();
    return nullptr;
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  p->channel_ = grpc::CreateCustomChannel(p->address(), grpc::InsecureChannelCredentials(), args);
  return p;
}

bool ServerProcess::running() {
  if (reaped_) return false;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    exit_status_ = status;
    return false;
  }
  return true;
}

bool ServerProcess::wait_exit(std::chrono::milliseconds timeout, int* wait_status) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (wait_status != nullptr) *wait_status = exit_status_;
  return true;
}

bool ServerProcess::terminate(std::chrono::milliseconds timeout, int* wait_status) {
  if (running()) kill(pid_, SIGTERM);
  if (wait_exit(timeout, wait_status)) return true;
  kill(pid_, SIGKILL);
  wait_exit(std::chrono::milliseconds(10000), nullptr);
  return false;
}

ServerProcess::~ServerProcess() {
  channel_.reset();
  if (pid_ > 0 && running()) {
    kill(pid_, SIGKILL);
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
  }
  if (!work_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(work_dir_, ec);
  }
}

std::string ServerProcess::log() const { return read_file(log_path_); }

}  // namespace loraserve::e2e
