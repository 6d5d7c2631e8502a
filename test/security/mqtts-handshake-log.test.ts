/**
 * A device refused at the MQTTS handshake for its client certificate (one of a CA the server
 * does not trust, such as a previous CA dropped by `updraft ca drop-previous`): the server's
 * line says why (the certificate's verification error, not Node's 'socket hang up'), from
 * where, and what it likely means; repeated attempts are counted, not logged one by one.
 * A real server and real MQTT.js clients over TLS.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { caPaths, createCa, type IssuedCertificate } from '../../src/pki/certificate-authority.ts';
import { createLogger } from '../../src/util/logger.ts';
import { tryConnect } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

describe('MQTTS handshake refused: the reason, the address, a hint, throttled', () => {
  let ts: TestServer;
  let dir: string;
  let mqttsUrl: string;
  let ca: string;
  let foreign: IssuedCertificate;
  let mallory: IssuedCertificate;
  let malloryCa: string;
  const lines: string[] = [];
  const refusals = () => lines.filter((l) => l.includes('MQTTS handshake refused'));

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-handshake-'));
    ts = await startTestServer({ logger: createLogger({ level: 'warn', write: (l) => lines.push(l) }) });
    mqttsUrl = `mqtts://127.0.0.1:${ts.server.broker.tlsPort}`;
    ca = await readFile(caPaths(ts.dataDir).cert, 'utf8');
    await registerDevice(ts, 'dev-old-ca');
    // another CA under the server CA's name (two CAs of one rollover's day had one before 2026-12-06): CERT_SIGNATURE_FAILURE
    foreign = await (await createCa(path.join(dir, 'old-ca'))).issueDeviceCertificate('dev-old-ca');
    const other = await createCa(path.join(dir, 'mallory'), 'Mallory CA');
    mallory = await other.issueDeviceCertificate('dev-old-ca');
    malloryCa = other.certificate;
  });
  after(async () => {
    await ts?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a certificate of a CA the server does not trust: the verification error, the address and the hint, once', async () => {
    const attempt = () => tryConnect(mqttsUrl, { clientId: 'dev-old-ca', ca, cert: foreign.certificate, key: foreign.privateKey });
    assert.equal(await attempt(), 'tls', 'refused at the handshake');
    const first = refusals();
    assert.equal(first.length, 1, lines.join('\n'));
    assert.match(first[0]!, /^.*WARN.*reason=CERT_SIGNATURE_FAILURE\b/, first[0]);
    assert.match(first[0]!, /lastFrom=127\.0\.0\.1\b/, first[0]);
    assert.match(first[0]!, /client certificate of a CA this server does not trust \(a previous CA dropped\?\)/, first[0]);
    assert.doesNotMatch(first[0]!, /socket hang up/, first[0]);
    // the device retries: counted, not a line per attempt
    assert.equal(await attempt(), 'tls', 'refused again');
    assert.equal(await attempt(), 'tls', 'refused a third time');
    assert.equal(refusals().length, 1, lines.join('\n'));
  });

  it('a CA of another name, alone and sent with its chain, and no certificate at all: each reason a line of its own', async () => {
    assert.equal(await tryConnect(mqttsUrl, { clientId: 'dev-old-ca', ca, cert: mallory.certificate, key: mallory.privateKey }), 'tls', 'the certificate alone');
    const leaf = refusals().find((l) => /reason=UNABLE_TO_VERIFY_LEAF_SIGNATURE\b/.test(l));
    assert.ok(leaf, lines.join('\n'));
    assert.match(leaf, /client certificate of a CA this server does not trust/, leaf);
    assert.equal(await tryConnect(mqttsUrl, { clientId: 'dev-old-ca', ca, cert: mallory.certificate + malloryCa, key: mallory.privateKey }), 'tls', 'the chain');
    const chain = refusals().find((l) => /reason=SELF_SIGNED_CERT_IN_CHAIN\b/.test(l));
    assert.ok(chain, lines.join('\n'));
    assert.match(chain, /client certificate of a CA this server does not trust/, chain);
    assert.equal(await tryConnect(mqttsUrl, { clientId: 'dev-old-ca', ca }), 'tls', 'no certificate');
    const none = refusals().find((l) => /reason=ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE\b/.test(l));
    assert.ok(none, lines.join('\n'));
    assert.match(none, /no client certificate/, none);
    assert.match(none, /lastFrom=127\.0\.0\.1\b/, none);
  });

  it('at stop, the count of the attempts left out, with their reason and address; nothing of a certificate in the log', async () => {
    await ts.stop();
    const count = refusals().find((l) => /reason=CERT_SIGNATURE_FAILURE\b.*suppressed=2\b/.test(l));
    assert.ok(count, lines.join('\n'));
    assert.match(count, /lastFrom=127\.0\.0\.1\b/, count);
    const log = lines.join('\n');
    assert.doesNotMatch(log, /BEGIN|PRIVATE KEY/, 'no PEM in the log');
    const body = foreign.certificate.split('\n')[1]!;
    assert.ok(!log.includes(body.slice(0, 32)), 'no part of the certificate in the log');
  });
});
