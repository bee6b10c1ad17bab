// /v1/chat/completions through the official openai client, against
// chat_test_server: the product's HTTP API with a fixed ChatML renderer in
// its chat hook (the test's renderer, not product code). The oracle: the
// same ChatML string rendered here, tokenized without special tokens, run
// through the offline greedy reference.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import OpenAI from 'openai';

import { detokenize, offline, postJson, startServer, tokenize, assertErrorShape } from './harness.mjs';

const binary = process.env.CHAT_TEST_SERVER;
if (!binary) throw new Error('set CHAT_TEST_SERVER to the chat_test_server binary');
const server = await startServer({ binary });
after(() => server.stop());
const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'none', maxRetries: 0 });

const chatml = (messages) => messages.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`)
  .join('') + '<|im_start|>assistant\n';

const MESSAGES = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: [{ type: 'text', text: 'Say hello' }, { type: 'text', text: ' twice.' }] },
];
const FLAT = [MESSAGES[0], { role: 'user', content: 'Say hello twice.' }];

test('streamed chat: role first, then content, finish_reason and usage; equals offline greedy', async () => {
  const MAX = 8;
  const promptIds = tokenize(chatml(FLAT));  // no BOS: the template owns special tokens
  const want = await offline('adapter-001', promptIds, MAX);
  const stream = await client.chat.completions.create({
    model: 'adapter-001', messages: MESSAGES, max_tokens: MAX, temperature: 0, ignore_eos: true,
    stream: true, stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  for (const c of chunks) assert.equal(c.object, 'chat.completion.chunk');
  assert.deepEqual(chunks[0].choices[0].delta, { role: 'assistant', content: '' });
  const withChoices = chunks.filter((c) => c.choices.length > 0);
  for (const c of withChoices.slice(1)) assert.equal(c.choices[0].delta.role, undefined);
  const text = withChoices.map((c) => c.choices[0].delta.content ?? '').join('');
  assert.equal(text, detokenize(want.tokens));
  assert.equal(withChoices.at(-1).choices[0].finish_reason, 'length');
  const usage = chunks.at(-1).usage;
  assert.deepEqual(chunks.at(-1).choices, []);
  assert.deepEqual(usage, { prompt_tokens: promptIds.length, completion_tokens: MAX,
                            total_tokens: promptIds.length + MAX });
});

test('plain chat equals offline greedy, base model and adapter, with logprobs', async () => {
  const MAX = 6;
  const promptIds = tokenize(chatml(FLAT));
  for (const model of ['model', 'adapter-003']) {
    const want = await offline(model === 'model' ? null : model, promptIds, MAX);
    const r = await client.chat.completions.create({
      model, messages: FLAT, max_tokens: MAX, temperature: 0, ignore_eos: true, logprobs: true,
    });
    assert.equal(r.object, 'chat.completion');
    assert.match(r.id, /^chatcmpl-/);
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(r.choices[0].message.content, detokenize(want.tokens));
    assert.equal(r.choices[0].finish_reason, 'length');
    const lps = r.choices[0].logprobs.content.map((e) => e.logprob);
    lps.forEach((lp, i) => assert.ok(Math.abs(lp - want.logprobs[i]) <= 1e-3));
    assert.equal(r.usage.prompt_tokens, promptIds.length);
  }
});

test('chat without max_tokens runs until the model stops or the context ends', async () => {
  const r = await client.chat.completions.create({ model: 'model', messages: FLAT, temperature: 0 });
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.completion_tokens >= 1);
});

test('bad messages get a 400 in the OpenAI error shape', async () => {
  const cases = [
    [{ messages: [] }, 'messages'],
    [{ messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].role'],
    [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] },
     'messages[0].content'],
    [{ messages: [{ role: 'user', content: 42 }] }, 'messages[0].content'],
    [{ messages: [{ role: 'user' }] }, 'messages[0].content'],
  ];
  for (const [body, param] of cases) {
    const r = await postJson(`${server.url}/v1/chat/completions`, { model: 'model', ...body });
    assert.equal(r.status, 400, JSON.stringify(body));
    assertErrorShape(assert, r.json, { type: 'invalid_request_error', param });
  }
});
