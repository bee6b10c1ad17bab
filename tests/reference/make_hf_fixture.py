#!/usr/bin/env python3
"""Writes tests/data/tokenizers/hf_expected.json: the token ids that Hugging
Face `tokenizers` (the Rust library, via Python) produces for a fixed
multilingual sample, for
  synth_tiny  the tokenizer `loraserve synth --preset tiny` writes
              (byte-level BPE, GPT-2 regex; vocab 1024, <s>=1, </s>=2)
  sp_bpe      tests/data/tokenizers/sp_bpe/tokenizer.json (Llama-2 style:
              Prepend/Replace normalizer, BPE with byte_fallback,
              Replace/ByteFallback/Fuse/Strip decoder)
tests/unit/tokenizer_hf_fixture_test.cc compares loraserve against it and
skips while the file is absent. `tokenizers` is not in Debian: run this
where it is installed (the GPU machine's image), then commit the output.

  python3 tests/reference/make_hf_fixture.py --loraserve build/bin/loraserve
"""
import argparse
import json
import os
import subprocess
import tempfile

from tokenizers import Tokenizer
import tokenizers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SAMPLE = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog. It's 7:15, isn't it?",
    "  leading spaces, trailing spaces   ",
    "tabs\tnewlines\n\nand\r\nCRLF   \n  indented",
    "Numbers: 0 12 345 6789 3.14159 1,000,000 2024-05-17",
    "Le château est très beau, n'est-ce pas ? Ça coûte 20 €.",
    "Über die Brücke gehen 1234 Menschen; Größe und Straße.",
    "El rápido zorro marrón salta. ¿Dónde está?",
    "Привет мир, как дела?",
    "Γειά σου Κόσμε",
    "你好，世界！今天天气很好。",
    "こんにちは世界、カタカナとひらがな。",
    "안녕하세요 세계",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "Emoji: 😀🎉👍🏽 👨‍👩‍👧 🇫🇷 and 🦀",
    "Rare: ĳ ŉ ǅ ß ẞ Ω ∑ ∞ ≠ ⅞ \u200b zero width \u00a0 nbsp",
    "code: for (int i = 0; i < n; ++i) { x[i] += y[i] * 2; } // done",
    "special tokens inline: <s> and </s> in the middle",
    "Mixed: café 咖啡 кофе ☕ coffee",
    "",
    " ",
    "a",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loraserve", required=True, help="path to the loraserve binary")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/data/tokenizers/hf_expected.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([args.loraserve, "synth", "--preset", "tiny", "--out", tmp], check=True,
                       stdout=subprocess.DEVNULL)
        files = {
            "synth_tiny": os.path.join(tmp, "model/tokenizer.json"),
            "sp_bpe": os.path.join(ROOT, "tests/data/tokenizers/sp_bpe/tokenizer.json"),
        }
        cases = []
        for name, path in files.items():
            tok = Tokenizer.from_file(path)
            for text in SAMPLE:
                ids = tok.encode(text, add_special_tokens=False).ids
                cases.append({
                    "tokenizer": name,
                    "text": text,
                    "ids": ids,
                    "ids_special": tok.encode(text, add_special_tokens=True).ids,
                    "decoded": tok.decode(ids, skip_special_tokens=False),
                })
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"generator": f"tokenizers {tokenizers.__version__}", "cases": cases}, f,
                  ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {args.out}")


if __name__ == "__main__":
    main()
