/**
 * The agent against a real aedes broker over TCP and a real HTTP artifact server; the test
 * plays the shadow server (answers on accepted topics echoing the clientToken, publishes
 * deltas, echoes the agent's reports back as deltas like the replica does).
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import { SimulatedInstaller } from '../../src/agent/simulated-installer.ts';
import { MemoryAgentStateStore, type AgentStateData } from '../../src/agent/agent-state.ts';
import { AgentFixture, CountingInstaller, eventually, isMonotonic, nextEvent } from './support/agent-fixture.ts';

describe('UpdateAgent', () => {
  let f: AgentFixture;

  beforeEach(async () => {
    f = new AgentFixture();
    await f.start();
  });
  afterEach(() => f.close());

  const slots = (extra: Partial<ConstructorParameters<typeof SlotInstaller>[0]> = {}) => new CountingInstaller(new SlotInstaller({ dir: f.installDir, ...extra }));
  const readState = async () => JSON.parse(await readFile(path.join(f.stateDir, 'agent-state.json'), 'utf8'));

  it('reports what runs on connect, then applies a delta: DOWNLOADING … SUCCESS with the new version', async () => {
    const installer = slots();
    const agent = f.agent(installer);
    await agent.start();
    await f.server.until(() => f.server.reports.length >= 1 && f.server.gets >= 1, 'the connect report and get');
    assert.deepEqual(f.server.reports[0], { name: null, version: '0.0.0', sha256: null, size: null, status: 'IDLE', progress: null, error: null, waiting: null, jobVersion: null });

    const finished = nextEvent(agent, 'job-finished');
    const events: unknown[] = [];
    agent.on('status', (e) => events.push(e));
    const sw = f.software('job-1');
    await f.server.setDesired(sw);
    assert.deepEqual(await finished, { jobId: 'job-1', status: 'SUCCESS', version: '2.0.0' });
    // the agent goes through every phase, each event the job's (its id and target version, as
    // StatusEvent's type says); its reports of them may be coalesced while an answer is pending
    assert.deepEqual(events, ['DOWNLOADING', 'VERIFYING', 'INSTALLING', 'SUCCESS'].map((status) => ({ jobId: 'job-1', status, version: '2.0.0' })));

    const reports = f.server.reportsFor('job-1');
    const statuses = reports.map((r) => r.status as string);
    assert.equal(statuses[0], 'DOWNLOADING');
    assert.equal(reports[0]!.progress, 0);
    assert.equal(statuses[statuses.length - 1], 'SUCCESS');
    assert.ok(isMonotonic(statuses), statuses.join());
    for (const r of reports.filter((r) => r.status === 'DOWNLOADING')) assert.ok(typeof r.progress === 'number' && r.progress >= 0 && r.progress < 1);
    // the final leaves equal the desired ones: the server's delta is empty, no stale progress/error
    assert.deepEqual(f.server.reported.software, { ...sw, status: 'SUCCESS' });
    assert.equal(f.server.differs, false);
    assert.equal(installer.installs, 1);
    assert.equal((await installer.current())?.version, '2.0.0');
    // the in-flight record is gone, the outcome remembered, the download deleted
    const state = await readState();
    assert.equal(state.inFlight, undefined);
    assert.deepEqual(state.finished.map((j: { jobId: string; status: string }) => [j.jobId, j.status]), [['job-1', 'SUCCESS']]);
    assert.equal(await stat(path.join(f.stateDir, 'downloads', 'job-1.part')).then(() => true, () => false), false);
  });

  it('acknowledges a duplicate delta by re-reporting the outcome, without installing twice', async () => {
    const installer = slots();
    const agent = f.agent(installer);
    await agent.start();
    const finished = nextEvent(agent, 'job-finished');
    await f.server.setDesired(f.software('job-1'));
    await finished;
    const before = f.server.reportsFor('job-1').length;

    // the same command again (e.g. the server re-sent it after a later update)
    await f.server.republishDelta(f.server.command());
    await f.server.until(() => f.server.reportsFor('job-1').length > before, 'the outcome re-reported');
    const again = f.server.reportsFor('job-1').slice(before);
    assert.deepEqual(again.map((r) => r.status), ['SUCCESS']);
    assert.equal(again[0]!.version, '2.0.0');
    assert.equal(installer.installs, 1);
  });

  it('reports FAILURE with the version still running, and ignores the echo of its own report', async () => {
    const installer = slots({ initialVersion: '1.0.0', initialName: 'fw', healthCheck: 'echo "self-test failed" >&2; exit 4' });
    const agent = f.agent(installer);
    await agent.start();
    const finished = nextEvent(agent, 'job-finished');
    await f.server.setDesired(f.software('job-bad'));
    const ev = await finished;
    assert.deepEqual(ev, { jobId: 'job-bad', status: 'FAILURE', error: 'health check failed: exit code 4: self-test failed', version: '1.0.0' });
    const last = f.server.reportsFor('job-bad').at(-1)!;
    assert.deepEqual(last, { name: 'fw', version: '1.0.0', sha256: null, size: null, status: 'FAILURE', progress: null, error: ev.error, waiting: null, jobVersion: null, jobId: 'job-bad' });
    // desired still differs, so the server echoed a delta for job-bad after the FAILURE report.
    // A later job's first report is queued behind any re-report the echo could have caused.
    await f.server.setDesired(f.software('job-next', '3.0.0'));
    await f.server.until(() => f.server.reportsFor('job-next').length > 0, 'the next job starting');
    assert.equal(f.server.reportsFor('job-bad').filter((r) => r.status === 'FAILURE').length, 1);
    await nextEvent(agent, 'job-finished', (e) => e.jobId === 'job-next');
  });

  it('fails a tampered download with the integrity reason and keeps the old version', async () => {
    f.http.mode = 'tamper';
    const agent = f.agent(slots({ initialVersion: '1.0.0' }));
    await agent.start();
    const finished = nextEvent(agent, 'job-finished');
    await f.server.setDesired(f.software('job-t'));
    const ev = await finished;
    assert.equal(ev.status, 'FAILURE');
    assert.match(ev.error ?? '', /^sha256 mismatch: expected [0-9a-f]{64}, got [0-9a-f]{64}$/);
    assert.equal(f.server.reportsFor('job-t').at(-1)!.version, '1.0.0');
  });

  it('catches up after being offline: acts on the delta in the get answer', async () => {
    await f.server.setDesired(f.software('job-offline')); // nobody listens yet
    const agent = f.agent(slots());
    const finished = nextEvent(agent, 'job-finished');
    await agent.start();
    assert.equal((await finished).status, 'SUCCESS');
    assert.equal(f.server.differs, false);
  });

  /**
   * The device ran before and its store is sure of what it finished: a memory store (the
   * simulator's). The file store asks its shadow first at every start (a save the disk
   * refused may have lost an outcome; test/agent/unsaved-outcome.test.ts), as an agent
   * without state does (below); a reconnect skips the get alike.
   */
  const ranBefore = () => ({ stateStore: new MemoryAgentStateStore({ finished: [] }) });

  it('skips the get when the delta answering its connect report already brought the command', async () => {
    f.server.deltaFirst = true;
    await f.server.setDesired(f.software('job-from-report')); // nobody listens yet
    const agent = f.agent(slots(), ranBefore());
    const finished = nextEvent(agent, 'job-finished');
    await agent.start();
    assert.equal((await finished).status, 'SUCCESS');
    assert.equal(f.server.gets, 0, 'no get: the report\'s delta carried the command');
  });

  it('still asks for its document when no delta with software answered its connect report', async () => {
    f.server.deltaFirst = true; // a delta would come first, but nothing is desired
    const agent = f.agent(slots(), ranBefore());
    await agent.start();
    await f.server.until(() => f.server.gets === 1, 'the catch-up get');
    assert.equal(f.server.reports.length, 1, 'the connect report came first');
  });

  it('without saved state, asks for its document before it reports, and takes the outcome it reported last as finished', async () => {
    // what the device reported before its state was lost: a job that failed
    const sw = f.software('job-failed-before');
    f.server.reported = { software: { name: null, version: '0.0.0', status: 'FAILURE', jobId: sw.jobId, error: 'health check failed: exit code 3' } };
    f.server.deltaFirst = true;
    await f.server.setDesired(sw); // still desired after the failure
    const installer = slots();
    const agent = f.agent(installer);
    await agent.start();
    await f.server.until(() => f.server.gets >= 1 && f.server.reports.length >= 1, 'the get and the connect report');
    assert.equal(f.server.gets, 1, 'one get: its document serves the catch-up too');
    // its connect report re-reports that outcome instead of IDLE, and nothing runs
    assert.deepEqual(f.server.reports[0], { name: null, version: '0.0.0', sha256: null, size: null, status: 'FAILURE', progress: null, error: 'health check failed: exit code 3', waiting: null, jobVersion: null, jobId: sw.jobId });
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(installer.installs, 0);
    assert.equal(agent.currentJobId, undefined);
    const saved = await readState();
    assert.deepEqual(saved.finished.map((j: { jobId: string; status: string }) => [j.jobId, j.status]), [[sw.jobId, 'FAILURE']]);
    assert.equal(saved.unknownPast, undefined, 'known from now on');
    // a new job is taken as usual
    const finished = nextEvent(agent, 'job-finished');
    await f.server.setDesired(f.software('job-new'));
    assert.equal((await finished).status, 'SUCCESS');
  });

  it('without saved state, acts on a command that came while it asked for its document', async () => {
    // the get's answer is the document from before the command, and the connect report gets
    // no delta (the replica would send one, which would carry the command too, and prove
    // nothing): only the delta heard while asking carries it
    let release!: () => void;
    f.server.holdNextGet = new Promise<void>((r) => (release = r));
    f.server.noDeltaOnUpdate = true;
    const agent = f.agent(slots());
    await agent.start();
    await f.server.until(() => f.server.gets === 1, 'the get');
    const finished = nextEvent(agent, 'job-finished');
    await f.server.setDesired(f.software('job-meanwhile'));
    release();
    assert.deepEqual(await finished, { jobId: 'job-meanwhile', status: 'SUCCESS', version: '2.0.0' });
  });

  it('resumes a download interrupted by a restart from the partial file', async () => {
    f.http.mode = 'stall';
    const first = f.agent(slots());
    await first.start();
    await f.server.setDesired(f.software('job-r'));
    await f.http.stalled();
    const part = path.join(f.stateDir, 'downloads', 'job-r.part');
    await eventually(async () => ((await stat(part).catch(() => undefined))?.size ?? 0) > 0, 'bytes on disk');
    await first.stop();
    const saved = await readState();
    assert.equal(saved.inFlight.jobId, 'job-r');
    assert.equal(saved.inFlight.phase, 'DOWNLOADING');
    const have = (await stat(part)).size;

    f.http.mode = 'normal';
    const installer = slots();
    const second = f.agent(installer);
    const finished = nextEvent(second, 'job-finished');
    await second.start();
    assert.deepEqual(await finished, { jobId: 'job-r', status: 'SUCCESS', version: '2.0.0' });
    assert.ok(f.http.requests.some((r) => r.range === `bytes=${have}-` && r.status === 206), JSON.stringify(f.http.requests.map((r) => r.range)));
    assert.equal(installer.installs, 1);
    assert.equal((await readState()).inFlight, undefined);
  });

  it("keeps the job's log across a restart during the download: the command and the resumption", async () => {
    f.http.mode = 'stall';
    const first = f.agent(slots());
    await first.start();
    await f.server.setDesired(f.software('job-l'));
    await f.http.stalled();
    await first.stop();
    const lines = async () => ((await readState()).inFlight.log?.lines ?? []) as string[];
    assert.ok((await lines()).some((l) => /update command received jobId=job-l /.test(l)), `saved with the command: ${JSON.stringify(await lines())}`);
    const second = f.agent(slots());
    await second.start();
    // resumed once its shadow was read (a file store's state may be behind): its download stalls again
    await f.http.stalled(2);
    await second.stop();
    const after = await lines();
    assert.ok(after.some((l) => /update command received jobId=job-l /.test(l)), JSON.stringify(after));
    assert.ok(after.some((l) => /resuming interrupted update jobId=job-l phase=DOWNLOADING/.test(l)), `the restart is in the job's log: ${JSON.stringify(after)}`);
  });

  it("saves the job's log as lines come, not only with each phase: a download retry is on disk before the next phase", async () => {
    f.http.mode = 'cut';
    f.http.cuts = 1000;
    // a long wait after the first cut: the job stays in DOWNLOADING, no phase saves its log
    const agent = f.agent(slots(), { downloadSettings: { retryDelayMs: 600_000, maxRetryDelayMs: 600_000 } });
    await agent.start();
    await f.server.setDesired(f.software('job-r'));
    const lines = async () => ((await readState().catch(() => ({}))).inFlight?.log?.lines ?? []) as string[];
    await eventually(async () => (await lines()).some((l) => /download interrupted, retrying/.test(l)), 'the retry saved in the job\'s log');
    assert.equal((await readState()).inFlight.phase, 'DOWNLOADING');
    const saved = await lines();
    assert.ok(saved.some((l) => /update command received jobId=job-r /.test(l)), JSON.stringify(saved));
    await agent.stop();
  });

  it('recovers an install interrupted by a restart through Installer.recover', async () => {
    const marker = path.join(f.root, 'health-check-started');
    const first = f.agent(slots({ healthCheck: `touch '${marker}'; sleep 30` }));
    await first.start();
    await f.server.setDesired(f.software('job-i'));
    await eventually(() => stat(marker).then(() => true, () => false), 'the health check running');
    await first.stop();
    assert.equal((await readState()).inFlight.phase, 'INSTALLING');

    const installer = slots({ healthCheck: 'test "$UPDRAFT_VERSION" = 2.0.0' });
    const second = f.agent(installer);
    const finished = nextEvent(second, 'job-finished');
    await second.start();
    assert.deepEqual(await finished, { jobId: 'job-i', status: 'SUCCESS', version: '2.0.0' });
    assert.equal(installer.recovers, 1);
    assert.equal(installer.installs, 0);
    assert.equal(f.server.reportsFor('job-i').at(-1)!.status, 'SUCCESS');
  });

  it('asks for a fresh URL when the command arrives with an expired one', async () => {
    let issued = 0;
    f.server.issueUrl = () => {
      issued++;
      const exp = Math.floor(Date.now() / 1000) + (issued === 1 ? -60 : 3600);
      return { url: f.http.url(undefined, { exp: String(exp), sig: `s${issued}` }), urlExpiresAt: exp };
    };
    const agent = f.agent(slots());
    await agent.start();
    // the connect report too: handled after setDesired, it would publish a second delta with a fresh URL
    await f.server.until(() => f.server.reports.length >= 1 && f.server.gets >= 1, 'the connect report and get');
    const finished = nextEvent(agent, 'job-finished');
    await f.server.setDesired(f.software('job-x'));
    assert.equal((await finished).status, 'SUCCESS');
    assert.ok(f.server.gets >= 2, `gets: ${f.server.gets}`);
    assert.ok(f.http.requests.every((r) => r.status !== 403));
  });

  it('asks for a fresh URL when the download is refused with 403', async () => {
    f.http.revokedSigs.add('old');
    let issued = 0;
    f.server.issueUrl = () => ({ url: f.http.url(undefined, { sig: issued++ === 0 ? 'old' : 'new' }), urlExpiresAt: Math.floor(Date.now() / 1000) + 3600 });
    const agent = f.agent(slots());
    await agent.start();
    // the connect report too: handled after setDesired, it would publish a second delta with a fresh URL
    await f.server.until(() => f.server.reports.length >= 1 && f.server.gets >= 1, 'the connect report and get');
    const finished = nextEvent(agent, 'job-finished');
    await f.server.setDesired(f.software('job-403'));
    assert.equal((await finished).status, 'SUCCESS');
    assert.deepEqual(f.http.requests.map((r) => [r.query.get('sig'), r.status]), [['old', 403], ['new', 200]]);
  });

  it('retries a request whose answer never came (same clientToken)', async () => {
    f.server.dropNext = 1; // the connect report is swallowed
    const agent = f.agent(slots(), { requestTimeoutMs: 300, requestAttempts: 5 });
    await agent.start();
    await f.server.until(() => f.server.reports.length >= 1 && f.server.gets >= 1, 'the retried report and the get');
    assert.equal(f.server.reports[0]!.status, 'IDLE');
  });

  it('emits other delta keys as events and does not treat them as commands', async () => {
    const installer = slots();
    const agent = f.agent(installer);
    await agent.start();
    await f.server.until(() => f.server.gets >= 1, 'the connect get');
    const delta = nextEvent(agent, 'delta');
    await f.server.publishRaw({ state: { config: { interval: 5 } }, metadata: {}, version: 99, timestamp: 1 });
    assert.deepEqual((await delta).state, { config: { interval: 5 } });
    assert.equal(agent.currentJobId, undefined);
    assert.equal(installer.installs, 0);
  });

  it('runs with the simulated installer, an in-memory state store and no MQTT credentials', async () => {
    const installer = new SimulatedInstaller({ initial: { name: 'fw', version: '1.0.0' } });
    // the memory store keeps what was saved, not a copy: the agent must never change a saved object
    const saves: { saved: AgentStateData; json: string }[] = [];
    class Recording extends MemoryAgentStateStore {
      override async save(state: AgentStateData) {
        saves.push({ saved: { ...state }, json: JSON.stringify(state) });
        return super.save(state);
      }
    }
    const agent = f.agent(installer, { stateStore: new Recording() });
    await agent.start();
    for (const jobId of ['job-sim', 'job-sim-2']) {
      const finished = nextEvent(agent, 'job-finished');
      await f.server.setDesired(f.software(jobId, jobId === 'job-sim' ? '2.0.0' : '3.0.0'));
      assert.equal((await finished).status, 'SUCCESS');
    }
    assert.equal(installer.installs, 2);
    assert.ok(saves.length >= 8, `every phase of both jobs saved: ${saves.length}`);
    for (const { saved, json } of saves) assert.equal(JSON.stringify(saved), json, 'a saved state was changed afterwards');
    assert.equal(await stat(path.join(f.stateDir, 'agent-state.json')).then(() => true, () => false), false);
  });

  it('ignores a malformed command and stays idle', async () => {
    const agent = f.agent(slots());
    await agent.start();
    await f.server.until(() => f.server.gets >= 1, 'the connect get');
    const delta = nextEvent(agent, 'delta');
    await f.server.publishRaw({ state: { software: { version: 'not-semver', jobId: 'j' } }, metadata: {}, version: 5, timestamp: 1 });
    await delta;
    assert.equal(agent.currentJobId, undefined);
  });

  it('survives a corrupt state file', async () => {
    const { mkdir } = await import('node:fs/promises');
    await mkdir(f.stateDir, { recursive: true });
    await writeFile(path.join(f.stateDir, 'agent-state.json'), '{"inFlight": ');
    const agent = f.agent(slots());
    const finished = nextEvent(agent, 'job-finished');
    await agent.start();
    await f.server.setDesired(f.software('job-c'));
    assert.equal((await finished).status, 'SUCCESS');
  });

  it('calls a download off when a newer job arrives, reports it superseded, then runs the new one', async () => {
    f.http.mode = 'stall';
    const installer = slots();
    const agent = f.agent(installer);
    await agent.start();
    await f.server.setDesired(f.software('job-old'));
    await f.http.stalled();
    f.http.mode = 'normal';
    const oldDone = nextEvent(agent, 'job-finished', (e) => e.jobId === 'job-old');
    const newDone = nextEvent(agent, 'job-finished', (e) => e.jobId === 'job-new');
    await f.server.setDesired(f.software('job-new', '3.0.0'));
    assert.deepEqual(await oldDone, { jobId: 'job-old', status: 'FAILURE', error: 'superseded by job job-new', version: '0.0.0', supersededBy: 'job-new' }, 'the superseded job ends in FAILURE, naming the job that called it off (supersededBy)');
    assert.deepEqual(await newDone, { jobId: 'job-new', status: 'SUCCESS', version: '3.0.0' });
    assert.equal(installer.installs, 1);
    assert.equal(f.server.differs, false);
  });

  it('starts and stops cleanly while the broker is unreachable', async () => {
    const agent = f.agent(slots(), { brokerUrl: 'mqtt://127.0.0.1:1' });
    await agent.start();
    assert.equal(agent.connected, false);
    await agent.stop();
    assert.equal(agent.connected, false);
  });
});
