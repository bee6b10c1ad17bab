// Adapter administration over HTTP (vLLM's shapes): load under
// --adapter-root, list, generate with it (equal to the offline reference),
// refuse unloading while in use, unload, and every refusal's status and
// OpenAI error shape.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import OpenAI from 'openai';

import { assertErrorShape, detokenize, makePrompt, offline, postJson, startServer, waitUntil }
  from './harness.mjs';

const server = await startServer({ preload: false });
after(() => server.stop());
const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'none', maxRetries: 0 });
const load = (body) => postJson(`${server.url}/v1/load_lora_adapter`, body);
const unload = (body) => postJson(`${server.url}/v1/unload_lora_adapter`, body);

test('load, list, serve, refuse unload in use, unload', async () => {
  let models = (await client.models.list()).data;
  assert.deepEqual(models.map((m) => m.id), ['model']);
  assert.equal(models[0].object, 'model');
  assert.equal(models[0].owned_by, 'loraserve');
  assert.equal(typeof models[0].created, 'number');

  const r = await load({ lora_name: 'mine', lora_path: 'adapter-002' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.id, 'mine');
  assert.equal(r.json.rank, 32);
  models = (await client.models.list()).data;
  const mine = models.find((m) => m.id === 'mine');
  assert.ok(mine);
  assert.equal(mine.parent, 'model');
  assert.equal(mine.object, 'model');

  const prompt = makePrompt(5, 6);
  const want = await offline('adapter-002', prompt, 8);
  const c = await client.completions.create({ model: 'mine', prompt, max_tokens: 8, temperature: 0,
                                              ignore_eos: true });
  assert.equal(c.choices[0].text, detokenize(want.tokens));

  // In use: a long stream holds it.
  const ac = new AbortController();
  const stream = await client.completions.create(
    { model: 'mine', prompt, max_tokens: 1500, temperature: 0, ignore_eos: true, stream: true },
    { signal: ac.signal });
  const it = stream[Symbol.asyncIterator]();
  await it.next();
  const busy = await unload({ lora_name: 'mine' });
  assert.equal(busy.status, 409, busy.text);
  assertErrorShape(assert, busy.json, { type: 'conflict_error', param: 'lora_name' });
  assert.match(busy.json.error.message, /in flight/);
  ac.abort();
  await it.return?.().catch(() => {});
  // The aborted stream is cancelled by the server; then unloading works.
  await waitUntil(async () => (await unload({ lora_name: 'mine' })).status === 200, 10000,
                  'unload after the stream was cancelled');
  assert.ok(!(await client.models.list()).data.some((m) => m.id === 'mine'));
  const gone = await postJson(`${server.url}/v1/completions`, { model: 'mine', prompt: [5, 6] });
  assert.equal(gone.status, 404);
  assertErrorShape(assert, gone.json, { type: 'not_found_error', param: 'model' });
});

test('refusals: already loaded, outside the root, missing, bad fields, unknown unload', async () => {
  assert.equal((await load({ lora_name: 'a0', lora_path: 'adapter-000' })).status, 200);
  const cases = [
    [{ lora_name: 'a0', lora_path: 'adapter-000' }, 409, 'conflict_error', 'lora_name'],
    [{ lora_name: 'x1', lora_path: '../model' }, 403, 'permission_error', 'lora_path'],
    [{ lora_name: 'x2', lora_path: '/etc' }, 403, 'permission_error', 'lora_path'],
    [{ lora_name: 'x3', lora_path: 'no-such-adapter' }, 404, 'not_found_error', 'lora_path'],
    [{ lora_name: 'x4' }, 400, 'invalid_request_error', 'lora_path'],
    [{ lora_path: 'adapter-000' }, 400, 'invalid_request_error', 'lora_name'],
    [{ lora_name: 7, lora_path: 'adapter-000' }, 400, 'invalid_request_error', 'lora_name'],
    [{ lora_name: '../bad', lora_path: 'adapter-001' }, 400, 'invalid_request_error', undefined],
  ];
  for (const [body, status, type, param] of cases) {
    const r = await load(body);
    assert.equal(r.status, status, `${JSON.stringify(body)}: ${r.text}`);
    assertErrorShape(assert, r.json, { type, param });
  }
  const r = await unload({ lora_name: 'never-loaded' });
  assert.equal(r.status, 404);
  assertErrorShape(assert, r.json, { type: 'not_found_error', param: 'lora_name' });
  assert.equal((await unload({ lora_name: 'a0' })).status, 200);
});
