/**
 * The signing key certificate's expiry is said in the log while the server runs
 * (docs/security.md, "Renew"; signing/certificate-expiry.ts), not only at start (QA: a
 * certificate installed online with `--valid-days 10` logged nothing until a restart, and a
 * server running for months crossed the 30-days point and the expiry with no line).
 *
 * - the watch with a fake clock on its real timer: a real certificate, the real logger;
 * - a real server: a certificate installed online (the real `updraft keys certify` and
 *   `keys install-cert`) that expires within 30 days is warned about at once; the metrics carry it;
 * - two real in-process instances on a private PostgreSQL and Mosquitto (the event relay):
 *   the instance that takes in the other's certificate warns too.
 *
 * The server's own timer (hourly) is not driven here: its clock is not injectable through
 * the server, and an hour cannot be waited for; it is the watch's timer tested first.
 */
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CertificateExpiryWatch } from '../../src/signing/certificate-expiry.ts';
import { ManifestSigner } from '../../src/signing/manifest-signer.ts';
import { certifySigningKey, generateRootKey, readRootPrivateKey } from '../../src/signing/root-key.ts';
import { loadOrCreateSigningKey, parsePublicKey } from '../../src/signing/signing-key.ts';
import { createLogger, type Logger } from '../../src/util/logger.ts';
import { eventually, runCli } from '../helpers/cli.ts';
import { findMosquitto, mosquittoUnavailable, startTestMosquitto } from '../helpers/mosquitto.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const DAY = 86_400_000;
const WARNING = /WARN  \[security\] the software signing key certificate expires soon/;
const ERROR = /ERROR \[security\] the software signing key certificate has EXPIRED/;
const pgResult = await startTestPostgres();
const mosquitto = findMosquitto();

/** A logger at info whose lines are kept. */
function recordingLogger(): { logger: Logger; lines: string[]; count(re: RegExp): number } {
  const lines: string[] = [];
  return { logger: createLogger({ level: 'info', write: (l) => lines.push(l) }), lines, count: (re) => lines.filter((l) => re.test(l)).length };
}

describe('the signing key certificate expiry, said while running', { timeout: 120_000 }, () => {
  let dir: string;
  let root: { keyFile: string; publicFile: string };
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-cert-expiry-'));
    root = await generateRootKey(path.join(dir, 'root'));
  });
  after(async () => {
    if (pgResult.ok) await pgResult.server.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('the hourly look crosses the 30-days point and the expiry with a fake clock: a warning, then an error, each once a day', async () => {
    const { key } = await loadOrCreateSigningKey(path.join(dir, 'watch'));
    const expiresAt = Math.floor(Date.now() / 1000) + 60 * 86_400;
    const certificate = certifySigningKey(await readRootPrivateKey(root.keyFile), parsePublicKey(key.publicKeyPem), 1, expiresAt);
    const { logger, count, lines } = recordingLogger();
    let clock = expiresAt * 1000 - 31 * DAY;
    let looks = 0;
    const watch = new CertificateExpiryWatch({ manifests: new ManifestSigner({ key, certificate }), logger: logger.child('security'), intervalMs: 5, now: () => (looks++, clock) });
    /** Waits for `n` more looks by the timer. */
    const looked = async (n: number) => {
      const until = looks + n;
      await eventually(async () => (looks >= until ? true : undefined), 10_000, `${n} looks`);
    };
    await watch.start();
    try {
      await looked(3);
      assert.deepEqual(lines, [], '31 days before: nothing');
      clock = expiresAt * 1000 - 29 * DAY;
      await eventually(async () => (count(WARNING) === 1 ? true : undefined), 10_000, 'the warning at the 30-days point');
      assert.match(lines[0]!, /serial=1 expiresAt=\S+ daysLeft=29$/);
      clock += 23 * 3_600_000;
      await looked(5);
      assert.equal(count(WARNING), 1, 'not again within the day');
      clock += 3_600_000;
      await eventually(async () => (count(WARNING) === 2 ? true : undefined), 10_000, 'the warning a day later');
      clock = expiresAt * 1000 + 1000;
      await eventually(async () => (count(ERROR) === 1 ? true : undefined), 10_000, 'the error at the expiry');
      clock += 12 * 3_600_000;
      await looked(5);
      assert.equal(count(ERROR), 1, 'not again within the day');
      clock += 12 * 3_600_000;
      await eventually(async () => (count(ERROR) === 2 ? true : undefined), 10_000, 'the error a day later');
      assert.equal(count(WARNING), 2);
    } finally {
      await watch.stop();
    }
    const stoppedAt = looks;
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(looks, stoppedAt, 'the timer ends with stop()');
  });

  it('a certificate installed online that expires within 30 days is warned about at once, without a restart; the metrics carry it', async () => {
    const { logger, count, lines } = recordingLogger();
    let ts = await startTestServer({ logger });
    try {
      const api = ['--server', ts.httpUrl, '--token', ts.token];
      const cli = async (args: string[]) => {
        const r = await runCli(args);
        assert.equal(r.code, 0, `updraft ${args.join(' ')}: ${r.stderr}`);
        return r.stdout;
      };
      const pub = path.join(dir, 'online.pub');
      await cli(['keys', 'export-public', '--data-dir', ts.dataDir, '--out', pub]);
      const certify = async (serial: number, days: number) => {
        const out = path.join(dir, `online-${serial}.cert`);
        await cli(['keys', 'certify', '--root-key', root.keyFile, '--public-key', pub, '--serial', String(serial), '--valid-days', String(days), '--out', out]);
        return out;
      };
      await cli(['keys', 'install-cert', await certify(1, 10), '--root-public', root.publicFile, ...api]);
      await eventually(async () => (count(WARNING) === 1 ? true : undefined), 10_000, 'the warning after install-cert');
      assert.match(lines.find((l) => WARNING.test(l))!, / serial=1 expiresAt=\S+ daysLeft=9$/);
      const expiresAt = (JSON.parse(await readFile(path.join(ts.dataDir, 'keys', 'software-signing.cert'), 'utf8')) as { expiresAt: number }).expiresAt;
      const prometheus = await (await fetch(`${ts.httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${ts.token}`, accept: 'text/plain' } })).text();
      assert.match(prometheus, new RegExp(`^updraft_signing_key_certificate_expiry_timestamp_seconds ${expiresAt}$`, 'm'));
      assert.match(prometheus, /^updraft_signing_key_certificate_serial 1$/m);
      // said at start too, as before
      await ts.stop();
      const again = recordingLogger();
      ts = await startTestServer({ dataDir: ts.dataDir, logger: again.logger });
      assert.equal(again.count(WARNING), 1, 'the warning at start');
      // renewed for a year: nothing more to say, and the metrics follow
      await cli(['keys', 'install-cert', await certify(2, 365), '--server', ts.httpUrl, '--token', ts.token]);
      const renewed = await (await fetch(`${ts.httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${ts.token}`, accept: 'text/plain' } })).text();
      assert.match(renewed, /^updraft_signing_key_certificate_serial 2$/m);
      assert.equal(count(WARNING) + again.count(WARNING), 2);
    } finally {
      await ts.close();
    }
  });

  it('an instance that takes in a certificate installed on another warns about it too (PostgreSQL)', async (t) => {
    if (!pgResult.ok) return t.skip(unavailable(pgResult, 'the two-instance case'));
    if (!mosquitto.ok) return t.skip(mosquittoUnavailable(mosquitto.reason, 'the two-instance case'));
    const pg = pgResult.server;
    const token = `updr_certificate_expiry_test_${'x'.repeat(24)}`;
    const broker = await startTestMosquitto(mosquitto.bin, { operatorToken: token, devices: [], secrets: new Map() });
    const servers: TestServer[] = [];
    try {
      const db = await pg.createDatabase();
      const dataA = path.join(dir, 'a');
      await mkdir(dataA, { recursive: true });
      await writeFile(path.join(dataA, 'operator-token'), token + '\n', { mode: 0o600 });
      const a = await startTestServer({ dataDir: dataA, flags: { db, 'mqtt-url': broker.serviceUrl, 'mqtt-tls-port': -1 } });
      servers.push(a);
      await cp(dataA, path.join(dir, 'b'), { recursive: true });
      const onB = recordingLogger();
      const b = await startTestServer({ dataDir: path.join(dir, 'b'), logger: onB.logger, flags: { db, 'mqtt-url': broker.serviceUrl, 'mqtt-tls-port': -1 } });
      servers.push(b);
      const signingPub = (await loadOrCreateSigningKey(dataA)).key.publicKeyPem;
      const certificate = certifySigningKey(await readRootPrivateKey(root.keyFile), parsePublicKey(signingPub), 1, Math.floor(Date.now() / 1000) + 10 * 86_400);
      const res = await fetch(`${a.httpUrl}/api/v1/keys/signing/certificate`, { method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ certificate, rootPublicKey: await readFile(root.publicFile, 'utf8') }) });
      assert.equal(res.status, 200, await res.text());
      await eventually(async () => (onB.count(/took in the signing key certificate installed on another instance/) === 1 ? true : undefined), 15_000, 'B takes it in');
      await eventually(async () => (onB.count(WARNING) === 1 ? true : undefined), 5_000, 'the warning on B');
      assert.match(onB.lines.find((l) => WARNING.test(l))!, / serial=1 expiresAt=\S+ daysLeft=9$/);
    } finally {
      for (const s of servers) await s.close();
      await broker.stop();
    }
  });
});
