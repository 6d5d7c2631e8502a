/**
 * What a QA run of a real CA rollover on 15 `updraft agent` daemons found (2026-12-06):
 * - a `--ca` bundle whose next CA was damaged (one base64 character changed: it parses, with
 *   another public key, and its self-signature no longer verifies) was taken without a word,
 *   at start and when read again at a reconnect; the agent then asked to move to that CA, and
 *   after the switch was refused (`certificate signature failure`) until the file was fixed.
 *   Now a self-signed CA whose signature does not verify with its own key is refused: exit 2 at
 *   start, one line naming the file and its subject; said once at a reconnect, and the files
 *   read before are used. An intermediate CA (not self-issued) in the bundle is still taken;
 * - CA errors were OpenSSL's words alone: now with a hint naming `--ca` and a CA rollover;
 * - `--cert` without `--key` (or the reverse) ended with exit 1: now 2, as the other TLS files;
 * - each renewal was said twice, the `TLS files changed on disk` lines had no device prefix,
 *   and a stop said `disconnected, reconnecting`.
 * The real `updraft agent` daemon over MQTTS, a real server, a real `updraft ca rollover`.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { connectionErrorHint } from '../../src/agent/connection-hints.ts';
import { TlsFileReader } from '../../src/agent/tls-files.ts';
import { caPaths, createCa, prepareNextCa } from '../../src/pki/certificate-authority.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually, runCli, startCli, type CliProcess } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

/**
 * `pem` with one base64 character changed where the certificate still parses and its public
 * key is another: the damage QA found in a copied next CA.
 */
function damaged(pem: string): string {
  const good = new X509Certificate(pem);
  const lines = pem.trim().split('\n');
  for (let li = 2; li < lines.length - 1; li++) {
    for (const col of [10, 20, 30]) {
      const l = lines[li]!;
      const bad = [...lines.slice(0, li), l.slice(0, col) + (l[col] === 'A' ? 'B' : 'A') + l.slice(col + 1), ...lines.slice(li + 1)].join('\n') + '\n';
      try {
        const c = new X509Certificate(bad);
        if (!c.publicKey.equals(good.publicKey) && c.subject === good.subject && c.issuer === good.issuer) return bad;
      } catch {
        // does not parse: not the damage looked for
      }
    }
  }
  throw new Error('no damaged copy that parses');
}

const subjectOf = (pem: string) => new X509Certificate(pem).subject.split('\n').join(', ');

describe("the agent daemon and its CA files' problems", () => {
  const dirs: string[] = [];
  const servers: TestServer[] = [];
  let daemon: CliProcess | undefined;
  after(async () => {
    await daemon?.kill();
    for (const s of servers) await s.stop().catch(() => {});
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('refuses at start a bundle with a damaged self-signed CA (exit 2, one line naming the file and the subject), takes an intermediate CA, and --cert without --key exits 2', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-ca-problems-'));
    dirs.push(dir);
    const one = (await createCa(path.join(dir, 'ca1'), 'Updraft device CA')).certificate;
    const two = (await createCa(path.join(dir, 'ca2'), 'Updraft device CA 2')).certificate;
    const broken = damaged(two);
    assert.equal(new X509Certificate(broken).verify(new X509Certificate(broken).publicKey), false, 'the damaged copy does not verify itself');
    const bundle = path.join(dir, 'bundle.crt');
    await writeFile(bundle, `${one}${broken}`);
    const base = ['agent', '--device', 'p-0', '--install-dir', path.join(dir, 'install'), '--broker', 'mqtts://127.0.0.1:9', '--insecure-allow-unsigned', '--password', 'x'];
    const r = await runCli([...base, '--ca', bundle], { timeoutMs: 60_000 });
    assert.equal(r.code, 2, `exit 2: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
    assert.ok(r.stderr.startsWith(`updraft: error: --ca ${bundle}: certificate 2 of 2 (${subjectOf(two)}) is self-signed, but its signature does not verify with its own key`), r.stderr);

    // --cert without --key, and --key without --cert: bad input, as the other TLS file errors
    const pair = path.join(dir, 'ca1', 'pki', 'ca.crt');
    for (const extra of [['--cert', pair], ['--key', pair]]) {
      const half = await runCli([...base, ...extra], { timeoutMs: 60_000 });
      assert.equal(half.code, 2, `${extra[0]} alone exits 2: ${half.stderr}`);
      assert.equal(half.stderr, 'updraft: error: invalid agent options: --cert and --key go together\n', `${extra[0]} alone: one line`);
    }

    // a root and an intermediate CA of it (made by the openssl command line): both taken, and the intermediate alone (its issuer not in the file)
    const o = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    o('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'root.key', '-out', 'root.crt', '-subj', '/CN=Root CA', '-days', '30');
    o('req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'int.key', '-out', 'int.csr', '-subj', '/CN=Intermediate CA');
    await writeFile(path.join(dir, 'ext.cnf'), 'basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\n');
    o('x509', '-req', '-in', 'int.csr', '-CA', 'root.crt', '-CAkey', 'root.key', '-CAcreateserial', '-out', 'int.crt', '-days', '30', '-extfile', 'ext.cnf');
    const [root, intermediate] = [await readFile(path.join(dir, 'root.crt'), 'utf8'), await readFile(path.join(dir, 'int.crt'), 'utf8')];
    const lines: string[] = [];
    const caFile = path.join(dir, 'chain.crt');
    for (const chain of [`${root}${intermediate}`, intermediate, `${one}${intermediate}`]) {
      await writeFile(caFile, chain);
      const reader = new TlsFileReader({ ca: caFile }, { ca: one }, createLogger({ level: 'info', format: 'json', write: (l) => lines.push(l) }), 'p-0: ');
      assert.deepEqual(reader.read(), { ca: chain }, `an intermediate CA is taken: ${lines.join('\n')}`);
    }
    // an RFC 5280 link certificate: a re-keyed root signed by its old key, the same name, is
    // self-issued but verified by another certificate of the bundle (refused until the review of 0655353)
    o('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'old.key', '-out', 'old.crt', '-subj', '/CN=Corp Root CA', '-days', '30');
    o('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'new.key', '-out', 'new.crt', '-subj', '/CN=Corp Root CA', '-days', '30');
    o('req', '-new', '-key', 'new.key', '-out', 'link.csr', '-subj', '/CN=Corp Root CA');
    o('x509', '-req', '-in', 'link.csr', '-CA', 'old.crt', '-CAkey', 'old.key', '-CAcreateserial', '-out', 'link.crt', '-days', '30', '-extfile', 'ext.cnf');
    const linked = (await Promise.all(['old.crt', 'new.crt', 'link.crt'].map((f) => readFile(path.join(dir, f), 'utf8')))).join('');
    await writeFile(caFile, linked);
    const linkReader = new TlsFileReader({ ca: caFile }, { ca: one }, createLogger({ level: 'info', format: 'json', write: (l) => lines.push(l) }), 'p-0: ');
    assert.deepEqual(linkReader.read(), { ca: linked }, `a link certificate is taken: ${lines.join('\n')}`);
    assert.ok(lines.every((l) => (JSON.parse(l) as { msg: string }).msg.startsWith('p-0: TLS files changed on disk: used')), `the device prefix: ${lines.join('\n')}`);
  });

  it('a running agent refuses a damaged next CA read at a reconnect (said once, the files read before used), says a CA error with a hint, logs a renewal once, and a stop without "reconnecting"', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-ca-problems-'));
    dirs.push(dir);
    const dataDir = path.join(dir, 'data');
    const first = await startTestServer({ dataDir });
    servers.push(first);
    const ports = { 'mqtt-port': Number(new URL(first.mqttUrl).port), 'http-port': Number(new URL(first.httpUrl).port), 'mqtt-tls-port': first.server.broker.tlsPort };
    await registerDevice(first, 'p-1');
    const oldCa = first.server.security.ca.certificate;
    const pair = await first.server.security.ca.issueDeviceCertificate('p-1', 10); // due: renewed at the first connect
    const files = { ca: path.join(dir, 'ca.crt'), cert: path.join(dir, 'p-1.crt'), key: path.join(dir, 'p-1.key'), signing: path.join(dir, 'signing.pub') };
    await writeFile(files.ca, oldCa);
    await writeFile(files.cert, pair.certificate);
    await writeFile(files.key, pair.privateKey, { mode: 0o600 });
    await writeFile(files.signing, first.server.security.signingKey.publicKeyPem);
    daemon = startCli(['agent', '--device', 'p-1', '--install-dir', path.join(dir, 'p-1'), '--broker', `mqtts://127.0.0.1:${ports['mqtt-tls-port']}`, '--ca', files.ca, '--cert', files.cert, '--key', files.key, '--signing-key', files.signing, '--initial-version', '1.0.0']);
    await daemon.waitFor(/p-1: connected/);
    await daemon.waitFor(/p-1: client certificate renewed/, 30_000);
    // one line with both facts: the file written and when it is used
    await eventually(async () => (daemon!.output().includes('used from the next connection') ? true : undefined), 10_000, 'the renewal line');
    const renewals = daemon.output().split('\n').filter((l) => l.includes('client certificate renewed'));
    assert.equal(renewals.length, 1, `a renewal said once: ${renewals.join('\n')}`);
    assert.match(renewals[0]!, /p-1: client certificate renewed, valid until \S+; written to \S+p-1\.crt, used from the next connection/, renewals[0]);

    // the next CA prepared, and a damaged copy of it given to the device with the old CA
    const next = (await prepareNextCa(dataDir)).certificate;
    await writeFile(files.ca, `${oldCa}${damaged(next)}`);
    const before = daemon.output().length;
    await first.stop();
    const second = await startTestServer({ dataDir, flags: ports });
    servers.push(second);
    await eventually(async () => (/p-1: connected/.test(daemon!.output().slice(before)) ? true : undefined), 90_000, 'connected again with the files read before');
    const read = daemon.output().slice(before);
    assert.doesNotMatch(read, /TLS files changed on disk: used/, `the damaged bundle is not used: ${read}`);
    const refused = read.split('\n').filter((l) => l.includes('TLS files changed on disk but are not usable'));
    assert.equal(refused.length, 1, `said once over the reconnect attempts: ${read}`);
    assert.ok(refused[0]!.includes(`p-1: TLS files changed on disk but are not usable: the ones read before are used`), `the device prefix: ${refused[0]}`);
    assert.ok(refused[0]!.includes(`--ca ${files.ca}: certificate 2 of 2 (${subjectOf(next)}) is self-signed, but its signature does not verify with its own key`), refused[0]);

    // the switch to the (real) next CA: the agent has the old CA only, and says so with a hint
    await second.stop();
    const rolled = await runCli(['ca', 'rollover', '--data-dir', dataDir]);
    assert.equal(rolled.code, 0, rolled.stderr);
    assert.equal(await readFile(caPaths(dataDir).cert, 'utf8'), next, 'switched to the prepared CA');
    const switched = daemon.output().length;
    const third = await startTestServer({ dataDir, flags: ports });
    servers.push(third);
    const [line] = await daemon.waitFor(/.*mqtt error.*self-signed certificate in certificate chain.*/, 60_000);
    assert.ok(
      line.includes(`self-signed certificate in certificate chain (the server's certificate is not of a CA in --ca ${files.ca}: after a CA rollover give --ca the bundle of the old and new CA, docs/security.md)`),
      `the original text and the hint: ${line}`,
    );
    assert.doesNotMatch(daemon.output().slice(switched), /certificate signature failure/, 'the damaged CA was never used');

    // the right bundle: connected, and a stop says nothing of reconnecting
    await writeFile(files.ca, `${oldCa}${next}`);
    await eventually(async () => (/p-1: TLS files changed on disk: used from this connection attempt.*changed=--ca/.test(daemon!.output().slice(switched)) ? true : undefined), 90_000, 'the bundle read, with the device prefix');
    await eventually(async () => (/p-1: connected/.test(daemon!.output().slice(switched)) ? true : undefined), 30_000, 'connected with the bundle');
    const stopping = daemon.output().length;
    assert.equal(await daemon.kill('SIGTERM'), 0, 'a clean stop');
    const stopLines = daemon.output().slice(stopping);
    assert.match(stopLines, /p-1: stopped/, stopLines);
    assert.doesNotMatch(stopLines, /reconnecting/, `a stop does not say it reconnects: ${stopLines}`);
    await third.stop();
  });

  it('an agent whose client certificate is of a CA the server dropped is told the server may not trust that CA', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-ca-problems-'));
    dirs.push(dir);
    const dataDir = path.join(dir, 'data');
    const first = await startTestServer({ dataDir });
    servers.push(first);
    const ports = { 'mqtt-port': Number(new URL(first.mqttUrl).port), 'http-port': Number(new URL(first.httpUrl).port), 'mqtt-tls-port': first.server.broker.tlsPort };
    await registerDevice(first, 'p-2');
    const pair = await first.server.security.ca.issueDeviceCertificate('p-2'); // of the CA about to be dropped
    const files = { ca: path.join(dir, 'ca.crt'), cert: path.join(dir, 'p-2.crt'), key: path.join(dir, 'p-2.key'), signing: path.join(dir, 'signing.pub') };
    await writeFile(files.cert, pair.certificate);
    await writeFile(files.key, pair.privateKey, { mode: 0o600 });
    await writeFile(files.signing, first.server.security.signingKey.publicKeyPem);
    await first.stop();
    for (const args of [['ca', 'rollover', '--data-dir', dataDir], ['ca', 'drop-previous', '--data-dir', dataDir, '--force']]) {
      const r = await runCli(args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    }
    await writeFile(files.ca, await readFile(caPaths(dataDir).cert, 'utf8')); // the server's new CA: its certificate verifies
    const ts = await startTestServer({ dataDir, flags: ports });
    servers.push(ts);
    const agent = startCli(['agent', '--device', 'p-2', '--install-dir', path.join(dir, 'p-2'), '--broker', `mqtts://127.0.0.1:${ports['mqtt-tls-port']}`, '--ca', files.ca, '--cert', files.cert, '--key', files.key, '--signing-key', files.signing, '--renew-certificate-days', '0']);
    try {
      const [line] = await agent.waitFor(/.*mqtt error.*/, 60_000);
      assert.ok(line.includes(`(the server may not trust the CA of --cert ${files.cert}, for one: `), `the original text and the hint: ${line}`);
    } finally {
      await agent.kill();
      await ts.stop();
    }
  });

  it('hints for the other CA errors: a signature failure names --ca; a close before CONNACK with a client certificate names the possibility of a dropped CA', () => {
    const ctx = { tls: true, caFile: '/etc/updraft/ca.crt', certFile: '/etc/updraft/d.crt' };
    assert.match(connectionErrorHint('certificate signature failure', ctx) ?? '', /^a CA in --ca \/etc\/updraft\/ca\.crt has the name of the server certificate's CA but does not verify its signature/, 'signature failure');
    assert.match(connectionErrorHint('connection closed before CONNACK', ctx) ?? '', /^the server may not trust the CA of --cert \/etc\/updraft\/d\.crt, for one: .*previous CA .*drop-previous/, 'a close before CONNACK');
    // OpenSSL's words for Mosquitto's refusal of a certificate its crl.pem lists (QA of the CRL, 2026-12-06)
    assert.match(connectionErrorHint('805C8C32007F0000:error:0A000414:SSL routines:ssl3_read_bytes:sslv3 alert certificate revoked:../deps/openssl/openssl/ssl/record/rec_layer_s3.c:1601:SSL alert number 44\n', ctx) ?? '', /^the server revoked the client certificate of --cert \/etc\/updraft\/d\.crt: its device was deleted/, 'a revoked certificate');
    assert.equal(connectionErrorHint('connection closed before CONNACK', { tls: true, caFile: ctx.caFile }), undefined, 'no client certificate: no hint of its CA');
    assert.match(connectionErrorHint('error:0A000418:SSL routines::tlsv1 alert unknown ca', ctx) ?? '', /^the server refused the client certificate of --cert \/etc\/updraft\/d\.crt: its CA may not be one the server trusts/, "a TLS alert of the server's");
    assert.equal(connectionErrorHint('self-signed certificate in certificate chain', { tls: false }), undefined, 'no TLS: no hint');
    assert.equal(connectionErrorHint('connect ECONNREFUSED 127.0.0.1:8883', ctx), undefined, 'not a CA problem: no hint');
  });
});
