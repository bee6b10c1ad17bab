// lora-cli load / unload / list: adapter registry commands.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>

#include "clients/lora_cli/client.h"
#include "proto/loraserve.grpc.pb.h"

namespace loraserve::client {
namespace {

constexpr size_t kUploadChunkBytes = 1 << 20;  // well under the 4 MiB message limit

struct LoadOptions {
  std::string id;
  std::string path;        // relative to the server's adapter root
  std::string upload_dir;  // a local PEFT adapter directory
  bool replace = false;    // a new version of an existing id
};

std::string join(const google::protobuf::RepeatedPtrField<std::string>& items, const char* sep) {
  std::string out;
  for (const std::string& item : items) {
    if (!out.empty()) out += sep;
    out += item;
  }
  return out;
}

void print_adapter(const v1::AdapterInfo& info) {
  std::printf("loaded %s: rank %u, targets %s, %s, %s\n", info.adapter_id().c_str(), info.rank(),
              join(info.target_modules(), ",").c_str(), format_bytes(info.bytes()).c_str(),
              info.resident() ? "resident" : "not resident");
  if (info.version() > 1) std::printf("version %llu\n", static_cast<unsigned long long>(info.version()));
}

int run_load_path(const GlobalOptions& opts, const LoadOptions& load) {
  auto stub = v1::LoraServe::NewStub(make_channel(opts));
  grpc::ClientContext ctx;
  set_deadline(opts, &ctx);
  clients::add_adapter_routing(&ctx, load.id);
  v1::LoadAdapterRequest request;
  request.set_adapter_id(load.id);
  request.set_path(load.path);
  request.set_replace(load.replace);
  v1::AdapterInfo info;
  grpc::Status status = stub->LoadAdapter(&ctx, request, &info);
  if (!status.ok()) return report_error(status);
  print_adapter(info);
  return kExitOk;
}

// Client stream: {adapter_id, adapter_config_json}, then the safetensors file
// in kUploadChunkBytes pieces.
int run_load_upload(const GlobalOptions& opts, const LoadOptions& load) {
  const std::string config_path = load.upload_dir + "/adapter_config.json";
  const std::string weights_path = load.upload_dir + "/adapter_model.safetensors";
  std::ifstream config_file(config_path, std::ios::binary);
  if (!config_file) return report_error("cannot read " + config_path);
  std::string config((std::istreambuf_iterator<char>(config_file)),
                     std::istreambuf_iterator<char>());
  std::ifstream weights(weights_path, std::ios::binary);
  if (!weights) return report_error("cannot read " + weights_path);

  auto stub = v1::LoraServe::NewStub(make_channel(opts));
  grpc::ClientContext ctx;
  set_deadline(opts, &ctx);
  clients::add_adapter_routing(&ctx, load.id);
  v1::AdapterInfo info;
  auto writer = stub->UploadAdapter(&ctx, &info);

  v1::UploadAdapterChunk chunk;
  chunk.set_adapter_id(load.id);
  chunk.set_adapter_config_json(std::move(config));
  chunk.set_replace(load.replace);
  // A failed Write means the server ended the call early: Finish says why.
  bool writing = writer->Write(chunk);
  std::string buffer(kUploadChunkBytes, '\0');
  uint64_t sent = 0;
  while (writing) {
    weights.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const std::streamsize n = weights.gcount();
    if (n <= 0) break;
    chunk.Clear();
    chunk.set_safetensors_data(buffer.data(), static_cast<size_t>(n));
    writing = writer->Write(chunk);
    sent += static_cast<uint64_t>(n);
  }
  if (writing && weights.bad()) {
    ctx.TryCancel();
    writer->Finish();
    return report_error("error reading " + weights_path);
  }
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  if (!status.ok()) return report_error(status);
  std::fprintf(stderr, "uploaded %s of safetensors\n", format_bytes(sent).c_str());
  print_adapter(info);
  return kExitOk;
}

int run_unload(const GlobalOptions& opts, const std::string& id) {
  auto stub = v1::LoraServe::NewStub(make_channel(opts));
  grpc::ClientContext ctx;
  set_deadline(opts, &ctx);
  clients::add_adapter_routing(&ctx, id);
  v1::UnloadAdapterRequest request;
  request.set_adapter_id(id);
  v1::UnloadAdapterResponse response;
  grpc::Status status = stub->UnloadAdapter(&ctx, request, &response);
  if (!status.ok()) return report_error(status);
  std::printf("unloaded %s\n",
              response.adapter_id().empty() ? id.c_str() : response.adapter_id().c_str());
  return kExitOk;
}

int run_list(const GlobalOptions& opts, bool json) {
  auto stub = v1::LoraServe::NewStub(make_channel(opts));
  grpc::ClientContext ctx;
  set_deadline(opts, &ctx);
  v1::ListAdaptersResponse response;
  grpc::Status status = stub->ListAdapters(&ctx, v1::ListAdaptersRequest(), &response);
  if (!status.ok()) return report_error(status);

  if (json) {
    // By hand rather than MessageToJsonString: keeps `bytes` a JSON number.
    nlohmann::json adapters = nlohmann::json::array();
    for (const v1::AdapterInfo& info : response.adapters()) {
      adapters.push_back({{"adapter_id", info.adapter_id()},
                          {"rank", info.rank()},
                          {"target_modules", std::vector<std::string>(info.target_modules().begin(),
                                                                      info.target_modules().end())},
                          {"bytes", info.bytes()},
                          {"resident", info.resident()},
                          {"in_flight", info.in_flight()},
                          {"version", info.version()},
                          {"stored", info.stored()},
                          {"loaded", info.loaded()}});
    }
    std::printf("%s\n", nlohmann::json{{"adapters", adapters}}.dump().c_str());
    return kExitOk;
  }

  struct Row {
    std::string cells[6];
  };
  std::vector<Row> rows;
  rows.push_back({{"ID", "RANK", "TARGETS", "BYTES", "RESIDENT", "IN_FLIGHT"}});
  for (const v1::AdapterInfo& info : response.adapters()) {
    rows.push_back({{info.adapter_id(), std::to_string(info.rank()),
                     join(info.target_modules(), ","), format_bytes(info.bytes()),
                     info.resident() ? "yes" : "no", std::to_string(info.in_flight())}});
  }
  size_t width[6] = {};
  for (const Row& row : rows) {
    for (int c = 0; c < 6; ++c) width[c] = std::max(width[c], row.cells[c].size());
  }
  for (const Row& row : rows) {
    std::string line;
    for (int c = 0; c < 6; ++c) {
      std::string cell = row.cells[c];
      if (c < 5) cell.resize(width[c] + 2, ' ');
      line += cell;
    }
    std::printf("%s\n", line.c_str());
  }
  if (response.adapters_size() == 0) std::printf("(no adapters registered)\n");
  return kExitOk;
}

}  // namespace

void add_adapter_commands(CLI::App& app, const GlobalOptions* opts, Runner* runner) {
  auto load = std::make_shared<LoadOptions>();
  CLI::App* load_cmd = app.add_subcommand("load", "register an adapter (server path or upload)");
  load_cmd->add_option("--id", load->id, "adapter id")->required();
  CLI::Option_group* source = load_cmd->add_option_group("source", "where the adapter comes from");
  source->add_option("--path", load->path, "directory relative to the server's --adapter-root");
  source
      ->add_option("--upload", load->upload_dir,
                   "local PEFT directory (adapter_config.json, adapter_model.safetensors)")
      ->check(CLI::ExistingDirectory);
  source->require_option(1);
  load_cmd->add_flag("--replace", load->replace,
                     "replace an adapter of this id with a new version (requests running on the "
                     "old one finish on it)");
  load_cmd->callback([opts, load, runner] {
    *runner = [opts, load] {
      return load->upload_dir.empty() ? run_load_path(*opts, *load) : run_load_upload(*opts, *load);
    };
  });

  auto unload_id = std::make_shared<std::string>();
  CLI::App* unload_cmd = app.add_subcommand("unload", "unregister an adapter");
  unload_cmd->add_option("--id", *unload_id, "adapter id")->required();
  unload_cmd->callback([opts, unload_id, runner] {
    *runner = [opts, unload_id] { return run_unload(*opts, *unload_id); };
  });

  auto list_json = std::make_shared<bool>(false);
  CLI::App* list_cmd = app.add_subcommand("list", "list registered adapters");
  list_cmd->add_flag("--json", *list_json, "print JSON");
  list_cmd->callback([opts, list_json, runner] {
    *runner = [opts, list_json] { return run_list(*opts, *list_json); };
  });
}

}  // namespace loraserve::client
