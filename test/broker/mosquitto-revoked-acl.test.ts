/**
 * Revoked devices behind an external Mosquitto with certificate logins
 * (`broker mosquitto-config --updraft-ca`): the device listener takes the client
 * certificate's CN as the user name and does not use the password file, so leaving a revoked
 * device out of it did not keep it out: it still read its own topics (its update commands and
 * their signed download URLs) and wrote its requests. The acl now denies a revoked device every
 * topic; Mosquitto checks denials before the patterns, at each publish and delivery, and
 * rereads the acl on SIGHUP, so a connection made before the revocation carries nothing after
 * the watch's reload. Real `updraft` processes, a real server, a real Mosquitto, MQTT.js
 * clients with client certificates of Updraft's CA. Skipped where Mosquitto is not installed
 * (fails under CI=true).
 */
import assert from 'node:assert/strict';
import { chmod, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import { loadCa } from '../../src/pki/certificate-authority.ts';
import { eventually, startCli, type CliProcess } from '../helpers/cli.ts';
import { Scratch } from '../helpers/scratch.ts';
import { findMosquitto, mosquittoUnavailable, runMosquitto, setupMosquittoTls } from '../helpers/mosquitto.ts';
import { apiJson, registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

const found = findMosquitto();

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'revoked devices behind Mosquitto');
  it('revoked devices behind Mosquitto', (t) => t.skip(message));
} else {
  describe('revoked devices behind Mosquitto with certificate logins: the acl denies them every topic', () => {
    const scratch = new Scratch();
    const { tmp } = scratch;
    after(() => scratch.release());

    it('a revoked device logged in with its certificate can neither publish nor receive; mosquitto-config --watch denies one revoked while connected, and lets it back when reinstated', async () => {
      const s = await setupMosquittoTls(tmp, 'updraft-mq-revoked-');
      let ts: TestServer = await startTestServer({ dataDir: s.dataDir });
      for (const id of ['c-ok', 'c-rev', 'c-later']) await registerDevice(ts, id);
      assert.equal((await apiJson(ts, 'POST', '/api/v1/devices/c-rev/revoke')).status, 200, 'c-rev revoked');
      await ts.stop();

      const generated = await s.generate(['--updraft-ca']);
      assert.match(generated.stdout, /^left out 1 revoked devices \(and denied every topic in acl: a client certificate login gets nothing either\)$/m, generated.stdout);
      const acl = await readFile(path.join(s.out, 'acl'), 'utf8');
      assert.match(acl, /^user c-rev\ntopic deny #\ntopic deny \$aws\/#$/m, acl);
      assert.doesNotMatch(acl, /^user c-(ok|later)$/m, 'only the revoked device is denied');
      const proc = await runMosquitto(found.bin, s.out, [s.devicePort, s.servicePort]);
      scratch.onRelease(() => proc.stop());

      const operator = await mqtt.connectAsync(s.serviceUrl, { clientId: 'op-1', username: 'operator', password: s.token, reconnectPeriod: 0 });
      scratch.onRelease(() => operator.endAsync());
      const heard: string[] = [];
      operator.on('message', (topic) => heard.push(topic));
      await operator.subscribeAsync('state/+/update', { qos: 1 });

      const ca = (await loadCa(s.dataDir))!;
      const device = async (id: string) => {
        const pair = await ca.issueDeviceCertificate(id);
        const c = await mqtt.connectAsync(s.url, { clientId: id, protocolVersion: 5, ca: s.serverCa, cert: pair.certificate, key: pair.privateKey, reconnectPeriod: 1_000, connectTimeout: 5_000 });
        scratch.onRelease(() => c.endAsync(true));
        const got: string[] = [];
        c.on('message', (topic, payload) => got.push(`${topic} ${payload.toString()}`));
        await c.subscribeAsync(`state/${id}/update/delta`, { qos: 1 });
        return { id, c, got };
      };
      /** Publishes a report as the device: 'ok' when the broker acknowledged it, else why not. */
      const report = (c: MqttClient, id: string, n: number) =>
        c.publishAsync(`state/${id}/update`, JSON.stringify({ n }), { qos: 1 }).then(
          () => 'ok',
          (err: Error) => err.message,
        );
      /** Sends a delta to `denied` then to `allowed`; resolves once `allowed` has it (Mosquitto handles them in order, so `denied`'s was delivered or dropped by then). */
      const deltas = async (denied: { id: string; got: string[] }, allowed: { id: string; got: string[] }, n: number) => {
        await operator.publishAsync(`state/${denied.id}/update/delta`, `cmd-${n}`, { qos: 1 });
        await operator.publishAsync(`state/${allowed.id}/update/delta`, `cmd-${n}`, { qos: 1 });
        await eventually(async () => (allowed.got.includes(`state/${allowed.id}/update/delta cmd-${n}`) ? true : undefined), 15_000, `${allowed.id} receives cmd-${n}`);
      };

      const ok = await device('c-ok');
      const rev = await device('c-rev'); // the TLS handshake admits it: the CA issued its certificate
      assert.equal(await report(ok.c, 'c-ok', 1), 'ok', 'a device in good standing publishes');
      assert.match(await report(rev.c, 'c-rev', 1), /Not authorized/, 'the revoked device may not publish');
      await deltas(rev, ok, 1);
      assert.deepEqual(rev.got, [], 'the revoked device receives nothing');
      await eventually(async () => (heard.includes('state/c-ok/update') ? true : undefined), 15_000, 'the operator hears c-ok');
      assert.ok(!heard.includes('state/c-rev/update'), `nothing of c-rev reached the operator: ${heard.join(', ')}`);

      // the watch keeps the acl as the registry changes: a device revoked while connected
      ts = await startTestServer({ dataDir: s.dataDir, flags: { 'mqtt-tls-port': -1 } });
      scratch.onRelease(() => ts.stop());
      await chmod(path.join(s.out, 'acl'), 0o644);
      const watch: CliProcess = startCli([
        'broker', 'mosquitto-config', '--watch', ...s.flags, '--updraft-ca', '--data-dir', s.dataDir,
        // mosquitto dropped to its own user: it must be able to read the files
        '--reload-command', `chmod 644 passwd acl && kill -HUP ${proc.child.pid}`,
        '--server', ts.httpUrl, '--token', s.token,
      ]);
      scratch.onRelease(() => watch.kill('SIGTERM'));
      await watch.waitFor(/wrote mosquitto\.conf/);
      const later = await device('c-later');
      assert.equal(await report(later.c, 'c-later', 1), 'ok', 'c-later publishes before its revocation');
      assert.equal((await apiJson(ts, 'POST', '/api/v1/devices/c-later/revoke')).status, 200);
      await eventually(async () => ((await report(later.c, 'c-later', 2)).includes('Not authorized') ? true : undefined), 30_000, 'c-later refused once revoked (acl rewritten, Mosquitto reloaded)');
      await deltas(later, ok, 2);
      assert.deepEqual(later.got, [], 'c-later receives nothing once revoked, on the connection it made before');
      assert.match(await readFile(path.join(s.out, 'acl'), 'utf8'), /^user c-later\ntopic deny #$/m);

      assert.equal((await apiJson(ts, 'POST', '/api/v1/devices/c-later/reinstate')).status, 200);
      await eventually(async () => ((await report(later.c, 'c-later', 3)) === 'ok' ? true : undefined), 30_000, 'c-later publishes again once reinstated');
      await operator.publishAsync('state/c-later/update/delta', 'cmd-3', { qos: 1 });
      await eventually(async () => (later.got.includes('state/c-later/update/delta cmd-3') ? true : undefined), 15_000, 'c-later receives again once reinstated');
      assert.match(watch.output(), /acl written/, watch.output());
    });
  });
}
