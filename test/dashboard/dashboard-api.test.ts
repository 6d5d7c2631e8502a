/**
 * The server side of the dashboard: the static files (content types, cache headers, no
 * path traversal, client routes, a clear page when the bundle is missing) and the
 * aggregation endpoints its pages read, against a real server and a small simulated fleet.
 */
import assert from 'node:assert/strict';
import { createPublicKey, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiClient } from '../../src/cli/api-client.ts';
import { searchDevices } from '../../src/fleet/device-search.ts';
import { dashboardRoute, resolveInside } from '../../src/http/dashboard-route.ts';
import { HttpServer } from '../../src/http/http-server.ts';
import { Router } from '../../src/http/router.ts';
import { FleetSimulator } from '../../src/sim/fleet-simulator.ts';
import { registerFleet } from '../../src/sim/register-fleet.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { propertySchema, responseSchema, undocumentedKeys, type OpenApiDoc } from '../helpers/openapi.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

describe('dashboard static files', () => {
  let root: string;
  let http: HttpServer;
  let base: string;
  let bare: HttpServer;
  let bareBase: string;

  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-dash-'));
    const dist = path.join(root, 'dist');
    await mkdir(path.join(dist, 'assets'), { recursive: true });
    await writeFile(path.join(dist, 'index.html'), '<!doctype html><title>dash</title>');
    await writeFile(path.join(dist, 'assets', 'index-AbC123.js'), 'console.log(1)');
    await writeFile(path.join(dist, 'assets', 'index-AbC123.css'), 'body{}');
    await writeFile(path.join(root, 'secret.txt'), 'outside the bundle');
    const start = async (dir: string) => {
      const router = new Router().setFallback(dashboardRoute({ dir }));
      router.add('GET', '/api/v1/thing', async ({ res }) => void res.end('api'));
      const server = new HttpServer({ port: 0, host: '127.0.0.1', router, operatorToken: 't0ken', logger: silentLogger });
      await server.start();
      return server;
    };
    http = await start(dist);
    base = `http://127.0.0.1:${http.port}`;
    bare = await start(path.join(root, 'empty'));
    bareBase = `http://127.0.0.1:${bare.port}`;
  });

  after(async () => {
    await http.stop();
    await bare.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('serves index.html at / and at every client route, never cached, with a strict CSP', async () => {
    for (const p of ['/', '/jobs/5d0c', '/devices/dev-1']) {
      const res = await fetch(base + p);
      assert.equal(res.status, 200, p);
      assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
      assert.equal(res.headers.get('cache-control'), 'no-cache');
      assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(await res.text(), '<!doctype html><title>dash</title>');
    }
    // ids hold dots (device ids allow _ . : -): a page opened by its URL (a reload, a bookmark,
    // a shared link) is a client route, whatever its last segment's "extension"
    for (const p of ['/devices/evil.dev-1', '/devices/gw%3A1.2', '/devices/a.js', '/jobs/x.y', '/devices/dev.1?tab=jobs']) {
      const res = await fetch(base + p);
      assert.equal(res.status, 200, p);
      assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8', p);
      assert.equal(await res.text(), '<!doctype html><title>dash</title>', p);
    }
    const head = await fetch(base + '/', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
  });

  it('serves hashed assets with their types, cached for a year', async () => {
    const js = await fetch(base + '/assets/index-AbC123.js');
    assert.equal(js.status, 200);
    assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.equal(js.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    assert.equal(await js.text(), 'console.log(1)');
    const css = await fetch(base + '/assets/index-AbC123.css');
    assert.equal(css.headers.get('content-type'), 'text/css; charset=utf-8');
    // an asset of an older build is a 404, not index.html served as JavaScript
    const gone = await fetch(base + '/assets/index-Old999.js');
    assert.equal(gone.status, 404);
    assert.equal(((await gone.json()) as { error: { code: string } }).error.code, 'NOT_FOUND');
    // and a file asked for at the top that the build does not have: no page either
    for (const p of ['/assets/x', '/assets/sub/x.css', '/favicon.ico', '/robots.txt']) assert.equal((await fetch(base + p)).status, 404, p);
  });

  it('never serves a file outside the bundle', async () => {
    for (const p of ['/..%2fsecret.txt', '/assets/..%2f..%2fsecret.txt', '/%2e%2e/secret.txt', '/assets/%2e%2e%2f%2e%2e%2fsecret.txt', '/..%5csecret.txt', '/assets/x%00.js']) {
      const res = await fetch(base + p);
      const body = await res.text();
      assert.ok(!body.includes('outside the bundle'), p);
      assert.notEqual(res.headers.get('content-type'), 'text/plain; charset=utf-8', p);
    }
    const dir = '/srv/dist';
    assert.equal(resolveInside(dir, '/assets/a.js'), '/srv/dist/assets/a.js');
    assert.equal(resolveInside(dir, '/../../etc/passwd'), '/srv/dist/etc/passwd');
    assert.equal(resolveInside(dir, '/%2e%2e%2f%2e%2e%2fetc/passwd'), '/srv/dist/etc/passwd');
    assert.equal(resolveInside(dir, '/a%00b'), undefined);
    assert.equal(resolveInside(dir, '/%E0%A4%A'), undefined);
    assert.equal(resolveInside(dir, '/'), undefined);
  });

  it('keeps JSON errors for the API and downloads, and answers only GET and HEAD', async () => {
    const api = await fetch(base + '/api/v1/nothing', { headers: { authorization: 'Bearer t0ken' } });
    assert.equal(api.status, 404);
    assert.match(((await api.json()) as { error: { message: string } }).error.message, /no route for GET \/api\/v1\/nothing/);
    const dl = await fetch(base + '/v1/download/x');
    assert.equal(dl.status, 404);
    assert.equal(dl.headers.get('content-type'), 'application/json; charset=utf-8');
    const post = await fetch(base + '/jobs', { method: 'POST' });
    assert.equal(post.status, 404);
  });

  it('explains how to build the dashboard when the bundle is missing', async () => {
    const res = await fetch(bareBase + '/');
    assert.equal(res.status, 503);
    assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.match(await res.text(), /npm run build:dashboard/);
    // the API is not affected
    const api = await fetch(bareBase + '/api/v1/thing', { headers: { authorization: 'Bearer t0ken' } });
    assert.equal(await api.text(), 'api');
  });
});

describe('dashboard aggregation endpoints', () => {
  let ts: TestServer;
  let api: ApiClient;
  let sim: FleetSimulator;
  let jobId: string;

  before(async () => {
    ts = await startTestServer();
    api = new ApiClient({ server: ts.httpUrl, token: ts.token });
    await api.call('POST', '/api/v1/artifacts?name=fw&version=2.0.0', randomBytes(2048));
    await api.call('POST', '/api/v1/devices/bulk', { devices: Array.from({ length: 6 }, (_, i) => ({ deviceId: `api-${i + 1}`, tags: i % 2 === 0 ? ['eu'] : ['us'] })) });
    // the first four run (and get the update); the other two never connect
    const secrets = await Promise.all([1, 2, 3, 4].map(async (n) => ({ deviceId: `api-${n}`, secret: (await api.call<{ secret: string }>('POST', `/api/v1/devices/api-${n}/rotate-secret`)).secret })));
    sim = new FleetSimulator({ brokerUrl: ts.mqttUrl, trust: { signingPublicKey: createPublicKey(ts.server.security.signingKey.publicKeyPem) }, devices: secrets, mode: 'connected', installMs: 5, seed: 2 });
    await sim.start();
    await api.call('POST', '/api/v1/groups', { name: 'pair', devices: ['api-1', 'api-2'] });
    const r = await api.call<{ job: { jobId: string } }>('POST', '/api/v1/deployments', { devices: ['api-1', 'api-2', 'api-3', 'api-4'], artifact: 'fw@2.0.0' });
    jobId = r.job.jobId;
    await sim.whenFinished(4);
    await eventually(async () => ((await api.call<{ job: { status: string } }>('GET', `/api/v1/jobs/${jobId}?limit=1`)).job.status === 'COMPLETED' ? true : undefined), 30_000, 'job completed');
  });

  after(async () => {
    await sim?.stop();
    await ts?.close();
  });

  it('GET /api/v1/fleet/overview: counts, versions, jobs', async () => {
    const o = await api.call<{ devices: Record<string, number>; versions: { version: string; devices: number }[]; jobs: Record<string, number>; failing: unknown[] }>('GET', '/api/v1/fleet/overview');
    assert.equal(o.devices.registered, 6);
    assert.equal(o.devices.online, 4);
    assert.deepEqual(o.versions.map((v) => [v.version, v.devices]), [['2.0.0', 4]]);
    assert.equal(o.jobs.COMPLETED, 1);
    assert.deepEqual(o.failing, []);
  });

  it('GET /api/v1/fleet/search: filters and pages on the server', async () => {
    type P = { items: { deviceId: string; online: boolean; reported: { version: string } | null }[]; next?: string; scanned: number };
    const ids = async (q: string) => (await api.call<P>('GET', `/api/v1/fleet/search?${q}`)).items.map((d) => d.deviceId);
    assert.deepEqual(await ids('tag=eu'), ['api-1', 'api-3', 'api-5']);
    assert.deepEqual(await ids('version=2.0.0'), ['api-1', 'api-2', 'api-3', 'api-4']);
    assert.deepEqual(await ids('state=offline'), ['api-5', 'api-6']);
    assert.deepEqual(await ids('state=online&tag=us'), ['api-2', 'api-4']);
    assert.deepEqual(await ids('group=pair'), ['api-1', 'api-2']);
    assert.deepEqual(await ids('id=PI-6'), ['api-6']);
    const first = await api.call<P>('GET', '/api/v1/fleet/search?limit=4');
    assert.deepEqual(first.items.map((d) => d.deviceId), ['api-1', 'api-2', 'api-3', 'api-4']);
    assert.equal(first.next, 'api-4');
    const second = await api.call<P>('GET', `/api/v1/fleet/search?limit=4&after=${first.next}`);
    assert.deepEqual(second.items.map((d) => d.deviceId), ['api-5', 'api-6']);
    assert.equal(second.next, undefined);
    await assert.rejects(api.call('GET', '/api/v1/fleet/search?state=sleepy'), /state must be one of online, offline, updating, failed, revoked/);
    await assert.rejects(api.call('GET', '/api/v1/fleet/search?group=nope'), /group nope does not exist/);
  });

  it('a search reads a bounded number of devices per call and resumes with the cursor', async () => {
    await registerFleet(api, 'bulk-', 250);
    const deps = { store: ts.server.store, groups: ts.server.rollouts.groups, isOnline: () => false, scanBudget: 100 };
    let after: string | undefined;
    let calls = 0;
    let scanned = 0;
    const found: string[] = [];
    do {
      const page = await searchDevices(deps, { id: 'bulk-250', limit: 10, ...(after ? { after } : {}) });
      calls++;
      scanned += page.scanned;
      assert.ok(page.scanned <= 200, `one call read ${page.scanned} devices`);
      found.push(...page.items.map((d) => d.deviceId));
      after = page.next;
    } while (after);
    assert.deepEqual(found, ['bulk-250']);
    assert.ok(calls >= 2, 'the scan was split');
    assert.equal(scanned, 256);
  });

  it('a static group is searched through its members: found in one call however few they are in the fleet', async () => {
    const fleet = await registerFleet(api, 'sparse-', 300);
    const members = [fleet[7]!, fleet[150]!, fleet[299]!].map((d) => d.deviceId);
    await api.call('POST', '/api/v1/groups', { name: 'sparse', devices: members });
    // a budget a registry scan would spend long before reaching the third member
    const deps = { store: ts.server.store, groups: ts.server.rollouts.groups, isOnline: () => false, scanBudget: 100 };
    const page = await searchDevices(deps, { group: 'sparse', limit: 10 });
    assert.deepEqual(page.items.map((d) => d.deviceId), members);
    assert.equal(page.next, undefined);
    assert.equal(page.scanned, 3, 'only the members were read');
    // paged through the member list with the same cursor as the registry's
    const first = await searchDevices(deps, { group: 'sparse', limit: 2 });
    assert.deepEqual(first.items.map((d) => d.deviceId), members.slice(0, 2));
    const rest = await searchDevices(deps, { group: 'sparse', limit: 2, after: first.next! });
    assert.deepEqual(rest.items.map((d) => d.deviceId), members.slice(2));
    assert.equal(rest.next, undefined);
    // the other filters still apply to the members
    assert.deepEqual((await searchDevices(deps, { group: 'sparse', id: members[1]!.slice(-3), limit: 10 })).items.map((d) => d.deviceId), [members[1]]);
  });

  it('GET /api/v1/devices/:id/events: the device\'s steps from durable records and its presence', async () => {
    const r = await api.call<{ items: { kind: string; status: string; jobId?: string }[] }>('GET', '/api/v1/devices/api-1/events');
    const kinds = r.items.map((e) => `${e.kind}:${e.status}`);
    for (const k of ['queued:QUEUED', 'sent:COMMAND SENT', 'state:SUCCEEDED', 'presence:ONLINE']) assert.ok(kinds.includes(k), `${k} in ${kinds.join(', ')}`);
    assert.equal(r.items[r.items.length - 1]!.kind === 'presence' || r.items.some((e) => e.jobId === jobId), true);
    await assert.rejects(api.call('GET', '/api/v1/devices/ghost/events'), /not registered/);
  });

  it('GET /api/v1/jobs/:id/timeline: finished executions per time bucket', async () => {
    const t = await api.call<{ buckets: { succeeded: number; failed: number }[]; from: number; to: number }>('GET', `/api/v1/jobs/${jobId}/timeline?buckets=10`);
    assert.equal(t.buckets.length, 10);
    assert.equal(t.buckets.reduce((n, b) => n + b.succeeded, 0), 4);
    assert.ok(t.to > t.from);
    await assert.rejects(api.call('GET', `/api/v1/jobs/${jobId}/timeline?buckets=0`), /buckets must be an integer from 1 to 500/);
  });

  it('GET /api/v1/events/recent: the last events, filterable', async () => {
    const r = await api.call<{ items: { type: string; deviceId?: string; status: string }[] }>('GET', '/api/v1/events/recent?deviceId=api-2&limit=100');
    assert.ok(r.items.length > 0 && r.items.every((e) => e.deviceId === 'api-2'));
    assert.ok(r.items.some((e) => e.type === 'execution.changed' && e.status === 'SUCCEEDED'));
    const jobs = await api.call<{ items: { type: string; status: string }[] }>('GET', `/api/v1/events/recent?jobId=${jobId}&limit=500`);
    assert.ok(jobs.items.some((e) => e.type === 'job.changed' && e.status === 'COMPLETED'));
  });

  it("GET /api/v1/jobs/:id/logs: the devices' logs the job and device pages list and open, announced on their streams, for a viewer token too", async () => {
    const { token: viewer } = await api.call<{ token: string }>('POST', '/api/v1/viewer-tokens', { name: 'dash-logs' });
    const get = (p: string) => fetch(ts.httpUrl + p, { headers: { authorization: `Bearer ${viewer}` } });
    // api-5 never connects: its execution of this job stays unfinished
    const logJob = (await api.call<{ job: { jobId: string } }>('POST', '/api/v1/deployments', { devices: ['api-5'], artifact: 'fw@2.0.0' })).job.jobId;
    const none = await get(`/api/v1/jobs/${logJob}/logs?limit=1000`);
    assert.equal(none.status, 200);
    assert.deepEqual(await none.json(), { items: [] });
    // the job page's stream (default types, this job only) and the device page's (this device only), opened with the viewer token
    const controller = new AbortController();
    /** Opens a stream; resolves, once it is open, to the promise of its first job.log event. */
    const firstJobLog = async (query: string): Promise<{ event: Promise<unknown> }> => {
      const stream = await fetch(`${ts.httpUrl}/api/v1/events?${query}`, { headers: { authorization: `Bearer ${viewer}`, accept: 'text/event-stream' }, signal: controller.signal });
      assert.equal(stream.status, 200);
      const event = (async () => {
        const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
        let text = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`the stream ?${query} ended without a job.log event: ${text}`);
          text += value;
          const m = /event: job\.log\ndata: (.+)\n/.exec(text);
          if (m) return JSON.parse(m[1]!) as unknown;
        }
      })();
      event.catch(() => undefined); // awaited below; aborted if something before fails
      return { event };
    };
    const announced = (await firstJobLog(`jobId=${logJob}`)).event;
    const announcedToDevice = (await firstJobLog('deviceId=api-5')).event;
    // the device page before: no log
    assert.deepEqual(((await (await get('/api/v1/devices/api-5')).json()) as { jobLogs: unknown[] }).jobLogs, []);
    const { secret } = await api.call<{ secret: string }>('POST', '/api/v1/devices/api-5/rotate-secret');
    const device = await TestClient.connect(ts.mqttUrl, 'api-5', { username: 'api-5', password: secret });
    try {
      await device.subscribe('state/api-5/job-log/+');
      const answer = await device.request('state/api-5/job-log', { jobId: logJob, lines: ['download failed: 503', 'gave up after 3 attempts'], dropped: 2 });
      assert.equal(answer.topic, 'state/api-5/job-log/accepted', JSON.stringify(answer.body));
    } finally {
      await device.end();
    }
    try {
      assert.deepEqual(await announced, { jobId: logJob, deviceId: 'api-5', agentJobId: logJob, lineCount: 2 });
      assert.deepEqual(await announcedToDevice, { jobId: logJob, deviceId: 'api-5', agentJobId: logJob, lineCount: 2 });
    } finally {
      controller.abort();
    }
    const list = (await (await get(`/api/v1/jobs/${logJob}/logs?limit=1000`)).json()) as { items: Record<string, unknown>[]; next?: string };
    assert.equal(list.next, undefined);
    assert.equal(list.items.length, 1);
    const { receivedAt, ...summary } = list.items[0]!;
    assert.deepEqual(summary, { jobId: logJob, deviceId: 'api-5', agentJobId: logJob, dropped: 2, lineCount: 2 }, 'no lines in the list');
    assert.equal(typeof receivedAt, 'number');
    // the device page lists it too (its jobs table matches jobLogs[].jobId with the executions' jobId)
    const onDevice = (await (await get('/api/v1/devices/api-5')).json()) as { jobLogs: unknown[]; executions: { jobId: string }[] };
    assert.deepEqual(onDevice.jobLogs, [{ jobId: logJob, deviceId: 'api-5', agentJobId: logJob, receivedAt, dropped: 2, lineCount: 2 }], 'no lines on the device either');
    assert.ok(onDevice.executions.some((e) => e.jobId === logJob));
    const history = (await (await get('/api/v1/devices/api-5/history')).json()) as { items: { jobId: string; log?: unknown }[] };
    assert.deepEqual(history.items.find((e) => e.jobId === logJob)?.log, { agentJobId: logJob, receivedAt, lineCount: 2 });
    // what the device page reads is what the OpenAPI document says
    const doc = await api.call<OpenApiDoc>('GET', '/api/v1/openapi.json');
    const historySchema = responseSchema(doc, '/api/v1/devices/{id}/history');
    assert.deepEqual(undocumentedKeys(doc, historySchema, history), [], 'history answer');
    for (const item of history.items) assert.deepEqual(undocumentedKeys(doc, propertySchema(doc, historySchema, 'items'), item), [], `history item ${item.jobId}`);
    const deviceSchema = responseSchema(doc, '/api/v1/devices/{id}');
    assert.deepEqual(undocumentedKeys(doc, deviceSchema, onDevice), [], 'device answer');
    for (const e of onDevice.executions) assert.deepEqual(undocumentedKeys(doc, propertySchema(doc, deviceSchema, 'executions'), e), [], `execution ${e.jobId}`);
    for (const l of onDevice.jobLogs) assert.deepEqual(undocumentedKeys(doc, propertySchema(doc, deviceSchema, 'jobLogs'), l as object), [], 'job log summary');
    const log = await get(`/api/v1/jobs/${logJob}/logs/api-5`);
    assert.equal(log.status, 200);
    assert.deepEqual(await log.json(), { jobId: logJob, deviceId: 'api-5', agentJobId: logJob, receivedAt, dropped: 2, lines: ['download failed: 503', 'gave up after 3 attempts'] });
    // what the page shows when a log is not there
    const missing = await get(`/api/v1/jobs/${logJob}/logs/api-6`);
    assert.equal(missing.status, 404);
    // api-6 is no device of this job: said so (ae30940), not that it sent no log
    assert.match(((await missing.json()) as { error: { message: string } }).error.message, new RegExp(`^device api-6 is not in job ${logJob}; its devices: updraft job show ${logJob}$`), 'why there is no log');
    assert.equal((await get('/api/v1/jobs/00000000-0000-4000-8000-000000000000/logs')).status, 404);
    await api.call('POST', `/api/v1/jobs/${logJob}/cancel`);
  });

  it('lists artifacts with their signature status, and documents the new routes', async () => {
    const a = await api.call<{ items: { signatureStatus: string }[] }>('GET', '/api/v1/artifacts');
    assert.equal(a.items[0]!.signatureStatus, 'valid');
    const doc = await api.call<{ paths: Record<string, unknown> }>('GET', '/api/v1/openapi.json');
    for (const p of ['/api/v1/fleet/overview', '/api/v1/fleet/search', '/api/v1/devices/{id}/events', '/api/v1/jobs/{id}/timeline', '/api/v1/events/recent', '/api/v1/jobs/{id}/logs', '/api/v1/jobs/{id}/logs/{deviceId}']) assert.ok(doc.paths[p], p);
  });

  it('serves the dashboard at / without the token, and the API still needs it', async () => {
    const page = await fetch(ts.httpUrl + '/devices');
    assert.ok(page.status === 200 || page.status === 503, String(page.status));
    assert.match(page.headers.get('content-type') ?? '', /text\/html/);
    const denied = await fetch(ts.httpUrl + '/api/v1/fleet/overview');
    assert.equal(denied.status, 401);
  });
});
