// Every error status of the HTTP API with its OpenAI JSON shape
// {"error": {"message", "type", "param", "code"}}: 400, 401, 403, 404, 405,
// 409, 413, 429, 503 (draining), 504 (TTFT SLO abort), each mapped from the
// Status the gRPC API gives for the same request (server/http_status.h).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import OpenAI from 'openai';

import { LORASERVE, assertErrorShape, postJson, startServer, tempDir } from './harness.mjs';

const completion = (server, body, headers) => postJson(`${server.url}/v1/completions`, body, headers);

test('400, 404, 405, 409, 413 on an open server', async (t) => {
  const server = await startServer({ args: ['--http-max-body-bytes', '65536'] });
  t.after(() => server.stop());
  const bad = [
    ['{"model": "model", "prompt": [1, 2', 'not valid JSON', null],
    ['[1, 2, 3]', 'JSON object', null],
    [{ model: 'model', prompt: [5, 6], max_tokens: 'ten' }, 'integer', 'max_tokens'],
    [{ model: 'model', prompt: [5, 6], temperature: '0' }, 'number', 'temperature'],
    [{ model: 'model', prompt: [5, 6], temperature: 7 }, 'temperature', 'temperature'],
    [{ model: 'model', prompt: [5, 6], stream: 'yes' }, 'boolean', 'stream'],
    [{ model: 5, prompt: [5, 6] }, 'string', 'model'],
    [{ model: 'model' }, 'required', 'prompt'],
    [{ model: 'model', prompt: '' }, 'empty', 'prompt'],
    [{ model: 'model', prompt: [] }, 'empty', 'prompt'],
    [{ model: 'model', prompt: [5, -1] }, 'token ids', 'prompt'],
    [{ model: 'model', prompt: [5, 1.5] }, 'token ids', 'prompt'],
    [{ model: 'model', prompt: ['a', 'b'] }, 'one prompt per request', 'prompt'],
    [{ model: 'model', prompt: [5, 6], n: 2 }, 'one choice', 'n'],
    [{ model: 'model', prompt: [5, 6], echo: true }, 'echo', 'echo'],
    [{ model: 'model', prompt: [5, 6], best_of: 3 }, 'best_of', 'best_of'],
    [{ model: 'model', prompt: [5, 6], stop: [1] }, 'stop', 'stop'],
    [{ model: 'model', prompt: [5, 6], stop: '' }, 'empty', 'stop'],
    [{ model: 'model', prompt: [5, 6], stream_options: { include_usage: true } }, 'stream', 'stream_options'],
    [{ model: 'model', prompt: [5, 99999] }, 'vocabulary', null],
    [{ model: 'model', prompt: [5, 6], max_tokens: 100000 }, 'max_new_tokens', null],
  ];
  for (const [body, needle, param] of bad) {
    const r = await completion(server, body);
    assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
    assertErrorShape(assert, r.json, { type: 'invalid_request_error', param });
    assert.equal(r.json.error.code, 'invalid_argument');
    assert.ok(r.json.error.message.toLowerCase().includes(needle.toLowerCase()),
              `${JSON.stringify(body)}: '${r.json.error.message}' should mention '${needle}'`);
  }
  // Invalid UTF-8 inside a JSON string.
  const utf8 = Buffer.concat([Buffer.from('{"model": "model", "prompt": "ab'), Buffer.from([0xff, 0xfe]),
                              Buffer.from('"}')]);
  let r = await completion(server, new Uint8Array(utf8));
  assert.equal(r.status, 400);
  assertErrorShape(assert, r.json, { type: 'invalid_request_error' });
  assert.match(r.json.error.message, /UTF-8/);
  // Nesting deeper than any request needs.
  r = await completion(server, `{"model": "model", "prompt": ${'['.repeat(5000)}${']'.repeat(5000)}}`);
  assert.equal(r.status, 400);
  assert.match(r.json.error.message, /nests deeper/);
  // Chat messages with a role the API does not know.
  r = await postJson(`${server.url}/v1/chat/completions`,
                     { model: 'model', messages: [{ role: 'wizard', content: 'hi' }] });
  assert.equal(r.status, 400);
  assertErrorShape(assert, r.json, { type: 'invalid_request_error' });
  // The synth model's own chat template renders a real chat.
  r = await postJson(`${server.url}/v1/chat/completions`,
                     { model: 'model', max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(r.status, 200);
  assert.equal(r.json.choices[0].message.role, 'assistant');

  r = await completion(server, { model: 'no-such-adapter', prompt: [5, 6] });
  assert.equal(r.status, 404);
  assertErrorShape(assert, r.json, { type: 'not_found_error', param: 'model' });
  r = await postJson(`${server.url}/v1/nothing-here`, {});
  assert.equal(r.status, 404);
  assertErrorShape(assert, r.json, { type: 'not_found_error' });
  const get = await fetch(`${server.url}/v1/completions`);
  assert.equal(get.status, 405);
  assertErrorShape(assert, await get.json(), { type: 'invalid_request_error' });
  r = await postJson(`${server.url}/v1/load_lora_adapter`, { lora_name: 'adapter-000', lora_path: 'adapter-000' });
  assert.equal(r.status, 409);
  assertErrorShape(assert, r.json, { type: 'conflict_error', param: 'lora_name' });
  r = await completion(server, { model: 'model', prompt: 'x'.repeat(70000) });
  assert.equal(r.status, 413);
  assertErrorShape(assert, r.json, { type: 'invalid_request_error' });
  // The openai client surfaces the same shape as an APIError.
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'none', maxRetries: 0 });
  await assert.rejects(client.completions.create({ model: 'model', prompt: [5], n: 2 }), (e) => {
    assert.equal(e.status, 400);
    assert.equal(e.param, 'n');
    assert.equal(e.type, 'invalid_request_error');
    return true;
  });
});

test('401, 403, 429 with tenants', async (t) => {
  const dir = tempDir('tenants');
  const hash = (key) => spawnSync(LORASERVE, ['hash-key'], { input: key, encoding: 'utf8' }).stdout.trim();
  const userKey = 'user-key-0123456789abcdef';
  const adminKey = 'admin-key-0123456789abcdef';
  const file = path.join(dir, 'tenants.yaml');
  fs.writeFileSync(file, `tenants:
  - name: acme
    role: user
    keys: ["${hash(userKey)}"]
    quotas: {max_concurrent_requests: 1}
  - name: root
    role: admin
    keys: ["${hash(adminKey)}"]
`);
  const server = await startServer({ args: ['--tenants', file] });
  t.after(() => server.stop());
  const auth = (key) => ({ authorization: `Bearer ${key}` });

  let r = await completion(server, { model: 'adapter-000', prompt: [5, 6], max_tokens: 2 });
  assert.equal(r.status, 401);
  assertErrorShape(assert, r.json, { type: 'authentication_error' });
  r = await completion(server, { model: 'adapter-000', prompt: [5, 6] }, auth('wrong-key-0123456789abcdef'));
  assert.equal(r.status, 401);
  const models = await fetch(`${server.url}/v1/models`);
  assert.equal(models.status, 401);
  r = await completion(server, { model: 'adapter-000', prompt: [5, 6], max_tokens: 2 }, auth(userKey));
  assert.equal(r.status, 200, r.text);

  r = await postJson(`${server.url}/v1/load_lora_adapter`,
                     { lora_name: 'shared', lora_path: 'adapter-001', is_public: true }, auth(userKey));
  assert.equal(r.status, 403);
  assertErrorShape(assert, r.json, { type: 'permission_error' });
  r = await postJson(`${server.url}/v1/load_lora_adapter`,
                     { lora_name: 'shared', lora_path: 'adapter-001', is_public: true }, auth(adminKey));
  assert.equal(r.status, 200, r.text);

  // acme may have one request in flight: a long stream holds the slot.
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: userKey, maxRetries: 0 });
  const ac = new AbortController();
  const stream = await client.completions.create(
    { model: 'shared', prompt: [5, 6], max_tokens: 1500, ignore_eos: true, stream: true },
    { signal: ac.signal });
  const it = stream[Symbol.asyncIterator]();
  await it.next();
  r = await completion(server, { model: 'shared', prompt: [5, 6], max_tokens: 2 }, auth(userKey));
  assert.equal(r.status, 429);
  assertErrorShape(assert, r.json, { type: 'rate_limit_error' });
  assert.equal(r.json.error.code, 'resource_exhausted');
  ac.abort();
  await it.return?.().catch(() => {});
});

test('504 when the TTFT SLO aborts a request, plain and streamed', async (t) => {
  const server = await startServer({ args: ['--ttft-slo-ms', '0.001'] });
  t.after(() => server.stop());
  let r = await completion(server, { model: 'model', prompt: [5, 6, 7], max_tokens: 4 });
  assert.equal(r.status, 504, r.text);
  assertErrorShape(assert, r.json, { type: 'timeout_error' });
  assert.equal(r.json.error.code, 'deadline_exceeded');
  // Streamed: the error arrives as an event, then [DONE].
  r = await completion(server, { model: 'model', prompt: [5, 6, 7], max_tokens: 4, stream: true });
  assert.equal(r.status, 200);
  const events = r.text.split('\n\n').filter(Boolean);
  assert.equal(events.at(-1), 'data: [DONE]');
  const err = JSON.parse(events.at(-2).slice('data: '.length));
  assertErrorShape(assert, err, { type: 'timeout_error' });
});

test('503 while draining; /health says so; in-flight streams finish; exit 0', async () => {
  const server = await startServer({ args: ['--shutdown-grace-s', '20'] });
  assert.equal((await fetch(`${server.url}/health`)).status, 200);
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'none', maxRetries: 0 });
  const stream = await client.completions.create(
    { model: 'adapter-001', prompt: [5, 6], max_tokens: 1200, temperature: 0, ignore_eos: true,
      stream: true, stream_options: { include_usage: true } });
  const it = stream[Symbol.asyncIterator]();
  await it.next();
  server.proc.kill('SIGTERM');
  // Draining is announced at once; new work is refused.
  let health;
  for (let i = 0; i < 100; i++) {
    health = await fetch(`${server.url}/health`);
    if (health.status === 503) break;
    await new Promise((res) => setTimeout(res, 20));
  }
  assert.equal(health.status, 503);
  assert.deepEqual(await health.json(), { status: 'draining' });
  const r = await completion(server, { model: 'model', prompt: [5, 6], max_tokens: 2 });
  assert.equal(r.status, 503);
  assertErrorShape(assert, r.json, { type: 'service_unavailable_error' });
  let usage = null;
  for (let n = await it.next(); !n.done; n = await it.next()) if (n.value.usage) usage = n.value.usage;
  assert.equal(usage?.completion_tokens, 1200, 'the in-flight stream ran to its end');
  assert.equal(await server.stop(), 0);
});
