#!/usr/bin/env node
// Writes tests/data/tokenizers/hf_expected.json: the token ids that Hugging
// Face `tokenizers` (the Rust library, through its official Node binding,
// npm package `tokenizers`) produces for a fixed multilingual sample, and the
// tokenizer variants it checks. tests/unit/tokenizer_hf_fixture_test.cc
// compares loraserve against it.
//
// The families (one tokenizer.json each):
//   synth_tiny   what `loraserve synth --preset tiny` writes: byte-level BPE,
//                ByteLevel pre-tokenizer with the GPT-2 regex
//   llama3_bl    the same vocabulary and merges behind a Llama 3 style
//                pre-tokenizer: Split(Llama 3 regex) + ByteLevel(use_regex
//                false), ignore_merges, Llama 3 style added special tokens
//   qwen2_bl     Qwen2 style: NFC normalizer, Split(Qwen2 regex), ByteLevel
//   sp_bpe       tests/data/tokenizers/sp_bpe (Llama 2 legacy: Prepend/Replace
//                normalizer, BPE with byte_fallback, Replace/ByteFallback/
//                Fuse/Strip decoder)
//   sp_metaspace the same model behind a Metaspace pre-tokenizer and decoder
//                (prepend_scheme "first", as newer Llama/Mistral conversions)
//
// `tokenizers` is not a Debian package; the npm registry is reachable from
// the development machine:
//   npm install --prefix /tmp/hftok tokenizers@0.23.2
//   NODE_PATH=/tmp/hftok/node_modules node tests/reference/make_hf_fixture.js \
//       --loraserve build/bin/loraserve
// The variants are written under tests/data/tokenizers/ and committed with
// the fixture, so the C++ test needs neither Node nor the binary.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');
const { Tokenizer } = require('tokenizers');

const ROOT = path.resolve(__dirname, '..', '..');
const DATA = path.join(ROOT, 'tests/data/tokenizers');

const SAMPLE = [
  'Hello world',
  "The quick brown fox jumps over the lazy dog. It's 7:15, isn't it?",
  "I'M SHOUTING, YOU'LL SEE, WE'VE DONE IT, HE'D SAY, THEY'RE HERE",
  '  leading spaces, trailing spaces   ',
  'tabs\tnewlines\n\nand\r\nCRLF   \n  indented',
  'blank lines\n\n\n\n   \n\tx',
  'Numbers: 0 12 345 6789 3.14159 1,000,000 2024-05-17 12345678901234',
  "Le château est très beau, n'est-ce pas ? Ça coûte 20 €.",
  'Über die Brücke gehen 1234 Menschen; Größe und Straße.',
  'El rápido zorro marrón salta. ¿Dónde está?',
  'Привет мир, как дела?',
  'Γειά σου Κόσμε',
  '你好，世界！今天天气很好。',
  'こんにちは世界、カタカナとひらがな。',
  '안녕하세요 세계',
  'مرحبا بالعالم',
  'नमस्ते दुनिया',
  'Decomposed: e\u0301 a\u0308 n\u0303 versus é ä ñ',
  'Emoji: 😀🎉👍🏽 👨‍👩‍👧 🇫🇷 and 🦀',
  'Rare: ĳ ŉ ǅ ß ẞ Ω ∑ ∞ ≠ ⅞ \u200b zero width \u00a0 nbsp',
  'code: for (int i = 0; i < n; ++i) { x[i] += y[i] * 2; } // done',
  'def f(x):\n    return {"a": [1, 2], \'b\': None}  # comment',
  'punctuation!!! ??? ... --- *** @@@ ### $$$ %%% ^^^ &&& |||',
  'special tokens inline: <s> and </s> in the middle',
  'llama 3 specials: <|begin_of_text|>hi<|eot_id|> <|eot_id|>',
  'Mixed: café 咖啡 кофе ☕ coffee',
  '',
  ' ',
  'a',
];

// Regexes exactly as the published tokenizer.json files declare them.
const LLAMA3_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

function byteLevel(useRegex) {
  return { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: useRegex };
}

function splitThenByteLevel(regex) {
  return {
    type: 'Sequence',
    pretokenizers: [
      { type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false },
      byteLevel(false),
    ],
  };
}

function special(id, content) {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false,
           special: true };
}

function writeVariant(name, tokenizerJson, configJson) {
  const dir = path.join(DATA, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson, null, 1) + '\n');
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'),
                   JSON.stringify(configJson, null, 2) + '\n');
  return path.join(dir, 'tokenizer.json');
}

function makeVariants(synthDir) {
  const synth = JSON.parse(fs.readFileSync(path.join(synthDir, 'tokenizer.json'), 'utf8'));
  const synthConfig = JSON.parse(fs.readFileSync(path.join(synthDir, 'tokenizer_config.json'), 'utf8'));
  const vocabSize = Object.keys(synth.model.vocab).length;

  const llama3 = structuredClone(synth);
  llama3.pre_tokenizer = splitThenByteLevel(LLAMA3_REGEX);
  llama3.model.ignore_merges = true;
  llama3.added_tokens.push(special(vocabSize, '<|begin_of_text|>'),
                           special(vocabSize + 1, '<|eot_id|>'));
  llama3.post_processor.single[0].SpecialToken.id = '<|begin_of_text|>';
  llama3.post_processor.pair[0].SpecialToken.id = '<|begin_of_text|>';
  llama3.post_processor.pair[2].SpecialToken.id = '<|begin_of_text|>';
  llama3.post_processor.special_tokens = {
    '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [vocabSize], tokens: ['<|begin_of_text|>'] },
  };
  const llama3Config = { ...synthConfig, bos_token: '<|begin_of_text|>', eos_token: '<|eot_id|>' };

  const qwen2 = structuredClone(synth);
  qwen2.normalizer = { type: 'NFC' };
  qwen2.pre_tokenizer = splitThenByteLevel(QWEN2_REGEX);
  qwen2.post_processor = byteLevel(false);  // Qwen2 adds no BOS
  const qwen2Config = { ...synthConfig, add_bos_token: false, bos_token: null };

  const sp = JSON.parse(fs.readFileSync(path.join(DATA, 'sp_bpe/tokenizer.json'), 'utf8'));
  const spConfig = JSON.parse(fs.readFileSync(path.join(DATA, 'sp_bpe/tokenizer_config.json'), 'utf8'));
  const metaspace = structuredClone(sp);
  metaspace.normalizer = null;
  metaspace.pre_tokenizer = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false };
  metaspace.decoder = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false };
  const metaspaceConfig = { ...spConfig, legacy: false };

  return {
    synth_tiny: 'synth',
    llama3_bl: writeVariant('llama3_bl', llama3, llama3Config),
    qwen2_bl: writeVariant('qwen2_bl', qwen2, qwen2Config),
    sp_bpe: path.join(DATA, 'sp_bpe/tokenizer.json'),
    sp_metaspace: writeVariant('sp_metaspace', metaspace, metaspaceConfig),
  };
}

async function main() {
  const argv = process.argv.slice(2);
  const arg = (flag, dflt) => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : dflt;
  };
  const loraserve = arg('--loraserve');
  const out = arg('--out', path.join(DATA, 'hf_expected.json'));
  if (!loraserve) throw new Error('--loraserve PATH (the loraserve binary) is required');

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hf-fixture-'));
  execFileSync(loraserve, ['synth', '--preset', 'tiny', '--out', tmp], { stdio: 'ignore' });
  const synthDir = path.join(tmp, 'model');
  const files = makeVariants(synthDir);

  const tokenizers = {};
  const cases = [];
  for (const [name, file] of Object.entries(files)) {
    const tokFile = file === 'synth' ? path.join(synthDir, 'tokenizer.json') : file;
    tokenizers[name] = file === 'synth' ? 'synth' : path.relative(ROOT, file);
    const tok = Tokenizer.fromFile(tokFile);
    for (const text of SAMPLE) {
      const plain = await tok.encode(text, null, { addSpecialTokens: false });
      const withSpecial = await tok.encode(text, null, { addSpecialTokens: true });
      const ids = plain.getIds();
      cases.push({
        tokenizer: name,
        text,
        ids,
        ids_special: withSpecial.getIds(),
        decoded: await tok.decode(ids, false),
      });
    }
  }
  fs.rmSync(tmp, { recursive: true, force: true });
  const version = require('tokenizers/package.json').version;
  fs.writeFileSync(out, JSON.stringify({
    generator: `Hugging Face tokenizers ${version} (npm binding of the Rust library), ` +
               'tests/reference/make_hf_fixture.js',
    tokenizers,
    cases,
  }, null, 1) + '\n');
  console.log(`wrote ${cases.length} cases for ${Object.keys(files).length} tokenizers to ${out}`);
}

module.exports = { SAMPLE };

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
