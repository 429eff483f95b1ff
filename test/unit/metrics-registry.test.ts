/** The Prometheus registry: exposition format details, histogram bucketing, bad names refused. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from '../../lib/metrics.ts';

test('label values are escaped and series are cached per label set', () => {
  const r = new Registry();
  const c = r.counter('x_total', 'help with \\ backslash\nand newline', ['a']);
  const s = c.with({ a: 'q"uo\\te\nnl' });
  assert.equal(c.with({ a: 'q"uo\\te\nnl' }), s);
  s.inc();
  s.inc(2);
  assert.equal(r.render(), '# HELP x_total help with \\\\ backslash\\nand newline\n# TYPE x_total counter\nx_total{a="q\\"uo\\\\te\\nnl"} 3\n');
});

test('histogram: value on a bound goes in that bucket (le), cumulative output, +Inf, sum, count', () => {
  const r = new Registry();
  const h = r.histogram('d', 'd', ['k'], [1, 5, 10]);
  const s = h.with({ k: 'v' });
  for (const v of [0.5, 1, 3, 5, 10, 11, 1000]) s.observe(v);
  assert.equal(
    r.render(),
    ['# HELP d d', '# TYPE d histogram', 'd_bucket{k="v",le="1"} 2', 'd_bucket{k="v",le="5"} 4', 'd_bucket{k="v",le="10"} 5', 'd_bucket{k="v",le="+Inf"} 7', 'd_sum{k="v"} 1030.5', 'd_count{k="v"} 7', ''].join('\n'),
  );
});

test('invalid names, reserved labels and unsorted buckets are refused', () => {
  const r = new Registry();
  assert.throws(() => r.counter('bad-name', 'x'), /not a valid Prometheus name/);
  assert.throws(() => r.counter('ok', 'x', ['__reserved']), /not a valid label name/);
  assert.throws(() => r.histogram('h', 'x', ['le'], [1]), /reserved/);
  assert.throws(() => r.histogram('h2', 'x', [], [5, 1]), /increase/);
  r.counter('dup', 'x');
  assert.throws(() => r.counter('dup', 'x'), /registered twice/);
});

test('a collector that throws skips its family, not the scrape; empty families print nothing', () => {
  const r = new Registry();
  r.gauge('boom', 'x', [], () => {
    throw new Error('nope');
  });
  r.counter('unused_total', 'x', ['a']);
  r.gauge('g', 'x', ['a'], (set) => set({ a: '1' }, 2.5));
  assert.equal(r.render(), '# HELP g x\n# TYPE g gauge\ng{a="1"} 2.5\n');
});
