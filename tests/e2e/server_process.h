// ServerProcess: one real `loraserve serve` child process on 127.0.0.1, for
// the end-to-end tests. start() spawns it with `--listen 127.0.0.1:0
// --port-file F` (stdout and stderr go to a log file) and waits until the
// port file appears; the destructor always kills it, so no test leaves a
// server behind whatever it asserts. Not thread-safe: one test thread owns it
// (stubs made from channel() may be used from any thread).
#pragma once

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "proto/loraserve.grpc.pb.h"

namespace loraserve::e2e {

// Path of the loraserve binary under test: $LORASERVE_E2E_BIN if set, else
// the one built alongside (baked in at compile time).
const char* loraserve_bin();

struct ServerOptions {
  std::string model;                    // --model
  std::string adapter_root;             // --adapter-root ("" = none)
  int64_t pool_mb = 64;                 // --pool-mb
  std::vector<std::string> extra_args;  // appended as is
  std::chrono::milliseconds start_timeout{20000};
};

class ServerProcess {
 public:
  // Spawns the server and waits for its port. On failure returns nullptr and
  // sets *error to the reason followed by the server's log.
  static std::unique_ptr<ServerProcess> start(const ServerOptions& opts, std::string* error);
  ~ServerProcess();  // SIGKILLs the child if it is still running, and reaps it
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  pid_t pid() const { return pid_; }
  bool running();  // false once the child has exited (reaps it)

  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  std::unique_ptr<v1::LoraServe::Stub> stub() const { return v1::LoraServe::NewStub(channel_); }

  // Sends SIGTERM and waits up to `timeout` for the child to exit. Returns
  // true with its waitpid status in *wait_status if it exited in time;
  // otherwise SIGKILLs it and returns false.
  bool terminate(std::chrono::milliseconds timeout, int* wait_status);

  // Everything the server wrote to stdout and stderr so far.
  std::string log() const;

 private:
  ServerProcess() = default;
  bool wait_exit(std::chrono::milliseconds timeout, int* wait_status);

  pid_t pid_ = -1;
  bool reaped_ = false;
  int exit_status_ = 0;
  int port_ = 0;
  std::string work_dir_;  // holds the port file and the log
  std::string log_path_;
  std::shared_ptr<grpc::Channel> channel_;
};

// Runs a child process to completion: argv[0] is the program. Captures
// stdout and stderr in separate strings. Returns the waitpid status, or -1
// when it could not be spawned (then *err_out says why).
int run_process(const std::vector<std::string>& argv, std::string* out, std::string* err_out);

// Reads a whole file ("" if missing).
std::string read_file(const std::string& path);

}  // namespace loraserve::e2e
