/** The operator API and the signed download endpoint over real HTTP. */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { UrlSigner } from '../../src/artifacts/url-signer.ts';
import { eventually } from '../helpers/cli.ts';
import { TestClient, connectIdleDevice } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const firmware = Buffer.from(Array.from({ length: 100_000 }, (_, i) => i % 251));
const sha = createHash('sha256').update(firmware).digest('hex');

describe('HTTP API and downloads', () => {
  let ts: TestServer;
  let dev: TestClient;
  const api = (method: string, route: string, body?: unknown, token: string | null = ts.token) =>
    fetch(ts.httpUrl + route, {
      method,
      headers: { ...(token === null ? {} : { authorization: `Bearer ${token}` }), 'content-type': Buffer.isBuffer(body) ? 'application/octet-stream' : 'application/json' },
      ...(body === undefined ? {} : { body: Buffer.isBuffer(body) ? new Uint8Array(body) : JSON.stringify(body) }),
    });

  before(async () => {
    ts = await startTestServer();
    dev = await connectIdleDevice(ts, 'dev-1');
  });
  after(async () => {
    await dev.end();
    await ts.close();
  });

  it('requires the operator token on every API call', async () => {
    const none = await api('GET', '/api/v1/artifacts', undefined, null);
    assert.equal(none.status, 401);
    assert.match((await none.json()).error.message, /operator token is required/);
    const wrong = await api('GET', '/api/v1/artifacts', undefined, 'nope');
    assert.equal(wrong.status, 401);
    assert.equal((await api('GET', '/healthz', undefined, null)).status, 200);
    // a path that is not valid percent-encoding is a bad request, not a missing route
    const mangled = await api('GET', '/api/v1/devices/%E0%A4%A');
    assert.equal(mangled.status, 400);
    assert.equal((await mangled.json()).error.message, 'the path segment "%E0%A4%A" is not valid percent-encoding');
    // the scheme is case-insensitive (RFC 9110 §11.1)
    assert.equal((await fetch(ts.httpUrl + '/api/v1/artifacts', { headers: { authorization: `bearer ${ts.token}` } })).status, 200);
  });

  it('answers a method a path does not take with 405, its code and the methods it does take', async () => {
    for (const [method, route, allowed] of [['DELETE', '/v1/download/fw/2.0.0', 'GET'], ['PUT', '/api/v1/devices/dev-1', 'GET, PATCH, DELETE']] as const) {
      const res = await api(method, route);
      assert.equal(res.status, 405, route);
      assert.equal(res.headers.get('allow'), allowed);
      assert.deepEqual((await res.json()).error, { code: 'METHOD_NOT_ALLOWED', message: `method ${method} is not allowed on ${route} (allowed: ${allowed})` });
    }
  });

  it('stores an artifact with its SHA-256 and size, and refuses a duplicate version', async () => {
    const res = await api('POST', '/api/v1/artifacts?name=fw&version=2.0.0', firmware);
    assert.equal(res.status, 201);
    const rec = await res.json();
    assert.equal(rec.sha256, sha);
    assert.equal(rec.size, firmware.length);
    const dup = await api('POST', '/api/v1/artifacts?name=fw&version=2.0.0', firmware);
    assert.equal(dup.status, 409);
    const badVersion = await api('POST', '/api/v1/artifacts?name=fw&version=latest', firmware);
    assert.equal(badVersion.status, 400);
    assert.match((await badVersion.json()).error.message, /semantic version/);
    const long = `3.0.0-${'a'.repeat(59)}`; // 65 characters
    const tooLong = await api('POST', `/api/v1/artifacts?name=fw&version=${long}`, firmware);
    assert.equal(tooLong.status, 400);
    assert.equal((await tooLong.json()).error.message, 'artifact version "3.0.0-aaaaaaaaaaaaaa…" is 65 characters long: at most 64');
    assert.equal((await api('POST', `/api/v1/artifacts?name=fw&version=${long.slice(0, 64)}`, firmware)).status, 201, '64 characters are accepted');
    const empty = await api('POST', '/api/v1/artifacts?name=fw&version=3.0.0', Buffer.alloc(0));
    assert.equal(empty.status, 400);
    assert.equal((await empty.json()).error.message, 'artifact fw@3.0.0 is empty (0 bytes): there is nothing to install');
    assert.equal((await api('GET', '/api/v1/artifacts/fw/3.0.0')).status, 404, 'nothing recorded');
  });

  it('refuses deployments of unknown artifacts, to unknown devices and without targets', async () => {
    const cases: [unknown, number, RegExp][] = [
      [{ devices: ['dev-1'], artifact: 'fw@9.9.9' }, 404, /fw@9\.9\.9 does not exist/],
      [{ devices: ['ghost'], artifact: 'fw@2.0.0' }, 404, /device ghost is not registered/],
      [{ devices: [], artifact: 'fw@2.0.0' }, 400, /at least one device/],
      [{ devices: ['dev-1'], artifact: 'fw' }, 400, /name@version/],
      [{ devices: ['a/b'], artifact: 'fw@2.0.0' }, 400, /not a valid device id/],
      // what this route does not take is refused, not dropped: a dry run would otherwise deploy
      [{ devices: ['dev-1'], artifact: 'fw@2.0.0', dryRun: true }, 400, /unknown field "dryRun" \(fields: devices, artifact, description, allowDowngrade; .*\/api\/v1\/jobs\/preview\)/],
      [{ devices: ['dev-1'], artifact: 'fw@2.0.0', allowDowngrade: 'yes' }, 400, /allowDowngrade must be true or false/],
      [{ devices: ['dev-1'], artifact: 'fw@2.0.0', description: 5 }, 400, /description must be a string/],
    ];
    for (const [body, status, message] of cases) {
      const res = await api('POST', '/api/v1/deployments', body);
      assert.equal(res.status, status, JSON.stringify(body));
      assert.match((await res.json()).error.message, message);
    }
    const broken = await fetch(ts.httpUrl + '/api/v1/deployments', { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: '{nope' });
    assert.equal(broken.status, 400);
  });

  it('refuses a bulk registration entry that is not a device, and the reserved id "operator", naming them', async () => {
    for (const [entry, message] of [[null, /a device to register must be an object/], [5, /a device to register must be an object/], [{}, /deviceId is required/], [{ deviceId: 'operator' }, /device id "operator" is reserved/]] as const) {
      const res = await api('POST', '/api/v1/devices/bulk', { devices: [entry] });
      assert.equal(res.status, 400, JSON.stringify(entry));
      assert.match((await res.json()).error.message, message);
    }
    assert.equal((await api('POST', '/api/v1/devices', { deviceId: 'operator' })).status, 400);
  });

  it('refuses device attributes named after object machinery (constructor, prototype, __proto__)', async () => {
    for (const name of ['constructor', 'prototype']) {
      const res = await api('POST', '/api/v1/devices', { deviceId: `reserved-${name}`, attributes: { [name]: 'x' } });
      assert.equal(res.status, 400, name);
      assert.match((await res.json()).error.message, new RegExp(`attribute name "${name}" is reserved`));
    }
    const proto = await fetch(ts.httpUrl + '/api/v1/devices', { method: 'POST', headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' }, body: '{"deviceId":"reserved-p","attributes":{"__proto__":"x"}}' });
    assert.equal(proto.status, 400);
    assert.match((await proto.json()).error.message, /attribute name "__proto__" is reserved/);
    assert.equal((await api('GET', '/api/v1/devices/reserved-constructor')).status, 404, 'nothing registered');
  });

  it('deploys: the delta carries a device-scoped signed URL that downloads with Range, and nothing else does', async () => {
    const res = await api('POST', '/api/v1/deployments', { devices: ['dev-1'], artifact: 'fw@2.0.0' });
    assert.equal(res.status, 201);
    const { job } = await res.json();
    assert.match(job.jobId, /^[0-9a-f-]{36}$/);
    const delta = await dev.next((m) => m.topic === 'state/dev-1/update/delta' && m.body.state.software?.jobId === job.jobId);
    const cmd = delta.body.state.software;
    assert.deepEqual({ name: cmd.name, version: cmd.version, sha256: cmd.sha256, size: cmd.size }, { name: 'fw', version: '2.0.0', sha256: sha, size: firmware.length });
    assert.ok(cmd.urlExpiresAt > Date.now() / 1000);

    const full = await fetch(cmd.url);
    assert.equal(full.status, 200);
    assert.equal(createHash('sha256').update(Buffer.from(await full.arrayBuffer())).digest('hex'), sha);

    const part = await fetch(cmd.url, { headers: { range: 'bytes=99000-' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 99000-99999/${firmware.length}`);
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), firmware.subarray(99000));
    assert.equal((await fetch(cmd.url, { headers: { range: 'bytes=200000-' } })).status, 416);

    const u = new URL(cmd.url);
    // bound to the device and the artifact, not to an address (docs/security.md, "Not covered")
    assert.deepEqual([...u.searchParams.keys()].sort(), ['device', 'exp', 'iat', 'kid', 'sig']);
    const refused = async (mutate: (url: URL) => void, reason: RegExp) => {
      const copy = new URL(u);
      mutate(copy);
      const r = await fetch(copy);
      assert.equal(r.status, 403, copy.pathname + copy.search);
      assert.match((await r.json()).error.message, reason);
    };
    await refused((x) => x.searchParams.set('device', 'dev-2'), /signature does not match/);
    await refused((x) => x.searchParams.set('exp', String(Number(x.searchParams.get('exp')) + 1000)), /signature does not match/);
    await refused((x) => x.searchParams.set('sig', 'A'.repeat(43)), /signature does not match/);
    // when it was issued is signed too: neither moved nor taken off (which would skip the check of the registration)
    await refused((x) => x.searchParams.set('iat', String(Number(x.searchParams.get('iat')) + 86_400)), /signature does not match/);
    await refused((x) => x.searchParams.delete('iat'), /signature does not match/);
    await refused((x) => x.searchParams.delete('sig'), /not signed/);
    await refused((x) => x.searchParams.set('kid', 'old'), /unknown or retired key/);
    await refused((x) => (x.pathname = x.pathname.replace('2.0.0', '1.0.0')), /signature does not match/);
    // forged, an artifact that exists and one that does not are refused alike (QA: they said
    // 'does not name a stored artifact' for the one not stored): nothing is told
    const forged = (version: string) => (x: URL) => ((x.pathname = x.pathname.replace('2.0.0', version)), x.searchParams.set('sig', 'A'.repeat(43)));
    await refused(forged('2.0.0'), /^download URL signature does not match \(tampered, or for another device or artifact\)$/);
    await refused(forged('9.9.9'), /^download URL signature does not match \(tampered, or for another device or artifact\)$/);
    for (const version of ['2.0.0', '9.9.9']) {
      const r = await fetch(new URL(`/v1/download/fw/${version}?device=dev-1`, u), { headers: { authorization: 'Bearer abc' } });
      assert.equal(r.status, 403);
      assert.equal((await r.json()).error.message, 'download token is malformed', version);
    }
    // unsigned, an artifact that exists and one that does not are refused alike: nothing is told
    await refused((x) => (x.search = ''), /^download URL is not signed: device, exp, kid and sig are required$/);
    await refused((x) => ((x.search = ''), (x.pathname = x.pathname.replace('2.0.0', '9.9.9'))), /^download URL is not signed: device, exp, kid and sig are required$/);
  });

  it('refuses an expired URL and one bound to another IP', async () => {
    const keys = (await import('../../src/artifacts/key-ring.ts')).loadOrCreateKeyRing;
    const signer = new UrlSigner({ keys: await keys(ts.dataDir), baseUrl: ts.httpUrl });
    const grant = { deviceId: 'dev-1', name: 'fw', version: '2.0.0', sha256: sha };
    const expired = await fetch(signer.sign({ ...grant, expiresAt: Math.floor(Date.now() / 1000) - 1 }));
    assert.equal(expired.status, 403);
    assert.match((await expired.json()).error.message, /expired/);
    const otherIp = await fetch(signer.sign({ ...grant, expiresAt: Math.floor(Date.now() / 1000) + 60, ip: '203.0.113.7' }));
    assert.equal(otherIp.status, 403);
    assert.match((await otherIp.json()).error.message, /another IP/);
    const sameIp = await fetch(signer.sign({ ...grant, expiresAt: Math.floor(Date.now() / 1000) + 60, ip: '127.0.0.1' }));
    assert.equal(sameIp.status, 200);
    await sameIp.arrayBuffer();
  });

  it('shows a device with desired, reported, delta and its jobs; 404 for an unknown one', async () => {
    const res = await api('GET', '/api/v1/devices/dev-1');
    assert.equal(res.status, 200);
    const d = await res.json();
    assert.equal(d.online, true);
    assert.equal(d.shadow.state.desired.software.version, '2.0.0');
    assert.equal(d.shadow.state.reported.software.version, '1.0.0');
    assert.equal(d.shadow.state.delta.software.version, '2.0.0');
    assert.equal(d.shadow.state.delta.software.url, undefined, 'the operator view carries no signed URL');
    assert.equal(d.executions.length, 1);
    assert.equal(d.executions[0].status, 'QUEUED');
    assert.equal((await api('GET', '/api/v1/devices/nobody')).status, 404);
    assert.equal(d.device.hasSecret, true);
    assert.equal(d.device.secretHash, undefined, 'the API never shows the secret hash');
  });

  it('serves metrics behind the token: MQTT counters, memory, and how busy and how late the event loop is', async () => {
    assert.equal((await api('GET', '/api/v1/metrics', undefined, null)).status, 401);
    type Metrics = { mqtt: { published: number; connectedClients: number }; process: { rssBytes: number; heapUsedBytes: number; heapTotalBytes: number; externalBytes: number }; eventLoop: { activeMs: number; idleMs: number; utilization: number; delayMs: { p50: number; p99: number; max: number }; lastMinute: { seconds: number; utilization: number; delayMs: { max: number } } } };
    const read = async () => (await (await api('GET', '/api/v1/metrics')).json()) as Metrics;
    const m0 = await read();
    assert.ok(m0.mqtt.published > 0 && m0.mqtt.connectedClients >= 1 && m0.process.rssBytes > 0, JSON.stringify(m0));
    assert.ok(m0.process.heapUsedBytes > 0 && m0.process.heapTotalBytes >= m0.process.heapUsedBytes && m0.process.externalBytes > 0 && m0.process.heapTotalBytes < m0.process.rssBytes, `the V8 heap's figures: ${JSON.stringify(m0.process)}`);
    assert.ok(m0.eventLoop.utilization > 0 && m0.eventLoop.utilization < 1, JSON.stringify(m0.eventLoop));
    // the server runs in this process: hold its thread for 80 ms, as a long synchronous job would
    const start = performance.now();
    while (performance.now() - start < 80);
    await new Promise((resolve) => setTimeout(resolve, 30)); // the delay timer fires, late
    const m1 = await read();
    // lower bounds only: a slower machine makes both larger, never smaller
    assert.ok(m1.eventLoop.activeMs - m0.eventLoop.activeMs >= 79, `active time grew by the blocked 80 ms: ${JSON.stringify([m0.eventLoop, m1.eventLoop])}`);
    assert.ok(m1.eventLoop.delayMs.max >= 60, `a timer due during the block fired at least 60 ms late: ${JSON.stringify(m1.eventLoop)}`);
    assert.ok(m1.eventLoop.idleMs >= m0.eventLoop.idleMs);
    // the last window's figures (test/server/event-loop-monitor.test.ts checks what they hold)
    const w = m1.eventLoop.lastMinute;
    assert.ok(w.seconds > 0 && w.utilization > 0 && w.utilization <= 1 && w.delayMs.max >= 0, JSON.stringify(w));
  });

  it('counts what it handled (downloads served and refused, shadow requests and rejections), as JSON and for Prometheus', async () => {
    type Counters = { downloads: { served: number; refused: number; bytes: number; cut: number }; shadow: { requests: number; rejections: Record<string, number> } };
    const read = async () => (await (await api('GET', '/api/v1/metrics')).json()) as Counters;
    const c0 = await read();
    // dev-1 still has its job (desired 2.0.0): get brings the command and a fresh URL
    const got = await dev.request('state/dev-1/get', {});
    const url = new URL(got.body.state.delta.software.url);
    assert.equal((await fetch(url, { headers: { range: 'bytes=0-99' } })).status, 206);
    const forged = new URL(url);
    forged.searchParams.set('device', 'dev-2');
    assert.equal((await fetch(forged)).status, 403);
    const rejected = await dev.request('state/dev-1/update', { state: { reported: { software: { status: 'SUCESS' } } } });
    assert.equal(rejected.topic, 'state/dev-1/update/rejected');
    const c1 = await read();
    assert.deepEqual(
      { served: c1.downloads.served - c0.downloads.served, bytes: c1.downloads.bytes - c0.downloads.bytes, refused: c1.downloads.refused - c0.downloads.refused, cut: c1.downloads.cut - c0.downloads.cut },
      { served: 1, bytes: 100, refused: 1, cut: 0 },
    );
    assert.equal(c1.shadow.requests - c0.shadow.requests, 2, 'the get and the rejected update');
    assert.equal((c1.shadow.rejections['400'] ?? 0) - (c0.shadow.rejections['400'] ?? 0), 1);

    // what Prometheus's scraper sends: it prefers OpenMetrics, then text; the answer is text 0.0.4
    const res = await fetch(ts.httpUrl + '/api/v1/metrics', {
      headers: { authorization: `Bearer ${ts.token}`, accept: 'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1' },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    const text = await res.text();
    const value = (sample: string) => Number(new RegExp(`^${sample.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);
    assert.equal(value('updraft_downloads_total{result="served"}'), c1.downloads.served);
    assert.equal(value('updraft_downloads_total{result="refused"}'), c1.downloads.refused);
    assert.equal(value('updraft_download_bytes_total'), c1.downloads.bytes);
    assert.equal(value('updraft_downloads_cut_total'), c1.downloads.cut);
    assert.equal(value('updraft_shadow_rejections_total{code="400"}'), c1.shadow.rejections['400']);
    assert.ok(value('updraft_shadow_requests_total') >= c1.shadow.requests);
    assert.ok(value('updraft_mqtt_published_total') > 0);
    assert.match(text, /^# TYPE updraft_event_loop_active_seconds_total counter$/m);
    assert.equal((await fetch(ts.httpUrl + '/api/v1/metrics', { headers: { accept: 'text/plain' } })).status, 401, 'the text format is behind the token too');
  });

  it('counts a download the device leaves after its first bytes as cut, and none of its bytes', async () => {
    // large enough that the kernel's socket buffers cannot take it all before the client goes
    const big = randomBytes(48 * 1024 * 1024);
    const added = await api('POST', '/api/v1/artifacts?name=big&version=1.0.0', big);
    assert.equal(added.status, 201, await added.clone().text());
    const { sha256 } = (await added.json()) as { sha256: string };
    const keys = (await import('../../src/artifacts/key-ring.ts')).loadOrCreateKeyRing;
    const signer = new UrlSigner({ keys: await keys(ts.dataDir), baseUrl: ts.httpUrl });
    const url = signer.sign({ deviceId: 'dev-1', name: 'big', version: '1.0.0', sha256, expiresAt: Math.floor(Date.now() / 1000) + 60 });
    type Downloads = { downloads: { served: number; bytes: number; cut: number } };
    const read = async () => ((await (await api('GET', '/api/v1/metrics')).json()) as Downloads).downloads;
    const before = await read();
    await new Promise<void>((resolve, reject) => {
      const req = http.get(url, (res) => {
        assert.equal(res.statusCode, 200);
        res.once('data', () => {
          req.destroy(); // the device goes away mid-transfer
          resolve();
        });
      });
      req.on('error', (err) => (err.message === 'socket hang up' || (err as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(err)));
    });
    const after = await eventually(async () => {
      const d = await read();
      return d.cut > before.cut ? d : undefined;
    }, 15_000, 'the cut download counted');
    assert.deepEqual({ served: after.served - before.served, cut: after.cut - before.cut, bytes: after.bytes - before.bytes }, { served: 1, cut: 1, bytes: 0 });
  });
});
