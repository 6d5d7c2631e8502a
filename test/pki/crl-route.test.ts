/**
 * `GET /api/v1/broker/crl` on real servers (pki/revocation-list.ts through the route): the
 * CRL kept while the revocations are unchanged is given back without reading a CA key.
 */
import assert from 'node:assert/strict';
import { rename } from 'node:fs/promises';
import { after, describe, it } from 'node:test';
import { caPaths } from '../../src/pki/certificate-authority.ts';
import { Scratch } from '../helpers/scratch.ts';
import { apiJson, registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

const scratch = new Scratch();
after(() => scratch.release());

/** Registers `deviceId` and has the server issue it a certificate (recorded, so revocable). */
async function enrol(ts: TestServer, deviceId: string): Promise<void> {
  await registerDevice(ts, deviceId);
  const r = await apiJson(ts, 'POST', `/api/v1/devices/${deviceId}/certificate`);
  assert.equal(r.status, 201, `certificate of ${deviceId}: ${JSON.stringify(r.body)}`);
}

async function remove(ts: TestServer, deviceId: string): Promise<void> {
  const r = await apiJson(ts, 'DELETE', `/api/v1/devices/${deviceId}`);
  assert.ok(r.status === 200 || r.status === 204, `delete ${deviceId}: ${r.status} ${JSON.stringify(r.body)}`);
}

describe('GET /api/v1/broker/crl', () => {
  it('gives back the kept CRL while the revocations are unchanged without reading the CA key', async () => {
    const ts = await startTestServer();
    scratch.onRelease(() => ts.close());
    await enrol(ts, 'k-gone');
    await remove(ts, 'k-gone');
    const first = await apiJson(ts, 'GET', '/api/v1/broker/crl');
    assert.equal(first.status, 200, `the CRL is made: ${JSON.stringify(first.body)}`);
    assert.equal(first.body.revoked, 1, 'listing the deleted device');
    const key = caPaths(ts.dataDir).key;
    // the key file gone for a moment (a restore, a permission change): nothing to sign with,
    // and nothing needs signing
    await rename(key, `${key}.aside`);
    try {
      const again = await apiJson(ts, 'GET', '/api/v1/broker/crl');
      assert.equal(again.status, 200, `the kept CRL is given without the key: ${JSON.stringify(again.body)}`);
      assert.equal(again.body.crl, first.body.crl, 'the same CRL while the revocations are the same');
      assert.equal(again.body.digest, first.body.digest, 'the same digest');
    } finally {
      await rename(`${key}.aside`, key);
    }
    // a change signs a new list (the key back)
    await enrol(ts, 'k-next');
    await remove(ts, 'k-next');
    const changed = await apiJson(ts, 'GET', '/api/v1/broker/crl');
    assert.equal(changed.status, 200, `a new CRL is made: ${JSON.stringify(changed.body)}`);
    assert.equal(changed.body.revoked, 2, 'listing both deleted devices');
    assert.notEqual(changed.body.crl, first.body.crl, 'a new list');
  });
});
