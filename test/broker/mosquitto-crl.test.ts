/**
 * The crlfile of `updraft broker mosquitto-config --updraft-ca` on a real Mosquitto (2.0.11):
 * a deleted device's certificate (issued by the server, its serial recorded) is refused at
 * the TLS handshake while another device's still connects; a crlfile regenerated after
 * another deletion is read on SIGHUP (Mosquitto 2.0.11: unlike the cafile); during a CA
 * rollover both CAs' devices connect and both CAs' deleted devices are refused; on PostgreSQL
 * the same through the server's API (`GET /api/v1/broker/crl`, no --offline). Before the CRL
 * (2026-12-06) the deleted device's certificate connected and reached its own topics.
 * Skipped where Mosquitto is not installed (fails under CI=true).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { eventually, runCli, startCli, type CliProcess } from '../helpers/cli.ts';
import { findMosquitto, mosquittoUnavailable, runMosquitto, setupMosquittoTls } from '../helpers/mosquitto.ts';
import { tryConnect } from '../helpers/mqtt-client.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';
import { Scratch } from '../helpers/scratch.ts';
import { apiJson, registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

type Pair = { certificate: string; privateKey: string };

/** Registers `deviceId` and has the server issue it a certificate (recorded in the store). */
async function enrol(ts: TestServer, deviceId: string): Promise<Pair> {
  await registerDevice(ts, deviceId);
  const r = await apiJson(ts, 'POST', `/api/v1/devices/${deviceId}/certificate`);
  assert.equal(r.status, 201, `certificate of ${deviceId}: ${JSON.stringify(r.body)}`);
  return { certificate: r.body.certificate, privateKey: r.body.privateKey };
}

async function remove(ts: TestServer, deviceId: string): Promise<void> {
  const r = await apiJson(ts, 'DELETE', `/api/v1/devices/${deviceId}`);
  assert.ok(r.status === 200 || r.status === 204, `delete ${deviceId}: ${r.status} ${JSON.stringify(r.body)}`);
}

const found = findMosquitto();
const pgResult = await startTestPostgres();

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'Mosquitto crlfile');
  it('Mosquitto crlfile', (t) => t.skip(message));
} else {
  const bin = found.bin;
  describe("an external Mosquitto with certificate logins refuses deleted devices' certificates (crlfile)", () => {
    const scratch = new Scratch();
    const { tmp } = scratch;
    after(() => scratch.release());

    async function setup(prefix: string) {
      const s = await setupMosquittoTls(tmp, prefix);
      const mosquitto = async () => {
        const proc: { child: ChildProcess; stop(): Promise<void> } = await runMosquitto(bin, s.out, [s.devicePort, s.servicePort]);
        scratch.onRelease(() => proc.stop());
        return proc;
      };
      const connects = (deviceId: string, pair: Pair) => tryConnect(s.url, { clientId: deviceId, ca: s.serverCa, cert: pair.certificate, key: pair.privateKey });
      return { ...s, mosquitto, connects };
    }

    it("refuses a deleted device's certificate at the handshake, admits another's; a new crlfile is read on SIGHUP", async () => {
      const s = await setup('updraft-mq-crl-');
      let ts = await startTestServer({ dataDir: s.dataDir });
      const gone = await enrol(ts, 'd-gone');
      const kept = await enrol(ts, 'd-kept');
      const later = await enrol(ts, 'd-later');
      await remove(ts, 'd-gone');
      await ts.stop();

      const { stdout, conf } = await s.generate(['--updraft-ca']);
      const crlPath = path.join(s.out, 'crl.pem');
      assert.match(conf, new RegExp(`^crlfile ${crlPath}$`, 'm'), `the device listener names the crlfile: ${conf}`);
      assert.match(stdout, /crl\.pem: 1 certificate\(s\) of deleted devices revoked, one CRL for each of 1 CA\(s\), valid as long as its CA \(until [^)]+\)/, stdout);
      const crl = await readFile(crlPath, 'utf8');
      assert.match(crl, /^-----BEGIN X509 CRL-----/, 'a PEM CRL');
      const proc = await s.mosquitto();

      assert.equal(await s.connects('d-kept', kept), undefined, "another device's certificate connects");
      assert.equal(await s.connects('d-gone', gone), 'tls', "the deleted device's certificate is refused at the handshake");

      // deleted while Mosquitto runs: regenerated, then a SIGHUP (what --reload-command does)
      ts = await startTestServer({ dataDir: s.dataDir });
      await remove(ts, 'd-later');
      await ts.stop();
      await s.generate(['--updraft-ca']);
      assert.notEqual(await readFile(crlPath, 'utf8'), crl, 'the crlfile was rewritten');
      proc.child.kill('SIGHUP');
      // Mosquitto 2.0.11 rereads the crlfile on SIGHUP (with the certfile: net__load_certificates)
      // and enforces that file alone: no list loaded before is kept (mosquitto-crl-reload.test.ts)
      await eventually(async () => ((await s.connects('d-later', later)) === 'tls' ? true : undefined), 10_000, 'refused after the reload');
      assert.equal(await s.connects('d-gone', gone), 'tls', 'the first one still refused');
      assert.equal(await s.connects('d-kept', kept), undefined, 'the device not deleted still connects after the reload');
    });

    it("a CRL made by a server whose clock is ahead of the broker's is taken at the reload (thisUpdate backdated): no device locked out", async () => {
      const s = await setup('updraft-mq-crl-skew-');
      const ts = await startTestServer({ dataDir: s.dataDir });
      const kept = await enrol(ts, 's-kept');
      const later = await enrol(ts, 's-later');
      await ts.stop();
      await s.generate(['--updraft-ca']);
      const proc = await s.mosquitto();
      assert.equal(await s.connects('s-kept', kept), undefined, 'connects on the first CRL');
      // the server's clock 2 minutes ahead of the broker's: the CRL it makes, listing s-later, then a SIGHUP
      const { crlFile, issuedRecord, revocationsOf } = await import('../../src/pki/revocation-list.ts');
      const caPem = await readFile(path.join(s.dataDir, 'pki', 'ca.crt'), 'utf8');
      const ahead = Date.now() + 120_000;
      const file = await crlFile(s.dataDir, revocationsOf([{ ...issuedRecord('s-later', later.certificate, caPem), revokedAt: ahead }], ahead), ahead);
      assert.ok(file.ok, 'a CRL is made');
      await writeFile(path.join(s.out, 'crl.pem'), file.pem, { mode: 0o644 });
      proc.child.kill('SIGHUP');
      await eventually(async () => ((await s.connects('s-later', later)) === 'tls' ? true : undefined), 10_000, 'the new CRL is read: s-later refused');
      // before the backdating Mosquitto refused every device here: "CRL is not yet valid"
      assert.equal(await s.connects('s-kept', kept), undefined, "a device not listed still connects on the CRL of the server's clock");
    });

    it('during a CA rollover: one CRL per CA, both CAs\' devices connect, both CAs\' deleted devices are refused', async () => {
      const s = await setup('updraft-mq-crl-roll-');
      let ts = await startTestServer({ dataDir: s.dataDir });
      const oldKept = await enrol(ts, 'old-kept');
      const oldGone = await enrol(ts, 'old-gone');
      await ts.stop();
      const roll = await runCli(['ca', 'rollover', '--data-dir', s.dataDir]);
      assert.equal(roll.code, 0, roll.stderr);
      assert.match(roll.stdout, /previous-ca\.key \(mode 0600\) only to sign its CRL/, roll.stdout);
      ts = await startTestServer({ dataDir: s.dataDir });
      const newKept = await enrol(ts, 'new-kept');
      const newGone = await enrol(ts, 'new-gone');
      await remove(ts, 'old-gone');
      await remove(ts, 'new-gone');
      await ts.stop();

      const { stdout, conf } = await s.generate(['--updraft-ca']);
      assert.match(conf, /^crlfile /m, conf);
      assert.match(stdout, /2 certificate\(s\) of deleted devices revoked, one CRL for each of 2 CA\(s\)/, stdout);
      await s.mosquitto();
      assert.equal(await s.connects('old-kept', oldKept), undefined, "the previous CA's device connects");
      assert.equal(await s.connects('new-kept', newKept), undefined, "the current CA's device connects");
      assert.equal(await s.connects('old-gone', oldGone), 'tls', "the previous CA's deleted device is refused");
      assert.equal(await s.connects('new-gone', newGone), 'tls', "the current CA's deleted device is refused");
    });

    it('a rollover that deleted the previous key (before 2026-12-06) gets no crlfile: its devices are not locked out', async () => {
      const s = await setup('updraft-mq-crl-nokey-');
      let ts = await startTestServer({ dataDir: s.dataDir });
      const oldKept = await enrol(ts, 'old-kept');
      await ts.stop();
      assert.equal((await runCli(['ca', 'rollover', '--data-dir', s.dataDir])).code, 0);
      // a first run, with the key: crl.pem written, and named
      assert.match((await s.generate(['--updraft-ca'])).conf, /^crlfile /m, 'crlfile named with the key');
      const { rm } = await import('node:fs/promises');
      await rm(path.join(s.dataDir, 'pki', 'previous-ca.key'));
      ts = await startTestServer({ dataDir: s.dataDir });
      const newKept = await enrol(ts, 'new-kept');
      await ts.stop();
      const { stdout, conf } = await s.generate(['--updraft-ca']);
      assert.doesNotMatch(conf, /crlfile/, 'no crlfile named');
      assert.match(stdout, /no crl\.pem \(a deleted device's certificate still gets into Mosquitto\): the previous CA of the rollover .* has no key kept/, stdout);
      // the earlier run's crl.pem removed: a Mosquitto started on that configuration fails its reload, so a restart is asked for
      assert.match(stdout, /removed the earlier crl\.pem: restart Mosquitto/, stdout);
      await s.mosquitto();
      assert.equal(await s.connects('old-kept', oldKept), undefined, "the previous CA's device connects");
      assert.equal(await s.connects('new-kept', newKept), undefined, "the current CA's device connects");
    });

    it('mosquitto-config --watch rewrites the crlfile at a deletion and reloads Mosquitto: the deleted device is refused from then on', async () => {
      const s = await setup('updraft-mq-crl-watch-');
      const ts = await startTestServer({ dataDir: s.dataDir, flags: { 'mqtt-tls-port': -1 } });
      scratch.onRelease(() => ts.stop());
      const a = await enrol(ts, 'w-a');
      const b = await enrol(ts, 'w-b');
      let pid = 0;
      const watch: CliProcess = startCli([
        'broker', 'mosquitto-config', '--watch', ...s.flags, '--updraft-ca', '--data-dir', s.dataDir,
        // mosquitto dropped to its own user: it must be able to read the files
        '--reload-command', 'chmod 644 passwd acl crl.pem && kill -HUP "$(cat mosquitto.test-pid 2>/dev/null)" 2>/dev/null; true',
        '--server', ts.httpUrl, '--token', ts.token,
      ]);
      scratch.onRelease(() => watch.kill('SIGTERM'));
      await watch.waitFor(/wrote mosquitto\.conf/);
      assert.match(watch.output(), /crlfile written/, watch.output());
      const conf = await readFile(path.join(s.out, 'mosquitto.conf'), 'utf8');
      assert.match(conf, /^crlfile .*crl\.pem$/m, conf);
      await chmod(s.out, 0o755);
      await chmod(path.join(s.out, 'passwd'), 0o644);
      const proc = await s.mosquitto();
      pid = proc.child.pid!;
      await writeFile(path.join(s.out, 'mosquitto.test-pid'), String(pid));
      assert.equal(await s.connects('w-b', b), undefined, 'connects before its deletion');
      // a connection made before the deletion, kept open
      const open = await mqtt.connectAsync(s.url, { clientId: 'w-b', ca: s.serverCa, cert: b.certificate, key: b.privateKey, reconnectPeriod: 0, connectTimeout: 5000 });
      scratch.onRelease(() => open.endAsync(true));
      let closed = false;
      open.on('close', () => (closed = true));

      await remove(ts, 'w-b');
      // no probe under its id before the reload: a connection under it would take the open one over
      await eventually(async () => (/crlfile written [^\n]*revoked=1 [^]*broker reloaded/.test(watch.output()) ? true : undefined), 30_000, 'crlfile rewritten and Mosquitto reloaded');
      await new Promise((r) => setTimeout(r, 500)); // the SIGHUP handled: nothing to wait for in its log
      // the CRL is checked at the handshake only: the open connection lasts, until a
      // clean-session connection under its client id (the session reset, docs/security.md) takes it over
      const stillOpen = !closed;
      await eventually(async () => ((await s.connects('w-b', b)) === 'tls' ? true : undefined), 30_000, 'w-b refused once deleted (crlfile rewritten, Mosquitto reloaded)');
      assert.equal(await s.connects('w-a', a), undefined, 'the device not deleted still connects');
      assert.equal(stillOpen, true, 'the connection made before the deletion was still open after the reload');
      const reset = await mqtt.connectAsync(s.serviceUrl, { clientId: 'w-b', username: 'operator', password: ts.token, clean: true, reconnectPeriod: 0 });
      await reset.endAsync();
      await eventually(async () => (closed ? true : undefined), 10_000, "the session reset closes the deleted device's open connection");

    });

    it('on PostgreSQL, through the server (GET /api/v1/broker/crl, no --offline)', { skip: pgResult.ok ? false : unavailable(pgResult, 'PostgreSQL') }, async () => {
      assert.ok(pgResult.ok);
      const pg = pgResult.server;
      scratch.onRelease(() => pg.stop());
      const db = await pg.createDatabase();
      const s = await setup('updraft-mq-crl-pg-');
      const ts = await startTestServer({ dataDir: s.dataDir, flags: { db } });
      scratch.onRelease(() => ts.stop());
      const gone = await enrol(ts, 'd-gone');
      const kept = await enrol(ts, 'd-kept');
      await remove(ts, 'd-gone');
      const api = await apiJson(ts, 'GET', '/api/v1/broker/crl');
      assert.equal(api.status, 200, JSON.stringify(api.body));
      assert.equal(api.body.revoked, 1, 'one certificate revoked');
      // asked again, a second later: the same revocations give the CRL made before (not signed again)
      await new Promise((r) => setTimeout(r, 1_100));
      const again = await apiJson(ts, 'GET', '/api/v1/broker/crl');
      assert.equal(again.body.crl, api.body.crl, 'the same CRL while the revocations are the same');
      assert.equal(again.body.nextUpdate, new Date(new X509Certificate(await readFile(path.join(s.dataDir, 'pki', 'ca.crt'), 'utf8')).validTo).toISOString(), "nextUpdate is the CA's notAfter");
      const r = await runCli(['broker', 'mosquitto-config', '--server', ts.httpUrl, '--token', ts.token, '--data-dir', s.dataDir, ...s.flags, '--updraft-ca']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /crl\.pem: 1 certificate\(s\) of deleted devices revoked/, r.stdout);
      await chmod(s.out, 0o755);
      await chmod(path.join(s.out, 'passwd'), 0o644);
      await s.mosquitto();
      assert.equal(await s.connects('d-kept', kept), undefined, "another device's certificate connects");
      assert.equal(await s.connects('d-gone', gone), 'tls', "the deleted device's certificate is refused");
    });
  });
}
