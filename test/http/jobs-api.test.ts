/** The rollout API over real HTTP: validation (4xx), groups, jobs, pagination, fleet view, events, OpenAPI. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TestClient, connectDevice } from '../helpers/mqtt-client.ts';
import { propertySchema, responseSchema, undocumentedKeys, type OpenApiDoc } from '../helpers/openapi.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

describe('rollout API', () => {
  let ts: TestServer;
  const devices: TestClient[] = [];
  const api = async (method: string, route: string, body?: unknown) => {
    const res = await fetch(ts.httpUrl + route, {
      method,
      headers: { authorization: `Bearer ${ts.token}`, 'content-type': Buffer.isBuffer(body) ? 'application/octet-stream' : 'application/json' },
      ...(body === undefined ? {} : { body: Buffer.isBuffer(body) ? new Uint8Array(body) : JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as any };
  };

  before(async () => {
    ts = await startTestServer();
    await api('POST', '/api/v1/artifacts?name=fw&version=2.0.0', Buffer.from('two'));
    for (const [id, region, version] of [['eu-1', 'eu', '1.0.0'], ['eu-2', 'eu', '2.5.0'], ['us-1', 'us', '1.0.0']] as const) {
      const c = await connectDevice(ts, id);
      devices.push(c);
      await c.subscribe(`state/${id}/#`);
      await c.request(`state/${id}/update`, { state: { reported: { software: { name: 'fw', version, status: 'IDLE' } } } });
      await ts.server.store.updateDevice({ ...(await ts.server.store.getDevice(id))!, tags: [`region:${region}`], version: 2 });
    }
    for (let i = 0; i < 5; i++) await registerDevice(ts, `spare-${i}`);
  });
  after(async () => {
    for (const d of devices) await d.end();
    await ts.close();
  });

  it('serves its OpenAPI document', async () => {
    const r = await api('GET', '/api/v1/openapi.json');
    assert.equal(r.status, 200);
    assert.equal(r.body.openapi, '3.1.0');
    // every route of the operator API, with its method: test/http/openapi-routes.test.ts
    for (const p of ['/api/v1/jobs', '/api/v1/jobs/{id}/cancel', '/api/v1/groups', '/api/v1/fleet/devices', '/api/v1/events']) assert.ok(r.body.paths[p], p);
  });

  it('refuses bad job requests with a clear 4xx', async () => {
    const cases: [unknown, number, RegExp][] = [
      [{ artifact: 'fw@9.9.9', targets: { devices: ['eu-1'] } }, 404, /fw@9\.9\.9 does not exist/],
      [{ artifact: 'fw@2.0.0', targets: {} }, 400, /target set is empty/],
      [{ artifact: 'fw@2.0.0', targets: { query: 'tags.region = nowhere' } }, 400, /target set is empty: the groups and query select no registered device/],
      [{ artifact: 'fw@2.0.0', targets: { query: 'reported.software.version <' } }, 400, /invalid query at position 28/],
      [{ artifact: 'fw@2.0.0', targets: { devices: ['eu-1'] }, plan: { waves: [{ count: 1, successThreshold: 101 }, {}] } }, 400, /successThreshold must be a percentage/],
      [{ artifact: 'fw@2.0.0', targets: { devices: ['eu-1'] }, abort: { rules: [{ type: 'FAILED', thresholdPercent: -5 }] } }, 400, /thresholdPercent/],
      [{ artifact: 'fw@2.0.0', targets: { devices: ['ghost'] } }, 404, /device ghost is not registered/],
      [{ artifact: 'fw@2.0.0', targets: { groups: ['nope'] } }, 404, /group nope does not exist/],
      [{ artifact: 'fw', targets: { devices: ['eu-1'] } }, 400, /name@version/],
      // beyond what a Date can hold: a job that could never start
      [{ artifact: 'fw@2.0.0', targets: { devices: ['eu-1'] }, plan: { startAt: 9e15 } }, 400, /plan\.startAt must be an ISO 8601 time/],
    ];
    for (const [body, status, re] of cases) {
      const r = await api('POST', '/api/v1/jobs', body);
      assert.equal(r.status, status, JSON.stringify(body));
      assert.match(r.body.error.message, re);
    }
    assert.equal((await api('GET', '/api/v1/jobs?limit=0')).status, 400);
    // every list route reads limit the same way: a limit that is not 1..1000 is refused, not clamped
    for (const limit of ['abc', '0', '1001', '2.5']) {
      const r = await api('GET', `/api/v1/devices?limit=${limit}`);
      assert.equal(r.status, 400, `devices?limit=${limit}`);
      assert.equal(r.body.error.message, `limit must be an integer from 1 to 1000, got ${limit}`);
    }
    const first = await api('GET', '/api/v1/devices?limit=2');
    assert.deepEqual(first.body.items.map((d: { deviceId: string }) => d.deviceId), ['eu-1', 'eu-2']);
    const second = await api('GET', `/api/v1/devices?limit=2&after=${first.body.next}`);
    assert.deepEqual(second.body.items.map((d: { deviceId: string }) => d.deviceId), ['spare-0', 'spare-1']);
    assert.equal((await api('GET', '/api/v1/jobs?status=DONE')).status, 400);
    assert.equal((await api('GET', '/api/v1/jobs/nope')).status, 404);
    assert.equal((await api('POST', '/api/v1/jobs/nope/pause')).status, 404);
  });

  it('creates static and dynamic groups and lists their members', async () => {
    const spares = await api('POST', '/api/v1/groups', { name: 'spares', devices: ['spare-2', 'spare-0', 'spare-1'] });
    assert.equal(spares.status, 201);
    assert.equal(spares.body.size, 3);
    assert.equal(spares.body.devices, undefined, 'a group shows its members counted, not listed');
    const dyn = await api('POST', '/api/v1/groups', { name: 'old-eu', query: 'reported.software.version < 2.0.0 and tags.region = eu' });
    assert.equal(dyn.status, 201);
    assert.equal(dyn.body.kind, 'dynamic');
    assert.deepEqual((await api('GET', '/api/v1/groups/old-eu')).body.members, ['eu-1']);
    const p1 = await api('GET', '/api/v1/groups/spares?limit=2');
    assert.deepEqual(p1.body.members, ['spare-0', 'spare-1']);
    assert.deepEqual((await api('GET', `/api/v1/groups/spares?limit=2&after=${p1.body.next}`)).body.members, ['spare-2']);
    assert.equal(p1.body.group.size, 3);
    assert.equal(p1.body.group.devices, undefined);
    const changed = await api('POST', '/api/v1/groups/spares/members', { add: ['spare-3'], remove: ['spare-0'] });
    assert.deepEqual([changed.status, changed.body.size, changed.body.version], [200, 3, 2]);
    assert.deepEqual((await api('GET', '/api/v1/groups/spares')).body.members, ['spare-1', 'spare-2', 'spare-3']);
    const listed = (await api('GET', '/api/v1/groups')).body.items;
    assert.deepEqual(listed.map((g: any) => [g.name, g.kind, g.size, g.devices]), [['old-eu', 'dynamic', 0, undefined], ['spares', 'static', 3, undefined]]);
    const changeRefusals: [string, unknown, number, RegExp][] = [
      ['spares', { add: ['ghost'] }, 404, /device ghost is not registered/],
      ['spares', { remove: 'spare-1' }, 400, /remove must be an array/],
      ['spares', { add: 'spare-1' }, 400, /^add must be an array of device ids$/],
      ['spares', { add: ['spare-1'], bogus: 1 }, 400, /^unknown field "bogus" \(fields: add, remove\)$/],
      ['spares', {}, 400, /give add and\/or remove/],
      ['nobody', { add: ['spare-1'] }, 404, /group nobody does not exist/],
    ];
    for (const [name, body, status, re] of changeRefusals) {
      const r = await api('POST', `/api/v1/groups/${name}/members`, body);
      assert.equal(r.status, status, JSON.stringify(body));
      assert.match(r.body.error.message, re);
    }
    assert.equal((await api('GET', '/api/v1/groups/spares')).body.group.version, 2, 'a refused change writes nothing');
    const refusals: [unknown, number, RegExp][] = [
      [{ name: 'x', query: 'tags = ' }, 400, /invalid query at position 8/],
      [{ name: 'x', devices: ['ghost'] }, 404, /device ghost is not registered/],
      [{ name: 'x' }, 400, /either devices .* or query/],
      [{ name: 'spares', devices: [] }, 409, /already exists/],
      [{ name: 'bad/name', devices: [] }, 400, /group name/],
      [{ name: 'x', devices: ['spare-1'], decription: 'typo' }, 400, /^unknown field "decription" \(fields: name, devices, query, description\)$/],
    ];
    for (const [body, status, re] of refusals) {
      const r = await api('POST', '/api/v1/groups', body);
      assert.equal(r.status, status, JSON.stringify(body));
      assert.match(r.body.error.message, re);
    }
    assert.equal((await api('POST', '/api/v1/groups/old-eu/members', { add: ['eu-2'] })).status, 409, 'a dynamic group has no member list');
  });

  it('queries the fleet and shows the version distribution', async () => {
    const r = await api('GET', `/api/v1/fleet/devices?query=${encodeURIComponent('reported.software.version >= 2')}`);
    assert.deepEqual(r.body.items.map((d: any) => d.deviceId), ['eu-2']);
    assert.equal((await api('GET', `/api/v1/fleet/devices?query=${encodeURIComponent('tags ==')}`)).status, 400);
    const page = await api('GET', '/api/v1/fleet/devices?limit=3');
    assert.equal(page.body.items.length, 3);
    assert.ok(page.body.next);
    const versions = await api('GET', '/api/v1/fleet/versions');
    assert.deepEqual(versions.body.items, [{ name: 'fw', version: '1.0.0', devices: 2 }, { name: 'fw', version: '2.5.0', devices: 1 }]);
    const status = await api('GET', '/api/v1/fleet/status');
    assert.equal(status.body.devices.registered, 8);
    assert.equal(status.body.devices.online, 3);
  });

  it('runs a job on a group and a query, streams its events, pauses, resumes and cancels it', async () => {
    const stream = await fetch(`${ts.httpUrl}/api/v1/events?types=job.changed,execution.changed`, { headers: { authorization: `Bearer ${ts.token}` } });
    assert.equal(stream.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    const reader = stream.body!.getReader();
    let text = '';
    const created = await api('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { groups: ['old-eu'], query: 'tags.region = us' }, plan: { waves: [{ count: 1 }, {}] } });
    assert.equal(created.status, 201);
    const jobId = created.body.job.jobId;
    assert.equal(created.body.total, 2);
    assert.deepEqual(created.body.waves.map((w: any) => w.counts.QUEUED), [1, 1]);
    // eu-1 takes the canary command
    const delta = await devices[0]!.next((m) => m.topic === 'state/eu-1/update/delta' && m.body.state.software?.jobId === jobId);
    assert.equal(delta.body.state.software.version, '2.0.0');
    while (!text.includes(`"jobId":"${jobId}"`) || !text.includes('event: execution.changed')) text += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    assert.match(text, /event: job\.changed\ndata: \{"jobId":/);

    assert.equal((await api('POST', `/api/v1/jobs/${jobId}/pause`)).body.job.status, 'PAUSED');
    // a move the job's state does not allow says why in an operator's words (QA: it said
    // `job J is IN_PROGRESS; it cannot become IN_PROGRESS` to a resume of a running job)
    const refusal = async (action: string, expected: RegExp) => {
      const r = await api('POST', `/api/v1/jobs/${jobId}/${action}`);
      assert.equal(r.status, 409, `${action}: ${JSON.stringify(r.body)}`);
      assert.match(JSON.stringify(r.body), expected, `${action}'s refusal`);
      assert.doesNotMatch(JSON.stringify(r.body), /cannot become/, `${action}'s refusal in an operator's words`);
    };
    await refusal('pause', new RegExp(`job ${jobId} is PAUSED already`));
    assert.equal((await api('POST', `/api/v1/jobs/${jobId}/resume`)).body.job.status, 'IN_PROGRESS');
    await refusal('resume', new RegExp(`job ${jobId} is IN_PROGRESS, not paused: only a paused job resumes`));
    const canceled = await api('POST', `/api/v1/jobs/${jobId}/cancel`);
    assert.equal(canceled.body.job.status, 'CANCELED');
    assert.equal(canceled.body.counts.CANCELED, 2);
    await refusal('cancel', new RegExp(`job ${jobId} is CANCELED already`));
    await refusal('resume', new RegExp(`job ${jobId} has finished \\(CANCELED\\): it cannot be resumed`));
    await refusal('pause', new RegExp(`job ${jobId} has finished \\(CANCELED\\): it cannot be paused`));
    const execs = await api('GET', `/api/v1/jobs/${jobId}/executions?status=CANCELED&limit=1`);
    assert.equal(execs.body.items.length, 1);
    assert.equal(execs.body.next, 'eu-1');
    const list = await api('GET', '/api/v1/jobs?status=CANCELED');
    assert.deepEqual(list.body.items.map((j: any) => j.jobId), [jobId]);
    // the listing is summaries; the job itself carries its spec (targets, plan...)
    assert.equal(list.body.items[0].spec, undefined);
    assert.equal(list.body.items[0].status, 'CANCELED');
    assert.deepEqual((await api('GET', `/api/v1/jobs/${jobId}`)).body.job.spec.targets, { groups: ['old-eu'], query: 'tags.region = us' });
    // a device's history names each job's artifact without reading its spec (which can list 100,000 devices)
    const store = ts.server.store;
    const { getJob, getJobs } = store;
    let specsRead = 0;
    store.getJob = (id, o) => {
      if (!o?.omitSpec) specsRead++;
      return getJob.call(store, id, o);
    };
    store.getJobs = (ids, o) => {
      if (!o?.omitSpec) specsRead++;
      return getJobs.call(store, ids, o);
    };
    const history = await api('GET', '/api/v1/devices/eu-1/history').finally(() => Object.assign(store, { getJob, getJobs }));
    assert.equal(history.body.items[0].jobId, jobId);
    assert.equal(history.body.items[0].artifact, 'fw@2.0.0');
    assert.equal(specsRead, 0);
  });

  it("pages a device's history, newest first, and its page shows the newest 100 jobs only", async () => {
    // spare-0 never connects: each job's execution of it stays queued. Jobs queued in one
    // millisecond go by job id (random): a pause between them keeps the order of creation
    const created: string[] = [];
    const createJob = async (description: string) => {
      await new Promise((r) => setTimeout(r, 2));
      const r = await api('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['spare-0'] }, description });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      created.push(r.body.job.jobId);
    };
    for (let i = 0; i < 3; i++) await createJob(`history ${i}`);
    const seen: string[] = [];
    let after: string | undefined;
    let pages = 0;
    do {
      const r = await api('GET', `/api/v1/devices/spare-0/history?limit=2${after ? `&after=${encodeURIComponent(after)}` : ''}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.deviceId, 'spare-0');
      assert.ok(r.body.items.length <= 2);
      for (const item of r.body.items) assert.equal(item.artifact, 'fw@2.0.0');
      seen.push(...r.body.items.map((e: { jobId: string }) => e.jobId));
      after = r.body.next;
      pages++;
    } while (after);
    assert.deepEqual(seen, [...created].reverse(), 'newest first, each once');
    assert.equal(pages, 2);
    // the device's own page: no cursor when its jobs fit
    const device = await api('GET', '/api/v1/devices/spare-0');
    assert.deepEqual(device.body.executions.map((e: { jobId: string }) => e.jobId), [...created].reverse());
    assert.equal(device.body.executionsNext, undefined);
    // 101 jobs: the device's page holds the newest 100, and its cursor leads the history to the oldest
    for (let i = 3; i < 101; i++) await createJob(`history ${i}`);
    const full = await api('GET', '/api/v1/devices/spare-0');
    assert.equal(full.body.executions.length, 100);
    assert.equal(full.body.executions[0].jobId, created[100]);
    assert.equal(typeof full.body.executionsNext, 'string');
    const rest = await api('GET', `/api/v1/devices/spare-0/history?after=${encodeURIComponent(full.body.executionsNext)}`);
    assert.deepEqual(rest.body.items.map((e: { jobId: string }) => e.jobId), [created[0]]);
    assert.equal(rest.body.next, undefined);
    // refusals name what is wrong
    const cases: [string, number, RegExp][] = [
      ['/api/v1/devices/spare-0/history?limit=0', 400, /limit must be an integer from 1 to 1000/],
      ['/api/v1/devices/spare-0/history?limit=1001', 400, /limit must be an integer from 1 to 1000/],
      ['/api/v1/devices/spare-0/history?after=garbage', 400, /after must be a cursor returned as next/],
      ['/api/v1/devices/ghost/history', 404, /device ghost is not registered/],
    ];
    for (const [route, status, re] of cases) {
      const r = await api('GET', route);
      assert.equal(r.status, status, route);
      assert.match(r.body.error.message, re, route);
    }
    for (const jobId of created) await api('POST', `/api/v1/jobs/${jobId}/cancel`);
  });

  it('answers as its OpenAPI document says: no field of a listed route goes undocumented', async () => {
    const doc = (await api('GET', '/api/v1/openapi.json')).body as OpenApiDoc;
    const jobId = (await api('GET', '/api/v1/jobs?limit=1')).body.items[0].jobId as string;
    await api('POST', '/api/v1/groups', { name: 'documented', kind: 'static', members: ['eu-1'] });
    const routes: [string, string][] = [
      ['/api/v1/jobs', '/api/v1/jobs'],
      ['/api/v1/jobs/{id}', `/api/v1/jobs/${jobId}`],
      ['/api/v1/jobs/{id}/executions', `/api/v1/jobs/${jobId}/executions`],
      ['/api/v1/artifacts', '/api/v1/artifacts'],
      ['/api/v1/devices', '/api/v1/devices'],
      ['/api/v1/devices/{id}', '/api/v1/devices/eu-1'],
      ['/api/v1/devices/{id}/history', '/api/v1/devices/eu-1/history'],
      ['/api/v1/groups', '/api/v1/groups'],
      ['/api/v1/fleet/overview', '/api/v1/fleet/overview'],
      ['/api/v1/fleet/status', '/api/v1/fleet/status'],
      ['/api/v1/fleet/search', '/api/v1/fleet/search'],
      ['/api/v1/fleet/devices', '/api/v1/fleet/devices'],
    ];
    for (const [template, route] of routes) {
      const r = await api('GET', route);
      assert.equal(r.status, 200, route);
      const schema = responseSchema(doc, template);
      assert.deepEqual(undocumentedKeys(doc, schema, r.body), [], `${route}: undocumented fields`);
      for (const key of ['items', 'job', 'executions'] as const) {
        const inner = r.body[key];
        const first = Array.isArray(inner) ? inner[0] : inner;
        if (first === undefined || first === null || typeof first !== 'object') continue;
        assert.deepEqual(undocumentedKeys(doc, propertySchema(doc, schema, key), first), [], `${route}: undocumented fields of ${key}`);
      }
    }
  });
});
