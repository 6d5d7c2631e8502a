/**
 * A slot switched to whose health check never passed is checked again, even by an agent that
 * lost its state with the crash: QA killed `updraft agent` (SIGKILL) during the check, removed
 * its state file and restarted it with a failing check, and it logged "already running the
 * desired software" and reported SUCCESS, while the old check ran on. And an agent that
 * starts with no job in flight (the job canceled meanwhile, its command gone) checks such a
 * slot at start, and reports the outcome for the job its manifest names: SUCCESS only when
 * what runs after the check is the slot's version (a fallback to the old slot is a FAILURE,
 * reported with the version that runs). Real server, the
 * real daemon (`updraft agent`, killed with SIGKILL), real MQTT, real files.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually, startCli, type CliProcess } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';

/** Live (not zombie) processes of a process group. */
async function liveMembers(pgid: number): Promise<number> {
  let count = 0;
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    const fields = s.slice(s.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid && fields[0] !== 'Z') count++;
  }
  return count;
}

describe('a slot whose health check never passed, after a crash that lost the agent state', { skip: process.platform !== 'linux' ? 'needs /proc' : false }, () => {
  let ts: TestServer;
  let root: string;
  const daemons: CliProcess[] = [];
  /** Process groups of the hanging checks, killed at the end whatever happened. */
  const pgids: number[] = [];

  before(async () => {
    ts = await startTestServer();
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-unchecked-'));
    await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(1000)));
  });
  after(async () => {
    await Promise.all(daemons.map((d) => d.kill('SIGKILL')));
    for (const pgid of pgids.filter((p) => p > 1)) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  /** A registered device, its install directory, and how to start its agent daemon with a health check. */
  async function device(deviceId: string): Promise<{ dir: string; agent: (healthCheck: string) => CliProcess }> {
    const password = await registerDevice(ts, deviceId);
    const dir = path.join(root, deviceId);
    const keyFile = path.join(root, 'signing-key.pub');
    await writeFile(keyFile, ts.server.security.signingKey.publicKeyPem);
    const agent = (healthCheck: string) => {
      const d = startCli(['agent', '--device', deviceId, '--install-dir', dir, '--broker', ts.mqttUrl, '--password', password, '--signing-key', keyFile, '--initial-version', '1.0.0', '--health-check', healthCheck, '--health-check-timeout', '120']);
      daemons.push(d);
      return d;
    };
    return { dir, agent };
  }

  /** The log of `jobId` the device sent, once the server has it. */
  async function jobLog(deviceId: string, jobId: string): Promise<string[]> {
    const log = await eventually(async () => {
      const res = await fetch(`${ts.httpUrl}/api/v1/jobs/${jobId}/logs/${deviceId}`, { headers: { authorization: `Bearer ${ts.token}` } });
      return res.status === 200 ? ((await res.json()) as { lines: string[] }) : undefined;
    }, 15_000, `the log of ${deviceId}`);
    return log.lines;
  }

  /** Waits until the health check under way in `dir` started (its hc.pid) and the agent recorded it (its process group). */
  async function checkUnderWay(dir: string): Promise<void> {
    await eventually(async () => ((await stat(path.join(dir, 'hc.pid')).catch(() => undefined))?.size ? true : undefined), 15_000, 'the check started');
    await eventually(async () => (await readFile(path.join(dir, '.health-check.json'), 'utf8').then((t) => typeof JSON.parse(t).pgid === 'number', () => false)) || undefined, 15_000, 'the check recorded');
  }

  it('is checked again (the old check killed first) and rolled back when the check fails', async () => {
    const deviceId = 'uc-1';
    const { dir, agent } = await device(deviceId);

    // the first agent's check hangs; it is killed during it, after the check was recorded
    const first = agent('echo $$ > hc.pid; sleep 60');
    await first.waitFor(/connected/);
    const jobId = await deploy(ts, [deviceId], 'fw@2.0.0');
    await first.waitFor(/switched slot=a/);
    await checkUnderWay(dir);
    await first.kill('SIGKILL');
    const pgid = Number((await readFile(path.join(dir, 'hc.pid'), 'utf8')).trim());
    pgids.push(pgid);
    assert.ok((await liveMembers(pgid)) > 0, 'the check outlived the agent');
    await rm(path.join(dir, '.updraft', 'agent-state.json'));

    // restarted without its state, with a check that fails
    const second = agent('echo "sensor broken" >&2; exit 1');
    await second.waitFor(new RegExp(`job ${jobId} acknowledged: FAILURE, running 1\\.0\\.0`));
    const out = second.output();
    assert.doesNotMatch(out, /already running the desired software/);
    // checked at start (no job in its state), or when the job's command came
    assert.match(out, /health check has not passed/);
    assert.match(out, /killed the health check the interrupted install left running/);
    assert.equal(await liveMembers(pgid), 0, 'the old check was killed');
    // rolled back: nothing was installed before 2.0.0, so current is gone; the slot is rejected
    assert.equal(await readlink(path.join(dir, 'current')).catch(() => 'none'), 'none');
    const manifest = JSON.parse(await readFile(path.join(dir, 'slots', 'a', 'manifest.json'), 'utf8'));
    assert.match(manifest.rejected, /exit code 1: sensor broken/);
    const execution = await eventually(async () => {
      const e = await ts.server.store.getExecution(jobId, deviceId);
      return e?.status === 'FAILED' ? e : undefined;
    }, 15_000, 'FAILED on the server');
    assert.match(String(execution.details.error), /sensor broken/);
    assert.match((await jobLog(deviceId, jobId)).join('\n'), /outcome FAILURE .*sensor broken/);
  });

  it('is checked again at start with no job in flight (the job canceled meanwhile), and rolled back to the old slot when the check fails', async () => {
    const deviceId = 'uc-2';
    const { dir, agent } = await device(deviceId);
    await addArtifact(ts, '3.0.0', Buffer.from('fw 3.0.0 '.repeat(1000)));

    // 2.0.0 installed and checked in slot a; 3.0.0's check hangs in slot b and the agent is killed during it
    const first = agent('[ "$UPDRAFT_VERSION" != 3.0.0 ] || { echo $$ > hc.pid; sleep 60; }');
    await first.waitFor(/connected/);
    const installed = await deploy(ts, [deviceId], 'fw@2.0.0');
    await first.waitFor(new RegExp(`job ${installed} acknowledged: SUCCESS, running 2\\.0\\.0`));
    const jobId = await deploy(ts, [deviceId], 'fw@3.0.0');
    await first.waitFor(/switched slot=b/);
    await checkUnderWay(dir);
    await first.kill('SIGKILL');
    const pgid = Number((await readFile(path.join(dir, 'hc.pid'), 'utf8')).trim());
    pgids.push(pgid);
    assert.ok((await liveMembers(pgid)) > 0, 'the check outlived the agent');
    const unchecked = JSON.parse(await readFile(path.join(dir, 'slots', 'b', 'manifest.json'), 'utf8'));
    assert.equal(unchecked.unchecked, true);
    assert.equal(unchecked.jobId, jobId, 'the manifest records the job that installed the slot');

    // meanwhile the job is canceled (its command does not come again), and the state says no job in flight
    const canceled = await fetch(`${ts.httpUrl}/api/v1/jobs/${jobId}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` } });
    assert.equal(canceled.status, 200, await canceled.text());
    const stateFile = path.join(dir, '.updraft', 'agent-state.json');
    const { inFlight, ...idle } = JSON.parse(await readFile(stateFile, 'utf8'));
    assert.equal(inFlight?.jobId, jobId);
    await writeFile(stateFile, JSON.stringify(idle));

    // restarted idle, with a check that fails: checked again at start, rolled back to slot a
    const second = agent('echo "sensor broken" >&2; exit 1');
    await second.waitFor(new RegExp(`job ${jobId} acknowledged: FAILURE, running 2\\.0\\.0`));
    const out = second.output();
    assert.match(out, /health check has not passed \(interrupted\), with no job in flight: checking it again/);
    assert.match(out, /killed the health check the interrupted install left running/);
    // the line names the slot left with the version it held, and the slot back in use (it said
    // `slot=a version=3.0.0`: the slot rolled back to beside the version rejected)
    assert.match(out, /WARN .*rolled back from=b to=a version=3\.0\.0 reason=/, 'the rollback line names both slots');
    assert.equal(await liveMembers(pgid), 0, 'the old check was killed');
    assert.equal(await readlink(path.join(dir, 'current')), path.join('slots', 'a'));
    const manifest = JSON.parse(await readFile(path.join(dir, 'slots', 'b', 'manifest.json'), 'utf8'));
    assert.match(manifest.rejected, /exit code 1: sensor broken/);
    assert.equal(manifest.rejectedBy, jobId);
    // the server: the device runs 2.0.0, and the execution ends FAILED with the device's reason
    // (a failed health check is no stop: docs/rollouts.md, Cancel; until 2026-12-06 CANCELED,
    // the reason in deviceError)
    const software = (await ts.server.store.getShadow(deviceId, ''))?.state.reported?.software as Record<string, unknown> | undefined;
    assert.equal(software?.version, '2.0.0');
    const execution = await eventually(async () => {
      const e = await ts.server.store.getExecution(jobId, deviceId);
      return e?.details.agentStatus === 'FAILURE' ? e : undefined;
    }, 15_000, 'the FAILURE on the server');
    assert.equal(execution.status, 'FAILED');
    assert.match(String(execution.details.error), /exit code 1: sensor broken/);
    // the FAILURE's log goes to the job as any failure's does: the check again, its output, the rollback
    const lines = await jobLog(deviceId, jobId);
    const text = lines.join('\n');
    for (const re of [/with no job in flight: checking it again/, /killed the health check the interrupted install left running/, /health check: sensor broken/, /rolled back/, /outcome FAILURE .*sensor broken/]) assert.match(text, re);
  });

  it('is not said rolled back when the agent is stopped (SIGTERM) during the check, and the next start checks it again', async () => {
    const deviceId = 'uc-4';
    const { dir, agent } = await device(deviceId);
    await addArtifact(ts, '5.0.0', Buffer.from('fw 5.0.0 '.repeat(1000)));

    const first = agent('[ "$UPDRAFT_VERSION" != 5.0.0 ] || { echo $$ > hc.pid; sleep 60; }');
    await first.waitFor(/connected/);
    const jobId = await deploy(ts, [deviceId], 'fw@5.0.0');
    await first.waitFor(/switched slot=a/);
    await checkUnderWay(dir);
    pgids.push(Number((await readFile(path.join(dir, 'hc.pid'), 'utf8')).trim()));
    await first.kill('SIGTERM');
    const out = first.output();
    // the stop cut the check short: that says nothing about the software (QA: logged `WARN rolled back`)
    assert.doesNotMatch(out, /rolled back/, 'a stop during the check is no rollback');
    assert.match(out, /health check stopped with the agent: back on the previous slot until the next start checks the version again from=a to=none version=5\.0\.0/, 'the stop says what happens next');
    const manifest = JSON.parse(await readFile(path.join(dir, 'slots', 'a', 'manifest.json'), 'utf8'));
    assert.equal(manifest.rejected, undefined, 'the slot is not rejected by a stop');

    // the next start checks it again; this time it passes
    const second = agent('true');
    await second.waitFor(new RegExp(`job ${jobId} acknowledged: SUCCESS, running 5\\.0\\.0`));
    assert.equal(await readlink(path.join(dir, 'current')), path.join('slots', 'a'), 'the checked slot runs');
  });

  it('reports FAILURE with what runs when the check passes but the installer says the old slot runs (the bootloader fell back)', async () => {
    const deviceId = 'uc-3';
    const { dir, agent } = await device(deviceId);
    await addArtifact(ts, '4.0.0', Buffer.from('fw 4.0.0 '.repeat(1000)));

    // 2.0.0 installed and checked in slot a; 4.0.0's check hangs in slot b and the agent is killed during it
    const first = agent('[ "$UPDRAFT_VERSION" != 4.0.0 ] || { echo $$ > hc.pid; sleep 60; }');
    await first.waitFor(/connected/);
    const installed = await deploy(ts, [deviceId], 'fw@2.0.0');
    await first.waitFor(new RegExp(`job ${installed} acknowledged: SUCCESS, running 2\\.0\\.0`));
    const jobId = await deploy(ts, [deviceId], 'fw@4.0.0');
    await first.waitFor(/switched slot=b/);
    await checkUnderWay(dir);
    await first.kill('SIGKILL');
    pgids.push(Number((await readFile(path.join(dir, 'hc.pid'), 'utf8')).trim()));
    // the state lost with the crash: the start checks the slot again with no job in flight
    await rm(path.join(dir, '.updraft', 'agent-state.json'));

    // restarted: the check passes, but meanwhile what runs went back to slot a, as a platform's
    // fallback (a bootloader booting the old slot) would have it: current() names 2.0.0
    const second = agent('[ "$UPDRAFT_VERSION" != 4.0.0 ] || { ln -s slots/a .fallback && mv -T .fallback current; }');
    await second.waitFor(new RegExp(`job ${jobId} acknowledged: FAILURE, running 2\\.0\\.0`));
    const out = second.output();
    assert.match(out, /health check has not passed \(interrupted\), with no job in flight: checking it again/);
    // connected only once the check gave its verdict (docs/agent.md, "Why it does not connect first")
    assert.ok(out.indexOf('slot checked again') >= 0 && out.indexOf('slot checked again') < out.indexOf(`${deviceId}: connected`), out);
    assert.equal(await readlink(path.join(dir, 'current')), path.join('slots', 'a'));
    const execution = await eventually(async () => {
      const e = await ts.server.store.getExecution(jobId, deviceId);
      return e?.status === 'FAILED' ? e : undefined;
    }, 15_000, 'FAILED on the server');
    assert.match(String(execution.details.error), /booted version 2\.0\.0, expected 4\.0\.0: the bootloader fell back/);
    // the shadow says what runs: 2.0.0, the job's FAILURE
    const software = (await ts.server.store.getShadow(deviceId, ''))?.state.reported?.software as Record<string, unknown> | undefined;
    assert.equal(software?.version, '2.0.0');
    assert.equal(software?.status, 'FAILURE');
    assert.equal(software?.jobId, jobId);
    assert.match((await jobLog(deviceId, jobId)).join('\n'), /outcome FAILURE .*booted version 2\.0\.0, expected 4\.0\.0/);
  });
});
