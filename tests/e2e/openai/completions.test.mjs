// /v1/completions through the official openai client: plain and streamed
// results equal the offline greedy reference (ids, logprobs, text, usage)
// for the base model and every adapter; 256 concurrent mixed-adapter
// streams equal it too; 1000 concurrent short streams are all served.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import OpenAI from 'openai';

import {
  NUM_ADAPTERS, adapterName, detokenize, makePrompt, offline, startServer, tokenize,
} from './harness.mjs';

const server = await startServer({ args: ['--max-queue', '2048'] });
after(() => server.stop());
const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'none', maxRetries: 0, timeout: 300000 });
// The many-stream tests use the client's default retries: on a loaded
// machine the test's own blocking child processes can stall the event loop
// long enough for a pooled keep-alive connection to be reused just as the
// server times it out, a race every HTTP client retries through. A retry
// happens only before any response arrived, so results stay exact.
const loadClient = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'none', maxRetries: 2,
                                timeout: 300000 });

const TOL = 1e-3;
const MODELS = [null, ...Array.from({ length: NUM_ADAPTERS }, (_, i) => adapterName(i))];
const modelName = (a) => a ?? 'model'; // the model directory's name

// Greedy, EOS ignored (the offline reference does not stop at EOS), ids
// returned as "token_id:N" so they can be compared exactly.
const greedy = (model, prompt, max, extra = {}) => ({
  model: modelName(model), prompt, max_tokens: max, temperature: 0, ignore_eos: true,
  logprobs: 0, return_tokens_as_token_ids: true, ...extra,
});
const idsOf = (tokens) => tokens.map((t) => {
  assert.match(t, /^token_id:\d+$/);
  return Number(t.slice('token_id:'.length));
});

function assertMatches(got, want, what) {
  assert.deepEqual(got.ids, want.tokens, `${what}: token ids`);
  assert.equal(got.logprobs.length, want.logprobs.length, `${what}: logprob count`);
  got.logprobs.forEach((lp, i) => assert.ok(Math.abs(lp - want.logprobs[i]) <= TOL,
    `${what}: logprob ${i}: ${lp} vs ${want.logprobs[i]}`));
  assert.equal(got.text, detokenize(want.tokens), `${what}: text`);
}

async function streamed(body, via = client) {
  const stream = await via.completions.create({ ...body, stream: true,
                                                   stream_options: { include_usage: true } });
  const got = { ids: [], logprobs: [], text: '', finish: null, usage: null, chunks: 0 };
  for await (const chunk of stream) {
    got.chunks += 1;
    assert.equal(chunk.object, 'text_completion');
    if (chunk.usage) got.usage = chunk.usage;
    if (chunk.choices.length === 0) continue;
    const c = chunk.choices[0];
    got.text += c.text;
    if (c.logprobs) {
      got.ids.push(...idsOf(c.logprobs.tokens));
      got.logprobs.push(...c.logprobs.token_logprobs);
    }
    if (c.finish_reason) got.finish = c.finish_reason;
  }
  return got;
}

test('plain completions equal offline greedy output, base model and every adapter', async () => {
  const MAX = 10;
  for (const [i, model] of MODELS.entries()) {
    const prompt = makePrompt(i + 1, 7);
    const want = await offline(model, prompt, MAX);
    const r = await client.completions.create(greedy(model, prompt, MAX));
    assert.equal(r.object, 'text_completion');
    assert.match(r.id, /^cmpl-/);
    assert.equal(r.model, modelName(model));
    assert.equal(r.choices.length, 1);
    const c = r.choices[0];
    assert.equal(c.finish_reason, 'length');
    assertMatches({ ids: idsOf(c.logprobs.tokens), logprobs: c.logprobs.token_logprobs, text: c.text },
                  want, modelName(model));
    assert.deepEqual(r.usage, { prompt_tokens: 7, completion_tokens: MAX, total_tokens: 7 + MAX });
  }
});

test('streamed completions equal offline greedy output, with usage last', async () => {
  const MAX = 10;
  for (const [i, model] of MODELS.entries()) {
    const prompt = makePrompt(i + 1, 7);
    const got = await streamed(greedy(model, prompt, MAX));
    assertMatches(got, await offline(model, prompt, MAX), `stream ${modelName(model)}`);
    assert.equal(got.finish, 'length');
    assert.deepEqual(got.usage, { prompt_tokens: 7, completion_tokens: MAX, total_tokens: 7 + MAX });
  }
});

test('prompt forms: text, a one-element list of text, a one-element list of ids', async () => {
  const text = 'Once upon a time';
  const MAX = 6;
  // Text gains the tokenizer's special tokens, as `tokenize --add-special` shows.
  const withSpecial = tokenize(text, true);
  const wantText = await offline(null, withSpecial, MAX);
  for (const prompt of [text, [text]]) {
    const r = await client.completions.create(greedy(null, prompt, MAX));
    const c = r.choices[0];
    assertMatches({ ids: idsOf(c.logprobs.tokens), logprobs: c.logprobs.token_logprobs, text: c.text },
                  wantText, `prompt ${JSON.stringify(prompt)}`);
    assert.equal(r.usage.prompt_tokens, withSpecial.length);
  }
  const ids = makePrompt(7, 5);
  const r = await client.completions.create(greedy(null, [ids], MAX));
  const c = r.choices[0];
  assertMatches({ ids: idsOf(c.logprobs.tokens), logprobs: c.logprobs.token_logprobs, text: c.text },
                await offline(null, ids, MAX), 'prompt [[ids]]');
});

test('stop strings end the text before the stop, with finish_reason stop', async () => {
  const prompt = makePrompt(42, 6);
  const want = await offline('adapter-002', prompt, 12);
  const full = detokenize(want.tokens);
  // A stop string from the middle of the reference text.
  const at = Math.floor(full.length / 2);
  const stop = full.slice(at, at + 2);
  assert.ok(stop.length === 2 && !stop.includes('\uFFFD'));
  const cut = full.slice(0, full.indexOf(stop));
  const r = await client.completions.create({ ...greedy('adapter-002', prompt, 12), stop });
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.equal(r.choices[0].text, cut);
  const s = await streamed({ ...greedy('adapter-002', prompt, 12), stop: [stop] });
  assert.equal(s.finish, 'stop');
  assert.equal(s.text, cut);
  assert.ok(s.usage.completion_tokens < 12);
});

test('256 concurrent mixed-adapter streams equal offline greedy output', async () => {
  const MAX = 6;
  const jobs = Array.from({ length: 256 }, (_, i) => ({
    model: MODELS[i % MODELS.length], prompt: makePrompt(100 + (i % 2), 6),
  }));
  // 10 distinct (model, prompt) pairs, computed before the streams start.
  await Promise.all(jobs.map(async (j) => { j.want = await offline(j.model, j.prompt, MAX); }));
  const results = await Promise.all(jobs.map((j) => streamed(greedy(j.model, j.prompt, MAX),
                                                             loadClient)));
  results.forEach((got, i) => {
    assertMatches(got, jobs[i].want, `stream ${i} (${modelName(jobs[i].model)})`);
    assert.equal(got.finish, 'length');
  });
});

test('1000 concurrent short streams are all served', async () => {
  const N = 1000;
  const results = await Promise.all(Array.from({ length: N }, (_, i) => streamed(
    greedy(MODELS[i % MODELS.length], makePrompt(1000 + i, 4), 2), loadClient).catch((e) => {
    throw new Error(`stream ${i}: ${e.message} (${e.cause?.message ?? ''} ${e.cause?.cause?.message ?? ''} ${e.cause?.cause?.code ?? ''})`);
  })));
  assert.equal(results.filter((r) => r.finish === 'length' && r.ids.length === 2).length, N);
  for (const r of results) assert.equal(r.usage.completion_tokens, 2);
});
