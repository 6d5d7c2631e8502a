/**
 * CA rollover (`updraft ca rollover`, docs/security.md "When the CA nears its end"): after the
 * switch the server trusts the previous CA's client certificates while it is valid, and a
 * device holding one renews over MQTT onto the new CA by itself (its --ca bundle names the new
 * CA as the successor of its certificate's), then connects with the new certificate. A
 * certificate of an unrelated CA is refused as before, and once the previous CA is dropped (or
 * has expired) its certificates are refused. Real `updraft ca` processes, real servers on the
 * data directory, a real agent over MQTTS.
 */
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { caPaths, createCa, loadCa } from '../../src/pki/certificate-authority.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually, runCli } from '../helpers/cli.ts';
import { tryConnect } from '../helpers/mqtt-client.ts';
import { registerDevice } from '../helpers/server.ts';
import { RolloverFixture, expiredCa, issuedBy, parsed, reportedIssuer } from './ca-rollover-fixture.ts';
import { startAgent } from './support.ts';

describe('CA rollover: devices move to the new CA by themselves', () => {
  const fx = new RolloverFixture();
  const tmp = (prefix: string) => fx.tmp(prefix);
  const start = (dataDir: string, lines?: string[]) => fx.start(dataDir, lines ? { lines } : {});
  after(() => fx.release());

  it('after ca rollover a device with an old-CA certificate connects, renews onto the new CA over MQTT, and connects with it; a foreign CA is refused', async () => {
    const dataDir = await tmp('updraft-rollover-');
    const before = await start(dataDir);
    await registerDevice(before, 'r-1');
    const oldCa = before.server.security.ca.certificate;
    const old = await before.server.security.ca.issueDeviceCertificate('r-1'); // two years: not due for renewal
    await before.stop();

    const refusedRunning = await start(dataDir);
    const running = await runCli(['ca', 'rollover', '--data-dir', dataDir]);
    assert.notEqual(running.code, 0, 'refused while a server runs on the directory');
    assert.match(running.stderr, /a server runs on .*stop it first; the server reads the CA at start, so switch to the new CA while it is stopped, then start it$/m);
    await refusedRunning.stop();

    const r = await runCli(['ca', 'rollover', '--data-dir', dataDir]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /CA rolled over/);
    const p = caPaths(dataDir);
    assert.equal(await readFile(p.previous, 'utf8'), oldCa, 'the old CA certificate is kept as the previous CA');
    const newCa = await readFile(p.cert, 'utf8');
    assert.notEqual(newCa, oldCa);

    const lines: string[] = [];
    const ts = await start(dataDir, lines);
    const url = `mqtts://127.0.0.1:${ts.server.broker.tlsPort}`;
    const bundle = `${oldCa}${newCa}`; // what devices are given (docs/security.md)
    assert.ok(parsed(lines).some((l) => String(l.msg).startsWith('the previous CA (pki/previous-ca.crt) is trusted')), lines.join('\n'));

    // the server's certificate is the new CA's, and so is what it issues now
    assert.equal(await tryConnect(url, { clientId: 'r-1', ca: bundle, cert: old.certificate, key: old.privateKey }), undefined, 'the old-CA certificate still gets in');

    // an unrelated CA's certificate for the same device is refused
    const foreign = await (await createCa(await tmp('updraft-foreign-ca-'), 'Mallory CA')).issueDeviceCertificate('r-1');
    assert.equal(await tryConnect(url, { clientId: 'r-1', ca: bundle, cert: foreign.certificate, key: foreign.privateKey }), 'tls', 'a certificate of another CA');

    const renewed: { certificate: string; privateKey: string }[] = [];
    const root = await tmp('updraft-rollover-agent-');
    const { agent } = await startAgent(ts, root, 'r-1', {
      brokerUrl: url,
      mqttOptions: { reconnectPeriod: 200, ca: bundle, cert: old.certificate, key: old.privateKey },
      certificateRenewal: { save: async (pair) => void renewed.push(pair) },
      requestAttempts: 1,
    });
    try {
      const pair = await eventually(async () => renewed[0], 30_000, 'the agent renewed onto the new CA');
      assert.ok(issuedBy(pair.certificate, newCa), 'the renewed certificate is of the new CA');
      assert.ok(!issuedBy(pair.certificate, oldCa));
      assert.ok(new X509Certificate(pair.certificate).checkPrivateKey(createPrivateKey(pair.privateKey)));
      const moved = parsed(lines).find((l) => l.msg === 'device certificate renewed' && l.deviceId === 'r-1');
      assert.equal(moved?.movedFromPreviousCa, true, lines.join('\n'));
      // and says so (reported.agent.certificateIssuer): drop-previous counts it on the new CA, not the previous one
      await reportedIssuer(ts, 'r-1', new X509Certificate(newCa).subject.split('\n').join(', '));
      assert.equal(await tryConnect(url, { clientId: 'r-1', ca: bundle, cert: pair.certificate, key: pair.privateKey }), undefined, 'the new-CA certificate gets in');
    } finally {
      await agent.stop();
    }
    // asked once: the new certificate has no newer CA to move to
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(renewed.length, 1);

    const res = await fetch(`${ts.httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${ts.token}`, accept: 'text/plain' } });
    const text = await res.text();
    const at = Math.floor(Date.parse(new X509Certificate(oldCa).validTo) / 1000);
    assert.match(text, new RegExp(`^updraft_previous_ca_expiry_timestamp_seconds ${at}$`, 'm'));
    await ts.stop();

    // once dropped, the old CA's certificates are refused again
    const dropped = await runCli(['ca', 'drop-previous', '--data-dir', dataDir]);
    assert.equal(dropped.code, 0, dropped.stderr);
    const afterDrop = await start(dataDir);
    const url2 = `mqtts://127.0.0.1:${afterDrop.server.broker.tlsPort}`;
    assert.equal(await tryConnect(url2, { clientId: 'r-1', ca: bundle, cert: old.certificate, key: old.privateKey }), 'tls', 'the old-CA certificate without a previous CA');
    await afterDrop.stop();
  });

  it('prepared but not switched: an agent holding the next CA is told "not yet" (409, nothing signed) and reports no error', async () => {
    const dataDir = await tmp('updraft-rollover-prepare-');
    const lines: string[] = [];
    const ts = await start(dataDir, lines);
    const prepared = await runCli(['ca', 'rollover', '--prepare', '--data-dir', dataDir]);
    assert.equal(prepared.code, 0, prepared.stderr);
    const p = caPaths(dataDir);
    const current = await readFile(p.cert, 'utf8');
    const bundle = `${current}${await readFile(p.nextCert, 'utf8')}`;
    assert.equal(current, ts.server.security.ca.certificate, 'the current CA is unchanged');
    await registerDevice(ts, 'p-1');
    const cert = await ts.server.security.ca.issueDeviceCertificate('p-1');
    const renewed: unknown[] = [];
    const agentLines: string[] = [];
    const { agent } = await startAgent(ts, await tmp('updraft-prepare-agent-'), 'p-1', {
      brokerUrl: `mqtts://127.0.0.1:${ts.server.broker.tlsPort}`,
      mqttOptions: { reconnectPeriod: 200, ca: bundle, cert: cert.certificate, key: cert.privateKey },
      certificateRenewal: { save: async (pair) => void renewed.push(pair) },
      requestAttempts: 1,
      logger: createLogger({ level: 'info', format: 'json', write: (l) => agentLines.push(l) }),
    });
    try {
      // an expected state, said once an hour at most (ca-rollover-quiet.test.ts), not a WARN per device
      const refused = await eventually(async () => parsed(lines).find((l) => String(l.msg).startsWith('certificate moves to a newer CA refused as "not yet"')), 30_000, 'the early renewal refused');
      assert.equal(refused.level, 'info');
      const said = await eventually(async () => parsed(agentLines).find((l) => String(l.msg).startsWith('client certificate not moved to the newer CA yet')), 10_000, 'the agent says it waits');
      assert.equal(said.level, 'info');
      assert.equal(renewed.length, 0);
      assert.deepEqual(parsed(lines).filter((l) => l.msg === 'device certificate renewed'), [], 'nothing signed');
      const reported = (await ts.server.store.getShadow('p-1', ''))?.state.reported?.agent as { certificateRenewalError?: string | null } | undefined;
      assert.equal(reported?.certificateRenewalError, undefined);
    } finally {
      await agent.stop();
    }
    await ts.stop();
  });

  it('told "not yet" before the switch, an agent moves at its first reconnect after it, not an hour later', async () => {
    const dataDir = await tmp('updraft-rollover-reconnect-');
    const ts = await start(dataDir);
    const prepared = await runCli(['ca', 'rollover', '--prepare', '--data-dir', dataDir]);
    assert.equal(prepared.code, 0, prepared.stderr);
    const p = caPaths(dataDir);
    const bundle = `${await readFile(p.cert, 'utf8')}${await readFile(p.nextCert, 'utf8')}`; // step 2 of docs/security.md
    await registerDevice(ts, 'p-2');
    const cert = await ts.server.security.ca.issueDeviceCertificate('p-2');
    const ports = { 'mqtt-port': Number(new URL(ts.mqttUrl).port), 'http-port': Number(new URL(ts.httpUrl).port), 'mqtt-tls-port': ts.server.broker.tlsPort };
    const renewed: unknown[] = [];
    const agentLines: string[] = [];
    const { agent } = await startAgent(ts, await tmp('updraft-reconnect-agent-'), 'p-2', {
      brokerUrl: `mqtts://127.0.0.1:${ports['mqtt-tls-port']}`,
      mqttOptions: { reconnectPeriod: 200, ca: bundle, cert: cert.certificate, key: cert.privateKey },
      certificateRenewal: { save: async (pair) => void renewed.push(pair) },
      requestAttempts: 1,
      logger: createLogger({ level: 'info', format: 'json', write: (l) => agentLines.push(l) }),
    });
    try {
      await eventually(async () => parsed(agentLines).find((l) => String(l.msg).startsWith('client certificate not moved to the newer CA yet')), 30_000, 'the agent told "not yet"');
      // the switch, made with the server stopped; the agent reconnects to the server started again
      await ts.stop();
      const switched = await runCli(['ca', 'rollover', '--data-dir', dataDir]);
      assert.equal(switched.code, 0, switched.stderr);
      const lines: string[] = [];
      const after = await fx.start(dataDir, { flags: ports, lines });
      await eventually(async () => (renewed.length > 0 ? true : undefined), 30_000, 'the agent moved at its reconnect (its "not yet" held moves for an hour)');
      const moved = parsed(lines).find((l) => l.msg === 'device certificate renewed' && l.deviceId === 'p-2');
      assert.equal(moved?.movedFromPreviousCa, true, lines.join('\n'));
      await after.stop();
    } finally {
      await agent.stop();
    }
  });

  it('an agent whose --ca holds only the new CA (no CA that issued its certificate) moves off the previous CA too', async () => {
    const dataDir = await tmp('updraft-rollover-orphan-');
    const before = await start(dataDir);
    await registerDevice(before, 'o-1');
    const oldCa = before.server.security.ca.certificate;
    const old = await before.server.security.ca.issueDeviceCertificate('o-1');
    await before.stop();
    const r = await runCli(['ca', 'rollover', '--data-dir', dataDir]);
    assert.equal(r.code, 0, r.stderr);
    const newCa = await readFile(caPaths(dataDir).cert, 'utf8'); // what device cert writes as ca.crt after the switch
    const lines: string[] = [];
    const ts = await start(dataDir, lines);
    const renewed: { certificate: string; privateKey: string }[] = [];
    const agentLines: string[] = [];
    const { agent } = await startAgent(ts, await tmp('updraft-orphan-agent-'), 'o-1', {
      brokerUrl: `mqtts://127.0.0.1:${ts.server.broker.tlsPort}`,
      mqttOptions: { reconnectPeriod: 200, ca: newCa, cert: old.certificate, key: old.privateKey },
      certificateRenewal: { save: async (pair) => void renewed.push(pair) },
      requestAttempts: 1,
      logger: createLogger({ level: 'info', format: 'json', write: (l) => agentLines.push(l) }),
    });
    try {
      const pair = await eventually(async () => renewed[0], 30_000, 'the agent renewed onto the new CA with only the new CA in --ca');
      assert.ok(issuedBy(pair.certificate, newCa), 'the renewed certificate is of the new CA');
      assert.ok(!issuedBy(pair.certificate, oldCa), 'and not of the previous one');
      const moved = parsed(lines).find((l) => l.msg === 'device certificate renewed' && l.deviceId === 'o-1');
      assert.equal(moved?.movedFromPreviousCa, true, lines.join('\n'));
      assert.ok(parsed(agentLines).some((l) => String(l.msg).includes('no CA of --ca issued it')), `the agent says why it asked: ${agentLines.join('\n')}`);
    } finally {
      await agent.stop();
    }
  });

  it("an agent whose --ca is another product's renewed CA (the same extension) is told \"not yet\" and holds that across reconnects", async () => {
    // the operator serves MQTTS with their own certificate, of a CA that itself replaced one
    // (made here by a rollover in another directory): the agent's certificate, of this
    // server's current CA, is in no CA of its --ca, and that CA carries the extension
    const other = await tmp('updraft-rollover-other-');
    await createCa(other, 'Operator CA');
    assert.equal((await runCli(['ca', 'rollover', '--data-dir', other])).code, 0);
    const operatorCa = (await loadCa(other))!;
    const serverCert = await operatorCa.issueServerCertificate(['127.0.0.1']);
    const certFile = path.join(other, 'server.crt');
    const keyFile = path.join(other, 'server.key');
    await writeFile(certFile, serverCert.certificate);
    await writeFile(keyFile, serverCert.privateKey);

    const dataDir = await tmp('updraft-rollover-foreign-bundle-');
    const flags = { 'mqtt-tls-cert': certFile, 'mqtt-tls-key': keyFile };
    const ts = await fx.start(dataDir, { flags });
    await registerDevice(ts, 'o-2');
    const cert = await ts.server.security.ca.issueDeviceCertificate('o-2');
    const ports = { ...flags, 'mqtt-port': Number(new URL(ts.mqttUrl).port), 'http-port': Number(new URL(ts.httpUrl).port), 'mqtt-tls-port': ts.server.broker.tlsPort };
    const renewed: unknown[] = [];
    const agentLines: string[] = [];
    const asked = () => parsed(agentLines).filter((l) => String(l.msg).startsWith('client certificate renewal asked early')).length;
    const { agent } = await startAgent(ts, await tmp('updraft-foreign-bundle-agent-'), 'o-2', {
      brokerUrl: `mqtts://127.0.0.1:${ports['mqtt-tls-port']}`,
      mqttOptions: { reconnectPeriod: 200, ca: operatorCa.certificate, cert: cert.certificate, key: cert.privateKey },
      certificateRenewal: { save: async (pair) => void renewed.push(pair) },
      requestAttempts: 1,
      logger: createLogger({ level: 'info', format: 'json', write: (l) => agentLines.push(l) }),
    });
    try {
      await eventually(async () => parsed(agentLines).find((l) => String(l.msg).startsWith('client certificate not moved to the newer CA yet')), 30_000, 'the agent told "not yet"');
      assert.equal(asked(), 1, 'asked once');
      const version = (await ts.server.store.getShadow('o-2', ''))!.version;
      // a restart: the agent reconnects and reports again, and does not ask again
      await ts.stop();
      const again = await fx.start(dataDir, { flags: ports });
      await eventually(async () => ((await again.server.store.getShadow('o-2', ''))!.version > version ? true : undefined), 30_000, 'the agent reconnected and reported');
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      assert.equal(asked(), 1, `not asked again at the reconnect: ${agentLines.join('\n')}`);
      assert.equal(renewed.length, 0, 'nothing renewed');
      await again.stop();
    } finally {
      await agent.stop();
    }
  });

  it('without a rollover an old CA certificate is refused; an expired previous CA is ignored with a WARN', async () => {
    const dataDir = await tmp('updraft-rollover-expired-');
    // a CA that expired yesterday, and a device certificate of it valid by its own dates (a
    // certificate that had expired itself would be refused whatever the server trusted)
    const { ca: expired, device } = expiredCa('x-1');

    const first = await start(dataDir);
    await registerDevice(first, 'x-1');
    await first.stop();
    await writeFile(caPaths(dataDir).previous, expired);
    const lines: string[] = [];
    const ts = await start(dataDir, lines);
    const warned = parsed(lines).find((l) => String(l.msg).startsWith('the previous CA (pki/previous-ca.crt) is ignored'));
    assert.equal(warned?.level, 'warn', lines.join('\n'));
    // what shows the exclusion: the listener's client CAs, and the renewal's own check (OpenSSL
    // refuses a chain through an expired CA even when it is trusted, so the refused connection
    // below would be refused either way: it shows the device is not let in, not why)
    assert.equal(ts.server.security.mqttTls?.ca, ts.server.security.ca.certificate, 'only the current CA is trusted for client certificates');
    assert.throws(() => ts.server.security.ca.deviceCertificateKey(device.cert, 'x-1'), (err: Error & { code?: string }) => err.code === 'FORBIDDEN' && /issued by the previous CA .* which expired/.test(err.message), 'a renewal proven by a certificate of the expired previous CA is refused');
    const url = `mqtts://127.0.0.1:${ts.server.broker.tlsPort}`;
    assert.equal(await tryConnect(url, { clientId: 'x-1', ca: ts.server.security.ca.certificate, ...device }), 'tls');
    await ts.stop();
  });
});
