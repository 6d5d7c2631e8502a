/**
 * A device whose wall clock steps back during an update (an RTC kept in local time, corrected
 * by NTP an hour later) goes on reporting its progress and phases: the agent paced them on
 * Date.now(), so the last report lay an hour in the future and every report but the outcome
 * was held for that hour; the server, hearing no phase, timed the healthy update out. Real
 * server, the real daemon (`updraft agent`) whose clock test/helpers/clock-step-preload.mjs
 * steps, real MQTT, real HTTP download.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, it } from 'node:test';
import { eventually, startCli, type CliProcess } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';

const PRELOAD = fileURLToPath(new URL('../helpers/clock-step-preload.mjs', import.meta.url));
const HOUR = 3_600_000;

let ts: TestServer;
let root: string;
let agent: CliProcess | undefined;

before(async () => {
  ts = await startTestServer();
  root = await mkdtemp(path.join(os.tmpdir(), 'updraft-clock-step-'));
  // 2 MB at 250 kB/s: about 8 s of DOWNLOADING in chunks of 64 to 130 kB, progress reported every 10 %
  await addArtifact(ts, '2.0.0', randomBytes(2_000_000));
});
after(async () => {
  await agent?.kill('SIGKILL');
  await ts.close();
  await rm(root, { recursive: true, force: true });
});

it('reports progress and every phase after the device clock steps back an hour', async () => {
  const deviceId = 'step-back';
  const password = await registerDevice(ts, deviceId);
  const dir = path.join(root, deviceId);
  const keyFile = path.join(root, 'signing-key.pub');
  await writeFile(keyFile, ts.server.security.signingKey.publicKeyPem);
  const clockFile = path.join(root, 'clock-step');
  await writeFile(clockFile, '0');
  const go = path.join(root, 'go');
  // the health check lasts until the test lets it end: the agent sits in INSTALLING meanwhile
  agent = startCli(
    ['agent', '--device', deviceId, '--install-dir', dir, '--broker', ts.mqttUrl, '--password', password, '--signing-key', keyFile, '--initial-version', '1.0.0', '--max-download-rate', '250k', '--health-check', `while [ ! -f '${go}' ]; do sleep 0.1; done`, '--health-check-timeout', '120'],
    { env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${PRELOAD}`, UPDRAFT_TEST_CLOCK_STEP_FILE: clockFile } },
  );
  await agent.waitFor(/connected/);
  const jobId = await deploy(ts, [deviceId], 'fw@2.0.0');
  const details = async () => (await ts.server.store.getExecution(jobId, deviceId))?.details ?? {};

  await eventually(async () => ((await details()).agentStatus === 'DOWNLOADING' || undefined), 15_000, 'DOWNLOADING on the server');
  await writeFile(clockFile, String(-HOUR));
  await new Promise((r) => setTimeout(r, 200)); // the agent reads the step within 20 ms
  const before = await details();
  assert.equal(before.agentStatus, 'DOWNLOADING', 'the download outlasts the step');
  const progressBefore = Number(before.progress ?? 0);

  // a report paced on the wall clock waited an hour from here
  const seen = await eventually(async () => {
    const d = await details();
    return d.agentStatus !== 'DOWNLOADING' || Number(d.progress ?? 0) > progressBefore ? d : undefined;
  }, 15_000, 'a progress report after the step');
  assert.equal(seen.agentStatus, 'DOWNLOADING', `progress reported after the step (was ${progressBefore}), before the download ended`);
  await eventually(async () => ((await details()).agentStatus === 'INSTALLING' || undefined), 20_000, 'INSTALLING on the server');

  await writeFile(go, '');
  const done = await eventually(async () => {
    const e = await ts.server.store.getExecution(jobId, deviceId);
    return e && e.status !== 'IN_PROGRESS' && e.status !== 'QUEUED' ? e : undefined;
  }, 30_000, 'the outcome on the server');
  assert.equal(done.status, 'SUCCEEDED');
});
