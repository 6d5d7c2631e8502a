/**
 * Maintenance windows in each device's own time (`plan.timeZone: "device"`,
 * docs/rollouts.md): the engine sends at any time, each agent downloads at once and installs
 * when a window is open where it is, reporting the wait meanwhile (so the server's step timer
 * waits too). Real server, CLI and agents; the devices' time zones are fixed offsets, so
 * that "six hours from now in UTC" is "now" for one of them.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readlink, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import { eventually, runCli } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, outcome, startAgent } from '../security/support.ts';

type Execution = { deviceId: string; status: string; details: { agentStatus?: string; waiting?: { reason: string; count: number; nextCheckInSeconds: number } } };

describe('maintenance windows in each device\'s own time', () => {
  let ts: TestServer;
  let root: string;
  const agents: UpdateAgent[] = [];
  const api = () => ['--server', ts.httpUrl, '--token', ts.token];

  before(async () => {
    ts = await startTestServer();
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-local-windows-'));
    await addArtifact(ts, '2.0.0', randomBytes(4000));
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  const executionOf = async (jobId: string, deviceId: string) => {
    const res = await fetch(`${ts.httpUrl}/api/v1/jobs/${jobId}`, { headers: { authorization: `Bearer ${ts.token}` } });
    return ((await res.json()) as { executions: Execution[] }).executions.find((e) => e.deviceId === deviceId)!;
  };

  it('sends to every device at once; each installs when the window is open where it is, and the others say when it opens', async () => {
    // a two-hour window that opens, by the wall clock, six hours from now in UTC: open now at UTC+6
    const at = new Date(Date.now() + 6 * 3_600_000);
    const start = `${String(at.getUTCHours()).padStart(2, '0')}:${String(at.getUTCMinutes()).padStart(2, '0')}`;
    const east = await startAgent(ts, root, 'lw-east', { timeZone: 'Etc/GMT-6' }); // POSIX signs: UTC+6
    agents.push(east.agent);
    const west = await startAgent(ts, root, 'lw-utc', { timeZone: 'UTC' });
    agents.push(west.agent);
    // each says where it is: the fleet can be asked
    const zoneOf = async (id: string) => ((await ts.server.store.getShadow(id, ''))?.state.reported?.agent as { timeZone?: string } | undefined)?.timeZone;
    assert.equal(await zoneOf('lw-east'), 'Etc/GMT-6');

    const created = await runCli(['job', 'create', '--artifact', 'fw@2.0.0', '--device', 'lw-east', '--device', 'lw-utc', '--window', `${start}+120`, '--time-zone', 'device', '--step-timeout', '30', '--json', ...api()]);
    assert.equal(created.code, 0, created.stderr);
    const jobId = (JSON.parse(created.stdout) as { job: { jobId: string } }).job.jobId;

    assert.equal((await outcome(east.finished, jobId)).status, 'SUCCESS', 'installed where the window is open');
    // the other downloaded and verified, and waits: the job says why and until when
    const waiting = await eventually(async () => {
      const e = await executionOf(jobId, 'lw-utc');
      return e.details.waiting ? e : undefined;
    }, 15_000, 'lw-utc waiting');
    assert.equal(waiting.status, 'IN_PROGRESS');
    assert.equal(waiting.details.agentStatus, 'VERIFYING');
    assert.match(waiting.details.waiting!.reason, new RegExp(`^outside the job's maintenance windows here: the next opens at [a-z]{3} ${start} \\(UTC\\)$`));
    assert.ok(waiting.details.waiting!.nextCheckInSeconds > 5.5 * 3600 && waiting.details.waiting!.nextCheckInSeconds <= 6 * 3600, `checks again when it opens: ${waiting.details.waiting!.nextCheckInSeconds} s`);
    assert.equal(await readlink(path.join(west.installDir, 'current')).catch(() => 'nothing'), 'nothing', 'nothing installed there');
    const shown = await runCli(['job', 'show', jobId, ...api()]);
    assert.match(shown.stdout, /lw-utc .*install put off once: outside the job's maintenance windows here: the next opens at/);

    // the same device, moved to where the window is open (restarted): it goes on from its download and installs
    await west.agent.stop();
    const moved = await startAgent(ts, root, 'lw-utc', { timeZone: 'Etc/GMT-6', username: 'lw-utc', password: await ts.server.registry.rotateSecret('lw-utc').then((r) => r.secret) });
    agents.push(moved.agent);
    assert.equal((await outcome(moved.finished, jobId)).status, 'SUCCESS');
    await eventually(async () => ((await executionOf(jobId, 'lw-utc')).status === 'SUCCEEDED' ? true : undefined), 15_000, 'lw-utc succeeded');
  });

  it('refuses a time zone that is neither IANA nor "device", with the reason', async () => {
    await registerDevice(ts, 'lw-x');
    // a dry run names the targets whose agents would install at once (here: one that never connected)
    const dry = await runCli(['job', 'create', '--artifact', 'fw@2.0.0', '--device', 'lw-east', '--device', 'lw-x', '--window', '02:00+60', '--time-zone', 'device', '--dry-run', ...api()]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /^ {2}1 device\(s\) would install at once, outside their windows: their agents do not hold an install for a window \(older agents, or never connected\): lw-x$/m);
    assert.doesNotMatch(dry.stdout, /warning:/, 'no timeout given: nothing to warn of');
    // an in-progress timeout shorter than a device may wait for its window
    const short = await runCli(['job', 'create', '--artifact', 'fw@2.0.0', '--device', 'lw-x', '--window', '02:00+60', '--time-zone', 'device', '--timeout', '3600', '--dry-run', ...api()]);
    assert.equal(short.code, 0, short.stderr);
    assert.match(short.stdout, /^ {2}warning: a device outside its window may wait up to 23 h for it, longer than the in-progress timeout of 3600 s: it would time out waiting \(give a timeout of 82800 s or more\)$/m);
    // an in-flight limit below the wave: devices waiting for their window would fill it
    const narrow = await runCli(['job', 'create', '--artifact', 'fw@2.0.0', '--device', 'lw-east', '--device', 'lw-x', '--window', '02:00+60', '--time-zone', 'device', '--max-in-flight', '1', '--dry-run', ...api()]);
    assert.equal(narrow.code, 0, narrow.stderr);
    assert.match(narrow.stdout, /^ {2}warning: a device waiting for its window holds its place among the 1 in flight \(maxInFlight\): with 2 devices in a wave, the places may all go to devices waiting for their window while the job sends no more \(give no maxInFlight, or one of 2 or more\)$/m);
    const wide = await runCli(['job', 'create', '--artifact', 'fw@2.0.0', '--device', 'lw-east', '--device', 'lw-x', '--window', '02:00+60', '--time-zone', 'device', '--max-in-flight', '2', '--dry-run', ...api()]);
    assert.doesNotMatch(wide.stdout, /warning:/, 'a limit the wave fits in: nothing to warn of');
    const serverTime = await runCli(['job', 'create', '--artifact', 'fw@2.0.0', '--device', 'lw-east', '--device', 'lw-x', '--window', '02:00+60', '--time-zone', 'UTC', '--max-in-flight', '1', '--dry-run', ...api()]);
    assert.doesNotMatch(serverTime.stdout, /warning:/, 'windows in one time zone: the server holds the commands, no device holds a place');
    const r = await runCli(['job', 'create', '--artifact', 'fw@2.0.0', '--device', 'lw-x', '--window', '02:00+60', '--time-zone', 'Mars/Olympus', ...api()]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /plan\.timeZone must be an IANA time zone such as Europe\/Madrid or UTC, or "device" \(each device's own\)/);
  });
});
