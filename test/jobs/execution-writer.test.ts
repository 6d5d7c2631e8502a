/**
 * mutateExecution's memory of the rows it wrote, on a real SQLite store: another writer's
 * change (another instance, another code path) is never overwritten nor missed.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, it } from 'node:test';
import { EventBus } from '../../src/events/event-bus.ts';
import { mutateExecution } from '../../src/jobs/execution-writer.ts';
import type { ExecutionRecord, JobRecord } from '../../src/store/state-store.ts';
import { SqliteStore } from '../../src/store/sqlite-store.ts';

let dir: string;
let store: SqliteStore;
const events = new EventBus();
const key = { jobId: 'job-1', deviceId: 'dev-1' };

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-writer-'));
  store = new SqliteStore({ path: path.join(dir, 'updraft.db') });
  await store.start();
  const job: JobRecord = { jobId: 'job-1', artifactName: 'fw', artifactVersion: '2.0.0', status: 'IN_PROGRESS', createdAt: 1 };
  const execution: ExecutionRecord = { ...key, status: 'QUEUED', details: {}, queuedAt: 1, updatedAt: 1, version: 1 };
  await store.createJob(job, [execution]);
});
after(async () => {
  await store.stop();
  await rm(dir, { recursive: true, force: true });
});

/** Another writer: changes the row behind this process's back. */
async function writeElsewhere(change: Partial<ExecutionRecord>): Promise<void> {
  const cur = (await store.getExecution(key.jobId, key.deviceId))!;
  assert.ok(await store.updateExecution({ ...cur, ...change, version: cur.version + 1 }));
}

it('a row changed by another writer since this process wrote it is read again, not overwritten', async () => {
  const mine = await mutateExecution({ store, events }, key, () => ({ status: 'IN_PROGRESS', details: { phase: 'DOWNLOADING' } }), 2);
  assert.equal(mine?.version, 2);
  await writeElsewhere({ details: { phase: 'DOWNLOADING', note: 'elsewhere' } });
  const seen: ExecutionRecord[] = [];
  const next = await mutateExecution({ store, events }, key, (cur) => (seen.push(cur), { details: { ...cur.details, progress: 0.5 } }), 3);
  assert.equal(seen.length, 2, 'the remembered row first, then the store row after the conditional write failed');
  assert.deepEqual(next?.details, { phase: 'DOWNLOADING', note: 'elsewhere', progress: 0.5 }, "the other writer's change is kept");
  assert.equal(next?.version, 4);
});

it('an edit with nothing to do on the remembered row is confirmed on the store row', async () => {
  // this process remembers IN_PROGRESS; elsewhere the execution was retried (QUEUED again)
  await writeElsewhere({ status: 'QUEUED', details: {} });
  const next = await mutateExecution({ store, events }, key, (cur) => (cur.status === 'QUEUED' ? { status: 'CANCELED' } : undefined), 4);
  assert.equal(next?.status, 'CANCELED', 'not skipped on the strength of a stale memory');
  assert.equal((await store.getExecution(key.jobId, key.deviceId))?.status, 'CANCELED');
});
