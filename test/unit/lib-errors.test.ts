/**
 * lib/errors.ts: the one error-registry helper every package uses (gateway, authservice,
 * controlplane, certs, config).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AUTHSERVICE_ERRORS, AuthserviceError } from '../../authservice/errors.ts';
import { CertError, CertErrorCodes, isCertError } from '../../certs/errors.ts';
import { ConfigErrorCodes } from '../../config/errors.ts';
import { ControlPlaneError, ControlPlaneErrors, isControlPlaneError } from '../../controlplane/errors.ts';
import { ERR } from '../../gateway/errors.ts';
import { defineErrors } from '../../lib/errors.ts';

test('defineErrors: codes, statuses, default messages, lookup by key or code, guards', () => {
  const E = defineErrors('TestError', {
    NOT_FOUND: { code: 'PORTICO_ERR_TEST_NOT_FOUND', status: 404, message: 'nothing here' },
    PORTICO_ERR_TEST_KEYED: { status: 400 },
    PLAIN: { code: 'PORTICO_ERR_TEST_PLAIN' },
  });
  assert.equal(E.codes.NOT_FOUND, 'PORTICO_ERR_TEST_NOT_FOUND');
  assert.equal(E.codes.PORTICO_ERR_TEST_KEYED, 'PORTICO_ERR_TEST_KEYED', 'code defaults to the key');
  const cause = new Error('low level');
  const a = new E.Error('NOT_FOUND', undefined, { cause });
  assert.ok(a instanceof Error);
  assert.equal(a.name, 'TestError');
  assert.equal(a.code, 'PORTICO_ERR_TEST_NOT_FOUND');
  assert.equal(a.status, 404);
  assert.equal(a.message, 'nothing here');
  assert.equal(a.cause, cause);
  const b = new E.Error('PORTICO_ERR_TEST_PLAIN', 'detail');
  assert.equal(b.key, 'PLAIN', 'constructible by code as well as by key');
  assert.equal(b.status, 500);
  assert.equal(b.message, 'detail');
  assert.equal(new E.Error('PLAIN').message, 'PORTICO_ERR_TEST_PLAIN');
  assert.ok(E.is(a) && E.is(a, 'NOT_FOUND') && E.is(a, 'PORTICO_ERR_TEST_NOT_FOUND'));
  assert.ok(!E.is(a, 'PLAIN') && !E.is(new Error('x')));
  assert.ok(Object.isFrozen(E.defs) && Object.isFrozen(E.defs.NOT_FOUND) && Object.isFrozen(E.codes));
  assert.throws(() => defineErrors('Dup', { A: { code: 'X' }, B: { code: 'X' } }), /defined twice/);
});

test('every package registry is built with it and keeps its contract', () => {
  const cert = new CertError(CertErrorCodes.BAD_PEM, 'ca.pem: not PEM');
  assert.equal(cert.name, 'CertError');
  assert.equal(cert.code, 'PORTICO_ERR_CERT_BAD_PEM');
  assert.ok(isCertError(cert, 'PORTICO_ERR_CERT_BAD_PEM') && !isCertError(cert, 'PORTICO_ERR_CERT_EXISTS'));
  const cp = new ControlPlaneError('NOT_READY', 'no snapshot yet');
  assert.equal(cp.name, 'ControlPlaneError');
  assert.equal(cp.code, ControlPlaneErrors.NOT_READY.code);
  assert.equal(cp.status, 503);
  assert.ok(isControlPlaneError(cp, 'PORTICO_ERR_CP_NOT_READY'));
  const au = new AuthserviceError('PORTICO_ERR_FORBIDDEN_GROUP');
  assert.equal(au.name, 'AuthserviceError');
  assert.equal(au.status, 403);
  assert.equal(au.message, AUTHSERVICE_ERRORS.PORTICO_ERR_FORBIDDEN_GROUP.message);
  assert.equal(ERR.NO_ROUTE.code, 'PORTICO_ERR_NO_ROUTE');
  assert.equal(ERR.NO_ROUTE.flag, 'NR');
  assert.ok(Object.isFrozen(ERR.NO_ROUTE));
  assert.equal(ConfigErrorCodes.BAD_REGEX, 'PORTICO_CFG_BAD_REGEX');
});
