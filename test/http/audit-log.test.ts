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
import { connect } from 'node:net';
import { once } from 'node:events';
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

  it('logs refused tokens once per 10 s, and the count of the others when the 10 s end, with no later refusal', async () => {
    const from = lines.length;
    for (let i = 0; i < 5; i++) assert.equal((await call(i % 2 ? 'GET' : 'POST', '/api/v1/devices', `guess-${i}`)).status, 401);
    const got = audit(from);
    assert.equal(got.length, 1, got.join('\n'));
    assert.match(got[0]!, /WARN {2}\[http\] API calls refused: no or a wrong operator token lastFrom=127\.0\.0\.1 path=\/api\/v1\/devices$/);
    // the other 4 are said when the 10 s of that line end (a timer: nothing else is asked)
    const refusedLines = (n: number) => eventually(async () => (audit(from).length >= n ? audit(from) : undefined), 30_000, `${n} refused-token lines`);
    assert.match((await refusedLines(2))[1]!, /WARN {2}\[http\] API calls refused: no or a wrong operator token lastFrom=127\.0\.0\.1 path=\/api\/v1\/devices suppressed=4$/);
    // a burst after it, within the 10 s of that count's line: all counted, said when they end
    const burst = await Promise.all(Array.from({ length: 200 }, (_, i) => call('GET', '/api/v1/jobs', `burst-${i}`)));
    assert.ok(burst.every((r) => r.status === 401));
    assert.match((await refusedLines(3))[2]!, /API calls refused: no or a wrong operator token lastFrom=127\.0\.0\.1 path=\/api\/v1\/jobs suppressed=200$/);
    assert.ok(!lines.some((l) => l.includes('guess-') || l.includes('burst-')), 'no presented token in the log');
    // and counted for alerts: every refusal, and the three changes of the test before (reads are not changes)
    const metrics = (await (await call('GET', '/api/v1/metrics')).json()) as { api: { changes: number; refusedTokens: number } };
    assert.deepEqual(metrics.api, { changes: 3, refusedTokens: 205, refusedConnections: 0 });
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

  it('logs a change whose client went away before its answer, and counts it', async () => {
    const before = ((await (await call('GET', '/api/v1/metrics')).json()) as { api: { changes: number } }).api.changes;
    const from = lines.length;
    // a provisioning line that gave up waiting (curl --max-time): every device is registered all the same
    const devices = Array.from({ length: 2000 }, (_, i) => ({ deviceId: `gone-${i}` }));
    await sendAndLeave(url, 'POST', '/api/v1/devices/bulk', server.operatorToken, JSON.stringify({ devices }));
    const got = await eventually(async () => (audit(from).length > 0 ? audit(from) : undefined), 30_000, 'the audit line');
    assert.equal(got.length, 1, got.join('\n'));
    assert.match(got[0]!, /INFO {2}\[http\] operator request method=POST path=\/api\/v1\/devices\/bulk status=201 clientGone=true ms=\d+ remote=127\.0\.0\.1 by=operator devices=2000$/);
    assert.equal((await call('GET', '/api/v1/devices/gone-1999')).status, 200, 'the change was made');
    const after = ((await (await call('GET', '/api/v1/metrics')).json()) as { api: { changes: number } }).api.changes;
    assert.equal(after, before + 1, 'counted in api.changes');
  });

  it('names what a change created or changed where its path does not', async () => {
    assert.equal((await call('POST', '/api/v1/artifacts?name=fw&version=5.0.0', undefined, new Uint8Array(Buffer.from('build')))).status, 201);
    const from = lines.length;
    const device = (await (await call('POST', '/api/v1/devices', undefined, JSON.stringify({ deviceId: 'named-1' }))).json()) as { secret: string };
    assert.equal((await call('POST', '/api/v1/devices/bulk', undefined, JSON.stringify({ devices: [{ deviceId: 'named-2' }, { deviceId: 'named-3' }] }))).status, 201);
    const job = (await (await call('POST', '/api/v1/jobs', undefined, JSON.stringify({ artifact: 'fw@5.0.0', targets: { devices: ['named-1'] } }))).json()) as { job: { jobId: string } };
    const deployed = (await (await call('POST', '/api/v1/deployments', undefined, JSON.stringify({ artifact: 'fw@5.0.0', devices: ['named-2', 'named-3'] }))).json()) as { job: { jobId: string } };
    assert.equal((await call('POST', '/api/v1/groups', undefined, JSON.stringify({ name: 'lab', devices: ['named-1'] }))).status, 201);
    assert.equal((await call('POST', '/api/v1/groups/lab/members', undefined, JSON.stringify({ add: ['named-2', 'named-3'], remove: ['named-1'] }))).status, 200);
    assert.equal((await call('POST', '/api/v1/artifacts/prune', undefined, JSON.stringify({ keep: 100, name: 'fw', dryRun: true }))).status, 200);
    const token = (await (await call('POST', '/api/v1/viewer-tokens', undefined, JSON.stringify({ name: 'kiosk' }))).json()) as { token: string };
    const rotated = (await (await call('POST', '/api/v1/keys/url/rotate', undefined, JSON.stringify({}))).json()) as { keys: { kid: string }[] };
    const got = audit(from);
    assert.equal(got.length, 9, got.join('\n'));
    assert.match(got[0]!, /method=POST path=\/api\/v1\/devices status=201 .* by=operator deviceId=named-1$/);
    assert.match(got[1]!, /method=POST path=\/api\/v1\/devices\/bulk status=201 .* by=operator devices=2$/);
    assert.match(got[2]!, new RegExp(`method=POST path=/api/v1/jobs status=201 .* by=operator jobId=${job.job.jobId} artifact=fw@5\\.0\\.0$`));
    assert.match(got[3]!, new RegExp(`method=POST path=/api/v1/deployments status=201 .* by=operator jobId=${deployed.job.jobId} artifact=fw@5\\.0\\.0 devices=2$`));
    assert.match(got[4]!, /method=POST path=\/api\/v1\/groups status=201 .* by=operator group=lab$/);
    assert.match(got[5]!, /method=POST path=\/api\/v1\/groups\/lab\/members status=200 .* by=operator added=2 removed=1$/);
    assert.match(got[6]!, /method=POST path=\/api\/v1\/artifacts\/prune status=200 .* by=operator name=fw keep=100 dryRun=true deleted=0$/);
    assert.match(got[7]!, /method=POST path=\/api\/v1\/viewer-tokens status=201 .* by=operator name=kiosk$/);
    assert.match(got[8]!, new RegExp(`method=POST path=/api/v1/keys/url/rotate status=200 .* by=operator kid=${rotated.keys[0]!.kid}$`));
    assert.ok(!lines.some((l) => l.includes(device.secret) || l.includes(token.token)), 'no device secret or token in the log');
  });

  it('logs an upload its client abandoned at info, not as a fault of the server', async () => {
    await abandonUpload(url, server.operatorToken, lines);
    // and the client's next request goes on a connection that works (the 413 above closed its own)
    assert.equal((await call('GET', '/api/v1/artifacts/fw/9.0.0')).status, 404, 'nothing stored');
  });
});

/** Sends a whole request over a raw socket and closes it at once, before any answer (a client that gave up waiting). */
async function sendAndLeave(url: string, method: string, route: string, token: string, body: string): Promise<void> {
  const socket = connect(Number(new URL(url).port), '127.0.0.1');
  await once(socket, 'connect');
  const head = `${method} ${route} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${token}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`;
  await new Promise<void>((resolve, reject) => socket.write(head + body, (err) => (err ? reject(err) : resolve())));
  socket.destroy();
}

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
