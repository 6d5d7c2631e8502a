/**
 * `DELETE /api/v1/jobs/{id}` and `updraft job delete`: a finished job goes with everything kept
 * under its id (executions, counts, devices' logs, webhook deliveries still waiting); a job not
 * finished, or one whose devices are still being stopped or owed a take-back, is refused with
 * 409 saying what to do; an unknown one is 404; a viewer token is refused. Real server, real
 * HTTP and CLI, on SQLite and on a private PostgreSQL (test/helpers/postgres.ts).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { ExecutionRecord, JobRecord } from '../../src/store/state-store.ts';
import { runCli } from '../helpers/cli.ts';
import { startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

type Answer = { status: number; body: any };

for (const db of ['SQLite', 'PostgreSQL'] as const) {
  describe(`deleting a job, on ${db}`, () => {
    let pg: TestPostgres | undefined;
    let skip: string | undefined;
    let ts: TestServer;

    const api = async (method: string, route: string, body?: unknown, token = ts.token): Promise<Answer> => {
      const res = await fetch(ts.httpUrl + route, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, body: await res.json() };
    };
    const cli = (...args: string[]) => runCli([...args, '--server', ts.httpUrl, '--token', ts.token]);
    const key = (at: number, jobId: string, version: number) => `webhook:${String(at).padStart(15, '0')}:${jobId}:${String(version).padStart(10, '0')}`;

    before(async () => {
      let url: string | undefined;
      if (db === 'PostgreSQL') {
        const started = await startTestPostgres();
        if (!started.ok) {
          skip = unavailable(started, 'PostgreSQL job deletion test');
          return;
        }
        pg = started.server;
        url = await pg.createDatabase();
      }
      ts = await startTestServer({ flags: url ? { db: url } : {} });
      const up = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=2.0.0`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(Buffer.from('two')) });
      assert.equal(up.status, 201);
      for (const id of ['d1', 'd2']) await registerDevice(ts, id);
    });
    after(async () => {
      await ts?.close();
      await pg?.stop();
    });

    it('refuses a running job (cancel it first), then deletes it canceled with everything kept under its id', async (t) => {
      if (skip) return t.skip(skip);
      const created = await api('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['d1', 'd2'] } });
      assert.equal(created.status, 201);
      const jobId: string = created.body.job.jobId;

      const running = await api('DELETE', `/api/v1/jobs/${jobId}`);
      assert.equal(running.status, 409);
      assert.match(running.body.error.message, /is IN_PROGRESS: only a finished job .* can be deleted; cancel it first \(updraft job cancel /);
      const refusedCli = await cli('job', 'delete', jobId);
      assert.equal(refusedCli.code, 2);
      assert.equal(refusedCli.stdout, '');
      assert.equal(refusedCli.stderr.trim().split('\n').length, 1, refusedCli.stderr);
      assert.match(refusedCli.stderr, /is IN_PROGRESS: .*cancel it first/);

      assert.equal((await api('POST', `/api/v1/jobs/${jobId}/cancel`)).body.job.status, 'CANCELED');
      // what else is kept under its id: a device's log, webhook deliveries (one waiting, one
      // sent), and another job's waiting delivery, which stays
      const store = ts.server.store;
      assert.equal(await store.putJobLog({ jobId, deviceId: 'd1', agentJobId: jobId, receivedAt: Date.now(), lines: ['boom'], dropped: 0 }, 10), true);
      const waiting = key(Date.now(), jobId, 3);
      const sent = key(Date.now(), jobId, 2);
      const others = key(Date.now(), 'another-job', 2);
      await store.putSetting(waiting, JSON.stringify({ delivery: { id: `${jobId}:3` } }));
      await store.putSetting(sent, JSON.stringify({ delivery: { id: `${jobId}:2` }, sentAt: Date.now() }));
      await store.putSetting(others, JSON.stringify({ delivery: { id: 'another-job:2' } }));
      const history = await api('GET', '/api/v1/devices/d1/history');
      assert.deepEqual(history.body.items.map((e: ExecutionRecord) => e.jobId), [jobId]);

      // a viewer token is refused, as for every other write
      const viewer = await api('POST', '/api/v1/viewer-tokens', { name: 'wall' });
      assert.equal((await api('DELETE', `/api/v1/jobs/${jobId}`, undefined, viewer.body.token)).status, 403);
      assert.equal((await api('GET', `/api/v1/jobs/${jobId}`)).status, 200, 'the viewer deleted nothing');

      // live views hear of it
      const stream = await fetch(`${ts.httpUrl}/api/v1/events?types=job.deleted`, { headers: { authorization: `Bearer ${ts.token}` } });
      const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
      assert.match((await reader.read()).value ?? '', /updraft events/);

      const deleted = await cli('job', 'delete', jobId);
      assert.equal(deleted.code, 0, deleted.stderr);
      assert.equal(deleted.stdout, `job ${jobId} deleted (CANCELED, fw@2.0.0)\n`);

      let text = '';
      while (!text.includes('\n\n')) text += (await reader.read()).value ?? '';
      await reader.cancel();
      assert.match(text, new RegExp(`event: job.deleted\ndata: \\{"jobId":"${jobId}"\\}`));

      assert.equal((await api('GET', `/api/v1/jobs/${jobId}`)).status, 404);
      assert.ok(!(await api('GET', '/api/v1/jobs')).body.items.some((j: JobRecord) => j.jobId === jobId), 'not listed');
      assert.deepEqual(await store.listExecutions({ jobId }), [], 'its executions');
      assert.deepEqual(await store.countExecutions(jobId), [], 'their counts');
      assert.deepEqual(await store.listJobLogs(jobId, { limit: 10 }), { items: [] }, "its devices' logs");
      assert.deepEqual((await store.listSettings('webhook:')).map((s) => s.key).sort(), [others, sent].sort(), 'its waiting delivery, not the sent one or another job\'s');
      assert.deepEqual((await api('GET', '/api/v1/devices/d1/history')).body.items, [], "the device's history no longer lists it");

      // again: it does not exist
      const again = await api('DELETE', `/api/v1/jobs/${jobId}`);
      assert.equal(again.status, 404);
      assert.match(again.body.error.message, new RegExp(`job ${jobId} does not exist`));
      const againCli = await cli('job', 'delete', jobId);
      assert.equal(againCli.code, 2);
      assert.equal(againCli.stderr.trim().split('\n').length, 1, againCli.stderr);
      assert.match(againCli.stderr, /does not exist/);
    });

    it('refuses a finished job whose devices are still being stopped or owed a take-back, and deletes it once they are not', async (t) => {
      if (skip) return t.skip(skip);
      const store = ts.server.store;
      const jobId = randomUUID();
      const now = Date.now();
      const later = now + 3_600_000; // no deadline the engine reaches during the test
      await store.createJob({ jobId, artifactName: 'fw', artifactVersion: '2.0.0', status: 'CANCELED', createdAt: now, updatedAt: now, version: 2 }, [
        { jobId, deviceId: 'd1', status: 'IN_PROGRESS', details: { cancelRequested: true, cancelBy: later }, queuedAt: now, updatedAt: now, version: 1, dispatchedAt: now, dueAt: later },
        { jobId, deviceId: 'd2', status: 'SUCCEEDED', details: {}, queuedAt: now, updatedAt: now, version: 1, dispatchedAt: now },
      ]);
      const stopping = await api('DELETE', `/api/v1/jobs/${jobId}`);
      assert.equal(stopping.status, 409);
      assert.match(stopping.body.error.message, /is CANCELED, but 1 of its device\(s\) have not finished with it yet .* a stop waits at most 5 minutes/);

      // ended, but its command still to be taken back (a deadline kept)
      const d1 = (await store.getExecution(jobId, 'd1'))!;
      assert.equal(await store.updateExecution({ ...d1, status: 'CANCELED', details: { retractPending: `${jobId}.1` }, version: 2 }), true);
      assert.equal((await api('DELETE', `/api/v1/jobs/${jobId}`)).status, 409);
      assert.equal((await store.listExecutions({ jobId })).length, 2, 'nothing deleted');

      const owed = (await store.getExecution(jobId, 'd1'))!;
      const done: ExecutionRecord = { ...owed, details: {}, version: 3 };
      delete done.dueAt;
      assert.equal(await store.updateExecution(done), true);
      const r = await api('DELETE', `/api/v1/jobs/${jobId}`);
      assert.equal(r.status, 200);
      assert.equal(r.body.deleted.jobId, jobId);
      assert.equal(r.body.deleted.status, 'CANCELED');
      assert.deepEqual(await store.listExecutions({ jobId }), []);
    });
  });
}
