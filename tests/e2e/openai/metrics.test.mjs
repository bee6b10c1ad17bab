// GET /metrics: `promtool check metrics` (Debian's prometheus package)
// accepts the exposition; the figures follow the traffic sent; the LoRA
// info gauge names the adapters of the running batch as the endpoint
// picker reads them; and a real Prometheus on loopback scrapes the server
// and answers a query for a loraserve series.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import OpenAI from 'openai';

import { freePort, makePrompt, metrics, startServer, tempDir, waitUntil } from './harness.mjs';

const server = await startServer();
after(() => server.stop());
const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'none', maxRetries: 0 });

const REQUESTS = 6;
const MAX = 5;
await Promise.all(Array.from({ length: REQUESTS }, (_, i) => client.completions.create({
  model: i % 2 ? 'adapter-000' : 'model', prompt: makePrompt(i, 4), max_tokens: MAX,
  temperature: 0, ignore_eos: true,
})));

test('promtool check metrics accepts the exposition', async () => {
  const res = await fetch(`${server.url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.equal(r.error, undefined, 'promtool runs (Debian package prometheus)');
  assert.equal(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
});

test('the figures follow the traffic', async () => {
  const m = await metrics(server.url);
  for (const name of ['loraserve_num_requests_running', 'loraserve_num_requests_waiting',
                      'loraserve_kv_cache_usage_ratio', 'loraserve_lora_adapters_resident',
                      'loraserve_lora_adapters_registered', 'loraserve_pool_pages{use="free"}',
                      'loraserve_pool_pages{use="adapter"}', 'loraserve_lora_swap_ins_total',
                      'loraserve_lora_evictions_total', 'loraserve_lora_swap_in_bytes_total',
                      'loraserve_preemptions_total', 'loraserve_step_duration_seconds_count']) {
    assert.ok(m.has(name), name);
  }
  assert.equal(m.get('loraserve_generation_tokens_total'), REQUESTS * MAX);
  assert.equal(m.get('loraserve_prompt_tokens_total'), REQUESTS * 4);
  assert.equal(m.get('loraserve_request_success_total{finished_reason="length"}'), REQUESTS);
  assert.equal(m.get('loraserve_time_to_first_token_seconds_count'), REQUESTS);
  assert.equal(m.get('loraserve_inter_token_latency_seconds_count'), REQUESTS * (MAX - 1));
  assert.equal(m.get('loraserve_e2e_request_latency_seconds_count'), REQUESTS);
  assert.equal(m.get('loraserve_request_queue_time_seconds_count'), REQUESTS);
  assert.equal(m.get('loraserve_time_to_first_token_seconds_bucket{le="+Inf"}'), REQUESTS);
  assert.equal(m.get('loraserve_num_requests_running'), 0);
  assert.equal(m.get('loraserve_kv_cache_usage_ratio'), 0);
  assert.equal(m.get('loraserve_lora_adapters_registered'), 4);
  assert.ok(m.get('loraserve_lora_swap_ins_total') >= 1);
});

test('loraserve_lora_requests_info names the running adapters, as the endpoint picker reads them', async () => {
  const ac = new AbortController();
  const stream = await client.completions.create(
    { model: 'adapter-003', prompt: [5, 6], max_tokens: 1500, ignore_eos: true, stream: true },
    { signal: ac.signal });
  const it = stream[Symbol.asyncIterator]();
  await it.next();
  // The gauge shows the scheduler's last published iteration: poll briefly.
  let line;
  await waitUntil(async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    line = text.split('\n').find((l) => l.startsWith('loraserve_lora_requests_info{'));
    return line?.includes('running_lora_adapters="adapter-003"');
  }, 5000, 'the info gauge to name the running adapter');
  assert.match(line, /waiting_lora_adapters=""/);
  assert.match(line, /max_lora="\d+"/);
  const value = Number(line.slice(line.lastIndexOf(' ') + 1));
  assert.ok(Math.abs(value - Date.now() / 1000) < 60, 'the value is the time of the figures');
  ac.abort();
  await it.return?.().catch(() => {});
});

test('a real Prometheus scrapes the server and answers a query for a loraserve series', async (t) => {
  const dir = tempDir('prometheus');
  const port = await freePort();
  const config = path.join(dir, 'prometheus.yml');
  fs.writeFileSync(config, `global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: loraserve
    static_configs:
      - targets: ["127.0.0.1:${server.port}"]
`);
  const logFile = path.join(dir, 'log');
  const fd = fs.openSync(logFile, 'w');
  const prom = spawn('prometheus', [`--config.file=${config}`, `--storage.tsdb.path=${path.join(dir, 'data')}`,
                                    `--web.listen-address=127.0.0.1:${port}`],
                     { stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  t.after(() => prom.kill('SIGKILL'));
  const query = async (q) => {
    const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(q)}`);
    return res.ok ? res.json() : null;
  };
  let result = null;
  await waitUntil(async () => {
    if (prom.exitCode !== null) throw new Error(`prometheus exited: ${fs.readFileSync(logFile, 'utf8')}`);
    try {
      const r = await query('loraserve_generation_tokens_total');
      result = r?.data?.result;
      return result?.length === 1;
    } catch {
      return false;  // not listening yet
    }
  }, 60000, 'Prometheus to scrape loraserve');
  assert.equal(result[0].metric.job, 'loraserve');
  // At least the first requests' tokens (the info test's stream adds more).
  assert.ok(Number(result[0].value[1]) >= REQUESTS * MAX, result[0].value[1]);
  const up = await query('up{job="loraserve"}');
  assert.equal(up.data.result[0].value[1], '1');
  prom.kill('SIGTERM');
});
