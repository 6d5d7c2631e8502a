/** The operator's audit trail in the server's log (and its counters in the metrics): every change asked of the API, with its answer, and refused tokens, over real HTTP. */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load-config.ts';
import { UpdraftServer } from '../../src/server/updraft-server.ts';
import { createLogger } from '../../src/util/logger.ts';
import { request } from 'node:http';
import { eventually } from '../helpers/cli.ts';
import { startTestS3, type TestS3 } from '../helpers/s3.ts';

describe('audit log of operator requests', () => {
  const lines: string[] = [];
  let dir: string;
  let server: UpdraftServer;
  let url: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-audit-'));
    const config = loadConfig({ flags: { 'data-dir': dir, 'mqtt-port': 0, 'mqtt-tls-port': 0, 'http-port': 0, 'mqtt-host': '127.0.0.1', 'http-host': '127.0.0.1' } });
    server = new UpdraftServer(config, { logger: createLogger({ level: 'info', write: (l) => lines.push(l) }) });
    await server.start();
    url = `http://127.0.0.1:${server.http.port}`;
  });
  after(async () => {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });
  const call = (method: string, route: string, token = server.operatorToken, body?: BodyInit) => fetch(url + route, { method, headers: { authorization: `Bearer ${token}` }, ...(body ? { body } : {}) });
  /** The audit lines written since `from`. */
  const audit = (from: number) => lines.slice(from).filter((l) => /operator request|API calls refused/.test(l));

  it('logs each change with its answer, not the reads, and never a token', async () => {
    const from = lines.length;
    assert.equal((await call('POST', '/api/v1/artifacts?name=fw&version=2.0.0', undefined, new Uint8Array(Buffer.from('build')))).status, 201);
    assert.equal((await call('GET', '/api/v1/artifacts')).status, 200);
    // a dry run reads, though by POST: not a change
    assert.equal((await call('POST', '/api/v1/jobs/preview', undefined, JSON.stringify({ artifact: 'fw@2.0.0', targets: { devices: ['nobody'] } }))).status, 404);
    assert.equal((await call('DELETE', '/api/v1/artifacts/fw/9.9.9')).status, 404);
    assert.equal((await call('DELETE', '/api/v1/artifacts/fw/2.0.0')).status, 200);
    const got = audit(from);
    assert.equal(got.length, 3, got.join('\n'));
    assert.match(got[0]!, /INFO {2}\[http\] operator request method=POST path="\/api\/v1\/artifacts\?name=fw&version=2\.0\.0" status=201 ms=\d+ remote=127\.0\.0\.1 by=operator$/);
    assert.match(got[1]!, /method=DELETE path=\/api\/v1\/artifacts\/fw\/9\.9\.9 status=404 /);
    assert.match(got[2]!, /method=DELETE path=\/api\/v1\/artifacts\/fw\/2\.0\.0 status=200 /);
    assert.ok(!lines.some((l) => l.includes(server.operatorToken)), 'no token in the log');
  });

  it('logs refused tokens once, with their count, however many come at once', async () => {
    const from = lines.length;
    for (let i = 0; i < 5; i++) assert.equal((await call(i % 2 ? 'GET' : 'POST', '/api/v1/devices', `guess-${i}`)).status, 401);
    const got = audit(from);
    assert.equal(got.length, 1, got.join('\n'));
    assert.match(got[0]!, /WARN {2}\[http\] API calls refused: no or a wrong operator token refused=1 lastFrom=127\.0\.0\.1 path=\/api\/v1\/devices$/);
    assert.ok(!lines.some((l) => l.includes('guess-')), 'no presented token in the log');
    // and counted for alerts: every refusal, and the three changes of the test before (reads are not changes)
    const metrics = (await (await call('GET', '/api/v1/metrics')).json()) as { api: { changes: number; refusedTokens: number } };
    assert.deepEqual(metrics.api, { changes: 3, refusedTokens: 5 });
  });

  it('names the viewer token that asked for a change it may not make, and never the token', async () => {
    const added = (await (await call('POST', '/api/v1/viewer-tokens', undefined, JSON.stringify({ name: 'wall-screen' }))).json()) as { token: string };
    const from = lines.length;
    assert.equal((await call('POST', '/api/v1/artifacts?name=fw&version=3.0.0', added.token, new Uint8Array(Buffer.from('build')))).status, 403);
    const got = audit(from);
    assert.equal(got.length, 1, got.join('\n'));
    assert.match(got[0]!, /INFO {2}\[http\] operator request method=POST path="\/api\/v1\/artifacts\?name=fw&version=3\.0\.0" status=403 ms=\d+ remote=127\.0\.0\.1 by="viewer wall-screen"$/);
    assert.ok(!lines.some((l) => l.includes(added.token)), 'no viewer token in the log');
  });

  it('names the person behind a named operator token, for each change they make', async () => {
    const alice = (await (await call('POST', '/api/v1/operator-tokens', undefined, JSON.stringify({ name: 'alice' }))).json()) as { token: string };
    const from = lines.length;
    assert.equal((await call('POST', '/api/v1/artifacts?name=fw&version=4.0.0', alice.token, new Uint8Array(Buffer.from('build')))).status, 201);
    assert.equal((await call('DELETE', '/api/v1/artifacts/fw/4.0.0')).status, 200);
    const got = audit(from);
    assert.equal(got.length, 2, got.join('\n'));
    assert.match(got[0]!, /operator request method=POST path="\/api\/v1\/artifacts\?name=fw&version=4\.0\.0" status=201 ms=\d+ remote=127\.0\.0\.1 by="operator alice"$/);
    assert.match(got[1]!, /method=DELETE path=\/api\/v1\/artifacts\/fw\/4\.0\.0 status=200 .* by=operator$/);
    assert.ok(!lines.some((l) => l.includes(alice.token)), 'no operator token in the log');
  });

  it('logs a change refused for its size, with the caller, and serves on (the request was cut before its answer was logged)', async () => {
    const from = lines.length;
    const devices = Array.from({ length: 90_000 }, (_, i) => `dev-${String(i).padStart(6, '0')}`);
    const big = await call('POST', '/api/v1/jobs', undefined, JSON.stringify({ artifact: 'fw@1.0.0', targets: { devices } }));
    assert.equal(big.status, 413);
    assert.match(((await big.json()) as { error: { message: string } }).error.message, /^request body exceeds 1048576 bytes$/);
    // the audit line is written when the answer is finished
    const got = await eventually(async () => (audit(from).length > 0 ? audit(from) : undefined), 10_000, 'the audit line');
    assert.equal(got.length, 1, got.join('\n'));
    assert.match(got[0]!, /method=POST path=\/api\/v1\/jobs status=413 ms=\d+ remote=127\.0\.0\.1 by=operator$/);
    assert.equal((await call('GET', '/api/v1/jobs')).status, 200, 'the server still serves');
  });

  it('logs an upload its client abandoned at info, not as a fault of the server', async () => {
    await abandonUpload(url, server.operatorToken, lines);
    // and the client's next request goes on a connection that works (the 413 above closed its own)
    assert.equal((await call('GET', '/api/v1/artifacts/fw/9.0.0')).status, 404, 'nothing stored');
  });
});

/** Sends part of an upload, goes away, and checks the server's log says so at info, not as a fault. */
async function abandonUpload(url: string, token: string, lines: string[]): Promise<void> {
  const from = lines.length;
  const req = request(`${url}/api/v1/artifacts?name=fw&version=9.0.0`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-length': 1_000_000 } });
  req.on('error', () => undefined);
  req.write(Buffer.alloc(100_000));
  await new Promise((r) => setTimeout(r, 100));
  req.destroy(); // the client goes away with most of the body unsent
  const line = await eventually(async () => lines.slice(from).find((l) => /request abandoned by its client|request failed/.test(l)), 10_000, 'the log line');
  assert.match(line, /INFO {2}\[http\] request abandoned by its client method=POST path=\/api\/v1\/artifacts$/);
}

describe('an upload abandoned by its client, with the builds in S3', () => {
  const lines: string[] = [];
  let dir: string;
  let s3: TestS3;
  let server: UpdraftServer;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-audit-s3-'));
    s3 = await startTestS3();
    const blob = `s3://audit?endpoint=${encodeURIComponent(s3.endpoint)}&pathStyle=true&create=true&region=us-east-1`;
    // s3rver's own keys, whatever the machine has (real AWS keys would be refused by it)
    saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    process.env.AWS_ACCESS_KEY_ID = s3.credentials.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = s3.credentials.secretAccessKey;
    const config = loadConfig({ flags: { 'data-dir': dir, blob, 'mqtt-port': 0, 'mqtt-tls-port': 0, 'http-port': 0, 'mqtt-host': '127.0.0.1', 'http-host': '127.0.0.1' } });
    server = new UpdraftServer(config, { logger: createLogger({ level: 'info', write: (l) => lines.push(l) }) });
    await server.start();
  });
  let saved: { id: string | undefined; secret: string | undefined } = { id: undefined, secret: undefined };
  after(async () => {
    await server?.stop();
    await s3?.stop();
    for (const [name, value] of [['AWS_ACCESS_KEY_ID', saved.id], ['AWS_SECRET_ACCESS_KEY', saved.secret]] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    await rm(dir, { recursive: true, force: true });
  });

  // the S3 store wraps the request's own error in "cannot store the artifact in s3://...", which was logged as an ERROR
  it('is logged at info, not as a fault of the server', () => abandonUpload(`http://127.0.0.1:${server.http.port}`, server.operatorToken, lines));
});
