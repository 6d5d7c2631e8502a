/**
 * The external-broker bootstrap of docs/deployment.md ("Setting up: the first start"),
 * followed command by command against a real Mosquitto and PostgreSQL started for this file:
 * the operator token made once and copied, the broker's files written offline (no server can
 * run before the broker knows that token), two instances started on the broker, and the
 * watch keeping the password file current, which admits a device registered afterwards.
 */
import assert from 'node:assert/strict';
import { chmod, cp, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiClient } from '../../src/cli/api-client.ts';
import { eventually, runCli, startCli, type CliProcess } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';
import { findMosquitto, mosquittoUnavailable, runMosquitto } from '../helpers/mosquitto.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';

const found = findMosquitto();

describe('mosquitto-config --offline options', () => {
  it('refuses --server, --token and --watch with --offline, and --db without it, in one line with exit code 2', async () => {
    const base = ['broker', 'mosquitto-config', '--out', path.join(os.tmpdir(), `updraft-boot-${process.pid}`)];
    for (const [extra, message] of [
      [['--offline', '--server', 'http://127.0.0.1:9'], /--offline reads the operator token from --data-dir's operator-token.*drop --server and --token/],
      [['--offline', '--token', 'updr_0123456789abcdef0123456789abcdef'], /drop --server and --token/],
      [['--offline', '--watch'], /--offline and --watch do not go together/],
      [['--db', 'postgres://127.0.0.1/x', '--server', 'http://127.0.0.1:9', '--token', 't'], /--db and --config go with --offline/],
    ] as const) {
      const r = await runCli([...base, ...extra]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
      assert.equal(r.stderr.split('\n').length, 2, 'one line');
    }
  });

  it('token rotate --offline says to copy the one token to every instance rather than rotate in each', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-boot-'));
    try {
      const r = await runCli(['token', 'rotate', '--offline', '--data-dir', dir]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /copy this file into every instance's data directory \(do not rotate in each\), then regenerate the broker's passwd \(updraft broker mosquitto-config --offline\)/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('says how to make the shared token when the data directory has none', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-boot-'));
    try {
      const r = await runCli(['broker', 'mosquitto-config', '--offline', '--data-dir', dir, '--out', path.join(dir, 'mosquitto')]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /^updraft: error: no operator token in .*operator-token: make the one the instances and the broker share with `updraft token rotate --offline --data-dir .*` \(once; then copy the file into every instance's data directory\)\n$/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'external-broker bootstrap test');
  it('external-broker bootstrap', (t) => t.skip(message));
} else {
  describe('external-broker bootstrap, as docs/deployment.md says (Mosquitto, PostgreSQL)', () => {
    let pg: TestPostgres | undefined;
    let skip: string | undefined;
    let root: string;
    const stops: (() => Promise<unknown>)[] = [];

    before(async () => {
      const started = await startTestPostgres();
      if (!started.ok) skip = unavailable(started, 'external-broker bootstrap test');
      else pg = started.server;
      root = await mkdtemp(path.join(os.tmpdir(), 'updraft-boot-'));
    });
    after(async () => {
      for (const stop of stops.reverse()) await stop();
      await pg?.stop();
      await rm(root, { recursive: true, force: true });
    });

    it('token made once and copied, broker files offline, two instances, then the watch admits a new device', async (t) => {
      if (skip || !pg) return t.skip(skip);
      const db = await pg.createDatabase();
      const dataA = path.join(root, 'a');
      const dataB = path.join(root, 'b');
      const conf = path.join(root, 'mosquitto');
      const [devicePort, servicePort] = [await freePort(), await freePort()];
      const listenerFlags = ['--device-host', '127.0.0.1', '--device-port', String(devicePort), '--service-host', '127.0.0.1', '--service-port', String(servicePort)];

      // 1. one operator token, made once and copied: every instance and the broker share it
      const rotated = await runCli(['token', 'rotate', '--offline', '--data-dir', dataA, '--json']);
      assert.equal(rotated.code, 0, rotated.stderr);
      const token = (JSON.parse(rotated.stdout) as { token: string }).token;
      await mkdir(dataB, { recursive: true });
      await cp(path.join(dataA, 'operator-token'), path.join(dataB, 'operator-token'));

      // 2. the broker's files, without a server: the token from the data directory, the registry from the database
      const generated = await runCli(['broker', 'mosquitto-config', '--offline', '--data-dir', dataA, '--db', db, '--out', conf, ...listenerFlags]);
      assert.equal(generated.code, 0, generated.stderr);
      assert.match(generated.stdout, /operator \+ 0 devices \(registry read from postgres:\/\//);
      assert.match(await readFile(path.join(conf, 'passwd'), 'utf8'), /^operator:\$7\$/);
      // mosquitto started as root drops to its own user, which must read the files
      await chmod(root, 0o755);
      await chmod(conf, 0o755);
      await chmod(path.join(conf, 'passwd'), 0o644);
      const mosquitto = await runMosquitto(found.bin, conf, [devicePort, servicePort]);
      stops.push(() => mosquitto.stop());

      // a token rotated in another data directory instead of copied: that instance is refused, and told why
      const stray = path.join(root, 'stray');
      assert.equal((await runCli(['token', 'rotate', '--offline', '--data-dir', stray])).code, 0);
      const refused = await runCli(['server', '--data-dir', stray, '--db', db, '--mqtt-url', `mqtt://127.0.0.1:${servicePort}`, '--http-host', '127.0.0.1', '--http-port', '0', '--mqtt-tls-port', '-1']);
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, /refused user operator \(Connection refused: Not authorized\): its password must be the operator token this instance started with .*updraft broker mosquitto-config --offline/);

      // 3. the first instance on the broker: it makes the keys and the CA in its data directory
      const startInstance = async (dataDir: string) => {
        const httpPort = await freePort();
        const proc: CliProcess = startCli(['server', '--data-dir', dataDir, '--db', db, '--mqtt-url', `mqtt://127.0.0.1:${servicePort}`, '--http-host', '127.0.0.1', '--http-port', String(httpPort), '--mqtt-tls-port', '-1']);
        stops.push(() => proc.kill('SIGTERM'));
        await proc.waitFor(/HTTP API and downloads on/, 60_000);
        return new ApiClient({ server: `http://127.0.0.1:${httpPort}`, token });
      };
      const a = await startInstance(dataA);
      // 4. its keys and CA copied to the next instance before that one starts
      for (const sub of ['keys', 'pki']) await cp(path.join(dataA, sub), path.join(dataB, sub), { recursive: true });
      const b = await startInstance(dataB);
      for (const api of [a, b]) {
        const ready = await fetch(`${api.baseUrl}/readyz`);
        assert.equal(ready.status, 200, `${api.baseUrl} ready: ${await ready.text()}`);
      }
      // the token is not rotated online here, and the answer says to rotate once and copy, not to rotate in each directory
      await assert.rejects(a.call('POST', '/api/v1/operator-token/rotate'), {
        status: 409,
        message: /rotate it once, offline, in one data directory \(updraft token rotate --offline --data-dir <dir> --db <url>\), copy that operator-token file into every instance's data directory \(do not rotate in each: each would get a token of its own\), regenerate the broker's password file/,
      });

      // 5. the watch keeps passwd current (against either instance): a device registered on one is admitted
      const watch = startCli(['broker', 'mosquitto-config', '--watch', '--out', conf, ...listenerFlags, '--reload-command', `chmod 644 passwd && kill -HUP ${mosquitto.child.pid}`, '--server', b.baseUrl, '--data-dir', dataB]);
      stops.push(() => watch.kill('SIGTERM'));
      await watch.waitFor(/password file written/);
      const { secret } = await a.call<{ secret: string }>('POST', '/api/v1/devices', { deviceId: 'boot-1' });
      const device = await eventually(async () => {
        try {
          return await TestClient.connect(`mqtt://127.0.0.1:${devicePort}`, 'boot-1', { username: 'boot-1', password: secret });
        } catch {
          return undefined;
        }
      }, 30_000, 'boot-1 admitted by the broker');
      // an id Mosquitto cannot take as a user name (its passwd separates name and hash with ':') is not registered
      await assert.rejects(a.call('POST', '/api/v1/devices', { deviceId: 'gw:1' }), { status: 400, message: /^device id "gw:1" holds ':': Mosquitto's password file separates user name and hash with ':', .* register devices under ids without ':'$/ });
      await device.subscribe('state/boot-1/update/+');
      const answer = await device.request('state/boot-1/update', { state: { reported: { booted: true } } });
      assert.equal(answer.topic, 'state/boot-1/update/accepted', 'an instance answered through the broker');
      await device.end();

      // offline again, the instances running: the registry read from the database names the device
      const again = await runCli(['broker', 'mosquitto-config', '--offline', '--data-dir', dataB, '--db', db, '--out', path.join(root, 'again'), ...listenerFlags]);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /operator \+ 1 devices/);
      assert.match(await readFile(path.join(root, 'again', 'passwd'), 'utf8'), /\nboot-1:\$7\$/);
    });
  });
}
