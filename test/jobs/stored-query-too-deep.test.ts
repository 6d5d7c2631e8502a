/**
 * A continuous job or dynamic group whose query was saved by a release without the nesting cap
 * (7860efa: at most 64 levels) no longer parses. That job alone stops taking new devices: the
 * other continuous jobs still pick up a device that comes online and at their scans, the
 * engine says so once (not at every scan or arrival), and the job's view names the problem.
 * Through the API, such a group's members (and the dashboard's search by it) are a 409 naming
 * the group, not a 400 as if the request were wrong, and the job's view carries targetsError.
 * Real parts (SQLite store, replica, tracker, engine) with a fake clock, then a real server
 * over HTTP; the query is written into the row directly, as an older release stored it.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { apiJson, registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact } from '../security/support.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

/** 70 levels of parentheses: taken before 7860efa, refused since. */
export const DEEP_QUERY = '('.repeat(70) + 'tags = grp' + ')'.repeat(70);

describe('a continuous job whose stored query no longer parses', () => {
  let f: RolloutFixture;
  const lines: string[] = [];
  beforeEach(async () => {
    lines.length = 0;
    f = await startRolloutFixture({ builds: ['2.0.0'], logger: createLogger({ level: 'info', write: (l) => lines.push(l) }) });
    await f.fleet('a', 2, '1.0.0', { tags: ['grp'] });
  });
  afterEach(() => f.close());

  const create = async (query: string) => (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', type: 'continuous', targets: { query } })).job.jobId;
  const bad = (l: string) => l.includes('no longer parses') || l.includes('rollout step failed') || l.includes('cannot look up the executions');

  it('affects only its own job, is logged once and shows on the job', async () => {
    const deep = await create('tags = grp'); // the older: the engine looks at it first
    f.advance(1_000);
    const good = await create('tags = grp');
    // what an older release stored: the deeper query, then a restart on this release
    const db = new Database(path.join(f.dir, 'updraft.db'));
    try {
      const row = db.prepare('SELECT spec FROM jobs WHERE job_id = ?').get(deep) as { spec: string };
      const spec = JSON.parse(row.spec) as { targets: { query: string } };
      spec.targets.query = DEEP_QUERY;
      db.prepare('UPDATE jobs SET spec = ? WHERE job_id = ?').run(JSON.stringify(spec), deep);
    } finally {
      db.close();
    }
    await f.restart();
    lines.length = 0;
    await f.tick(); // the first scans

    // a device registered now and coming online: the good job takes it at once
    await f.registry.register({ deviceId: 'a003', tags: ['grp'] });
    f.events.emit('device.presence', { deviceId: 'a003', online: true });
    const joined = await eventually(async () => ((await f.store.getExecution(good, 'a003')) ? true : undefined), 5_000, 'the good job taking the arriving device').catch(() => false);
    assert.equal(joined, true, `the other job did not take the device that came online; log:\n${lines.join('\n')}`);
    assert.equal(await f.store.getExecution(deep, 'a003'), undefined, 'the job whose query does not parse takes no new device');

    // more scans and arrivals: nothing more said of it
    for (let i = 0; i < 4; i++) {
      f.advance(61_000);
      await f.tick();
      f.events.emit('device.presence', { deviceId: `a00${1 + (i % 3)}`, online: true });
    }
    await f.registry.register({ deviceId: 'a004', tags: ['grp'] });
    f.advance(61_000);
    await f.tick();
    assert.ok(await f.store.getExecution(good, 'a004'), 'the good job picks up devices at its scan');
    const said = lines.filter(bad);
    assert.equal(said.length, 1, said.join('\n'));
    assert.match(said[0]!, new RegExp(`no longer parses.*${deep}|${deep}.*no longer parses`));

    // the job goes on with the devices it has, and its view names the problem
    assert.equal((await f.job(deep)).status, 'IN_PROGRESS');
    const view = await f.rollouts.jobs.view(deep);
    assert.match(view.targetsError ?? '', /^targets\.query no longer parses \(saved by an earlier release\): invalid query at position 65: nested more than 64 levels deep/);
    assert.equal((await f.rollouts.jobs.view(good)).targetsError, undefined);
  });
});

describe('a dynamic group whose stored query no longer parses, through the API', () => {
  let ts: TestServer | undefined;
  after(async () => ts?.close());

  it('its members are a 409 naming it; other groups, the list and the job view answer', async () => {
    ts = await startTestServer();
    await addArtifact(ts, '2.0.0', randomBytes(100));
    for (const d of ['g1', 'g2']) await registerDevice(ts, d, { tags: ['grp'] });
    for (const name of ['deep', 'fine']) assert.equal((await apiJson(ts, 'POST', '/api/v1/groups', { name, query: 'tags = grp' })).status, 201);
    const made = await apiJson(ts, 'POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', type: 'continuous', targets: { groups: ['deep'] } });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const jobId = made.body.job.jobId as string;
    await ts.stop();
    const db = new Database(path.join(ts.dataDir, 'updraft.db'));
    try {
      db.prepare('UPDATE device_groups SET query = ? WHERE name = ?').run(DEEP_QUERY, 'deep');
    } finally {
      db.close();
    }
    ts = await startTestServer({ dataDir: ts.dataDir });

    const members = await apiJson(ts, 'GET', '/api/v1/groups/deep');
    assert.equal(members.status, 409, JSON.stringify(members.body));
    const said = /^the query of group deep no longer parses \(saved by an earlier release\): invalid query at position 65: nested more than 64 levels deep \(parentheses and \[\.\.\.\] conditions together\); create the group again/;
    assert.match(members.body.error.message, said);
    const search = await apiJson(ts, 'GET', '/api/v1/fleet/search?group=deep');
    assert.equal(search.status, 409, JSON.stringify(search.body));
    assert.match(search.body.error.message, said);
    // the rest answers
    assert.deepEqual((await apiJson(ts, 'GET', '/api/v1/groups/fine')).body.members, ['g1', 'g2']);
    assert.equal((await apiJson(ts, 'GET', '/api/v1/groups')).status, 200);
    const view = await apiJson(ts, 'GET', `/api/v1/jobs/${jobId}`);
    assert.equal(view.status, 200);
    assert.match(view.body.targetsError, said);
    assert.equal(view.body.job.status, 'IN_PROGRESS');
  });
});
