import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { before, test, type TestContext } from 'node:test';
import tls from 'node:tls';
import { createRootCa, issueServerCert, type CaPair, type CertKeyPair } from '../../certs/index.ts';

let ca: CaPair;
let otherCa: CaPair;
let server: CertKeyPair;

before(() => {
  ca = createRootCa({ commonName: 'example.com', organization: 'example Inc.' });
  otherCa = createRootCa({ commonName: 'example.com', organization: 'example Inc.' }); // same name, different key
  server = issueServerCert(ca, { commonName: 'httpbin.example.com' });
});

async function startServer(t: TestContext, pair: CertKeyPair): Promise<number> {
  const srv = tls.createServer({ cert: pair.certPem, key: pair.keyPem }, (socket) => socket.end('hello'));
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  t.after(() => srv.close());
  return (srv.address() as AddressInfo).port;
}

/** Connects trusting only `trust`; resolves with what the server sent, rejects with the TLS error. */
function fetchOverTls(port: number, servername: string, trust: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, servername, ca: trust, rejectUnauthorized: true });
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (data += chunk));
    socket.on('end', () => resolve(data));
    socket.on('error', reject);
  });
}

test('a client trusting only the CA accepts the server for its host name', async (t) => {
  const port = await startServer(t, server);
  assert.equal(await fetchOverTls(port, 'httpbin.example.com', ca.certPem), 'hello');
});

test('the same client rejects the certificate for another server name', async (t) => {
  const port = await startServer(t, server);
  await assert.rejects(fetchOverTls(port, 'bookinfo.example.com', ca.certPem), {
    code: 'ERR_TLS_CERT_ALTNAME_INVALID',
  });
});

test('a client trusting a different CA with the same name rejects the chain', async (t) => {
  const port = await startServer(t, server);
  await assert.rejects(fetchOverTls(port, 'httpbin.example.com', otherCa.certPem), (err: NodeJS.ErrnoException) => {
    assert.match(String(err.code), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|CERT_SIGNATURE_FAILURE/);
    return true;
  });
});
