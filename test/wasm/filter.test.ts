/** Which proxies a WasmPlugin selects, and what the VM gets from its definition. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { WasmPluginConfig } from '../../config/snapshot.ts';
import { pluginSelects } from '../../dataplane/filters/wasm.ts';
import { WasmManager } from '../../wasm/plugins.ts';

const base: WasmPluginConfig = {
  id: 'WasmPlugin/default/p', name: 'p', source: { file: 'x.yaml', line: 1 }, namespace: 'default', meshWide: false, selector: { app: 'web' },
  url: 'file:///p.wasm', imagePullPolicy: 'IfNotPresent', pluginConfig: '{}', pluginName: 'root', vmId: 'default/p', phase: 'UNSPECIFIED',
  priority: 0, failStrategy: 'FAIL_CLOSE', env: [], match: [], context: 'ANY',
};
const gateway = { mode: 'edge', namespace: 'default', labels: { app: 'web' }, context: 'GATEWAY', workloadName: 'gw' } as const;
const sidecar = { mode: 'sidecar', namespace: 'default', labels: { app: 'web' }, context: 'SIDECAR_INBOUND', workloadName: 'web' } as const;

test('selector, namespace and root namespace', () => {
  assert.equal(pluginSelects(base, gateway), true);
  assert.equal(pluginSelects({ ...base, selector: { app: 'other' } }, gateway), false);
  assert.equal(pluginSelects(base, { ...gateway, namespace: 'prod' }), false);
  assert.equal(pluginSelects({ ...base, meshWide: true, namespace: 'istio-system' }, { ...gateway, namespace: 'prod' }), true);
  assert.equal(pluginSelects({ ...base, targetRefs: [{ kind: 'Gateway', name: 'gw' }] }, gateway), true);
  assert.equal(pluginSelects({ ...base, targetRefs: [{ kind: 'Gateway', name: 'other' }] }, gateway), false);
});

test('match.mode: a gateway is a CLIENT, a sidecar inbound a SERVER', () => {
  const m = (mode: WasmPluginConfig['match'][number]['mode']) => ({ ...base, match: [{ mode, ports: [] }] });
  assert.equal(pluginSelects(m('CLIENT'), gateway), true);
  assert.equal(pluginSelects(m('CLIENT'), sidecar), false);
  assert.equal(pluginSelects(m('SERVER'), gateway), false);
  assert.equal(pluginSelects(m('SERVER'), sidecar), true);
  assert.equal(pluginSelects(m('CLIENT_AND_SERVER'), sidecar), true);
  assert.equal(pluginSelects(m('UNDEFINED'), gateway), true);
});

test('EnvoyFilter context limits the proxies', () => {
  assert.equal(pluginSelects({ ...base, context: 'GATEWAY' }, gateway), true);
  assert.equal(pluginSelects({ ...base, context: 'GATEWAY' }, sidecar), false);
});

test('VM settings: root id, plugin_name, pluginConfig, vmConfig.env INLINE and HOST', () => {
  const m = new WasmManager({ hostEnv: { HOME: '/home/proxy' } });
  const s = m.settingsFor({ ...base, env: [{ name: 'A', valueFrom: 'INLINE', value: '1' }, { name: 'HOME', valueFrom: 'HOST', value: '' }, { name: 'UNSET', valueFrom: 'HOST', value: '' }] });
  assert.deepEqual(s.env, { A: '1', HOME: '/home/proxy' });
  assert.equal(s.rootId, 'root');
  assert.equal(s.pluginName, 'default.p');
  assert.equal(Buffer.from(s.pluginConfig).toString(), '{}');
});
