/**
 * A job taken back without a stay command the device heard stays taken back too (docs/agent.md,
 * "A canceled job stays canceled"): a late delta of it (one a server instance held during its
 * broker outage and sent after another instance's newer document) is ignored
 * - for a job superseded by a newer one before it installed, also after a restart (the state file);
 * - for a job canceled by clearing the desired software (the device runs a build the catalogue
 *   lacks, so no stay can be written): the clear names the job (`softwareCanceled`), read from
 *   the device's `get` and from the update's accepted answer.
 * A real server (its replica, jobs and cancel), its broker over TCP, real agents and A/B slots;
 * the late delta is published on the server's broker as the instance that held it would.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import type { GateAnswer } from '../../src/agent/update-job.ts';
import { clearedFor, ROLLOUT_SENDER } from '../../src/jobs/desired-software.ts';
import type { JsonObject } from '../../src/protocol/json.ts';
import { eventually } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, cancelJob, deploy, heldCommand, lateDelta, lineLogger, logMessages, outcome, startAgent } from '../security/support.ts';

const IGNORED = 'ignoring the command of a job canceled before: a late message';
/** With no job in flight the agent answers it, a FAILURE naming why, not started (a restored server may ask for it still). */
const CALLED_OFF = 'the server asks for a job canceled before: reporting it called off, not started';
/** The late command not started: ignored, or (nothing in flight) answered as called off. */
const refused = (msgs: string[]) => msgs.includes(IGNORED) || msgs.includes(CALLED_OFF);
const REREPORTED = 'duplicate command for a finished job: re-reporting its outcome';

describe('UpdateAgent: a job taken back without a stay it heard stays taken back', () => {
  let ts: TestServer;
  let root: string;
  const agents: UpdateAgent[] = [];

  before(async () => {
    ts = await startTestServer();
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-taken-back-'));
    // 1.0.0 and 1.5.0 are in the catalogue; 0.9.0 (a factory build) is not
    await addArtifact(ts, '1.0.0', Buffer.from('fw 1.0.0 '.repeat(300)));
    await addArtifact(ts, '1.5.0', Buffer.from('fw 1.5.0 '.repeat(300)));
    await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(3000)));
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  const savedCanceled = async (installDir: string) => (JSON.parse(await readFile(path.join(installDir, '.updraft', 'agent-state.json'), 'utf8')) as { canceled?: string[] }).canceled ?? [];

  it('ignores the late delta of a job superseded by a newer one before it installed, also after a restart', async () => {
    const id = 'superseded-late-1';
    const password = await registerDevice(ts, id);
    const lines: string[] = [];
    // the gate holds 2.0.0 (job A) at VERIFYING, lets 1.5.0 (job B) go
    const installGate = async (sw: { version: string }): Promise<GateAnswer> => (sw.version === '2.0.0' ? { later: 'machine at work' } : { go: true });
    const opts = { username: id, password, logger: lineLogger(lines), installGate, installGateRetryMs: 60_000 };
    let run = await startAgent(ts, root, id, opts);
    agents.push(run.agent);
    let heldA: { command: JsonObject; version: number } | undefined;
    run.agent.on('delta', (d) => {
      const sw = d.state.software as JsonObject | undefined;
      if (!heldA && sw?.version === '2.0.0' && typeof d.version === 'number') heldA = { command: sw, version: d.version };
    });
    const waiting = new Promise<void>((resolve) => run.agent.on('status', (e) => e.waiting !== undefined && resolve()));
    const jobA = await deploy(ts, [id], 'fw@2.0.0');
    await waiting;
    assert.equal(heldA?.command.jobId, jobA);
    // job B: A is called off (superseded), B installs
    const jobB = await deploy(ts, [id], 'fw@1.5.0');
    const a = await outcome(run.finished, jobA);
    assert.equal(a.status, 'FAILURE');
    assert.equal(a.error, `superseded by job ${jobB}`);
    assert.equal((await outcome(run.finished, jobB)).status, 'SUCCESS');
    assert.equal((await ts.server.store.getExecution(jobA, id))?.status, 'CANCELED');
    assert.deepEqual(await savedCanceled(run.installDir), [jobA]);

    let started: string[] = [];
    run.agent.on('status', (e) => started.push(`${e.jobId}:${e.status}`));
    await lateDelta(ts, run.agent, id, heldA!.command, heldA!.version, 1);
    assert.equal(run.agent.currentJobId, undefined, started.join());
    assert.deepEqual(started, []);
    assert.ok(refused(logMessages(lines)), 'the late command is ignored as a canceled job\'s');

    // after a restart only the state file knows: the late delta is not answered by re-reporting
    // A's outcome over what the device runs (nor, were A forgotten, by running it)
    await run.agent.stop();
    lines.length = 0;
    run = await startAgent(ts, root, id, opts);
    agents.push(run.agent);
    const restarted = run.agent;
    await eventually(async () => (restarted.requestsSent.update >= 1 ? true : undefined), 15_000, 'the report after the restart');
    started = [];
    run.agent.on('status', (e) => started.push(`${e.jobId}:${e.status}`));
    await lateDelta(ts, run.agent, id, heldA!.command, heldA!.version, 2);
    assert.equal(run.agent.currentJobId, undefined, started.join());
    assert.deepEqual(started, []);
    assert.ok(refused(logMessages(lines)), `the late command is ignored as a canceled job's: ${logMessages(lines).join(' | ')}`);
    // A's outcome only: after the restart the agent knows no acknowledgement, and re-reports B's
    // SUCCESS at the first delta that names B (the called-off report of A leaves B desired
    // against A reported), idempotently
    const rereported = lines.map((l) => JSON.parse(l) as { msg: string; jobId?: string }).filter((l) => l.msg === REREPORTED);
    assert.ok(!rereported.some((l) => l.jobId === heldA!.command.jobId), `the outcome of the superseded job is not reported again: ${JSON.stringify(rereported)}`);
    assert.equal((await new SlotInstaller({ dir: run.installDir }).current())?.version, '1.5.0');
  });

  it('ignores the late delta of a job superseded before the device heard it (softwareSupersedes), also after a restart', async () => {
    const id = 'superseded-unheard-1';
    const password = await registerDevice(ts, id);
    const lines: string[] = [];
    const opts = { username: id, password, logger: lineLogger(lines) };
    const first = await startAgent(ts, root, id, opts);
    await first.agent.stop();
    // job A is written while the device is away, its delta held by an instance; then job B
    // replaces it, still away: the device never hears A from the server
    const jobA = await deploy(ts, [id], 'fw@2.0.0');
    const heldA = await heldCommand(ts, id, password);
    assert.equal(heldA.command.jobId, jobA);
    const jobB = await deploy(ts, [id], 'fw@1.5.0');
    await eventually(async () => ((await ts.server.store.getShadow(id, ''))?.state.desired?.software as JsonObject | undefined)?.jobId === jobB || undefined, 15_000, "job B's command written");
    const shadow = await ts.server.store.getShadow(id, '');
    assert.deepEqual(shadow?.state.desired?.softwareSupersedes, [jobA], "B's command names A as superseded");
    assert.deepEqual(shadow?.state.reported?.softwareSupersedes, [jobA], 'on both sides: no delta');

    let run = await startAgent(ts, root, id, opts);
    agents.push(run.agent);
    assert.equal((await outcome(run.finished, jobB)).status, 'SUCCESS');
    assert.ok((await savedCanceled(run.installDir)).includes(jobA), 'A remembered as taken back');
    let started: string[] = [];
    run.agent.on('status', (e) => started.push(`${e.jobId}:${e.status}`));
    await lateDelta(ts, run.agent, id, heldA.command, heldA.version, 1);
    assert.equal(run.agent.currentJobId, undefined, started.join());
    assert.deepEqual(started, []);
    assert.ok(refused(logMessages(lines)), `the late command is ignored as a canceled job's: ${logMessages(lines).join(' | ')}`);

    await run.agent.stop();
    lines.length = 0;
    run = await startAgent(ts, root, id, opts);
    agents.push(run.agent);
    const restarted = run.agent;
    await eventually(async () => (restarted.requestsSent.update >= 1 ? true : undefined), 15_000, 'the report after the restart');
    started = [];
    run.agent.on('status', (e) => started.push(`${e.jobId}:${e.status}`));
    await lateDelta(ts, run.agent, id, heldA.command, heldA.version, 2);
    assert.equal(run.agent.currentJobId, undefined, started.join());
    assert.deepEqual(started, []);
    assert.equal((await new SlotInstaller({ dir: run.installDir }).current())?.version, '1.5.0', 'the device still runs B');
    // a later job C, over B finished: the list is removed (the device heard B, and what it named).
    // The answer to the late delta (A called off) put A in reported, then the delta of B had the
    // agent report B again: waited for, so that the shadow says B finished when C is written
    await eventually(async () => {
      const sw = (await ts.server.store.getShadow(id, ''))?.state.reported?.software as JsonObject | undefined;
      return sw?.jobId === jobB && sw.status === 'SUCCESS' ? true : undefined;
    }, 15_000, "the device's report of B finished");
    await run.agent.stop();
    await deploy(ts, [id], 'fw@2.0.0');
    await eventually(async () => {
      const sw = (await ts.server.store.getShadow(id, ''))?.state.desired?.software as JsonObject | undefined;
      return sw?.jobId !== jobB && sw?.jobId !== undefined ? true : undefined;
    }, 15_000, "job C's command written");
    const after = await ts.server.store.getShadow(id, '');
    assert.equal(after?.state.desired?.softwareSupersedes, undefined, 'no list once the device finished the command it replaces');
    assert.equal(after?.state.reported?.softwareSupersedes, undefined);
  });

  it('ignores the late delta of a job canceled by clearing the desired software (the get names it), also after a restart', async () => {
    const id = 'cleared-late-1';
    const password = await registerDevice(ts, id);
    const lines: string[] = [];
    const opts = { username: id, password, logger: lineLogger(lines), initialVersion: '0.9.0' };
    const first = await startAgent(ts, root, id, opts);
    await first.agent.stop();
    // job A is written while the device is away; the delta an instance published is held
    const jobA = await deploy(ts, [id], 'fw@2.0.0');
    const held = await heldCommand(ts, id, password);
    assert.equal(held.command.jobId, jobA);
    // the cancel: 0.9.0 is not in the catalogue, no stay can name it, the desired software is cleared
    await cancelJob(ts, jobA);
    const shadow = await ts.server.store.getShadow(id, '');
    assert.equal(shadow?.state.desired?.software, undefined);
    assert.equal(shadow?.state.desired?.softwareCanceled, jobA);

    let run = await startAgent(ts, root, id, opts);
    agents.push(run.agent);
    const agent = run.agent;
    await eventually(async () => (agent.requestsSent.get >= 1 ? true : undefined), 15_000, 'the get after the connect');
    let started: string[] = [];
    run.agent.on('status', (e) => started.push(`${e.jobId}:${e.status}`));
    await lateDelta(ts, run.agent, id, held.command, held.version, 1);
    assert.equal(run.agent.currentJobId, undefined, started.join());
    assert.deepEqual(started, []);
    assert.ok(refused(logMessages(lines)), 'the late command is ignored as a canceled job\'s');
    assert.deepEqual(await savedCanceled(run.installDir), [jobA]);

    await run.agent.stop();
    run = await startAgent(ts, root, id, opts);
    agents.push(run.agent);
    const restarted = run.agent;
    await eventually(async () => (restarted.requestsSent.update >= 1 ? true : undefined), 15_000, 'the report after the restart');
    started = [];
    run.agent.on('status', (e) => started.push(`${e.jobId}:${e.status}`));
    await lateDelta(ts, run.agent, id, held.command, held.version, 2);
    assert.equal(run.agent.currentJobId, undefined, started.join());
    assert.deepEqual(started, []);
    // nothing installed: the slots hold no build, the device still runs (and reports) 0.9.0
    assert.equal(await new SlotInstaller({ dir: run.installDir }).current(), undefined);
    assert.equal(((await ts.server.store.getShadow(id, ''))?.state.reported?.software as JsonObject | undefined)?.version, '0.9.0');
    // with nothing in flight the agent answers the late command: a FAILURE in the words of a job
    // called off, which leaves the canceled execution as it is. In words of its own, the tracker
    // took it for a failure before the stop reached the device, and the execution turned FAILED
    // (CI, 2026-12-06): waited for, so that the check below is not a race with that report
    assert.ok(logMessages(lines).includes(CALLED_OFF), `the late command answered as called off: ${logMessages(lines).join(' | ')}`);
    await eventually(async () => {
      const sw = (await ts.server.store.getShadow(id, ''))?.state.reported?.software as JsonObject | undefined;
      return sw?.jobId === jobA && sw.status === 'FAILURE' ? true : undefined;
    }, 15_000, 'the called-off report recorded in the shadow');
    await ts.server.tracker.idle();
    assert.equal((await ts.server.store.getExecution(jobA, id))?.status, 'CANCELED');
  });

  it("ignores it when the clear reaches the agent online, as the update's accepted answer, with no job in flight", async () => {
    const id = 'cleared-late-2';
    const password = await registerDevice(ts, id);
    const lines: string[] = [];
    const opts = { username: id, password, logger: lineLogger(lines), initialVersion: '0.9.0' };
    const first = await startAgent(ts, root, id, opts);
    await first.agent.stop();
    const jobA = await deploy(ts, [id], 'fw@2.0.0');
    const held = await heldCommand(ts, id, password);
    // A's command leaves the shadow while the device is away (unnamed: as an older server clears)...
    await ts.server.replica.update({ deviceId: id, name: '' }, { state: { desired: { software: null } } }, ROLLOUT_SENDER);
    const run = await startAgent(ts, root, id, opts);
    agents.push(run.agent);
    const agent = run.agent;
    await eventually(async () => (agent.requestsSent.update >= 1 ? true : undefined), 15_000, 'subscribed and reported');
    assert.deepEqual(await savedCanceled(run.installDir), []);
    // ...and the device, online, never heard A: the clear that names it reaches it (another instance's write)
    await ts.server.replica.update({ deviceId: id, name: '' }, { state: clearedFor(jobA) }, ROLLOUT_SENDER);
    await eventually(async () => ((await savedCanceled(run.installDir)).includes(jobA) ? true : undefined), 15_000, 'the named clear remembered');
    const started: string[] = [];
    run.agent.on('status', (e) => started.push(`${e.jobId}:${e.status}`));
    await lateDelta(ts, run.agent, id, held.command, held.version, 1);
    assert.equal(run.agent.currentJobId, undefined, started.join());
    assert.deepEqual(started, []);
    assert.ok(refused(logMessages(lines)), 'the late command is ignored as a canceled job\'s');
  });
});
