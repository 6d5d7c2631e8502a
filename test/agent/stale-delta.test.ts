/**
 * Out-of-order shadow messages: with several server instances on one external broker, a delta
 * one instance held during its broker outage reaches the device after a newer document from
 * another instance (a newer job's command, a cancel's stay command). The device-shadow
 * contract has devices discard a message whose `version` is older than one already seen. The
 * agent, a real broker over TCP and a real HTTP artifact server; the test plays the shadow
 * server and publishes the late delta over MQTT as the instance that held it would; then a
 * real server (its replica, jobs and cancel), the late delta published on its broker.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import type { DesiredSoftware } from '../../src/protocol/software.ts';
import { answerTopic, deltaTopic, requestTopic } from '../../src/protocol/topics.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent } from '../security/support.ts';
import { MemoryAgentStateStore } from '../../src/agent/agent-state.ts';
import { CountingInstaller, eventually, nextEvent } from './support/agent-fixture.ts';
import { fixturePerTest } from './support/fixture-per-test.ts';

describe('UpdateAgent: a delta older than a document already seen', () => {
  const ctx = fixturePerTest({ level: 'debug', format: 'json' });
  const slots = () => new CountingInstaller(new SlotInstaller({ dir: ctx.f.installDir }));
  const commandFor = (sw: DesiredSoftware) => ({ ...sw, ...ctx.f.server.issueUrl(sw) });
  const nowS = () => Math.floor(Date.now() / 1000);
  const discarded = () => ctx.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'ignoring a shadow message older than one already seen');

  it('does not start the job of a late delta: job B (newer) finished, then job A at an older version comes', async () => {
    const installer = slots();
    const agent = await ctx.started(installer);
    const s = ctx.f.server;
    const jobs: string[] = [];
    agent.on('status', (e) => jobs.push(e.jobId));
    const finished = nextEvent(agent, 'job-finished');
    // job A's command was written at this version; its delta is held by an instance cut from the broker
    const heldVersion = ++s.version;
    const jobA = commandFor(ctx.f.software('A', '2.0.0'));
    // job B supersedes it, through another instance: this is what the device hears first
    await s.setDesired(ctx.f.software('B', '3.0.0'));
    assert.deepEqual(await finished, { jobId: 'B', status: 'SUCCESS', version: '3.0.0' });
    const bReports = s.reportsFor('B').length;

    // the held delta arrives at last, then (in order, over the same connection) B's command again
    await s.publishRaw({ state: { software: jobA }, metadata: {}, version: heldVersion, timestamp: nowS() });
    await s.republishDelta(s.command());
    await s.until(() => s.reportsFor('B').length > bReports, "B's outcome re-reported (the message after the late delta)");
    assert.equal(agent.currentJobId, undefined);
    assert.deepEqual(s.reportsFor('A'), []);
    assert.ok(!jobs.includes('A'), jobs.join());
    assert.equal(installer.installs, 1);
    assert.equal((await installer.current())?.version, '3.0.0');
    const lines = discarded();
    assert.equal(lines.length, 1, JSON.stringify(ctx.lines.slice(-5)));
    assert.equal(lines[0]!.level, 'debug');
    assert.equal(lines[0]!.version, heldVersion);
  });

  it('does not let a late delta replace the job in flight: B downloads to SUCCESS, A is never started', async () => {
    const installer = slots();
    const agent = await ctx.started(installer, { downloadSettings: { retryDelayMs: 5, maxBytesPerSecond: 128 * 1024 } });
    const s = ctx.f.server;
    const heldVersion = ++s.version;
    const jobA = commandFor(ctx.f.software('A', '2.0.0'));
    const finished = nextEvent(agent, 'job-finished');
    const downloading = nextEvent(agent, 'progress');
    await s.setDesired(ctx.f.software('B', '3.0.0'));
    await downloading;
    await s.publishRaw({ state: { software: jobA }, metadata: {}, version: heldVersion, timestamp: nowS() });
    assert.deepEqual(await finished, { jobId: 'B', status: 'SUCCESS', version: '3.0.0' });
    assert.deepEqual(s.reportsFor('A'), []);
    assert.equal(installer.installs, 1);
    assert.ok(discarded().length >= 1);
  });

  it('a repeat of the same delta (equal version) stays as today: the job in flight takes it, nothing restarts', async () => {
    const installer = slots();
    const agent = await ctx.started(installer, { downloadSettings: { retryDelayMs: 5, maxBytesPerSecond: 128 * 1024 } });
    const s = ctx.f.server;
    s.noDeltaOnUpdate = true;
    const finished = nextEvent(agent, 'job-finished');
    const downloading = nextEvent(agent, 'progress');
    await s.setDesired(ctx.f.software('B', '3.0.0'));
    await downloading;
    await s.publishRaw({ state: { software: s.command() }, metadata: {}, version: s.version, timestamp: nowS() });
    assert.deepEqual(await finished, { jobId: 'B', status: 'SUCCESS', version: '3.0.0' });
    assert.equal(installer.installs, 1);
    assert.deepEqual(discarded(), []);
  });

  it("ignores a get answer older than a delta heard while it was on the way: the newer job is not superseded", async () => {
    const installer = slots();
    const s = ctx.f.server;
    // job A desired while the device was away; no report brings its delta, the catch-up get does
    s.desired = ctx.f.software('A', '2.0.0');
    s.version++;
    s.noDeltaOnUpdate = true;
    let release!: () => void;
    s.holdNextGet = new Promise((resolve) => (release = resolve));
    const agent = ctx.f.agent(installer, { logger: ctx.logger(), stateStore: new MemoryAgentStateStore({ finished: [] }), downloadSettings: { retryDelayMs: 5, maxBytesPerSecond: 128 * 1024 } });
    const finished = nextEvent(agent, 'job-finished');
    await agent.start();
    await s.until(() => s.gets >= 1, 'the catch-up get');
    // its answer (job A) is held on the way; job C, newer, reaches the device first
    await s.setDesired(ctx.f.software('C', '3.0.0'));
    await eventually(() => agent.currentJobId === 'C', 'job C started');
    release();
    assert.deepEqual(await finished, { jobId: 'C', status: 'SUCCESS', version: '3.0.0' });
    assert.deepEqual(s.reportsFor('A'), []);
    assert.equal(installer.installs, 1);
    assert.deepEqual(discarded().map((l) => l.message), ['get']);
  });

  it('takes a lower version after its shadow was deleted (delete/accepted heard): a re-created shadow starts again', async () => {
    const installer = slots();
    const agent = await ctx.started(installer);
    const s = ctx.f.server;
    let finished = nextEvent(agent, 'job-finished');
    await s.setDesired(ctx.f.software('B', '3.0.0'));
    assert.equal((await finished).status, 'SUCCESS');
    assert.ok(s.version > 2);
    // the operator deletes the device's shadow; its version is let go, the next starts at 1
    await s.publishAnswer('delete', 'accepted', { version: s.version, timestamp: nowS() });
    s.version = 0;
    finished = nextEvent(agent, 'job-finished');
    await s.setDesired(ctx.f.software('C', '4.0.0'));
    assert.deepEqual(await finished, { jobId: 'C', status: 'SUCCESS', version: '4.0.0' });
    assert.deepEqual(discarded(), []);
  });

  it('takes a lower version stamped hours after the newest seen (re-created, its deletion not heard)', async () => {
    const installer = slots();
    const agent = await ctx.started(installer);
    const s = ctx.f.server;
    let finished = nextEvent(agent, 'job-finished');
    await s.setDesired(ctx.f.software('B', '3.0.0'));
    assert.equal((await finished).status, 'SUCCESS');
    // the device was offline through its deletion and its tombstones' retention (at least an hour)
    s.version = 0;
    s.reported = {};
    s.now = () => Date.now() + 2 * 3_600_000;
    finished = nextEvent(agent, 'job-finished');
    await s.setDesired(ctx.f.software('C', '4.0.0'));
    assert.deepEqual(await finished, { jobId: 'C', status: 'SUCCESS', version: '4.0.0' });
  });
});

describe('UpdateAgent against a real server: a job canceled while its delta was held', () => {
  let ts: TestServer;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-stale-delta-'));
    ts = await startTestServer();
    // what the device runs is in the catalogue: the cancel writes a stay command (not a clear)
    await addArtifact(ts, '1.0.0', Buffer.from('fw 1.0.0 '.repeat(300)));
    await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(300)));
  });
  after(async () => {
    await ts.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("ignores job A's delta arriving after the cancel's stay command: A is not started", async () => {
    const id = 'dev-stale';
    const password = await registerDevice(ts, id);
    const creds = { username: id, password };
    const first = await startAgent(ts, dir, id, creds);
    await first.agent.stop();
    // job A is written while the device is away; the delta one instance published for it is
    // held (its broker connection down): the test keeps it, as the device's get shows it
    const jobA = await deploy(ts, [id], 'fw@2.0.0');
    const device = await TestClient.connect(ts.mqttUrl, id, creds);
    await device.subscribe(answerTopic({ deviceId: id, name: '' }, 'get', 'accepted'));
    await device.publish(requestTopic({ deviceId: id, name: '' }, 'get'), { clientToken: 'held' });
    const doc = (await device.next((m) => m.body?.clientToken === 'held')).body;
    await device.client.endAsync();
    const commandA = doc.state.delta.software;
    assert.equal(commandA.version, '2.0.0');
    // the cancel (another instance): a stay command, the build the device runs, at a newer version
    const res = await fetch(`${ts.httpUrl}/api/v1/jobs/${jobA}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` } });
    assert.equal(res.status, 200, await res.text());

    const { agent, finished } = await startAgent(ts, dir, id, creds);
    const stay = await outcome(finished, `${commandA.jobId}.cancel`);
    assert.equal(stay.status, 'SUCCESS');
    assert.equal(stay.version, '1.0.0');
    const started: string[] = [];
    agent.on('status', (e) => started.push(`${e.jobId}:${e.status}`));
    // the held delta reaches the device at last; then a newer one (the application's), in order
    const deltaSeen = new Promise<void>((resolve) => agent.on('delta', (d) => d.state.marker === 1 && resolve()));
    const now = Math.floor(Date.now() / 1000);
    await ts.server.broker.publish(deltaTopic(id), JSON.stringify({ state: { software: commandA }, metadata: {}, version: doc.version, timestamp: now }), 1);
    const shadow = await ts.server.store.getShadow(id, '');
    await ts.server.broker.publish(deltaTopic(id), JSON.stringify({ state: { marker: 1 }, metadata: {}, version: shadow!.version, timestamp: now }), 1);
    await deltaSeen;
    assert.equal(agent.currentJobId, undefined, started.join());
    assert.deepEqual(started, []);
    assert.deepEqual(finished.map((e) => e.jobId), [`${commandA.jobId}.cancel`]);
    await agent.stop();
  });
});
