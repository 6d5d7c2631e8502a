/**
 * Durations a user gives that end up in a Node.js timer are bounded by what a timer holds,
 * 2^31-1 ms (about 24.8 days): a longer one fires at once (with only a TimeoutOverflowWarning),
 * so `--health-check-timeout 2200000` (25.5 days) failed every health check at once and rolled
 * back a good update, and `job watch --interval` polled the server every millisecond. They are
 * refused instead, at the command line (exit 2, one line) and by the library. The real
 * `updraft` command, a real server, the real slot installer on a real directory.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readlink, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { checkAgentOptions } from '../../src/agent/daemon.ts';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import { UpdraftError } from '../../src/errors.ts';
import { freePort } from '../helpers/free-port.ts';
import { eventually, runCli, startCli, type CliProcess } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';

const TOO_LONG_FOR_A_TIMER = 2_147_483_648;

/** Runs `updraft ...args`, which must exit by itself within 20 s (an agent started instead is killed and the test fails). */
async function exitsAtOnce(args: string[]): Promise<{ code: number | null; output: string }> {
  const p = startCli(args);
  const code = await Promise.race([new Promise<number | null>((resolve) => p.child.once('close', resolve)), new Promise<'running'>((resolve) => setTimeout(resolve, 20_000, 'running'))]);
  if (code === 'running') {
    await p.kill('SIGKILL');
    assert.fail(`updraft ${args.join(' ')} did not exit:\n${p.output()}`);
  }
  return { code, output: p.output() };
}

describe('durations longer than a timer holds', () => {
  let ts: TestServer;
  let root: string;
  const agents: CliProcess[] = [];
  before(async () => {
    ts = await startTestServer();
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-timer-bounds-'));
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.kill('SIGKILL')));
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  it('updraft agent refuses a --health-check-timeout above 2147483 s, in one line', async () => {
    const closed = `mqtt://127.0.0.1:${await freePort()}`;
    for (const s of ['2147484', '2200000', '0', '-1', 'long']) {
      const r = await exitsAtOnce(['agent', '--device', 'hc-1', '--install-dir', path.join(root, 'hc-1'), '--broker', closed, '--password', 'not-checked-before-the-flags', '--insecure-allow-unsigned', '--health-check', 'true', '--health-check-timeout', s]);
      assert.equal(r.code, 2, `--health-check-timeout ${s} is bad input: ${r.output}`);
      assert.equal(r.output, `updraft: error: --health-check-timeout must be a number of seconds from 0.001 to 2147483 (about 24.8 days), got ${s}\n`);
    }
  });

  it('updraft agent takes --health-check-timeout 2147483 (the longest) and its check runs to its end', async () => {
    const deviceId = 'hc-longest';
    const password = await registerDevice(ts, deviceId);
    const dir = path.join(root, deviceId);
    const keyFile = path.join(root, 'signing-key.pub');
    await writeFile(keyFile, ts.server.security.signingKey.publicKeyPem);
    await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(1000)));
    const agent = startCli(['agent', '--device', deviceId, '--install-dir', dir, '--broker', ts.mqttUrl, '--password', password, '--signing-key', keyFile, '--initial-version', '1.0.0', '--health-check', 'sleep 1', '--health-check-timeout', '2147483']);
    agents.push(agent);
    await agent.waitFor(/connected/);
    const jobId = await deploy(ts, [deviceId], 'fw@2.0.0');
    const done = await eventually(async () => {
      const e = await ts.server.store.getExecution(jobId, deviceId);
      return e && e.status !== 'IN_PROGRESS' && e.status !== 'QUEUED' ? e : undefined;
    }, 30_000, 'the outcome on the server');
    assert.equal(done.status, 'SUCCEEDED', JSON.stringify(done.details));
    assert.equal(await readlink(path.join(dir, 'current')), 'slots/a');
    assert.doesNotMatch(agent.output(), /TimeoutOverflowWarning/);
  });

  it('runAgentDaemon refuses a healthCheckTimeoutMs above 2147483647', () => {
    assert.throws(() => checkAgentOptions({ deviceId: 'd', installDir: root, healthCheckTimeoutMs: TOO_LONG_FOR_A_TIMER }), (err: unknown) => {
      assert.ok(err instanceof UpdraftError && err.code === 'CONFIG', String(err));
      assert.equal(err.message, `invalid agent options: --health-check-timeout must be a number of milliseconds from 1 to 2147483647 (about 24.8 days), got ${TOO_LONG_FOR_A_TIMER}`);
      return true;
    });
    checkAgentOptions({ deviceId: 'd', installDir: root, healthCheckTimeoutMs: 2_147_483_647 });
  });

  it('SlotInstaller refuses a healthCheckTimeoutMs above 2147483647', () => {
    for (const v of [TOO_LONG_FOR_A_TIMER, 0, Number.NaN]) {
      assert.throws(() => new SlotInstaller({ dir: root, healthCheck: 'true', healthCheckTimeoutMs: v }), (err: unknown) => {
        assert.ok(err instanceof UpdraftError && err.code === 'CONFIG', String(err));
        assert.equal(err.message, `invalid SlotInstaller options: healthCheckTimeoutMs must be a number of milliseconds from 1 to 2147483647 (about 24.8 days), got ${v}`);
        return true;
      });
    }
    new SlotInstaller({ dir: root, healthCheck: 'true', healthCheckTimeoutMs: 2_147_483_647 });
  });

  it('updraft job watch refuses an --interval above 2147483647 ms, in one line', async () => {
    const r = await runCli(['job', 'watch', 'some-job', '--server', ts.httpUrl, '--token', ts.token, '--interval', String(TOO_LONG_FOR_A_TIMER)]);
    assert.deepEqual([r.code, r.stderr], [2, `updraft: error: --interval must be a number of milliseconds from 100 to 2147483647 (about 24.8 days) between polls, got ${TOO_LONG_FOR_A_TIMER}\n`]);
  });
});
