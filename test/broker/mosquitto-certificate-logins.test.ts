/**
 * An external Mosquitto on the files of `updraft broker mosquitto-config` (docs/deployment.md
 * TLS, docs/security.md): what `--tls-ca` and `--updraft-ca` let in, and that Updraft refuses
 * the requests of a revoked device that Mosquitto let in by its certificate.
 *
 * 1. `--tls-ca`: the listener's cafile alone, as it always was (60b26bb had made it require
 *    certificates, locking out every password device after a regeneration): a device logs in
 *    with its password, with or without a certificate; a certificate without a password is
 *    refused.
 * 2. `--updraft-ca` (certificate logins, the password file unused on the device listener): a
 *    revoked device's certificate still gets it into Mosquitto, and a real server started
 *    with `--mqtt-url` answers its update and get with 403 on their rejected topics and
 *    stores nothing; after a restart of the server too (the revoked set read from the store),
 *    and reinstated, it is answered again. Another device's certificate is answered as usual.
 * 3. Two instances on one PostgreSQL: a device revoked through one is refused by the other,
 *    started before the revocation (the registry's event reaches it through the relay).
 * Skipped where Mosquitto is not installed (fails under CI=true).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { cp, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { createCa, loadCa } from '../../src/pki/certificate-authority.ts';
import { eventually } from '../helpers/cli.ts';
import { Scratch } from '../helpers/scratch.ts';
import { findMosquitto, mosquittoUnavailable, runMosquitto, setupMosquittoTls } from '../helpers/mosquitto.ts';
import { tryConnect } from '../helpers/mqtt-client.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';
import { apiJson, registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

/** Connects by certificate, sends an update (unless `getOnly`) and a get, and returns the answers (topic → payload). */
async function ask(url: string, serverCa: string, deviceId: string, pair: { certificate: string; privateKey: string }, x: number, getOnly = false): Promise<Map<string, any>> {
  const c = await mqtt.connectAsync(url, { clientId: deviceId, ca: serverCa, cert: pair.certificate, key: pair.privateKey, reconnectPeriod: 0, connectTimeout: 5000 });
  try {
    const got = new Map<string, any>();
    c.on('message', (t, p) => got.set(t, JSON.parse(p.toString())));
    await c.subscribeAsync([`state/${deviceId}/update/+`, `state/${deviceId}/get/+`], { qos: 1 });
    if (!getOnly) {
      await c.publishAsync(`state/${deviceId}/update`, JSON.stringify({ state: { reported: { x } }, clientToken: 'u' }), { qos: 1 });
      await eventually(async () => [...got.keys()].some((t) => t.startsWith(`state/${deviceId}/update/`)) || undefined, 10_000, `${deviceId}'s update answered`);
    }
    await c.publishAsync(`state/${deviceId}/get`, JSON.stringify({ clientToken: 'g' }), { qos: 1 });
    await eventually(async () => [...got.keys()].some((t) => t.startsWith(`state/${deviceId}/get/`)) || undefined, 10_000, `${deviceId}'s get answered`);
    return got;
  } finally {
    await c.endAsync(true);
  }
}

/** A device's job-log upload and AWS jobs get: the answers that came (within `waitMs` when none is expected). */
async function askOthers(url: string, serverCa: string, deviceId: string, pair: { certificate: string; privateKey: string }, answered: boolean): Promise<string[]> {
  const c = await mqtt.connectAsync(url, { clientId: deviceId, ca: serverCa, cert: pair.certificate, key: pair.privateKey, reconnectPeriod: 0, connectTimeout: 5000 });
  try {
    const got: string[] = [];
    c.on('message', (t) => got.push(t));
    await c.subscribeAsync([`state/${deviceId}/job-log/+`, `$aws/things/${deviceId}/jobs/get/+`], { qos: 1 });
    await c.publishAsync(`state/${deviceId}/job-log`, '{}', { qos: 1 });
    await c.publishAsync(`$aws/things/${deviceId}/jobs/get`, '{}', { qos: 1 });
    if (answered) await eventually(async () => (got.length >= 2 ? true : undefined), 10_000, `${deviceId}'s job log and AWS jobs get answered`);
    else await new Promise((r) => setTimeout(r, 1500));
    return got.sort();
  } finally {
    await c.endAsync(true);
  }
}

const found = findMosquitto();
const pgResult = await startTestPostgres();

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'Mosquitto certificate logins');
  it('Mosquitto certificate logins', (t) => t.skip(message));
} else {
  const bin = found.bin;
  describe('an external Mosquitto: --tls-ca, --updraft-ca and revoked devices', () => {
    const scratch = new Scratch();
    const { tmp } = scratch;
    after(() => scratch.release());

    /** A data directory with a CA and an operator token, the broker's certificate, ports and flags (setupMosquittoTls), and a Mosquitto on them stopped after the tests. */
    async function setup() {
      const s = await setupMosquittoTls(tmp, 'updraft-mq-certlogin-');
      const mosquitto = async () => {
        const proc: { child: ChildProcess; stop(): Promise<void> } = await runMosquitto(bin, s.out, [s.devicePort, s.servicePort]);
        scratch.onRelease(() => proc.stop());
        return proc;
      };
      return { ...s, mosquitto };
    }

    it('--tls-ca writes the cafile alone: devices log in with their passwords, with or without a certificate', async () => {
      const s = await setup();
      // a registered device with its broker hash in the store, read by --offline
      const ts = await startTestServer({ dataDir: s.dataDir });
      const secret = await registerDevice(ts, 'd-pw');
      await ts.stop();
      const clientCa = (await loadCa(s.dataDir))!;
      const caFile = path.join(s.certs, 'devices-ca.crt');
      await writeFile(path.join(s.certs, 'devices-ca.crt'), clientCa.certificate);
      const { conf } = await s.generate(['--tls-ca', caFile]);
      assert.match(conf, new RegExp(`^cafile ${caFile}$`, 'm'));
      assert.doesNotMatch(conf, /require_certificate|use_identity_as_username/);
      await s.mosquitto();

      const own = await clientCa.issueDeviceCertificate('d-pw');
      const foreign = await (await createCa(await tmp('updraft-foreign-ca-'), 'Mallory CA')).issueDeviceCertificate('d-pw');
      const device = { clientId: 'd-pw', ca: s.serverCa, username: 'd-pw', password: secret };
      assert.equal(await tryConnect(s.url, device), undefined, 'a password, no certificate (the regression: refused by 60b26bb)');
      assert.equal(await tryConnect(s.url, { ...device, cert: own.certificate, key: own.privateKey }), undefined, 'a password and a certificate of the CA');
      // Mosquitto asks for no certificate with a cafile alone (SSL_VERIFY_NONE): one offered is not looked at
      assert.equal(await tryConnect(s.url, { ...device, cert: foreign.certificate, key: foreign.privateKey }), undefined, 'a password and a certificate of another CA');
      assert.equal(await tryConnect(s.url, { clientId: 'd-pw', ca: s.serverCa, cert: own.certificate, key: own.privateKey }), 5, 'a certificate of the CA without a password: not authorized');
      assert.equal(await tryConnect(s.url, { ...device, password: 'wrong' }), 5, 'a wrong password');
    });

    it('--updraft-ca: a revoked device gets into Mosquitto by its certificate, and Updraft refuses its requests with 403', async () => {
      const s = await setup();
      const { conf } = await s.generate(['--updraft-ca']);
      assert.match(conf, /^require_certificate true$/m);
      assert.match(conf, /^use_identity_as_username true$/m);
      await s.mosquitto();
      const start = () => startTestServer({ dataDir: s.dataDir, flags: { 'mqtt-url': s.serviceUrl, 'mqtt-tls-port': -1 } });
      let ts: TestServer = await start();
      scratch.onRelease(() => ts.stop());
      await registerDevice(ts, 'd-1');
      await registerDevice(ts, 'd-2');
      const ca = (await loadCa(s.dataDir))!;
      const cert1 = await ca.issueDeviceCertificate('d-1');
      const cert2 = await ca.issueDeviceCertificate('d-2');
      const revoked = await apiJson(ts, 'POST', '/api/v1/devices/d-1/revoke');
      assert.equal(revoked.status, 200, JSON.stringify(revoked.body));

      const refusedAsRevoked = (got: Map<string, any>, deviceId: string) => {
        assert.equal(got.has(`state/${deviceId}/update/accepted`), false, 'no update accepted');
        assert.equal(got.has(`state/${deviceId}/get/accepted`), false, 'no get accepted');
        for (const op of ['update', 'get']) {
          const r = got.get(`state/${deviceId}/${op}/rejected`);
          assert.equal(r?.code, 403, `${op}: ${JSON.stringify(r)}`);
          assert.match(r.message, /device d-1 is revoked/);
          assert.equal(r.clientToken, op === 'update' ? 'u' : 'g');
        }
      };

      // Mosquitto admits it: its certificate is of the CA, the password file is not used
      refusedAsRevoked(await ask(s.url, s.serverCa, 'd-1', cert1, 1), 'd-1');
      const shadowOf = async (deviceId: string) => {
        const r = await apiJson(ts, 'GET', `/api/v1/devices/${deviceId}`);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        return r.body.shadow;
      };
      assert.equal(await shadowOf('d-1'), null, 'nothing stored for the revoked device');
      const other = await ask(s.url, s.serverCa, 'd-2', cert2, 2);
      assert.equal(other.get('state/d-2/update/accepted')?.state?.reported?.x, 2, 'another device is answered');
      assert.ok(other.has('state/d-2/get/accepted'));
      assert.equal((await shadowOf('d-2'))?.state?.reported?.x, 2, 'the check reads the shadow route right');
      // its job logs and AWS jobs requests: another device's are answered (the broker lets them
      // through), the revoked device's are dropped, unanswered
      assert.deepEqual(await askOthers(s.url, s.serverCa, 'd-2', cert2, true), ['$aws/things/d-2/jobs/get/accepted', 'state/d-2/job-log/rejected']);
      assert.deepEqual(await askOthers(s.url, s.serverCa, 'd-1', cert1, false), [], 'the revoked device\'s job log and AWS jobs get go unanswered');

      // a server started after the revocation knows it from the store
      await ts.stop();
      ts = await start();
      refusedAsRevoked(await ask(s.url, s.serverCa, 'd-1', cert1, 3), 'd-1');
      assert.equal(await shadowOf('d-1'), null, 'nothing stored after the restart either');

      // reinstated: answered again
      assert.equal((await apiJson(ts, 'POST', '/api/v1/devices/d-1/reinstate')).status, 200);
      await eventually(async () => (await ask(s.url, s.serverCa, 'd-1', cert1, 4)).get('state/d-1/update/accepted')?.state?.reported?.x === 4 || undefined, 15_000, 'the reinstated device answered');
      assert.equal((await shadowOf('d-1'))?.state?.reported?.x, 4);
    });

    it('two instances on one PostgreSQL: a device revoked through one is refused by the other, started before', { skip: pgResult.ok ? false : unavailable(pgResult, 'two instances') }, async () => {
      assert.ok(pgResult.ok);
      const pg = pgResult.server;
      scratch.onRelease(() => pg.stop());
      const db = await pg.createDatabase();
      const s = await setup();
      await s.generate(['--updraft-ca']);
      await s.mosquitto();
      const flags = { 'mqtt-url': s.serviceUrl, 'mqtt-tls-port': -1, db };
      const a = await startTestServer({ dataDir: s.dataDir, flags });
      scratch.onRelease(() => a.stop());
      const dataB = await tmp('updraft-mq-certlogin-b-');
      await cp(s.dataDir, dataB, { recursive: true }); // the same CA, operator token and keys
      const b = await startTestServer({ dataDir: dataB, flags });
      scratch.onRelease(() => b.stop());
      await registerDevice(a, 'd-1');
      const cert = await (await loadCa(s.dataDir))!.issueDeviceCertificate('d-1');
      const answered = await ask(s.url, s.serverCa, 'd-1', cert, 1);
      assert.equal(answered.get('state/d-1/update/accepted')?.state?.reported?.x, 1, 'answered before the revocation');

      assert.equal((await apiJson(a, 'POST', '/api/v1/devices/d-1/revoke')).status, 200);
      await a.stop(); // every request goes to B from now on, which heard the revocation from A only
      // probed with gets, which store nothing, until B has the revocation
      await eventually(async () => (await ask(s.url, s.serverCa, 'd-1', cert, 0, true)).get('state/d-1/get/rejected')?.code === 403 || undefined, 15_000, 'B refuses the device revoked through A');
      const refused = await ask(s.url, s.serverCa, 'd-1', cert, 3);
      assert.equal(refused.get('state/d-1/get/rejected')?.code, 403);
      assert.match(refused.get('state/d-1/update/rejected')?.message, /device d-1 is revoked/);
      const shadow = (await apiJson(b, 'GET', '/api/v1/devices/d-1')).body.shadow;
      assert.equal(shadow?.state?.reported?.x, 1, 'nothing stored after the revocation');
    });
  });
}
