/**
 * The agent daemon reads its `--ca`, `--cert` and `--key` files again as each reconnect attempt
 * starts (src/agent/tls-files.ts). They were read at start only: an agent left running with a
 * `--ca` of the old CA refused the server's new-CA certificate after a CA rollover's switch
 * until it was restarted, and docs/security.md said to restart it after replacing the file (QA
 * of the CA rollover, 2026-12-06). Now the bundle put in place is used at the next attempt, and
 * the agent moves to the new CA; a file replaced by one that is not usable is said once and
 * the files read before are used. The real `updraft agent` daemon, a real server over MQTTS,
 * a real `updraft ca rollover`.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { caPaths } from '../../src/pki/certificate-authority.ts';
import { eventually, runCli, startCli, type CliProcess } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

const issuedBy = (pem: string, caPem: string) => {
  const cert = new X509Certificate(pem);
  const ca = new X509Certificate(caPem);
  return cert.checkIssued(ca) && cert.verify(ca.publicKey);
};

describe('the agent daemon reads its TLS files again at each reconnect attempt', () => {
  const dirs: string[] = [];
  const servers: TestServer[] = [];
  let daemon: CliProcess | undefined;
  after(async () => {
    await daemon?.kill();
    for (const s of servers) await s.stop().catch(() => {});
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('an agent running with the old CA alone takes the bundle put in place after the switch, connects and moves to the new CA, without a restart; a cut-off bundle is said once and the files read before are used', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-tls-reload-'));
    dirs.push(dir);
    const dataDir = path.join(dir, 'data');
    const first = await startTestServer({ dataDir });
    servers.push(first);
    const ports = { 'mqtt-port': Number(new URL(first.mqttUrl).port), 'http-port': Number(new URL(first.httpUrl).port), 'mqtt-tls-port': first.server.broker.tlsPort };
    await registerDevice(first, 't-1');
    const oldCa = first.server.security.ca.certificate;
    const pair = await first.server.security.ca.issueDeviceCertificate('t-1'); // two years: not due for renewal
    const files = { ca: path.join(dir, 'ca.crt'), cert: path.join(dir, 't-1.crt'), key: path.join(dir, 't-1.key'), signing: path.join(dir, 'signing.pub') };
    await writeFile(files.ca, oldCa); // the old CA alone: what the device was given before the rollover
    await writeFile(files.cert, pair.certificate);
    await writeFile(files.key, pair.privateKey, { mode: 0o600 });
    await writeFile(files.signing, first.server.security.signingKey.publicKeyPem);
    daemon = startCli(['agent', '--device', 't-1', '--install-dir', path.join(dir, 't-1'), '--broker', `mqtts://127.0.0.1:${ports['mqtt-tls-port']}`, '--ca', files.ca, '--cert', files.cert, '--key', files.key, '--signing-key', files.signing, '--initial-version', '1.0.0']);
    await daemon.waitFor(/t-1: connected/);

    // the switch, with the server stopped; started again on the same ports, it serves a new-CA certificate
    await first.stop();
    const rolled = await runCli(['ca', 'rollover', '--data-dir', dataDir]);
    assert.equal(rolled.code, 0, rolled.stderr);
    const newCa = await readFile(caPaths(dataDir).cert, 'utf8');
    const second = await startTestServer({ dataDir, flags: ports });
    servers.push(second);
    const before = daemon.output().length;
    await daemon.waitFor(/self-signed certificate in certificate chain|unable to verify|certificate/i, 60_000);
    assert.doesNotMatch(daemon.output().slice(before), /t-1: connected/, 'the old CA alone does not verify the new server certificate');

    // the bundle put in place: used at the next attempt, no restart
    await writeFile(files.ca, `${oldCa}${newCa}`);
    await eventually(async () => (/TLS files changed on disk: used from this connection attempt.*changed=--ca/.test(daemon!.output().slice(before)) ? true : undefined), 90_000, 'the new --ca read at a reconnect attempt');
    await eventually(async () => (/t-1: connected/.test(daemon!.output().slice(before)) ? true : undefined), 30_000, 'connected with the bundle');
    await daemon.waitFor(/t-1: client certificate renewed/, 30_000);
    assert.ok(issuedBy(await readFile(files.cert, 'utf8'), newCa), 'moved to the new CA: the certificate written over --cert is of it');

    // the pair its own renewal wrote over --cert and --key is not news at the next reconnect
    const renewedAt = daemon.output().length;
    await second.stop();
    let server = await startTestServer({ dataDir, flags: ports });
    servers.push(server);
    await eventually(async () => (/t-1: connected/.test(daemon!.output().slice(renewedAt)) ? true : undefined), 90_000, 'reconnected after the renewal');
    assert.doesNotMatch(daemon.output().slice(renewedAt), /TLS files changed on disk/, daemon.output().slice(renewedAt));

    // a bundle cut off in its second certificate: said, and the files read before are used
    const moved = daemon.output().length;
    const bundle = `${oldCa}${newCa}`;
    await writeFile(files.ca, bundle.slice(0, bundle.length - 200));
    // two restarts: two reconnects, each reading the files
    for (let round = 1; round <= 2; round++) {
      const from = daemon.output().length;
      await server.stop();
      server = await startTestServer({ dataDir, flags: ports });
      servers.push(server);
      await eventually(async () => (/t-1: connected/.test(daemon!.output().slice(from)) ? true : undefined), 90_000, `connected again with the files read before (restart ${round})`);
    }
    const after = daemon.output().slice(moved);
    const said = after.split('\n').filter((l) => l.includes('TLS files changed on disk but are not usable'));
    assert.equal(said.length, 1, `said once over two reconnects: ${after}`);
    assert.match(said[0]!, /cut off/, said[0]);
    await server.stop();
  });
});
