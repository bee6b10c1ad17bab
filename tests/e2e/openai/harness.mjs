// Shared pieces of the OpenAI-API end-to-end tests: the synthetic model
// (written once per test file into a temporary directory), a real
// `loraserve serve --http-listen` child process on 127.0.0.1, and the
// offline reference (`loraserve generate --json`, greedy) that served
// results must equal. Every process started here is killed when the test
// file ends, whatever it asserts.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';

export const LORASERVE = process.env.LORASERVE_BIN;
if (!LORASERVE) throw new Error('set LORASERVE_BIN to the loraserve binary');

export const NUM_ADAPTERS = 4; // adapter-000..003, ranks 8, 16, 32, 64
const children = new Set();
const tempDirs = [];

after(() => {
  for (const c of children) c.kill('SIGKILL');
  if (!process.env.KEEP_TMP) for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
});

export function tempDir(tag) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `loraserve-openai-${tag}-`));
  tempDirs.push(d);
  return d;
}

function run(args, input) {
  const r = spawnSync(LORASERVE, args, { encoding: 'utf8', input, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`loraserve ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

let synthCache = null;
// `loraserve synth --preset tiny`: the model and NUM_ADAPTERS adapters.
export function synth() {
  if (synthCache) return synthCache;
  const root = tempDir('data');
  run(['synth', '--preset', 'tiny', '--out', root, '--adapters', String(NUM_ADAPTERS),
       '--ranks', '8,16,32,64', '--seed', '3']);
  synthCache = { root, model: path.join(root, 'model'), adapters: path.join(root, 'adapters') };
  return synthCache;
}

export const adapterName = (i) => `adapter-${String(i).padStart(3, '0')}`;

// A deterministic prompt of `len` token ids in [3, 1024) (the tiny vocabulary).
export function makePrompt(seed, len) {
  const ids = [];
  let x = seed * 2654435761 + 12345;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    ids.push(3 + (x % 1021));
  }
  return ids;
}

const offlineCache = new Map();
let offlineRunning = 0;
const offlineWaiters = [];

function runAsync(args) {
  return new Promise((resolve, reject) => {
    const p = spawn(LORASERVE, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(out)
      : reject(new Error(`loraserve ${args.join(' ')} failed (${code}): ${err}`))));
  });
}

// Greedy reference tokens and logprobs ({tokens, logprobs}); `adapter`
// null = base model. Cached; at most two run at once (CI has two cores).
export function offline(adapter, prompt, maxNew) {
  const key = `${adapter}|${prompt.join(',')}|${maxNew}`;
  if (!offlineCache.has(key)) {
    const { model, adapters } = synth();
    const args = ['generate', '--model', model, '--prompt-ids', prompt.join(','),
                  '--max-new-tokens', String(maxNew), '--json', '--pool-mb', '16'];
    if (adapter !== null) args.push('--adapter', path.join(adapters, adapter));
    offlineCache.set(key, (async () => {
      while (offlineRunning >= 2) await new Promise((r) => offlineWaiters.push(r));
      offlineRunning += 1;
      try {
        return JSON.parse(await runAsync(args));
      } finally {
        offlineRunning -= 1;
        offlineWaiters.shift()?.();
      }
    })());
  }
  return offlineCache.get(key);
}

// The tokenizer's text for generated ids, as the server should stream it.
const textCache = new Map();
export function detokenize(ids) {
  if (ids.length === 0) return '';
  const key = ids.join(',');
  if (!textCache.has(key)) textCache.set(key, detokenizeUncached(ids));
  return textCache.get(key);
}

function detokenizeUncached(ids) {
  const out = run(['detokenize', '--tokenizer', path.join(synth().model, 'tokenizer.json'),
                   '--ids', ids.join(','), '--skip-special']);
  return out.endsWith('\n') ? out.slice(0, -1) : out;
}

export function tokenize(text, addSpecial = false) {
  const out = run(['tokenize', '--tokenizer', path.join(synth().model, 'tokenizer.json'),
                   '--text', text, '--json', ...(addSpecial ? ['--add-special'] : [])]);
  return JSON.parse(out).ids;
}

async function waitForFile(file, proc, log, ms) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (proc.exitCode !== null) throw new Error(`server exited ${proc.exitCode}: ${log()}`);
    if (fs.existsSync(file) && fs.readFileSync(file, 'utf8').trim()) {
      return Number(fs.readFileSync(file, 'utf8').trim());
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server did not start in ${ms} ms: ${log()}`);
}

// Starts `loraserve serve` with HTTP on 127.0.0.1:0 (or `binary` given,
// e.g. the chat test server), the synthetic adapters preloaded unless
// `preload` is false. Returns {port, grpcPort, url, proc, log(), stop()}.
export async function startServer({ args = [], preload = true, binary = null } = {}) {
  const { model, adapters } = synth();
  const dir = tempDir('server');
  const httpPortFile = path.join(dir, 'http-port');
  const logFile = path.join(dir, 'log');
  const argv = binary ? ['--model', model, '--adapter-root', adapters, '--http-port-file', httpPortFile,
                         ...args]
    : ['serve', '--model', model, '--adapter-root', adapters, '--listen', '127.0.0.1:0',
       '--port-file', path.join(dir, 'grpc-port'), '--http-listen', '127.0.0.1:0',
       '--http-port-file', httpPortFile, '--pool-mb', '64', '--log-level', 'warn',
       ...(preload ? ['--preload-adapters', adapters] : []), ...args];
  const fd = fs.openSync(logFile, 'w');
  const proc = spawn(binary ?? LORASERVE, argv, { stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  const log = () => fs.readFileSync(logFile, 'utf8');
  const port = await waitForFile(httpPortFile, proc, log, 30000);
  return {
    port, proc, log,
    url: `http://127.0.0.1:${port}`,
    async stop(signal = 'SIGTERM', ms = 20000) {
      if (proc.exitCode !== null) return proc.exitCode;
      const exited = new Promise((r) => proc.once('exit', (code) => r(code)));
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill('SIGKILL'), ms);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

// A free TCP port on loopback (for programs that cannot take port 0).
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

// Plain JSON over fetch, for the endpoints and error shapes the openai
// client does not expose directly.
export async function postJson(url, body, headers = {}) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, text, json, headers: res.headers };
}

// The OpenAI error shape: {"error": {"message", "type", "param", "code"}}.
export function assertErrorShape(assert, json, { type, param } = {}) {
  assert.ok(json && typeof json === 'object', 'error body is JSON');
  assert.deepEqual(Object.keys(json), ['error']);
  const e = json.error;
  assert.deepEqual(Object.keys(e).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(typeof e.message, 'string');
  assert.ok(e.message.length > 0);
  assert.equal(typeof e.type, 'string');
  if (type !== undefined) assert.equal(e.type, type);
  if (param !== undefined) assert.equal(e.param, param);
}

// Parses Prometheus text into Map(name{labels} -> value).
export function parseMetrics(text) {
  const m = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}

export async function metrics(url) {
  const res = await fetch(`${url}/metrics`);
  return parseMetrics(await res.text());
}

export async function waitUntil(pred, ms, what) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}
