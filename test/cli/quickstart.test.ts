/**
 * The README's quick start, as a user runs it: the real `updraft` command in separate
 * processes (server, agent, artifact add, deploy, device show), real MQTT and HTTP.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually, runCli, startCli, type CliProcess } from '../helpers/cli.ts';

describe('quick start through the CLI', () => {
  let dir: string;
  let server: CliProcess;
  let agent: CliProcess | undefined;
  let mqttUrl: string;
  let httpUrl: string;
  const firmware = randomBytes(300_000);
  const api = () => ['--server', httpUrl];

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-cli-'));
    await writeFile(path.join(dir, 'firmware.bin'), firmware);
    server = startCli(['server', '--mqtt-port', '0', '--mqtt-tls-port', '0', '--http-port', '0', '--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1'], { cwd: dir });
    mqttUrl = (await server.waitFor(/MQTT broker on (mqtt:\/\/[\d.]+:\d+)/))[1]!;
    httpUrl = (await server.waitFor(/HTTP API and downloads on (http:\/\/[\d.]+:\d+)/))[1]!;
    await server.waitFor(/operator token \(shown once/);
  });
  after(async () => {
    await agent?.kill();
    await server.kill();
    await rm(dir, { recursive: true, force: true });
  });

  it('adds an artifact, runs an agent, deploys, and shows the device updated', async () => {
    const added = await runCli(['artifact', 'add', './firmware.bin', '--name', 'fw', '--version', '2.0.0', ...api()], { cwd: dir });
    assert.equal(added.code, 0, added.stderr);
    const sha = createHash('sha256').update(firmware).digest('hex');
    assert.match(added.stdout, new RegExp(`sha256 ${sha}`));
    assert.match(added.stdout, /size\s+300000 bytes/);

    const reg = await runCli(['device', 'register', 'dev-1', '--attr', 'region=eu', '--tag', 'lab', '--save', './dev1', ...api()], { cwd: dir });
    assert.equal(reg.code, 0, reg.stderr);
    assert.match(reg.stdout, /registered dev-1; secret saved to .*dev1\/\.updraft\/device-secret/);
    agent = startCli(['agent', '--device', 'dev-1', '--install-dir', './dev1', '--broker', mqttUrl], { cwd: dir });
    await eventually(async () => ((await runCli(['device', 'show', 'dev-1', ...api()], { cwd: dir })).code === 0 ? true : undefined), 30_000, 'device registered');

    const deployed = await runCli(['deploy', '--device', 'dev-1', '--artifact', 'fw@2.0.0', ...api()], { cwd: dir });
    assert.equal(deployed.code, 0, deployed.stderr);
    const jobId = deployed.stdout.match(/job ([0-9a-f-]{36})/)?.[1];
    assert.ok(jobId, deployed.stdout);

    const shown = await eventually(async () => {
      const r = await runCli(['device', 'show', 'dev-1', '--json', ...api()], { cwd: dir });
      const d = JSON.parse(r.stdout);
      return d.executions[0]?.status === 'SUCCEEDED' ? d : undefined;
    }, 60_000, 'job SUCCEEDED');
    assert.equal(shown.executions[0].jobId, jobId);
    assert.equal(shown.shadow.state.reported.software.version, '2.0.0');
    assert.equal(shown.shadow.state.reported.software.status, 'SUCCESS');
    assert.equal(shown.shadow.state.delta, undefined, 'no delta once the device runs the desired software');

    const text = await runCli(['device', 'show', 'dev-1', ...api()], { cwd: dir });
    assert.match(text.stdout, /^device dev-1 {2}online/m);
    assert.match(text.stdout, /^delta: \(none\)$/m);
    assert.match(text.stdout, new RegExp(`${jobId} {2}SUCCEEDED`));

    // the agent really installed those bytes into the active slot
    const installed = await readFile(path.join(dir, 'dev1', 'current', 'artifact'));
    assert.deepEqual(installed, firmware);
  });

  it("rotates the device's secret into its install directory: its connection is closed and the running agent comes back with the new one", async () => {
    const oldSecret = await readFile(path.join(dir, 'dev1', '.updraft', 'device-secret'), 'utf8');
    const rotated = await runCli(['device', 'rotate-secret', 'dev-1', '--save', './dev1', ...api()], { cwd: dir });
    assert.equal(rotated.code, 0, rotated.stderr);
    assert.match(rotated.stdout, /^new secret for dev-1 saved\n {2}closed the connection the old secret had opened\n$/);
    assert.notEqual(await readFile(path.join(dir, 'dev1', '.updraft', 'device-secret'), 'utf8'), oldSecret);
    await agent!.waitFor(/the device secret changed on disk: reconnecting with the new one/);
    await eventually(async () => (JSON.parse((await runCli(['device', 'show', 'dev-1', '--json', ...api()], { cwd: dir })).stdout).online ? true : undefined), 30_000, 'dev-1 online again');
    // and revoked: closed, and kept out
    const revoked = await runCli(['device', 'revoke', 'dev-1', ...api()], { cwd: dir });
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.match(revoked.stdout, /^revoked dev-1\n {2}closed the connection it had opened\n$/);
    await eventually(async () => (JSON.parse((await runCli(['device', 'show', 'dev-1', '--json', ...api()], { cwd: dir })).stdout).online ? undefined : true), 30_000, 'dev-1 offline');
    await agent!.waitFor(/Bad user name or password|Not authorized|refused/i);
  });

  it('fails with one readable line and a non-zero code on bad input', async () => {
    const cases: [string[], RegExp][] = [
      [['deploy', '--device', 'dev-1', '--artifact', 'fw@9.9.9', ...api()], /^updraft: error: artifact fw@9\.9\.9 does not exist/],
      [['artifact', 'add', './missing.bin', '--name', 'fw', '--version', '3.0.0', ...api()], /^updraft: error: cannot read \.\/missing\.bin/],
      [['artifact', 'add', './firmware.bin', '--name', 'fw', '--version', 'x', ...api()], /^updraft: error: artifact version "x" must be a semantic version/],
      [['device', 'show', 'nobody', ...api()], /^updraft: error: device nobody is not registered/],
      // deleting (or revoking) a device that does not exist: no advice to register it
      [['device', 'delete', 'nobody', ...api()], /^updraft: error: device nobody is not registered\n$/],
      [['device', 'revoke', 'nobody', ...api()], /^updraft: error: device nobody is not registered\n$/],
      [['device', 'register', 'dev-1', ...api()], /^updraft: error: device dev-1 is already registered/],
      [['agent', '--device', 'dev-9', '--install-dir', './dev9'], /^updraft: error: no device secret: register the device/],
      // a secret file it cannot read (here a directory in its place): the file named, not the raw errno alone (exit 1 before)
      [['agent', '--device', 'dev-10', '--install-dir', './dev10'], /^updraft: error: cannot read the device secret dev10\/\.updraft\/device-secret: EISDIR: .* \(--install-dir\)$/m],
      [['device', 'show', 'dev-1', '--server', httpUrl, '--token', 'wrong'], /^updraft: error: the operator token is wrong/],
    ];
    await mkdir(path.join(dir, 'dev10', '.updraft', 'device-secret'), { recursive: true });
    for (const [args, message] of cases) {
      const r = await runCli(args, { cwd: dir });
      assert.notEqual(r.code, 0, args.join(' '));
      if (args[0] === 'agent') assert.equal(r.code, 2, `bad input: ${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
    }
  });

  it('says in one line that the MQTT port is taken', async () => {
    const port = new URL(mqttUrl).port;
    const r = await runCli(['server', '--mqtt-port', port, '--mqtt-host', '127.0.0.1', '--http-port', '0', '--data-dir', './other'], { cwd: dir });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`^updraft: error: MQTT port ${port} on 127\\.0\\.0\\.1 is already in use`));
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  });
});
