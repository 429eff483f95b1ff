/**
 * docs/configuration.md is generated from the validation schemas (config/docs.ts); this keeps it in
 * sync. Regenerate with `node --import tsx config/docs.ts > docs/configuration.md`
 * (or `UPDATE_GOLDEN=1 npm test -- config-docs`).
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { renderConfigurationDoc, statusCounts } from '../../config/docs.ts';
import { KINDS } from '../../config/kinds/index.ts';

const file = fileURLToPath(new URL('../../docs/configuration.md', import.meta.url));

test('docs/configuration.md matches the schemas', () => {
  const want = renderConfigurationDoc();
  if (process.env.UPDATE_GOLDEN) writeFileSync(file, want);
  assert.equal(readFileSync(file, 'utf8'), want, 'docs/configuration.md is stale: regenerate it with node --import tsx config/docs.ts');
});

test('every kind and the fields this work added are documented with a status', () => {
  const doc = renderConfigurationDoc();
  for (const kind of KINDS.keys()) assert.match(doc, new RegExp(`^## ${kind}$`, 'm'));
  for (const row of [
    /\| `extensionProviders\[\]\.envoyExtAuthzHttp\.headersToUpstreamOnAllow` \| list of string \| enforced \|/,
    /\| `rules\[\]\.when\[\]\.key` \| string \| enforced \|/,
    /\| `http_service\.authorization_response\.allowed_client_headers\.patterns\[\]\.safe_regex\.regex` \| string \| enforced \|/,
    /\| `token_bucket\.fill_interval` \| duration \| enforced \|/,
    /\| `http\[\]\.delegate` \| object \| enforced \| merged as pilot merges delegates \|/,
    /\| `trafficPolicy\.tunnel` \| object \| warned \|/,
    /\| `servers\[\]\.tls\.caCrl` \| string \| warned \|/,
    /\| `http\[\]\.retries\.retryIgnorePreviousHosts` \| bool \| warned \|/,
    /\| `with_request_body` \| object \| partly \|/,
  ]) assert.match(doc, row);
});

test('the document states the field counts by status, and they add up', () => {
  const c = statusCounts();
  assert.ok(c.enforced > 0 && c.warned > 0 && c.rejected > 0, JSON.stringify(c));
  assert.match(renderConfigurationDoc(), new RegExp(`Istio fields by status: ${c.enforced + c.partly} enforced \\(${c.partly} of them partly\\), ${c.warned} warned, ${c.rejected} rejected\\.`));
});
