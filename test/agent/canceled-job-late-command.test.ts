/**
 * A canceled job is never started or installed by a message that comes late or before the
 * server's current document (docs/agent.md, "A canceled job stays canceled"):
 * - with several server instances on one external broker, the delta one instance held during
 *   its broker outage reaches the device after the stay command (`<id>.cancel`) another
 *   instance wrote: the agent remembers (in its state file, across restarts) the jobs whose
 *   stay it heard, and ignores their commands;
 * - a job saved in flight before it installed and canceled while the agent was stopped is not
 *   installed at the restart because the install gate said go before the `get` answer came.
 * A real server (its replica, jobs and cancel), its broker over TCP, real agents and A/B slots;
 * the late delta is published on the server's broker as the instance that held it would.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { UpdateAgent } from '../../src/agent/agent.ts';
import { MemoryAgentStateStore } from '../../src/agent/agent-state.ts';
import type { UpdateAgentOptions } from '../../src/agent/agent-options.ts';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import type { GateAnswer } from '../../src/agent/update-job.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { startRelay, type TcpRelay } from '../helpers/tcp-relay.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, cancelJob, deploy, heldCommand, lateDelta, lineLogger, logMessages, outcome, startAgent } from '../security/support.ts';
import { CountingInstaller } from './support/agent-fixture.ts';

describe('UpdateAgent: a canceled job stays canceled', () => {
  let ts: TestServer;
  let root: string;
  const agents: UpdateAgent[] = [];
  const relays: TcpRelay[] = [];

  before(async () => {
    ts = await startTestServer();
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-canceled-late-'));
    // what the devices run is in the catalogue: a cancel writes a stay command (not a clear)
    await addArtifact(ts, '1.0.0', Buffer.from('fw 1.0.0 '.repeat(300)));
    await addArtifact(ts, '1.5.0', Buffer.from('fw 1.5.0 '.repeat(300)));
    await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(3000)));
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await Promise.all(relays.map((r) => r.stop()));
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  it("ignores a canceled job's delta arriving after its stay command, also after a restart (the state file)", async () => {
    const id = 'late-1';
    const password = await registerDevice(ts, id);
    const creds = { username: id, password };
    const lines: string[] = [];
    const first = await startAgent(ts, root, id, { ...creds, logger: lineLogger(lines) });
    await first.agent.stop();
    // job A is written while the device is away; the delta an instance published for it is
    // held (its broker connection down): the test keeps it, as the device's get shows it
    const jobA = await deploy(ts, [id], 'fw@2.0.0');
    const held = await heldCommand(ts, id, password);
    assert.equal(held.command.version, '2.0.0');
    assert.equal(held.command.jobId, jobA);
    // the cancel (another instance): a stay command, the build the device runs
    await cancelJob(ts, jobA);

    let run = await startAgent(ts, root, id, { ...creds, logger: lineLogger(lines) });
    agents.push(run.agent);
    const stay = await outcome(run.finished, `${jobA}.cancel`);
    assert.equal(stay.status, 'SUCCESS');
    assert.equal(stay.version, '1.0.0');
    let started: string[] = [];
    run.agent.on('status', (e) => started.push(`${e.jobId}:${e.status}`));

    // the held delta reaches the device at last
    await lateDelta(ts, run.agent, id, held.command, held.version, 1);
    assert.equal(run.agent.currentJobId, undefined, started.join());
    assert.deepEqual(started, []);
    // not started: ignored, or, with nothing in flight, answered as called off (a FAILURE naming why)
    assert.ok(['ignoring the command of a job canceled before: a late message', 'the server asks for a job canceled before: reporting it called off, not started'].some((m) => logMessages(lines).includes(m)), logMessages(lines).join(' | '));
    const saved = JSON.parse(await readFile(path.join(run.installDir, '.updraft', 'agent-state.json'), 'utf8')) as { canceled?: string[] };
    assert.deepEqual(saved.canceled, [jobA]);

    // a newer job B finishes: the shadow no longer says A was taken back, the state file does
    const jobB = await deploy(ts, [id], 'fw@1.5.0');
    assert.equal((await outcome(run.finished, jobB)).status, 'SUCCESS');
    await run.agent.stop();
    run = await startAgent(ts, root, id, { ...creds, logger: lineLogger(lines) });
    agents.push(run.agent);
    // subscribed, its past asked of the shadow, and reported: the state file is all it goes by
    const agentB = run.agent;
    await eventually(async () => (agentB.requestsSent.update >= 1 ? true : undefined), 15_000, 'the report after the restart');
    started = [];
    run.agent.on('status', (e) => started.push(`${e.jobId}:${e.status}`));
    await lateDelta(ts, run.agent, id, held.command, held.version, 2);
    assert.equal(run.agent.currentJobId, undefined, started.join());
    assert.deepEqual(started, []);
    const installer = new SlotInstaller({ dir: run.installDir });
    assert.equal((await installer.current())?.version, '1.5.0');
    assert.deepEqual(run.finished.map((e) => e.jobId), []);
  });

  /**
   * A device whose gate says "not now" is stopped in the wait, its job (the whole build on its
   * disk) saved in flight at VERIFYING; the job is canceled (a stay command); the agent starts
   * again with a gate that says go at once.
   */
  async function canceledWhileStopped(deviceId: string, o: { stateStore?: MemoryAgentStateStore; brokerUrl?: string; onLine?: (line: string) => void }) {
    const lines: string[] = [];
    const base: Partial<UpdateAgentOptions> = {
      username: deviceId,
      password: await registerDevice(ts, deviceId),
      logger: createLogger({ level: 'info', format: 'json', write: (l) => (lines.push(l), o.onLine?.(l)) }),
      installGateRetryMs: 60_000,
      ...(o.stateStore ? { stateStore: o.stateStore } : {}),
    };
    const first = await startAgent(ts, root, deviceId, { ...base, installGate: async (): Promise<GateAnswer> => ({ later: 'machine at work' }) });
    const waiting = new Promise<void>((resolve) => first.agent.on('status', (e) => e.waiting !== undefined && resolve()));
    const jobId = await deploy(ts, [deviceId], 'fw@2.0.0');
    await waiting;
    await first.agent.stop();
    await cancelJob(ts, jobId);
    const installer = new CountingInstaller(new SlotInstaller({ dir: first.installDir, initialVersion: '1.0.0', initialName: 'fw' }));
    const asked: string[] = [];
    const agent = new UpdateAgent({
      deviceId,
      brokerUrl: ts.mqttUrl,
      installer,
      stateDir: path.join(first.installDir, '.updraft'),
      signingPublicKey: ts.server.security.signingKey.publicKeyPem,
      retryDelayMs: 100,
      maxRetryDelayMs: 500,
      mqttOptions: { reconnectPeriod: 200 },
      ...base,
      ...(o.brokerUrl ? { brokerUrl: o.brokerUrl } : {}),
      installGate: async (sw) => (asked.push(sw.version), { go: true }),
    });
    agents.push(agent);
    const finished: { jobId: string; status: string; error?: string; takesBack?: string; supersededBy?: string }[] = [];
    agent.on('job-finished', (e) => finished.push(e));
    const statuses: string[] = [];
    agent.on('status', (e) => statuses.push(`${e.jobId}:${e.status}`));
    await agent.start();
    return { jobId, agent, installer, finished, asked, lines, statuses };
  }

  it('a job saved in flight and canceled while the agent was stopped is not installed: the gate says go before the get answer', async () => {
    // a state store that loses no save (a library's): the job is resumed as the agent starts, before it connects
    const s = await canceledWhileStopped('late-2', { stateStore: new MemoryAgentStateStore() });
    const a = await eventually(async () => s.finished.find((e) => e.jobId === s.jobId), 30_000, 'the canceled job ended');
    assert.equal(a.status, 'FAILURE', JSON.stringify(a));
    assert.equal(a.error, `superseded by job ${s.jobId}.cancel`);
    const stay = await eventually(async () => s.finished.find((e) => e.jobId === `${s.jobId}.cancel`), 30_000, 'the stay finished');
    assert.equal(stay.status, 'SUCCESS');
    assert.equal(stay.takesBack, s.jobId, "the stay's outcome names the job it took back (takesBack)");
    assert.equal(a.supersededBy, `${s.jobId}.cancel`, 'the called-off job names the stay that superseded it (supersededBy)');
    assert.equal(s.installer.installs, 0);
    assert.equal((await s.installer.current())?.version, '1.0.0');
    assert.deepEqual(s.asked, [], 'the gate was not asked: the job was called off first');
    // its 'resumed job: waiting for the server to confirm ...' line is not asserted: a stay that
    // comes before the resumed job reaches the gate calls it off first, and nothing waits (a
    // race of the test's, seen in a clean-clone CI); what the fix guards is above
    const execution = await ts.server.store.getExecution(s.jobId, 'late-2');
    assert.equal(execution?.status, 'CANCELED');
  });

  it('the same with the state file: the job resumed on the get answer does not install before the catch-up acts on it', async () => {
    // the daemon's store: the job is resumed once the shadow was read (learnPast), and the
    // catch-up's report goes next. The device's connection holds everything from that moment
    // (a slow link), so the resumed job cannot be called off before it would install
    const relay = await startRelay({ host: '127.0.0.1', port: ts.server.broker.port });
    relays.push(relay);
    let hung = false;
    const s = await canceledWhileStopped('late-3', {
      brokerUrl: `mqtt://127.0.0.1:${relay.port}`,
      onLine: (l) => {
        if (!hung && l.includes('"msg":"resuming interrupted update"')) {
          hung = true;
          relay.hang();
        }
      },
    });
    try {
      // it waits for the server (with the fix), or (without) has gone on to install
      await eventually(async () => (logMessages(s.lines).includes('resumed job: waiting for the server to confirm it is still wanted before installing') || s.statuses.includes(`${s.jobId}:INSTALLING`) ? true : undefined), 30_000, 'the resumed job waits or installs');
      assert.ok(hung);
    } finally {
      relay.resume();
    }
    const a = await eventually(async () => s.finished.find((e) => e.jobId === s.jobId), 30_000, 'the canceled job ended');
    assert.equal(a.status, 'FAILURE', JSON.stringify(a));
    assert.equal(a.error, `superseded by job ${s.jobId}.cancel`);
    assert.equal(s.installer.installs, 0);
    assert.equal((await s.installer.current())?.version, '1.0.0');
  });

  it('a resumed job still wanted installs once the server confirms it', async () => {
    const deviceId = 'late-4';
    const store = new MemoryAgentStateStore();
    const lines: string[] = [];
    const base: Partial<UpdateAgentOptions> = { username: deviceId, password: await registerDevice(ts, deviceId), logger: lineLogger(lines), installGateRetryMs: 60_000, stateStore: store };
    const first = await startAgent(ts, root, deviceId, { ...base, installGate: async (): Promise<GateAnswer> => ({ later: 'machine at work' }) });
    const waiting = new Promise<void>((resolve) => first.agent.on('status', (e) => e.waiting !== undefined && resolve()));
    const jobId = await deploy(ts, [deviceId], 'fw@2.0.0');
    await waiting;
    await first.agent.stop();
    const again = await startAgent(ts, root, deviceId, { ...base, installGate: async () => ({ go: true }) });
    agents.push(again.agent);
    const done = await outcome(again.finished, jobId);
    assert.equal(done.status, 'SUCCESS', JSON.stringify(done));
    assert.equal(done.version, '2.0.0');
  });
});
