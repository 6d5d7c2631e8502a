/**
 * `POST /api/v1/devices/{id}/certificate` reads its body whatever its content type (readJson in
 * src/http/respond.ts, as every route does): QA saw a body not labelled JSON dropped and a
 * private key made on the server instead, so `{"csr": ...}` sent with curl -d (form-urlencoded)
 * had a key made and sent back where the device meant to keep its own; `{"CSR": ...}` as
 * text/plain did too, and a 2 MB text/plain body was taken past the 16 KiB limit. No body (or
 * `{}`) still has the key made here, as docs/api.md says. Real server, real HTTP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { forgeCsr } from '../helpers/csr.ts';

/** A CSR for a fresh RSA key naming `cn` (PEM). */
const csrFor = (cn: string): string => forgeCsr(cn).csr;

describe('the body of POST /api/v1/devices/{id}/certificate', () => {
  let ts: TestServer;
  /** Posts `body` labelled `contentType` (none: no header); the status, the answer's keys, the error message. */
  const post = async (body: string | undefined, contentType?: string): Promise<{ status: number; keys: string[]; message?: string }> => {
    const res = await fetch(`${ts.httpUrl}/api/v1/devices/cb-1/certificate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ts.token}`, ...(contentType ? { 'content-type': contentType } : {}) },
      ...(body !== undefined ? { body } : {}),
    });
    const json = (await res.json()) as Record<string, unknown> & { error?: { message: string } };
    return { status: res.status, keys: Object.keys(json).sort(), ...(json.error ? { message: json.error.message } : {}) };
  };

  before(async () => {
    ts = await startTestServer();
    await registerDevice(ts, 'cb-1');
  });
  after(() => ts.close());

  it('certifies the CSR of a body not labelled JSON (curl -d, text/plain): no private key is made', async () => {
    const csr = JSON.stringify({ csr: csrFor('cb-1') });
    for (const type of ['application/x-www-form-urlencoded', 'text/plain', undefined]) {
      assert.deepEqual(await post(csr, type), { status: 201, keys: ['ca', 'certificate', 'deviceId'] }, String(type));
    }
  });

  it('refuses a misspelt csr, or a body that is no JSON object, whatever its content type', async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', undefined]) {
      assert.deepEqual(await post('{"CSR":"x"}', type), { status: 400, keys: ['error'], message: 'unknown field "CSR" (fields: csr)' }, String(type));
      assert.deepEqual(await post('csr=x', type), { status: 400, keys: ['error'], message: 'request body is not valid JSON' }, String(type));
    }
  });

  it('refuses a body over 16 KiB whatever its content type', async () => {
    const big = JSON.stringify({ csr: 'x'.repeat(2_000_000) });
    for (const type of ['text/plain', 'application/json']) {
      assert.deepEqual(await post(big, type), { status: 413, keys: ['error'], message: 'request body exceeds 16384 bytes' }, type);
    }
  });

  it('makes the key here without a body, or with {}', async () => {
    const made = { status: 201, keys: ['ca', 'certificate', 'deviceId', 'privateKey'] };
    assert.deepEqual(await post(undefined), made);
    assert.deepEqual(await post('', 'application/json'), made);
    assert.deepEqual(await post('{}', 'application/json'), made);
    assert.deepEqual(await post('{}', 'text/plain'), made);
  });
});
