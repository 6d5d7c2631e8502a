/**
 * The broker's password file given to the group Mosquitto runs as (cli/broker-file-group.ts).
 * `updraft broker mosquitto-config --watch` run as root wrote passwd 0600 owned by root;
 * Mosquitto started as root drops to its own user and then cannot open it: it does not start
 * ("Unable to open pwfile"), and a reload keeps what it had. Written 0640 with the mosquitto
 * group, before the rename, it starts and a reload (SIGHUP) takes a rewritten file. A real
 * Mosquitto 2.0 started as root, as a systemd unit starts it.
 */
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { mosquittoAcl, mosquittoConf, mosquittoPasswd } from '../../src/broker/mosquitto-config.ts';
import { resolveFileGroup, rootWithoutGroupWarning, shareWithGroup, writeBrokerSecretFile, type FileGroup } from '../../src/cli/broker-file-group.ts';
import { eventually, runCli, startCli, type CliProcess } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';
import { findMosquitto, mosquittoUnavailable, runMosquitto } from '../helpers/mosquitto.ts';
import { connackCode } from '../helpers/mqtt-client.ts';
import { startTestServer } from '../helpers/server.ts';

const found = findMosquitto();
const token = (c: string) => `updr_${c.repeat(40)}`;

describe('resolveFileGroup and the warning at start', () => {
  it('names an unknown group in one line; takes a name or a number; warns root without a group only', async () => {
    await assert.rejects(resolveFileGroup('--group', 'no-such-group-updraft'), (err: Error) => {
      assert.match(err.message, /^--group no-such-group-updraft: no such group \(not in \/etc\/group, nor known to getent\); give the group Mosquitto runs as/, err.message);
      assert.equal(err.message.split('\n').length, 1, 'one line');
      return true;
    });
    await assert.rejects(resolveFileGroup('--group', ' '), /--group must name a group/);
    const root = await resolveFileGroup('--group', 'root');
    assert.deepEqual(root, { name: 'root', gid: 0 }, 'by name');
    assert.deepEqual(await resolveFileGroup('--group', '0'), { name: 'root', gid: 0 }, 'by number');
    const file = '/etc/mosquitto/passwd';
    assert.match(rootWithoutGroupWarning(file, undefined, 0) ?? '', /^running as root without --group: \/etc\/mosquitto\/passwd is written mode 0600 owned by root, which Mosquitto, dropped to its own user .* give --group mosquitto/);
    assert.equal(rootWithoutGroupWarning(file, root, 0), undefined, 'a group given: nothing to say');
    assert.equal(rootWithoutGroupWarning(file, undefined, 1000), undefined, 'not root: Mosquitto runs as that user, or is given the file otherwise');
  });

  it('shareWithGroup gives a file written 0600 to the group, 0640; without a group it leaves it', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-share-group-'));
    try {
      const file = path.join(dir, 'passwd');
      await writeFile(file, 'x', { mode: 0o600 });
      await shareWithGroup(file, undefined);
      assert.equal((await stat(file)).mode & 0o777, 0o600, 'no group: as written');
      const own = { name: 'own', gid: process.getgid!() }; // a group this user may give files to
      await shareWithGroup(file, own);
      const st = await stat(file);
      assert.equal(st.mode & 0o777, 0o640, 'group-readable');
      assert.equal(st.gid, own.gid, 'that group');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'passwd group test');
  it('passwd group', (t) => t.skip(message));
} else {
  describe('passwd read by Mosquitto dropped to its own user', () => {
    const dirs: string[] = [];
    after(async () => {
      for (const d of dirs) await rm(d, { recursive: true, force: true });
    });

    /** A directory the mosquitto user can reach, with mosquitto.conf and acl, and passwd for `operatorToken` written as the watch writes it, with `group` or without. */
    const setup = async (operatorToken: string, group: FileGroup | undefined) => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-passwd-group-'));
      dirs.push(dir);
      await chmod(dir, 0o755);
      const [devicePort, servicePort] = [await freePort(), await freePort()];
      await writeBrokerSecretFile(path.join(dir, 'passwd'), mosquittoPasswd({ operatorToken, devices: [], secrets: new Map() }).text, group);
      await writeFile(path.join(dir, 'acl'), mosquittoAcl(), { mode: 0o644 });
      await writeFile(path.join(dir, 'mosquitto.conf'), mosquittoConf({ dir, deviceHost: '127.0.0.1', devicePort, serviceHost: '127.0.0.1', servicePort }), { mode: 0o644 });
      return { dir, devicePort, servicePort, serviceUrl: `mqtt://127.0.0.1:${servicePort}` };
    };

    it('written 0600 by root (no group): Mosquitto, dropped to its user, cannot open it and does not start', async (t) => {
      if (process.getuid?.() !== 0) return t.skip('Mosquitto drops to its own user only when started as root');
      const s = await setup(token('a'), undefined);
      assert.equal((await stat(path.join(s.dir, 'passwd'))).mode & 0o777, 0o600);
      await assert.rejects(runMosquitto(found.bin, s.dir, [s.devicePort, s.servicePort]), /Unable to open pwfile/, 'the defect the group is for');
    });

    it('written 0640 with the mosquitto group: it starts, and a reload takes the rewritten file', async (t) => {
      if (process.getuid?.() !== 0) return t.skip('Mosquitto drops to its own user only when started as root');
      const group = await resolveFileGroup('--group', 'mosquitto').catch(() => undefined);
      if (group === undefined) return t.skip('no mosquitto group on this machine');
      const s = await setup(token('a'), group);
      const st = await stat(path.join(s.dir, 'passwd'));
      assert.equal(st.mode & 0o777, 0o640, 'group-readable, no one else');
      assert.equal(st.gid, group.gid, 'the group Mosquitto runs as');
      const broker = await runMosquitto(found.bin, s.dir, [s.devicePort, s.servicePort]);
      try {
        assert.equal(await connackCode(s.serviceUrl, { clientId: 'op-1', username: 'operator', password: token('a') }), undefined, 'the operator logs in with the file read');
        // the watch rewrites it (a rotated token here), then reloads the broker
        await writeBrokerSecretFile(path.join(s.dir, 'passwd'), mosquittoPasswd({ operatorToken: token('b'), devices: [], secrets: new Map() }).text, group);
        broker.child.kill('SIGHUP');
        await eventually(async () => ((await connackCode(s.serviceUrl, { clientId: 'op-2', username: 'operator', password: token('b') })) === undefined ? true : undefined), 15_000, 'the new token taken at the reload');
        assert.equal(await connackCode(s.serviceUrl, { clientId: 'op-3', username: 'operator', password: token('a') }), 5, 'the old one refused');
        assert.equal(broker.child.exitCode, null, 'still running');
      } finally {
        await broker.stop();
      }
    });

    it('updraft broker mosquitto-config --group: the one-off run and the watch write passwd 0640 with it, Mosquitto reads the watch\'s; an unknown group writes nothing; root without it is warned', async (t) => {
      if (process.getuid?.() !== 0) return t.skip('Mosquitto drops to its own user only when started as root');
      const group = await resolveFileGroup('--group', 'mosquitto').catch(() => undefined);
      if (group === undefined) return t.skip('no mosquitto group on this machine');
      const ts = await startTestServer();
      const procs: CliProcess[] = [];
      try {
        const base = await mkdtemp(path.join(os.tmpdir(), 'updraft-passwd-group-cli-'));
        dirs.push(base);
        await chmod(base, 0o755);
        const [devicePort, servicePort] = [await freePort(), await freePort()];
        const flags = (out: string) => ['broker', 'mosquitto-config', '--out', out, '--device-host', '127.0.0.1', '--device-port', String(devicePort), '--service-host', '127.0.0.1', '--service-port', String(servicePort), '--server', ts.httpUrl, '--token', ts.token];
        const unknown = await runCli([...flags(path.join(base, 'unknown')), '--group', 'no-such-group-updraft']);
        assert.equal(unknown.code, 2, unknown.stderr);
        assert.match(unknown.stderr, /^updraft: error: --group no-such-group-updraft: no such group/, 'one line naming it');
        await assert.rejects(stat(path.join(base, 'unknown')), /ENOENT/, 'nothing written, not even the directory');
        const once = await runCli([...flags(path.join(base, 'once')), '--group', 'mosquitto']);
        assert.equal(once.code, 0, once.stderr);
        const onceSt = await stat(path.join(base, 'once', 'passwd'));
        assert.deepEqual([onceSt.mode & 0o777, onceSt.gid], [0o640, group.gid], 'the one-off run: 0640, the mosquitto group');
        assert.doesNotMatch(once.stderr, /without --group/, 'no warning with a group');
        const bareOnce = await runCli(flags(path.join(base, 'bare-once')));
        assert.equal(bareOnce.code, 0, bareOnce.stderr);
        assert.match(bareOnce.stderr, /^updraft: warning: running as root without --group: .*passwd is written mode 0600 owned by root.* give --group mosquitto/m, 'the one-off run as root without a group is warned too (review of 5a2a3b2)');
        // the watch, as a root systemd unit runs it, then Mosquitto on its files (as root: it drops to its user)
        const dir = path.join(base, 'watch');
        const watch = startCli([...flags(dir), '--watch', '--group', 'mosquitto']);
        procs.push(watch);
        await watch.waitFor(/wrote mosquitto.conf/);
        const st = await stat(path.join(dir, 'passwd'));
        assert.deepEqual([st.mode & 0o777, st.gid], [0o640, group.gid], "the watch's passwd: 0640, the mosquitto group");
        assert.doesNotMatch(watch.output(), /running as root without --group/, 'no warning with a group');
        const broker = await runMosquitto(found.bin, dir, [devicePort, servicePort]);
        try {
          assert.equal(await connackCode(`mqtt://127.0.0.1:${servicePort}`, { clientId: 'op-1', username: 'operator', password: ts.token }), undefined, "Mosquitto, dropped to its user, read the watch's passwd");
        } finally {
          await broker.stop();
        }
        const bare = startCli([...flags(path.join(base, 'bare')), '--watch']);
        procs.push(bare);
        await bare.waitFor(/running as root without --group: .*passwd is written mode 0600 owned by root.* give --group mosquitto/);
      } finally {
        for (const p of procs) await p.kill('SIGTERM');
        await ts.close();
      }
    });
  });
}
