/**
 * The operator's own TLS files (http.tlsCert/http.tlsKey, mqtt.tlsCert/mqtt.tlsKey): refused
 * when their listener is off or one of the pair is missing (they were ignored), and a key that
 * is not the certificate's, or a file that is no PEM, is named by its setting at start-up.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load-config.ts';
import { loadOrCreateCa } from '../../src/pki/certificate-authority.ts';
import { checkTlsFiles } from '../../src/server/tls-files-check.ts';
import { runCli } from '../helpers/cli.ts';

describe('TLS file settings', () => {
  it('refuses a certificate or key given while its listener is off, naming where each came from', () => {
    assert.throws(
      () => loadConfig({ flags: { 'http-tls-cert': '/etc/c.pem', 'http-tls-key': '/etc/k.pem' } }),
      (err: any) =>
        err.status === 400 &&
        err.message === 'invalid configuration: http.tlsCert (flag --http-tls-cert) and http.tlsKey (flag --http-tls-key) are set but http.tls is off: add --http-tls on (UPDRAFT_HTTP_TLS=on) to serve HTTPS with them, or leave them out',
    );
    assert.throws(
      () => loadConfig({ env: { UPDRAFT_MQTT_TLS_CERT: '/etc/c.pem', UPDRAFT_MQTT_TLS_KEY: '/etc/k.pem' }, flags: { 'mqtt-tls-port': -1 } }),
      /mqtt\.tlsCert \(env UPDRAFT_MQTT_TLS_CERT\) and mqtt\.tlsKey \(env UPDRAFT_MQTT_TLS_KEY\) are set but mqtt\.tlsPort is -1 \(flag --mqtt-tls-port\): the MQTTS listener is off/,
    );
  });

  it('refuses half a pair with its listener on', () => {
    assert.throws(() => loadConfig({ flags: { 'http-tls': 'on', 'http-tls-key': '/etc/k.pem' } }), /http\.tlsKey \(flag --http-tls-key\) is set without http\.tlsCert: give both the certificate and its key, or neither/);
  });

  it('takes a pair with its listener on, and no files at all', () => {
    assert.equal(loadConfig({ flags: { 'http-tls': 'on', 'http-tls-cert': '/etc/c.pem', 'http-tls-key': '/etc/k.pem' } }).http.tlsCert, '/etc/c.pem');
    assert.equal(loadConfig({ flags: { 'http-tls': 'on' } }).http.tls, 'on');
  });

  describe('at start-up', () => {
    let dir: string;
    const files: Record<string, string> = {};
    before(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-tls-'));
      const { ca } = await loadOrCreateCa(path.join(dir, 'ca'));
      for (const name of ['one', 'two']) {
        const issued = await ca.issueServerCertificate(['localhost']);
        files[`${name}.crt`] = path.join(dir, `${name}.crt`);
        files[`${name}.key`] = path.join(dir, `${name}.key`);
        await writeFile(files[`${name}.crt`]!, issued.certificate);
        await writeFile(files[`${name}.key`]!, issued.privateKey);
      }
    });
    after(() => rm(dir, { recursive: true, force: true }));

    const pem = (name: string) => readFile(files[name]!, 'utf8');

    it('names the settings of a key that is not the certificate\'s, and of a file that is no PEM', async () => {
      const [cert, key, otherKey] = [await pem('one.crt'), await pem('one.key'), await pem('two.key')];
      checkTlsFiles({ cert, key }, { prefix: 'http', certFile: 'c', keyFile: 'k' }); // a pair: nothing said
      assert.throws(
        () => checkTlsFiles({ cert, key: otherKey }, { prefix: 'http', certFile: '/c.pem', keyFile: '/k.pem' }),
        (err: any) => err.status === 400 && /^http\.tlsKey \(--http-tls-key \/k\.pem\) is not the private key of http\.tlsCert \(--http-tls-cert \/c\.pem\): give the key the certificate was issued for \(.*key values mismatch\)$/.test(err.message),
      );
      assert.throws(() => checkTlsFiles({ cert: key, key }, { prefix: 'mqtt', certFile: '/c.pem', keyFile: '/k.pem' }), /: mqtt\.tlsCert \(--mqtt-tls-cert \/c\.pem\) is not a PEM certificate: /);
      assert.throws(() => checkTlsFiles({ cert, key: cert }, { prefix: 'mqtt', certFile: '/c.pem', keyFile: '/k.pem' }), /: mqtt\.tlsKey \(--mqtt-tls-key \/k\.pem\) is not a PEM private key \(unencrypted\): /);
    });

    it('updraft server refuses a mismatched pair, or a file it cannot read, in one line naming the settings, exit code 2', async () => {
      for (const [flags, re] of [
        [['--http-tls', 'on', '--http-tls-cert', files['one.crt']!, '--http-tls-key', files['two.key']!, '--mqtt-tls-port', '-1'], /^updraft: error: http\.tlsKey \(--http-tls-key .*two\.key\) is not the private key of http\.tlsCert \(--http-tls-cert .*one\.crt\)/],
        [['--mqtt-tls-port', '0', '--mqtt-tls-cert', files['two.crt']!, '--mqtt-tls-key', files['one.key']!], /^updraft: error: mqtt\.tlsKey \(--mqtt-tls-key .*one\.key\) is not the private key of mqtt\.tlsCert \(--mqtt-tls-cert .*two\.crt\)/],
        // a file that cannot be read is named by its setting too (it said 'http.tls: cannot read the TLS certificate or key', exit code 1)
        [['--http-tls', 'on', '--http-tls-cert', path.join(dir, 'missing.crt'), '--http-tls-key', files['one.key']!, '--mqtt-tls-port', '-1'], /^updraft: error: http\.tlsCert \(--http-tls-cert .*missing\.crt\) cannot be read: ENOENT/],
        [['--mqtt-tls-port', '0', '--mqtt-tls-cert', files['one.crt']!, '--mqtt-tls-key', dir], /^updraft: error: mqtt\.tlsKey \(--mqtt-tls-key .*\) cannot be read: EISDIR/],
      ] as const) {
        const r = await runCli(['server', '--data-dir', path.join(dir, 'data'), '--http-port', '0', '--mqtt-port', '0', '--http-host', '127.0.0.1', '--mqtt-host', '127.0.0.1', '--log-level', 'error', ...flags]);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, re);
        assert.equal(r.stderr.split('\n').length, 2, 'one line');
      }
    });
  });
});
