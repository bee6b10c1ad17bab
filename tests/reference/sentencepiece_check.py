#!/usr/bin/env python3
"""Independent check of loraserve's SentencePiece-style BPE against Debian's
python3-sentencepiece.

1. Trains a tiny SentencePiece BPE model with byte_fallback (Llama-2-like
   settings: identity normalization, no whitespace collapsing, dummy prefix,
   split digits) on a fixed multilingual corpus (training is deterministic).
2. Converts it to Hugging Face tokenizer.json form ourselves (vocab from the
   pieces; merges derived from the vocab ordered by the merged piece's score,
   as HF's SentencePieceExtractor does), with the Llama 2 normalizer and
   decoder chains.
3. Compares `loraserve tokenize` ids with sentencepiece's encode, and
   `loraserve detokenize` text with sentencepiece's decode, on a fixed
   multilingual sample.

  /usr/bin/python3 tests/reference/sentencepiece_check.py --loraserve build/bin/loraserve \
      --workdir /tmp/spcheck [--write-fixture tests/data/tokenizers/sp_bpe]
"""
import argparse
import json
import os
import subprocess
import sys

import sentencepiece as spm

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A journey of a thousand miles begins with a single step.",
    "Numbers like 12, 345 and 6789 appear in text; so do dates such as 2024-05-17.",
    "Le renard brun rapide saute par-dessus le chien paresseux. Ça va très bien, merci !",
    "Der schnelle braune Fuchs springt über den faulen Hund. Größe, Straße, Äpfel.",
    "El rápido zorro marrón salta sobre el perro perezoso. ¿Dónde está la biblioteca?",
    "Быстрая коричневая лиса прыгает через ленивую собаку. Привет, как дела?",
    "敏捷的棕色狐狸跳过了懒狗。今天天气很好，我们去公园吧。",
    "素早い茶色の狐が怠け者の犬を飛び越える。こんにちは、元気ですか。",
    "빠른 갈색 여우가 게으른 개를 뛰어넘는다. 안녕하세요.",
    "Γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο.",
    "def main():\n    for i in range(10):\n        print(i * 2)\n",
    "Emoji are fun 😀 and 👍 and sometimes 🎉 appear in chat messages.",
    "Spaces  and   tabs\tand new\nlines should survive.",
] * 20

SAMPLE = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "  two leading spaces and  double  spaces",
    "Le château est très beau, n'est-ce pas ?",
    "Über die Brücke gehen 1234 Menschen.",
    "Привет мир, как дела?",
    "你好，世界！今天天气很好。",
    "こんにちは世界",
    "안녕하세요 세계",
    "Emoji: 😀🎉👍🏽 and a rare one 🦀",
    "Rare characters: ĳ ŉ ǅ ß ẞ Ω ∑ ∞ ≠ ⅞",
    "tabs\tnewlines\n\nand\r\nCRLF",
    "code: x = [i ** 2 for i in range(100)]",
    "Mixed: café 咖啡 кофе ☕ coffee",
]


def train(workdir):
    prefix = os.path.join(workdir, "sp")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_prefix=prefix, model_type="bpe", vocab_size=900,
        byte_fallback=True, character_coverage=0.9995, normalization_rule_name="identity",
        remove_extra_whitespaces=False, add_dummy_prefix=True, split_digits=True,
        allow_whitespace_only_pieces=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1, minloglevel=2)
    return spm.SentencePieceProcessor(model_file=prefix + ".model")


def to_tokenizer_json(sp):
    n = sp.get_piece_size()
    vocab = {sp.id_to_piece(i): i for i in range(n)}
    # Merges: for each normal piece (by id = by score), every split into two
    # pieces in the vocabulary, sorted by the ids of the two parts.
    merges = []
    for i in range(n):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i):
            continue
        piece = sp.id_to_piece(i)
        local = []
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in vocab and right in vocab:
                local.append((vocab[left], vocab[right], left, right))
        local.sort()
        merges.extend([[l, r] for _, _, l, r in local])
    added = [{"id": i, "content": sp.id_to_piece(i), "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True} for i in (0, 1, 2)]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


CONFIG = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
          "unk_token": "<unk>", "legacy": True, "tokenizer_class": "LlamaTokenizerFast"}


def write(dirpath, tok):
    os.makedirs(dirpath, exist_ok=True)
    with open(os.path.join(dirpath, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(os.path.join(dirpath, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(CONFIG, f, indent=2)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loraserve", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--write-fixture", help="also write tokenizer.json + config here")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    sp = train(args.workdir)
    tok = to_tokenizer_json(sp)
    write(args.workdir, tok)
    if args.write_fixture:
        write(args.write_fixture, tok)
    path = os.path.join(args.workdir, "tokenizer.json")
    failures = 0
    for text in SAMPLE:
        want = sp.encode(text)
        out = subprocess.run([args.loraserve, "tokenize", "--tokenizer", path, "--text", text,
                              "--json"], capture_output=True, text=True, check=True)
        got = json.loads(out.stdout)["ids"]
        if got != want:
            failures += 1
            print(f"ENCODE MISMATCH {text!r}\n  sentencepiece {want}\n  loraserve     {got}")
        out = subprocess.run([args.loraserve, "detokenize", "--tokenizer", path, "--ids",
                              ",".join(map(str, want))], capture_output=True, check=True)
        got_text = out.stdout.decode("utf-8")[:-1]  # bytes: keep \r\n; drop the final newline
        if got_text != sp.decode(want):
            failures += 1
            print(f"DECODE MISMATCH {text!r}\n  sentencepiece {sp.decode(want)!r}\n"
                  f"  loraserve     {got_text!r}")
    byte_hits = sum(1 for t in SAMPLE for i in sp.encode(t) if sp.is_byte(i))
    print(f"{len(SAMPLE)} samples, vocab {sp.get_piece_size()}, {len(tok['model']['merges'])} "
          f"merges, {byte_hits} byte-fallback tokens used, {failures} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
