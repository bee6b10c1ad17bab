#include "scheduler/offline.h"

#include <algorithm>
#include <atomic>

namespace loraserve {

namespace {

struct Active {
  int64_t seq_id = 0;
  size_t prompt_done = 0;  // prompt tokens already in the KV cache
  bool started = false;
  bool finished = false;
};

}  // namespace

Status non_finite_logits_error(const std::string& adapter_id, size_t token_index) {
  return data_loss("non-finite logits (NaN or infinity) for " +
                   (adapter_id.empty() ? std::string("the base model")
                                       : "adapter '" + adapter_id + "'") +
                   " at generated token " + std::to_string(token_index) +
                   "; the request was ended without emitting it");
}

Status generate(Engine& engine, const std::vector<GenerationRequest>& requests,
                std::vector<GenerationResult>* results) {
  results->assign(requests.size(), GenerationResult{});
  std::vector<Active> state(requests.size());
  // Sequence ids private to this call; ended on every exit path below.
  static std::atomic<int64_t> next_seq_id{1ll << 40};
  for (size_t i = 0; i < requests.size(); ++i) {
    if (requests[i].prompt.empty()) return invalid_argument("request " + std::to_string(i) + ": empty prompt");
    if (requests[i].max_new_tokens <= 0) {
      return invalid_argument("request " + std::to_string(i) + ": max_new_tokens must be positive");
    }
    state[i].seq_id = next_seq_id++;
  }
  auto end_all = [&]() {
    for (const Active& a : state) engine.end_sequence(a.seq_id);
  };

  int32_t running = 0;  // started and not finished
  for (int32_t step = 0;; ++step) {
    std::vector<SequenceStep> batch;
    std::vector<size_t> who;
    bool pending = false;
    for (size_t i = 0; i < requests.size(); ++i) {
      const GenerationRequest& r = requests[i];
      Active& a = state[i];
      if (a.finished) continue;
      pending = true;
      if (step < r.join_step) continue;
      if (!a.started) {
        Status s = engine.start_sequence(a.seq_id, r.adapter_id);
        if (s.code() == StatusCode::kResourceExhausted && running > 0) continue;  // wait
        if (!s.ok()) {
          end_all();
          return s;
        }
        a.started = true;
        ++running;
      }
      SequenceStep st;
      st.seq_id = a.seq_id;
      if (a.prompt_done < r.prompt.size()) {
        const size_t chunk = r.prefill_chunk > 0 ? static_cast<size_t>(r.prefill_chunk)
                                                 : r.prompt.size();
        const size_t end = std::min(r.prompt.size(), a.prompt_done + chunk);
        st.tokens.assign(r.prompt.begin() + a.prompt_done, r.prompt.begin() + end);
        st.sample = end == r.prompt.size();
      } else {
        st.tokens = {(*results)[i].tokens.back()};
      }
      st.sampling = r.sampling;
      st.step = (*results)[i].tokens.size();
      st.want_logits = r.want_logits;
      batch.push_back(std::move(st));
      who.push_back(i);
    }
    if (!pending) break;
    if (batch.empty()) continue;  // nobody has joined yet

    std::vector<SequenceResult> out;
    Status s = engine.step(batch, &out);
    if (!s.ok()) {
      end_all();
      return s;
    }
    for (size_t j = 0; j < batch.size(); ++j) {
      const size_t i = who[j];
      Active& a = state[i];
      const GenerationRequest& r = requests[i];
      if (a.prompt_done < r.prompt.size()) a.prompt_done += batch[j].tokens.size();
      GenerationResult& res = (*results)[i];
      if (out[j].non_finite) {
        res.finish = GenerationFinish::kError;
        res.error = non_finite_logits_error(r.adapter_id, res.tokens.size());
        a.finished = true;
        engine.end_sequence(a.seq_id);
        --running;
        continue;
      }
      if (!out[j].sampled) continue;
      res.tokens.push_back(out[j].token);
      res.logprobs.push_back(out[j].logprob);
      if (r.want_logits) res.logits.push_back(std::move(out[j].logits));
      const bool stop = std::find(r.stop_token_ids.begin(), r.stop_token_ids.end(),
                                  out[j].token) != r.stop_token_ids.end();
      if (stop || static_cast<int32_t>(res.tokens.size()) >= r.max_new_tokens) {
        res.finish = stop ? GenerationFinish::kStop : GenerationFinish::kLength;
        a.finished = true;
        engine.end_sequence(a.seq_id);
        --running;
      }
    }
  }
  return ok_status();
}

}  // namespace loraserve
