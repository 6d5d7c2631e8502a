/**
 * Decommissioning a device over real HTTP and MQTT (and the CLI): it is cut off, its jobs
 * are not left waiting for it, and nothing of it stays in listings; its history stays.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decommissionDevice } from '../../src/fleet/decommission.ts';
import type { StateStore } from '../../src/store/state-store.ts';
import { runCli } from '../helpers/cli.ts';
import { TestClient, connackCode } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

describe('deleting a device (decommissioning)', () => {
  let ts: TestServer;
  let a: TestClient;
  let secretA: string;
  const api = async (method: string, route: string, body?: unknown) => {
    const res = await fetch(ts.httpUrl + route, {
      method,
      headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  const report = (c: TestClient, id: string, software: Record<string, unknown>) => c.request(`state/${id}/update`, { state: { reported: { software } } });
  /** Deploys `artifact` to `devices`; resolves with the job id and the device-side job id `a` got. */
  const deploy = async (artifact: string, devices: string[]) => {
    const r = await api('POST', '/api/v1/deployments', { devices, artifact });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const version = artifact.split('@')[1];
    const delta = await a.next((m) => m.topic === 'state/dev-a/update/delta' && m.body.state?.software?.version === version);
    return { jobId: r.body.job.jobId as string, agentJobId: delta.body.state.software.jobId as string };
  };

  before(async () => {
    ts = await startTestServer();
    for (const v of ['1.5.0', '2.0.0']) {
      const r = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=${v}`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(Buffer.from(`fw ${v}`)) });
      assert.equal(r.status, 201);
    }
    secretA = await registerDevice(ts, 'dev-a');
    await registerDevice(ts, 'dev-b');
    await registerDevice(ts, 'dev-c');
    assert.equal((await api('POST', '/api/v1/groups', { name: 'lab', devices: ['dev-a', 'dev-b'] })).status, 201);
    a = await TestClient.connect(ts.mqttUrl, 'dev-a', { username: 'dev-a', password: secretA });
    await a.subscribe('state/dev-a/#');
    await report(a, 'dev-a', { name: 'fw', version: '1.0.0', status: 'IDLE' });
    await a.request('state/dev-a/shadow/wifi/update', { state: { reported: { ssid: 'lab' } } });
  });
  after(async () => {
    await a.end().catch(() => undefined);
    await ts.close();
  });

  it('cuts it off, ends its unfinished executions, deletes its shadows and memberships, keeps its history', async () => {
    // a finished job: fw@1.5.0 installed
    const done = await deploy('fw@1.5.0', ['dev-a']);
    await report(a, 'dev-a', { name: 'fw', version: '1.5.0', jobId: done.agentJobId, status: 'SUCCESS' });
    // an unfinished one: dev-a downloading, dev-b never connected
    const running = await deploy('fw@2.0.0', ['dev-a', 'dev-b']);
    await report(a, 'dev-a', { name: 'fw', version: '1.5.0', jobId: running.agentJobId, status: 'DOWNLOADING', progress: 0.2 });
    const before = await api('GET', '/api/v1/devices/dev-a');
    assert.equal(before.body.executions.find((e: { jobId: string }) => e.jobId === running.jobId).status, 'IN_PROGRESS');

    const closed = new Promise<void>((resolve) => a.client.once('close', () => resolve()));
    const r = await api('DELETE', '/api/v1/devices/dev-a');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body, { deviceId: 'dev-a', disconnected: 1, executionsRemoved: [running.jobId], shadowsDeleted: ['', 'wifi'], groupsLeft: ['lab'] });
    await closed;
    assert.equal(await connackCode(ts.mqttUrl, { clientId: 'dev-a', username: 'dev-a', password: secretA }), 4, 'refused at CONNECT');

    assert.equal((await api('GET', '/api/v1/devices/dev-a')).status, 404);
    const listed = (await api('GET', '/api/v1/devices')).body.items.map((d: { deviceId: string }) => d.deviceId);
    assert.deepEqual(listed, ['dev-b', 'dev-c']);
    const lab = (await api('GET', '/api/v1/groups/lab')).body;
    assert.deepEqual([lab.group.size, lab.members], [1, ['dev-b']], 'a member no more (listings skip unregistered devices anyway: the size says it left)');
    // the unfinished job goes on with dev-b; dev-a's part ended with the reason; the finished job keeps its record of dev-a
    const job = (await api('GET', `/api/v1/jobs/${running.jobId}/executions?limit=10`)).body.items as { deviceId: string; status: string; details: { error?: string } }[];
    const gone = job.find((e) => e.deviceId === 'dev-a')!;
    assert.equal(gone.status, 'REMOVED');
    assert.equal(gone.details.error, 'the device was deleted');
    assert.equal(job.find((e) => e.deviceId === 'dev-b')!.status, 'QUEUED');
    const history = (await api('GET', `/api/v1/jobs/${done.jobId}/executions?limit=10`)).body.items as { deviceId: string; status: string }[];
    assert.deepEqual(history.map((e) => [e.deviceId, e.status]), [['dev-a', 'SUCCEEDED']]);
  });

  it('lets the id be registered again, with no shadow of the old device; its versions go on from the old ones', async () => {
    const secret = await registerDevice(ts, 'dev-a');
    const again = await TestClient.connect(ts.mqttUrl, 'dev-a', { username: 'dev-a', password: secret });
    try {
      await again.subscribe('state/dev-a/#');
      assert.equal((await again.request('state/dev-a/get', {})).topic, 'state/dev-a/get/rejected', 'the old shadow is gone');
      const accepted = await again.request('state/dev-a/update', { state: { reported: { software: { name: 'fw', version: '1.0.0', status: 'IDLE' } } } });
      assert.equal(accepted.topic, 'state/dev-a/update/accepted');
      assert.ok(accepted.body.version > 3, `continues from the tombstone's version, got ${accepted.body.version}`);
      assert.equal(accepted.body.state.desired, undefined, 'no command of the old device');
    } finally {
      await again.end();
    }
  });

  it('announces on the event stream that its registration is gone, after the revocation: a page open on it reads it again and learns so', { timeout: 60_000 }, async () => {
    await registerDevice(ts, 'dev-d');
    const controller = new AbortController();
    const stream = await fetch(`${ts.httpUrl}/api/v1/events?deviceId=dev-d&types=device.credentials`, { headers: { authorization: `Bearer ${ts.token}` }, signal: controller.signal });
    assert.equal(stream.status, 200);
    const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
    await reader.read(); // the stream's opening comment: subscribed
    let text = '';
    /** Resolves with the device ids of the first `n` device.credentials events. */
    const first = async (n: number) => {
      for (;;) {
        const ids = [...text.matchAll(/event: device\.credentials\ndata: (.+)\n/g)].map((m) => (JSON.parse(m[1]!) as { deviceId: string }).deviceId);
        if (ids.length >= n) return ids.slice(0, n);
        const { value, done } = await reader.read();
        if (done) return ids;
        text += value;
      }
    };
    try {
      assert.equal((await api('DELETE', '/api/v1/devices/dev-d')).status, 200);
      // the revocation's, which came while it was still registered (revoked), then the deletion's
      assert.deepEqual(await first(2), ['dev-d', 'dev-d']);
      assert.equal((await api('GET', '/api/v1/devices/dev-d')).status, 404);
    } finally {
      controller.abort();
    }
  });

  it('answers 404 for a device that is not registered, and the CLI reports what it did on one line each', async () => {
    const missing = await api('DELETE', '/api/v1/devices/nobody');
    assert.equal(missing.status, 404);
    assert.match(missing.body.error.message, /^device nobody is not registered/);
    const cli = await runCli(['device', 'delete', 'dev-c', '--server', ts.httpUrl, '--token', ts.token]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(cli.stdout, 'deleted dev-c\n  no connection it opened was open\n  no unfinished job execution\n  no shadow\n');
    const twice = await runCli(['device', 'delete', 'dev-c', '--server', ts.httpUrl, '--token', ts.token]);
    assert.equal(twice.code, 2);
    assert.match(twice.stderr, /^updraft: error: device dev-c is not registered/);
  });
  it('leaves no shadow an operator wrote between the shadows\' deletion and the registration\'s', async () => {
    await registerDevice(ts, 'dev-d');
    const { server } = ts;
    const script = { kind: 'operator', id: 'script' } as const;
    await server.replica.update({ deviceId: 'dev-d', name: '' }, { state: { desired: { color: 'blue' } } }, script);
    // the write lands in the window: after the shadows were deleted, just before the registration goes
    let wrote = false;
    const store = new Proxy(server.store, {
      get(target, prop) {
        if (prop === 'deleteDevice') {
          return async (...args: Parameters<StateStore['deleteDevice']>) => {
            await server.replica.update({ deviceId: 'dev-d', name: '' }, { state: { desired: { color: 'red' } } }, script);
            wrote = true;
            return target.deleteDevice(...args);
          };
        }
        const value = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const done = await decommissionDevice({ store, registry: server.registry, replica: server.replica, events: server.events }, 'dev-d');
    assert.ok(wrote, 'the write was made in the window');
    assert.deepEqual(done.shadowsDeleted, ['']);
    assert.deepEqual(await server.store.listShadowNames('dev-d'), [], 'no ghost shadow');
    await assert.rejects(server.replica.update({ deviceId: 'dev-d', name: '' }, { state: { desired: { color: 'green' } } }, script), /device dev-d is not registered/);
  });
});
