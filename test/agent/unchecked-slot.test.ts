/**
 * A slot switched to whose health check never passed is checked again, even by an agent that
 * lost its state with the crash: QA killed `updraft agent` (SIGKILL) during the check, removed
 * its state file and restarted it with a failing check, and it logged "already running the
 * desired software" and reported SUCCESS, while the old check ran on. Real server, the real
 * daemon (`updraft agent`, killed with SIGKILL), real MQTT, real files.
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
  let pgid = 0;

  before(async () => {
    ts = await startTestServer();
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-unchecked-'));
    await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(1000)));
  });
  after(async () => {
    await Promise.all(daemons.map((d) => d.kill('SIGKILL')));
    if (pgid > 1) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  it('is checked again (the old check killed first) and rolled back when the check fails', async () => {
    const deviceId = 'uc-1';
    const password = await registerDevice(ts, deviceId);
    const dir = path.join(root, deviceId);
    const keyFile = path.join(root, 'signing-key.pub');
    await writeFile(keyFile, ts.server.security.signingKey.publicKeyPem);
    const agent = (healthCheck: string) => {
      const d = startCli(['agent', '--device', deviceId, '--install-dir', dir, '--broker', ts.mqttUrl, '--password', password, '--signing-key', keyFile, '--initial-version', '1.0.0', '--health-check', healthCheck, '--health-check-timeout', '120']);
      daemons.push(d);
      return d;
    };

    // the first agent's check hangs; it is killed during it, after the check was recorded
    const first = agent('echo $$ > hc.pid; sleep 60');
    await first.waitFor(/connected/);
    const jobId = await deploy(ts, [deviceId], 'fw@2.0.0');
    await first.waitFor(/switched slot=a/);
    await eventually(async () => ((await stat(path.join(dir, 'hc.pid')).catch(() => undefined))?.size ? true : undefined), 15_000, 'the check started');
    await eventually(async () => (await readFile(path.join(dir, '.health-check.json'), 'utf8').then((t) => typeof JSON.parse(t).pgid === 'number', () => false)) || undefined, 15_000, 'the check recorded');
    await first.kill('SIGKILL');
    pgid = Number((await readFile(path.join(dir, 'hc.pid'), 'utf8')).trim());
    assert.ok((await liveMembers(pgid)) > 0, 'the check outlived the agent');
    await rm(path.join(dir, '.updraft', 'agent-state.json'));

    // restarted without its state, with a check that fails
    const second = agent('echo "sensor broken" >&2; exit 1');
    await second.waitFor(new RegExp(`job ${jobId} acknowledged: FAILURE, running 1\\.0\\.0`));
    const out = second.output();
    assert.doesNotMatch(out, /already running the desired software/);
    assert.match(out, /its health check has not passed/);
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
  });
});
