// BPE merge loop (merge-rank priority queue over a linked symbol list) and
// the per-word cache.
#include <algorithm>
#include <queue>

#include "tokenizer/tokenizer_impl.h"

namespace loraserve::tokenizer_internal {

namespace {

inline uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
};

struct Candidate {
  int32_t rank;
  int32_t pos;
  int32_t left_id;
  int32_t right_id;
  int32_t new_id;
  bool operator>(const Candidate& o) const {
    return rank != o.rank ? rank > o.rank : pos > o.pos;
  }
};

}  // namespace

void BpeModel::encode_word_uncached(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (ignore_merges) {
    auto it = vocab.find(std::string(word));
    if (it != vocab.end()) {
      out->push_back(it->second);
      return;
    }
  }
  // Initial symbols: bytes (ByteLevel) or UTF-8 characters.
  std::vector<Symbol> syms;
  syms.reserve(word.size());
  bool prev_unk = false;
  std::string key;
  auto push_sym = [&](int32_t id) {
    syms.push_back({id, static_cast<int32_t>(syms.size()) - 1, static_cast<int32_t>(syms.size()) + 1});
  };
  size_t i = 0;
  while (i < word.size()) {
    size_t n = byte_level ? 1 : utf8_char_len(static_cast<unsigned char>(word[i]));
    n = std::min(n, word.size() - i);
    key.assign(word.data() + i, n);
    auto it = vocab.find(key);
    if (it != vocab.end()) {
      push_sym(it->second);
      prev_unk = false;
    } else {
      bool done = false;
      if (byte_fallback) {
        bool all = true;
        for (size_t k = 0; k < n; ++k) all = all && byte_ids[static_cast<uint8_t>(key[k])] >= 0;
        if (all) {
          for (size_t k = 0; k < n; ++k) push_sym(byte_ids[static_cast<uint8_t>(key[k])]);
          prev_unk = false;
          done = true;
        }
      }
      if (!done && unk_id) {
        if (!(fuse_unk && prev_unk)) push_sym(*unk_id);
        prev_unk = true;
      }
    }
    i += n;
  }
  if (syms.empty()) return;
  syms.back().next = -1;

  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto consider = [&](int32_t left) {
    if (left < 0) return;
    int32_t right = syms[left].next;
    if (right < 0) return;
    auto it = merges.find(pair_key(syms[left].id, syms[right].id));
    if (it == merges.end()) return;
    heap.push({it->second.rank, left, syms[left].id, syms[right].id, it->second.new_id});
  };
  for (int32_t k = 0; k + 1 < static_cast<int32_t>(syms.size()); ++k) consider(k);
  while (!heap.empty()) {
    Candidate c = heap.top();
    heap.pop();
    Symbol& l = syms[c.pos];
    if (l.id != c.left_id || l.next < 0) continue;  // stale
    Symbol& r = syms[l.next];
    if (r.id != c.right_id) continue;
    l.id = c.new_id;
    r.id = -1;  // dead
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = c.pos;
    consider(l.prev);
    consider(c.pos);
  }
  for (int32_t k = 0; k >= 0; k = syms[k].next) out->push_back(syms[k].id);
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>* out) const {
  if (word.size() > 128 || cache_capacity == 0) {
    encode_word_uncached(word, out);
    return;
  }
  std::string key(word);
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t start = out->size();
  encode_word_uncached(word, out);
  std::vector<int32_t> ids(out->begin() + static_cast<std::ptrdiff_t>(start), out->end());
  std::lock_guard<std::mutex> lock(cache_mu_);
  if (cache_.size() >= cache_capacity) cache_.clear();  // simple bound; refills with hot words
  cache_.emplace(std::move(key), std::move(ids));
}

}  // namespace loraserve::tokenizer_internal
