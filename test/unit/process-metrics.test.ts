/**
 * The process metrics every Portico process exposes from the one registry (lib/metrics.ts):
 * Prometheus' standard `process_*` families with live values, Istio's `istio_build`, and the
 * authservice's families rendered through the same registry.
 */
import assert from 'node:assert/strict';
import { closeSync, openSync } from 'node:fs';
import { test } from 'node:test';
import { AuthserviceMetrics } from '../../authservice/metrics.ts';
import { PORTICO_VERSION, Registry, registerProcessMetrics } from '../../lib/metrics.ts';
import { parseProm } from '../integration/telemetry-helper.ts';

function values(text: string): Map<string, { labels: Record<string, string>; value: number }> {
  return new Map(parseProm(text).map((s) => [s.name, s]));
}

test('process_* and istio_build: present, typed and live', () => {
  const r = new Registry();
  registerProcessMetrics(r, 'proxy');
  registerProcessMetrics(r, 'proxy'); // idempotent per registry
  const text = r.render();
  for (const [name, type] of [
    ['process_cpu_seconds_total', 'counter'],
    ['process_cpu_user_seconds_total', 'counter'],
    ['process_cpu_system_seconds_total', 'counter'],
    ['process_resident_memory_bytes', 'gauge'],
    ['process_virtual_memory_bytes', 'gauge'],
    ['process_open_fds', 'gauge'],
    ['process_max_fds', 'gauge'],
    ['process_start_time_seconds', 'gauge'],
    ['nodejs_heap_size_used_bytes', 'gauge'],
    ['istio_build', 'gauge'],
  ] as const) {
    assert.match(text, new RegExp(`^# TYPE ${name} ${type}$`, 'm'), name);
  }
  const v = values(text);
  assert.deepEqual(v.get('istio_build'), { name: 'istio_build', labels: { component: 'proxy', tag: PORTICO_VERSION }, value: 1 });
  assert.match(PORTICO_VERSION, /^\d+\.\d+\.\d+/);
  const rss = v.get('process_resident_memory_bytes')!.value;
  assert.ok(rss > 10e6 && rss < 10e9, `rss ${rss}`);
  assert.ok(v.get('process_virtual_memory_bytes')!.value >= rss);
  const start = v.get('process_start_time_seconds')!.value;
  assert.ok(Math.abs(start - (Date.now() / 1000 - process.uptime())) < 5, `start ${start}`);
  assert.ok(v.get('process_cpu_seconds_total')!.value > 0);
  assert.ok(v.get('process_max_fds')!.value > 0);

  // Open fds are read at scrape time: one more open file is one more fd.
  const before = v.get('process_open_fds')!.value;
  const fds = [openSync(process.execPath, 'r'), openSync(process.execPath, 'r')];
  try {
    assert.equal(values(r.render()).get('process_open_fds')!.value, before + 2);
  } finally {
    for (const fd of fds) closeSync(fd);
  }
});

test('the authservice renders its families and the process metrics through the shared registry', () => {
  const m = new AuthserviceMetrics();
  m.loginSucceeded();
  m.loginFailed('login_state');
  m.checks.deny.inc();
  const v = parseProm(m.render());
  const one = (name: string, labels: Record<string, string> = {}) => v.find((s) => s.name === name && Object.entries(labels).every(([k, x]) => s.labels[k] === x))?.value;
  assert.equal(one('portico_authservice_logins_total'), 1);
  assert.equal(one('portico_authservice_login_failures_total', { reason: 'login_state' }), 1);
  assert.equal(one('portico_authservice_checks_total', { result: 'allow' }), 0);
  assert.equal(one('portico_authservice_checks_total', { result: 'deny' }), 1);
  assert.equal(one('portico_authservice_session_store_errors_total', { operation: 'get' }), 0);
  assert.equal(one('istio_build', { component: 'authservice' }), 1);
  assert.ok((one('process_resident_memory_bytes') ?? 0) > 0);
});
