// Hostile HTTP against one server while a canary keeps asking for a
// completion and checks every answer against the offline reference:
// malformed requests, huge bodies, oversized headers, bad UTF-8, half-sent
// requests, thousands of idle connections, and clients that vanish in the
// middle of a stream (their requests are cancelled and their pages freed).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { after, test } from 'node:test';
import OpenAI from 'openai';

import { detokenize, makePrompt, metrics, offline, startServer, waitUntil } from './harness.mjs';

const READ_TIMEOUT_S = 2;
const server = await startServer({
  // Room for the 10k idle connections below plus the canary's.
  args: ['--http-read-timeout-s', String(READ_TIMEOUT_S), '--http-max-body-bytes', String(1 << 20),
         '--http-max-connections', '12000'],
});
after(() => server.stop());
// The client's default retries: a keep-alive connection the server times
// out just as the (busy) client reuses it is a race every HTTP client
// retries through; the canary counts answers, not attempts.
const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'none', maxRetries: 2 });

// The canary: one greedy completion after another, each checked.
const canaryPrompt = makePrompt(77, 6);
const canaryWant = detokenize((await offline('adapter-001', canaryPrompt, 6)).tokens);
const canary = { ok: 0, bad: [], stop: false };
const canaryDone = (async () => {
  while (!canary.stop) {
    try {
      const r = await client.completions.create({ model: 'adapter-001', prompt: canaryPrompt,
                                                  max_tokens: 6, temperature: 0, ignore_eos: true });
      if (r.choices[0].text === canaryWant) canary.ok += 1;
      else canary.bad.push(`text ${JSON.stringify(r.choices[0].text)}`);
    } catch (e) {
      canary.bad.push(e.message);
    }
  }
})();
async function canaryStillServes() {
  const before = canary.ok;
  await waitUntil(() => canary.ok >= before + 2, 30000, 'the canary to be served');
  assert.deepEqual(canary.bad, []);
}
after(async () => { canary.stop = true; await canaryDone; });

// Sends raw bytes; resolves with everything the server sent once it closes
// (or after `ms`), and whether it closed.
function raw(chunks, { ms = 10000, end = false } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(server.port, '127.0.0.1');
    let data = '';
    let closed = false;
    const timer = setTimeout(() => { s.destroy(); resolve({ data, closed }); }, ms);
    s.on('data', (d) => { data += d.toString('latin1'); });
    s.on('error', () => {});
    s.on('close', () => { closed = true; clearTimeout(timer); resolve({ data, closed }); });
    s.on('connect', () => {
      for (const c of chunks) s.write(c);
      if (end) s.end();
    });
  });
}
const statusOf = (data) => Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1]);
const bodyOf = (data) => JSON.parse(data.slice(data.indexOf('\r\n\r\n') + 4));

test('malformed requests get 400 / 413 / 431 in the OpenAI shape and the connection closes', async () => {
  let r = await raw(['GARBAGE\r\n\r\n']);
  assert.equal(statusOf(r.data), 400, r.data);
  assert.ok(bodyOf(r.data).error.message.length > 0);
  assert.ok(r.closed);

  r = await raw(['POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: banana\r\n\r\n']);
  assert.equal(statusOf(r.data), 400, r.data);

  // A declared body beyond the cap is refused before it is read.
  r = await raw(['POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
                 `Content-Length: ${100 << 20}\r\n\r\n{"prompt": "`, 'x'.repeat(1 << 16)]);
  assert.equal(statusOf(r.data), 413, r.data);
  assert.equal(bodyOf(r.data).error.code, 'request_too_large');
  assert.ok(r.closed);

  // Chunked bodies are capped too.
  const chunk = 'x'.repeat(1 << 16);
  const chunks = ['POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'];
  for (let i = 0; i < 20; i++) chunks.push(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
  r = await raw(chunks);
  assert.equal(statusOf(r.data), 413, r.data.slice(0, 200));

  r = await raw([`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'y'.repeat(40000)}\r\n\r\n`]);
  assert.equal(statusOf(r.data), 431, r.data.slice(0, 200));

  const bad = Buffer.concat([Buffer.from('{"prompt": "\xc3'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]);
  r = await raw([`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: ${bad.length}\r\n\r\n`, bad],
              { ms: 1000 });
  assert.equal(statusOf(r.data), 400);
  assert.match(bodyOf(r.data).error.message, /UTF-8/);
  assert.ok(!r.closed, 'a 400 for a well-formed HTTP request keeps the connection');
  await canaryStillServes();
});

test('keep-alive: several requests on one connection', async () => {
  const req = 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n';
  const r = await raw([req, req, req], { ms: 1000 });
  assert.equal((r.data.match(/HTTP\/1\.1 200/g) ?? []).length, 3);
});

test('half-sent requests are dropped after the read timeout', async () => {
  const t0 = Date.now();
  const half = await Promise.all([
    raw(['POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"pro'], { ms: 15000 }),
    raw(['POST /v1/completions HTTP/1.1\r\nHost: x\r\n'], { ms: 15000 }),
    raw(['GET /he'], { ms: 15000 }),
  ]);
  for (const r of half) assert.ok(r.closed, 'the server closed the connection');
  const elapsed = (Date.now() - t0) / 1000;
  assert.ok(elapsed >= READ_TIMEOUT_S - 0.5 && elapsed < READ_TIMEOUT_S + 5, `closed after ${elapsed} s`);
  await canaryStillServes();
});

test('thousands of idle connections neither block service nor outlive the read timeout', async (t) => {
  // 10k as the issue asks, unless the descriptor limit (both ends are on
  // this machine) is too small for it.
  const limit = Number(spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).stdout);
  const N = Number.isFinite(limit) ? Math.min(10000, limit - 2000) : 10000;
  if (N < 10000) t.diagnostic(`descriptor limit ${limit}: ${N} idle connections instead of 10000`);
  const sockets = [];
  let closed = 0;
  await Promise.all(Array.from({ length: N }, () => new Promise((resolve) => {
    const s = net.connect(server.port, '127.0.0.1');
    s.on('connect', resolve);
    s.on('error', () => resolve());
    s.on('close', () => { closed += 1; });
    sockets.push(s);
  })));
  try {
    await canaryStillServes();  // while they are all open
    await waitUntil(() => closed === N, (READ_TIMEOUT_S + 20) * 1000,
                    `the server to close ${N} idle connections (${closed})`);
    await canaryStillServes();
  } finally {
    for (const s of sockets) s.destroy();
  }
});

test('a client that disconnects mid-stream has its request cancelled and pages freed', async () => {
  const before = await metrics(server.url);
  const cancelsBefore = before.get('loraserve_request_aborts_total{cause="client_cancel"}');
  const ac = new AbortController();
  const stream = await client.completions.create(
    { model: 'adapter-002', prompt: makePrompt(9, 8), max_tokens: 1500, ignore_eos: true, stream: true },
    { signal: ac.signal });
  const it = stream[Symbol.asyncIterator]();
  await it.next();
  await it.next();
  ac.abort();
  await it.return?.().catch(() => {});
  await waitUntil(async () => {
    const m = await metrics(server.url);
    return m.get('loraserve_request_aborts_total{cause="client_cancel"}') === cancelsBefore + 1 &&
           m.get('loraserve_pool_pages{use="kv"}') === 0;
  }, 5000, 'the cancellation to free the KV pages');
  await canaryStillServes();
});
