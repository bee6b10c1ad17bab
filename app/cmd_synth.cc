#include <cstdio>
#include <string>
#include <vector>

#include "checkpoint/synth.h"
#include "app/commands.h"

namespace loraserve::cli {

void add_synth_command(CLI::App& app, Runner* runner) {
  struct Flags {
    std::string preset = "tiny";
    std::string out;
    int adapters = 0;
    std::vector<int> ranks = {8, 16, 32, 64};
    std::vector<std::string> targets = {"q_proj", "k_proj", "v_proj", "o_proj"};
    uint64_t seed = 0;
    bool no_model = false;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* cmd = app.add_subcommand(
      "synth", "Write a synthetic HF Llama/Mistral/Qwen model and PEFT adapters");
  cmd->add_option("--preset", flags->preset, synth_preset_names())->capture_default_str();
  cmd->add_option("--out", flags->out, "Output directory (model/ and adapters/ go under it)")
      ->required();
  cmd->add_option("--adapters", flags->adapters, "Number of adapters")->capture_default_str();
  cmd->add_option("--ranks", flags->ranks, "Adapter ranks, cycled")->delimiter(',');
  cmd->add_option("--targets", flags->targets, "Target modules")->delimiter(',');
  cmd->add_option("--seed", flags->seed, "Random seed")->capture_default_str();
  cmd->add_flag("--no-model", flags->no_model, "Write only the adapters");
  cmd->callback([flags, runner]() {
    *runner = [flags]() -> int {
      auto config = synth_preset(flags->preset);
      if (!config.ok()) {
        std::fprintf(stderr, "error: %s\n", config.status().to_string().c_str());
        return 1;
      }
      SynthOptions opts;
      opts.config = *config;
      opts.seed = flags->seed;
      opts.num_adapters = flags->adapters;
      opts.ranks = flags->ranks;
      opts.targets = flags->targets;
      opts.write_model = !flags->no_model;
      Status s = synth_write(opts, flags->out);
      if (!s.ok()) {
        std::fprintf(stderr, "error: %s\n", s.to_string().c_str());
        return 1;
      }
      std::printf("wrote %s/model and %d adapter(s) under %s/adapters\n", flags->out.c_str(),
                  flags->adapters, flags->out.c_str());
      return 0;
    };
  });
}

}  // namespace loraserve::cli
