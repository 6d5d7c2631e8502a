/**
 * The API changes behind the dashboard's QA gaps, asked of a real server over HTTP: the
 * overview's failures one row per device's latest outcome, naming the job; revocations,
 * reinstatements and deletions among the recent events and on the event stream's
 * `device.credentials` (its `change`); the devices search's count.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { countMatching } from '../../src/fleet/device-search.ts';
import { eventually } from '../helpers/cli.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { apiJson, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact } from '../security/support.ts';

describe('dashboard API: the QA gaps', () => {
  let ts: TestServer;

  before(async () => {
    ts = await startTestServer();
  });
  after(async () => {
    await ts?.close();
  });

  const registerAll = async (ids: string[]) => {
    const r = await apiJson(ts, 'POST', '/api/v1/devices/bulk', { devices: ids.map((deviceId) => ({ deviceId })) });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  };

  /** The event stream with `query`, read as it comes (`text`), once subscribed (its first bytes, a comment, say so). */
  const openStream = async (query: string) => {
    const controller = new AbortController();
    const res = await fetch(`${ts.httpUrl}/api/v1/events?${query}`, { headers: { authorization: `Bearer ${ts.token}` }, signal: controller.signal });
    assert.equal(res.status, 200, 'the stream opens');
    const stream = { text: '', close: async () => {} };
    const reading = (async () => {
      const decoder = new TextDecoder();
      try {
        for await (const chunk of res.body!) stream.text += decoder.decode(chunk as Uint8Array, { stream: true });
      } catch {
        /* aborted at the end */
      }
    })();
    stream.close = async () => {
      controller.abort();
      await reading;
    };
    await eventually(async () => (stream.text.length > 0 ? true : undefined), 10_000, 'the stream subscribed');
    return stream;
  };

  /** A job of `artifact` on `devices`, its commands sent, then the reports `outcome` gives, until it completes. */
  const runJob = async (artifact: string, devices: string[], description: string, outcome: (deviceId: string, jobId: string) => Record<string, unknown>) => {
    const created = await apiJson(ts, 'POST', '/api/v1/jobs', { artifact, description, targets: { devices } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const jobId = created.body.job.jobId as string;
    await eventually(async () => ((await apiJson(ts, 'GET', `/api/v1/jobs/${jobId}/executions`)).body.items as { dispatchedAt?: number }[]).every((e) => e.dispatchedAt !== undefined) || undefined, 30_000, 'every command sent');
    const op = await TestClient.connect(ts.mqttUrl, `ops-${randomBytes(4).toString('hex')}`, { username: 'operator', password: ts.token });
    try {
      for (const d of devices) await op.publish(`state/${d}/update`, { state: { reported: { software: outcome(d, jobId) } } });
    } finally {
      await op.end();
    }
    await eventually(async () => ((await apiJson(ts, 'GET', `/api/v1/jobs/${jobId}?limit=1`)).body.job.status === 'COMPLETED' ? true : undefined), 30_000, 'the job completed');
    return jobId;
  };

  it("GET /fleet/overview: one failing row per device, its latest failure's job named; a device that succeeded since is left out", async () => {
    await addArtifact(ts, '1.0.0', randomBytes(128), 'api-ov');
    await registerAll(['api-ov-a', 'api-ov-b', 'api-ov-c']);
    const fail = (d: string, jobId: string) => ({ name: 'api-ov', version: '0.9.0', jobId, status: 'FAILURE', error: `${d} failed ${jobId}` });
    const first = await runJob('api-ov@1.0.0', ['api-ov-a', 'api-ov-b', 'api-ov-c'], 'first', fail);
    const second = await runJob('api-ov@1.0.0', ['api-ov-a', 'api-ov-b'], 'second', (d, jobId) => (d === 'api-ov-b' ? { name: 'api-ov', version: '1.0.0', jobId, status: 'SUCCESS' } : fail(d, jobId)));
    // the overview is cached for 2 s: asked until it holds the second job's outcomes
    const failing = await eventually(async () => {
      const rows = (await apiJson(ts, 'GET', '/api/v1/fleet/overview')).body.failing as { deviceId: string; jobId: string; jobDescription?: string; artifact: string; reason: string }[];
      return rows.some((r) => r.jobId === second) ? rows : undefined;
    }, 30_000, 'the overview computed after the second job');
    const mine = failing.filter((r) => r.deviceId.startsWith('api-ov-'));
    assert.deepEqual(
      mine.map((r) => [r.deviceId, r.jobId, r.jobDescription, r.artifact, r.reason]).sort(),
      [
        ['api-ov-a', second, 'second', 'api-ov@1.0.0', `api-ov-a failed ${second}`],
        ['api-ov-c', first, 'first', 'api-ov@1.0.0', `api-ov-c failed ${first}`],
      ],
      'a once (its later failure), c, and not b (it succeeded since)',
    );
  });

  it('GET /events/recent lists a revocation, a reinstatement and a deletion; the event stream says which in change', async () => {
    await registerAll(['api-rv-1']);
    const stream = await openStream('deviceId=api-rv-1&types=device.credentials');
    const text = () => stream.text;
    try {
      for (const act of ['revoke', 'reinstate']) {
        const r = await apiJson(ts, 'POST', `/api/v1/devices/api-rv-1/${act}`);
        assert.equal(r.status, 200, `${act}: ${JSON.stringify(r.body)}`);
      }
      const deleted = await apiJson(ts, 'DELETE', '/api/v1/devices/api-rv-1');
      assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
      const recent = (await apiJson(ts, 'GET', '/api/v1/events/recent?deviceId=api-rv-1')).body.items as { type: string; status: string }[];
      assert.deepEqual(
        recent.filter((e) => e.type === 'device.credentials').map((e) => e.status),
        ['DELETED', 'REVOKED', 'REINSTATED', 'REVOKED'],
        'newest first: deleted (its decommission revoked it first), reinstated, revoked',
      );
      const changes = await eventually(async () => {
        const found = [...text().matchAll(/event: device\.credentials\ndata: (.+)\n/g)].map((m) => (JSON.parse(m[1]!) as { change?: string }).change);
        return found.includes('deleted') ? found : undefined;
      }, 10_000, 'the deletion on the stream');
      assert.deepEqual(changes, ['revoked', 'reinstated', 'revoked', 'deleted'], 'each event says what changed');
    } finally {
      await stream.close();
    }
  });

  it('the event stream carries only the device.credentials changes asked for (?changes=), as the overview asks; an unknown change refused', async () => {
    const stream = await openStream('types=device.credentials&changes=revoked,deleted');
    const text = () => stream.text;
    try {
      await registerAll(['api-ch-1', 'api-ch-2']);
      const secret = await apiJson(ts, 'POST', '/api/v1/devices/api-ch-1/rotate-secret');
      assert.ok(secret.status < 300, `a new secret: ${JSON.stringify(secret.body)}`);
      const revoked = await apiJson(ts, 'POST', '/api/v1/devices/api-ch-2/revoke');
      assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
      const got = await eventually(async () => {
        const found = [...text().matchAll(/event: device\.credentials\ndata: (.+)\n/g)].map((m) => JSON.parse(m[1]!) as { deviceId: string; change?: string });
        return found.some((e) => e.change === 'revoked') ? found : undefined;
      }, 10_000, 'the revocation on the stream');
      assert.deepEqual(got.map((e) => [e.deviceId, e.change]), [['api-ch-2', 'revoked']], 'the revocation alone: no registration, no new secret');
    } finally {
      await stream.close();
    }
    const bad = await apiJson(ts, 'GET', '/api/v1/events?types=device.credentials&changes=renamed');
    assert.equal(bad.status, 400, JSON.stringify(bad.body));
    assert.match(bad.body.error.message, /changes must be a comma-separated list of registered, secret, revoked, reinstated, deleted, unregistered; got renamed/);
  });

  it('GET /fleet/search/count: how many devices the filters match, the registry without filters; a bad state refused', async () => {
    await registerAll(['api-cnt-1', 'api-cnt-2', 'api-cnt-3']);
    const revoked = await apiJson(ts, 'POST', '/api/v1/devices/api-cnt-2/revoke');
    assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
    const filtered = await apiJson(ts, 'GET', '/api/v1/fleet/search/count?id=api-cnt-');
    assert.equal(filtered.status, 200, JSON.stringify(filtered.body));
    assert.deepEqual([filtered.body.total, filtered.body.exact], [3, true], 'the three, exactly');
    const revokedOnly = await apiJson(ts, 'GET', '/api/v1/fleet/search/count?id=api-cnt-&state=revoked');
    assert.deepEqual([revokedOnly.body.total, revokedOnly.body.exact], [1, true], 'the revoked one');
    // without filters: every registered device, as the search pages them
    const all = await apiJson(ts, 'GET', '/api/v1/fleet/search/count');
    let listed = 0;
    let after = '';
    do {
      const p = await apiJson(ts, 'GET', `/api/v1/fleet/search?limit=1000${after ? `&after=${encodeURIComponent(after)}` : ''}`);
      listed += p.body.items.length;
      after = p.body.next ?? '';
    } while (after);
    assert.deepEqual([all.body.total, all.body.exact, all.body.scanned], [listed, true, 0], 'the registry counted by the database');
    const bad = await apiJson(ts, 'GET', '/api/v1/fleet/search/count?state=asleep');
    assert.equal(bad.status, 400, JSON.stringify(bad.body));
    assert.match(bad.body.error.message, /state must be one of online, offline, updating, failed, revoked; got asleep/);
    const unknown = await apiJson(ts, 'GET', '/api/v1/fleet/search/count?limit=5');
    assert.equal(unknown.status, 400, 'it takes no paging parameters');
  });

  it("a filtered count lets the server's event loop turn between its pages, and is answered from the last one for 15 s", async () => {
    const ids = Array.from({ length: 2500 }, (_, i) => `api-turn-${String(i).padStart(4, '0')}`);
    for (let i = 0; i < ids.length; i += 1000) await registerAll(ids.slice(i, i + 1000));
    // turns of the event loop (setImmediate callbacks) while the count runs, in this process,
    // where the server runs: the embedded store answers synchronously, so a count that never
    // yields lets none run (a whole count held the server's thread: review of 43af95e)
    let turns = 0;
    let turning = true;
    const turn = () => {
      turns++;
      if (turning) setImmediate(turn);
    };
    setImmediate(turn);
    const started = turns;
    const counted = await countMatching({ store: ts.server.store, groups: ts.server.rollouts.groups, isOnline: () => false }, { id: 'api-turn-' });
    const during = turns - started;
    turning = false;
    assert.deepEqual([counted.total, counted.exact], [2500, true], 'all 2,500, exactly');
    assert.ok(during >= 2, `the event loop turned between the count's 3 pages (${during} turns)`);
    // answered from the last count for the same filters: a device registered since is not in it yet
    const first = await apiJson(ts, 'GET', '/api/v1/fleet/search/count?id=api-turn-');
    await registerAll(['api-turn-9999']);
    const again = await apiJson(ts, 'GET', '/api/v1/fleet/search/count?id=api-turn-');
    assert.deepEqual([first.body.total, again.body.total], [2500, 2500], 'the same answer within 15 s');
    const other = await apiJson(ts, 'GET', '/api/v1/fleet/search/count?id=api-turn-9');
    assert.equal(other.body.total, 1, 'other filters counted afresh: api-turn-9999, registered since');
  });
});
