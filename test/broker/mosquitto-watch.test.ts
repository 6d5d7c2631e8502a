/**
 * `updraft broker mosquitto-config --watch` against a real Updraft server and a real
 * Mosquitto started for this file: devices registered, revoked, reinstated and given new
 * secrets through the API are admitted or cut off by the broker without anyone regenerating
 * its password file (docs/deployment.md).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { access, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { MosquittoPasswdBook, mosquittoAcl, mosquittoPasswd } from '../../src/broker/mosquitto-config.ts';
import { ApiClient } from '../../src/cli/api-client.ts';
import { coveringBundle, crlFromServer } from '../../src/cli/mosquitto-crl.ts';
import { watchMosquittoPasswd } from '../../src/cli/mosquitto-watch.ts';
import { createLogger, silentLogger } from '../../src/util/logger.ts';
import { eventually, runCli, startCli, type CliProcess } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';
import { startHttpProxy } from '../helpers/http-proxy.ts';
import { findMosquitto, mosquittoUnavailable, startTestMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';
import { apiJson, registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

const found = findMosquitto();

/** A self-signed CA certificate (PEM) of no server: one the broker may trust and the server makes no CRL of. */
function generateCaPem(): string {
  return execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', '/dev/null', '-subj', '/CN=Other CA', '-days', '30'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
}

describe('mosquitto-config options', () => {
  it('refuses a bad port or packet size, and options it would ignore, in one line, before asking the server anything', async () => {
    // the server named does not answer: the options are refused first
    const base = ['broker', 'mosquitto-config', '--out', path.join(os.tmpdir(), `updraft-mq-${process.pid}`), '--server', 'http://127.0.0.1:9', '--token', 't'];
    for (const [extra, message] of [
      [['--max-packet-bytes', '10'], 'updraft: error: --max-packet-bytes must be a whole number of bytes from 4096, got 10\n'],
      [['--device-port', '99999'], 'updraft: error: --device-port must be a port from 1 to 65535, got 99999\n'],
      // options that were dropped without a word
      [['--tls-ca', '/etc/ca.pem'], 'updraft: error: --tls-ca goes with --tls-cert and --tls-key: client certificates are asked for on the TLS device listener\n'],
      [['--resync-minutes', '5', '--log-format', 'json'], 'updraft: error: --resync-minutes, --log-format go with --watch\n'],
    ] as const) {
      const r = await runCli([...base, ...extra]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, message);
    }
  });
});

describe('mosquitto-config --watch: the configuration never names a password file that is not there', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-watch-files-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));
  const exists = (file: string) => access(file).then(() => true, () => false);
  const watchInto = (out: string, server: string, token: string) => startCli(['broker', 'mosquitto-config', '--watch', '--out', out, '--server', server, '--token', token]);

  it('writes nothing while the server cannot be reached', async () => {
    const out = path.join(dir, 'unreachable');
    // a free port: nothing listens, the connection is refused (port 9, taken before, fetch
    // refuses itself as a "bad port", without connecting)
    const port = await freePort();
    const watch = watchInto(out, `http://127.0.0.1:${port}`, 'updr_0123456789abcdef0123456789abcdef');
    try {
      await watch.waitFor(/could not bring the password file up to date/);
      for (const f of ['mosquitto.conf', 'acl', 'passwd']) assert.equal(await exists(path.join(out, f)), false, `${f} not written`);
      // the stream's warning names the server followed and why (it said "fetch failed" alone)
      const [line] = await watch.waitFor(/.*event stream unavailable.*/);
      assert.ok(line.includes(`server=http://127.0.0.1:${port} error="fetch failed (connect ECONNREFUSED 127.0.0.1:${port})"`), line);
    } finally {
      assert.equal(await watch.kill('SIGTERM'), 0);
    }
  });

  it('writes mosquitto.conf once passwd and acl are written', async () => {
    const ts = await startTestServer();
    const out = path.join(dir, 'reachable');
    const watch = watchInto(out, ts.httpUrl, ts.token);
    try {
      await watch.waitFor(/wrote mosquitto\.conf/);
      const conf = await readFile(path.join(out, 'mosquitto.conf'), 'utf8');
      assert.ok(conf.includes(`password_file ${out}/passwd`));
      assert.match(await readFile(path.join(out, 'passwd'), 'utf8'), /^operator:\$7\$/);
      assert.equal(await exists(path.join(out, 'acl')), true);
      const output = watch.output();
      assert.ok(output.indexOf('password file written') < output.indexOf('acl written'), `passwd first: ${output}`);
      assert.ok(output.indexOf('acl written') < output.indexOf('wrote mosquitto.conf'), `then acl, then the conf naming both: ${output}`);
    } finally {
      assert.equal(await watch.kill('SIGTERM'), 0);
      await ts.close();
    }
  });

  it('--updraft-ca: a CRL the server fails to make (HTTP 500) stops neither mosquitto.conf nor the reloads; crl.pem is named once it can be made', async () => {
    const ts = await startTestServer();
    const out = path.join(dir, 'crl-500');
    const key = path.join(ts.dataDir, 'pki', 'ca.key');
    const caKey = await readFile(key, 'utf8');
    // another key in place of the CA's: the server's CRL route answers 500 ("not the private key of its CA certificate")
    await writeFile(key, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const reloads = () => readFile(path.join(out, 'reloads'), 'utf8').then((t) => t.split('\n').filter(Boolean).length, () => 0);
    const watch = startCli(['broker', 'mosquitto-config', '--watch', '--out', out, '--tls-cert', '/nonexistent/server.crt', '--tls-key', '/nonexistent/server.key', '--updraft-ca', '--data-dir', ts.dataDir, '--reload-command', 'echo x >> reloads', '--server', ts.httpUrl, '--token', ts.token]);
    try {
      await watch.waitFor(/could not fetch the CRL; crl\.pem stays as it was, retrying/);
      await watch.waitFor(/wrote mosquitto\.conf/);
      assert.doesNotMatch(await readFile(path.join(out, 'mosquitto.conf'), 'utf8'), /crlfile/, 'no crlfile named while none could be fetched');
      await eventually(async () => ((await reloads()) >= 1 ? true : undefined), 30_000, 'the broker reloaded for the files written');
      const before = await reloads();
      await registerDevice(ts, 'c-1');
      await eventually(async () => ((await readFile(path.join(out, 'passwd'), 'utf8')).includes('\nc-1:') && (await reloads()) > before ? true : undefined), 30_000, 'the new device in passwd, and the broker reloaded');
      assert.doesNotMatch(watch.output(), /could not bring the password file up to date/, watch.output());
      // the CA's key back: the CRL is fetched again, written, and named
      await writeFile(key, caKey, { mode: 0o600 });
      await eventually(async () => (/^crlfile .*crl\.pem$/m.test(await readFile(path.join(out, 'mosquitto.conf'), 'utf8')) ? true : undefined), 60_000, 'crl.pem named once the server makes it');
      assert.match(watch.output(), /crlfile written/, watch.output());
    } finally {
      assert.equal(await watch.kill('SIGTERM'), 0);
      await ts.close();
    }
  });

  it('--updraft-ca: a crl.pem removed between two passes (as a one-off run that cannot make one does) is written again, though the server\'s revocations did not change', async () => {
    const ts = await startTestServer();
    const out = path.join(dir, 'crl-removed');
    // a full read (and a CRL fetch) every 1.2 s
    const watch = startCli(['broker', 'mosquitto-config', '--watch', '--out', out, '--tls-cert', '/nonexistent/server.crt', '--tls-key', '/nonexistent/server.key', '--updraft-ca', '--data-dir', ts.dataDir, '--resync-minutes', '0.02', '--reload-command', 'true', '--server', ts.httpUrl, '--token', ts.token]);
    try {
      await eventually(async () => (/^crlfile /m.test(await readFile(path.join(out, 'mosquitto.conf'), 'utf8').catch(() => '')) ? true : undefined), 30_000, `crlfile named: ${watch.output()}`);
      const crl = await readFile(path.join(out, 'crl.pem'), 'utf8');
      await rm(path.join(out, 'crl.pem'));
      // the watch remembered the digest it wrote and found the server's the same: it named a crl.pem that was not there
      await eventually(async () => ((await readFile(path.join(out, 'crl.pem'), 'utf8').catch(() => undefined)) !== undefined ? true : undefined), 30_000, `crl.pem written again: ${watch.output()}`);
      assert.match(await readFile(path.join(out, 'crl.pem'), 'utf8'), /^-----BEGIN X509 CRL-----/, `a CRL again (before: ${crl.length} characters)`);
      assert.match(await readFile(path.join(out, 'mosquitto.conf'), 'utf8'), /^crlfile /m, 'crlfile named');
    } finally {
      assert.equal(await watch.kill('SIGTERM'), 0);
      await ts.close();
    }
  });

  it('--updraft-ca: the CRL fetches after the first send the digest held and take the 304 as unchanged: crl.pem not rewritten, Mosquitto not reloaded for it', async () => {
    const ts = await startTestServer();
    const proxy = await startHttpProxy(ts.httpUrl, '/api/v1/broker/crl');
    const out = path.join(dir, 'crl-304');
    const reloads = () => readFile(path.join(out, 'reloads'), 'utf8').then((t) => t.split('\n').filter(Boolean).length, () => 0);
    // a full read (and a CRL fetch) every 1.2 s
    const watch = startCli(['broker', 'mosquitto-config', '--watch', '--out', out, '--tls-cert', '/nonexistent/server.crt', '--tls-key', '/nonexistent/server.key', '--updraft-ca', '--data-dir', ts.dataDir, '--resync-minutes', '0.02', '--reload-command', 'echo x >> reloads', '--server', proxy.url, '--token', ts.token]);
    try {
      // the first pass ends with the reload for the files it wrote
      await watch.waitFor(/broker reloaded/);
      assert.match(await readFile(path.join(out, 'mosquitto.conf'), 'utf8'), /^crlfile /m, 'crlfile named');
      const digest = (await apiJson(ts, 'GET', '/api/v1/broker/crl')).body.digest as string;
      const first = proxy.requests.length;
      assert.equal(proxy.requests[0]?.status, 200, `the first fetch gets the list: ${JSON.stringify(proxy.requests)}`);
      const before = { ino: (await stat(path.join(out, 'crl.pem'))).ino, text: await readFile(path.join(out, 'crl.pem'), 'utf8'), reloads: await reloads(), said: watch.output().length };
      // three more passes' fetches answered
      await eventually(async () => (proxy.requests.length >= first + 3 && proxy.requests.slice(first, first + 3).every((r) => r.status !== undefined) ? true : undefined), 30_000, `three more CRL fetches: ${watch.output()}`);
      const later = proxy.requests.slice(first, first + 3);
      assert.deepEqual(later.map((r) => r.ifNoneMatch), [`"${digest}"`, `"${digest}"`, `"${digest}"`], `each later fetch sends the digest held: ${JSON.stringify(later)}`);
      assert.deepEqual(later.map((r) => r.status), [304, 304, 304], `the server answers 304 (no list made nor sent): ${JSON.stringify(later)}`);
      const crl = await stat(path.join(out, 'crl.pem'));
      assert.equal(crl.ino, before.ino, 'crl.pem not rewritten (write-then-rename gives a new inode)');
      assert.equal(await readFile(path.join(out, 'crl.pem'), 'utf8'), before.text, 'crl.pem unchanged');
      assert.equal(await reloads(), before.reloads, `Mosquitto not reloaded for an unchanged CRL: ${watch.output().slice(before.said)}`);
      assert.doesNotMatch(watch.output().slice(before.said), /crlfile (re)?written|no crl\.pem can be made|could not fetch the CRL/, watch.output().slice(before.said));
      assert.match(await readFile(path.join(out, 'mosquitto.conf'), 'utf8'), /^crlfile /m, 'crlfile still named');
      assert.equal(await watch.kill('SIGTERM'), 0, `the watch stops on SIGTERM with exit code 0: ${watch.output().slice(before.said)}`);
    } finally {
      // not asserted here: a failure above would be hidden by this one
      await watch.kill('SIGTERM');
      await proxy.close();
      await ts.close();
    }
  });

  it('--updraft-ca without --reload-command warns at start that Mosquitto rereads the files only on a reload', async () => {
    const ts = await startTestServer();
    const watch = startCli(['broker', 'mosquitto-config', '--watch', '--out', path.join(dir, 'no-reload'), '--tls-cert', '/nonexistent/server.crt', '--tls-key', '/nonexistent/server.key', '--updraft-ca', '--data-dir', ts.dataDir, '--server', ts.httpUrl, '--token', ts.token]);
    try {
      await watch.waitFor(/wrote mosquitto\.conf/);
      assert.match(watch.output(), /WARN[^\n]*no --reload-command: Mosquitto rereads passwd, acl and crl\.pem only on a reload/i, watch.output());
    } finally {
      assert.equal(await watch.kill('SIGTERM'), 0);
      await ts.close();
    }
  });
});

describe('the password book', () => {
  it('changes its text only when a device is admitted differently, so the broker is reloaded only then', () => {
    const book = new MosquittoPasswdBook('updr_token_0123456789abcdef', new Map([['old-1', 'secret-of-old-1']]));
    const hash = '$7$101$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNo';
    book.replaceAll([{ deviceId: 'a', revoked: false, brokerHash: hash }, { deviceId: 'old-1', revoked: false }, { deviceId: 'old-2', revoked: false }]);
    const first = book.text();
    assert.match(first, /^operator:\$7\$/);
    assert.match(first, /\na:\$7\$101\$c2FsdHNhbHRzYWx0\$aGFzaGhhc2hoYXNo\n/);
    assert.match(first, /\nold-1:\$7\$/, 'a device without a kept hash, admitted by its given secret');
    assert.deepEqual(book.missing, ['old-2']);
    book.set({ deviceId: 'a', revoked: false, brokerHash: hash });
    book.set({ deviceId: 'old-1', revoked: false });
    assert.equal(book.text(), first, 'the same devices again: the same text (salts of given secrets are kept)');
    book.set({ deviceId: 'a', revoked: true, brokerHash: hash });
    assert.doesNotMatch(book.text(), /\na:/, 'revoked: left out');
    book.set({ deviceId: 'a', revoked: false, brokerHash: hash });
    book.remove('old-1');
    assert.doesNotMatch(book.text(), /old-1/);
    assert.equal(book.admitted, 1);
    // an id Mosquitto cannot take as a user name is left out and named; the others are written
    book.set({ deviceId: 'gw:1', revoked: false, brokerHash: hash });
    book.set({ deviceId: 'b', revoked: false, brokerHash: hash });
    assert.deepEqual(book.unnamable, ['gw:1']);
    assert.doesNotMatch(book.text(), /^gw:1:/m); // (a base64 hash may hold "gw")
    assert.match(book.text(), /\nb:\$7\$/);
    book.remove('gw:1');
    assert.deepEqual(book.unnamable, []);
  });

  it('mosquittoPasswd leaves out an id holding \':\', named, and writes the rest', () => {
    const hash = '$7$101$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNo';
    const p = mosquittoPasswd({ operatorToken: 'updr_token_0123456789abcdef', devices: [{ deviceId: 'gw:1', revoked: false, brokerHash: hash }, { deviceId: 'c', revoked: false, brokerHash: hash }], secrets: new Map() });
    assert.deepEqual([p.included, p.unnamable], [['c'], ['gw:1']]);
    assert.doesNotMatch(p.text, /^gw:1:/m);
  });

  it('a device registered as "operator" (before the id was reserved) is never a line of passwd nor denied in the acl: the operator keeps its access', () => {
    const hash = '$7$101$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNo';
    const devices = [{ deviceId: 'operator', revoked: false, brokerHash: hash }, { deviceId: 'c', revoked: false, brokerHash: hash }];
    const p = mosquittoPasswd({ operatorToken: 'updr_token_0123456789abcdef', devices, secrets: new Map() });
    assert.deepEqual([p.included, p.unnamable], [['c'], ['operator']], 'left out and named');
    assert.equal(p.text.split('\n').filter((l) => l.startsWith('operator:')).length, 1, `one operator line: ${p.text}`);
    const book = new MosquittoPasswdBook('updr_token_0123456789abcdef', new Map());
    book.replaceAll([{ deviceId: 'operator', revoked: true }, { deviceId: 'r-1', revoked: true }]);
    const acl = mosquittoAcl(book.revoked);
    assert.match(acl, /^user r-1\ntopic deny #$/m, 'a revoked device is denied');
    assert.equal(acl.split('\n').filter((l) => l === 'user operator').length, 1, `only the operator's own block: ${acl}`);
    assert.doesNotMatch(acl.slice(acl.indexOf('user operator')), /^user operator\ntopic deny/m, 'the operator is denied nothing');
  });
});

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'mosquitto-config --watch tests');
  it('mosquitto-config --watch', (t) => t.skip(message));
} else {
  describe('mosquitto-config --watch (Mosquitto)', () => {
    let ts: TestServer;
    let broker: TestMosquitto;
    let watch: CliProcess;
    let api: ApiClient;

    before(async () => {
      ts = await startTestServer();
      api = new ApiClient({ server: ts.httpUrl, token: ts.token });
      // the broker starts with the operator only; the watch writes the rest
      broker = await startTestMosquitto(found.bin, { operatorToken: ts.token, devices: [], secrets: new Map() });
      watch = startCli([
        'broker', 'mosquitto-config', '--watch', '--out', broker.dir,
        '--device-host', '127.0.0.1', '--device-port', String(broker.devicePort), '--service-host', '127.0.0.1', '--service-port', String(broker.servicePort),
        // mosquitto dropped to its own user: it must be able to read the file
        '--reload-command', `chmod 644 passwd && kill -HUP ${broker.pid}`,
        '--server', ts.httpUrl, '--token', ts.token,
      ]);
      await watch.waitFor(/password file written/);
    });
    after(async () => {
      assert.equal(await watch?.kill('SIGTERM'), 0, 'the watch stops cleanly on SIGTERM');
      await broker?.stop();
      await ts?.close();
    });

    const connects = async (id: string, password: string) => {
      try {
        const c = await mqtt.connectAsync(broker.deviceUrl, { clientId: id, username: id, password, reconnectPeriod: 0, connectTimeout: 5_000 });
        return c;
      } catch {
        return undefined;
      }
    };
    const admitted = (id: string, password: string, what: string) =>
      eventually(async () => connects(id, password), 30_000, what);
    const refused = (id: string, password: string, what: string) =>
      eventually(async () => {
        const c = await connects(id, password);
        if (!c) return true;
        await c.endAsync();
        return undefined;
      }, 30_000, what);
    const closed = (client: mqtt.MqttClient, what: string) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${what}: the connection is still open after 30 s`)), 30_000);
        client.once('close', () => (clearTimeout(timer), resolve()));
      });

    it('admits a device registered after it started; revoking it closes its connection; reinstating admits it again', async () => {
      assert.equal(await connects('w-1', 'x'), undefined, 'not registered: refused');
      const { secret } = await api.call<{ secret: string }>('POST', '/api/v1/devices', { deviceId: 'w-1' });
      const client = await admitted('w-1', secret, 'w-1 admitted after its registration');
      const gone = closed(client, 'w-1 revoked');
      await api.call('POST', '/api/v1/devices/w-1/revoke');
      await gone; // Mosquitto closed it at the reload that left its line out
      await refused('w-1', secret, 'w-1 refused once revoked');
      await api.call('POST', '/api/v1/devices/w-1/reinstate');
      const back = await admitted('w-1', secret, 'w-1 admitted again once reinstated');
      await back.endAsync();
    });

    it('cuts off the old secret when a device is given a new one, and admits the new one', async () => {
      const { secret: old } = await api.call<{ secret: string }>('POST', '/api/v1/devices', { deviceId: 'w-2' });
      const client = await admitted('w-2', old, 'w-2 admitted');
      const gone = closed(client, 'w-2 given a new secret');
      const { secret: fresh } = await api.call<{ secret: string }>('POST', '/api/v1/devices/w-2/rotate-secret');
      await gone;
      const again = await admitted('w-2', fresh, 'the new secret admitted');
      await again.endAsync();
      assert.equal(await connects('w-2', old), undefined, 'the old secret refused');
    });

    it('admits every device of a bulk registration (more than one request of ids)', async () => {
      const ids = Array.from({ length: 250 }, (_, i) => `bulk-${String(i).padStart(3, '0')}`);
      const { devices } = await api.call<{ devices: { deviceId: string; secret: string }[] }>('POST', '/api/v1/devices/bulk', { devices: ids.map((deviceId) => ({ deviceId })) });
      await eventually(async () => {
        const passwd = await readFile(path.join(broker.dir, 'passwd'), 'utf8');
        return ids.every((id) => passwd.includes(`\n${id}:`)) ? true : undefined;
      }, 30_000, 'all 250 in the password file');
      for (const d of [devices[0]!, devices[137]!, devices[249]!]) {
        const c = await admitted(d.deviceId, d.secret, `${d.deviceId} admitted`);
        await c.endAsync();
      }
    });

    it('a CRL the server cannot make for the CAs asked is asked again a day later, not every second (and a write is followed by a reload)', async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-watch-crl-'));
      const ctl = new AbortController();
      let offset = 0;
      let fetches = 0;
      let cas = ts.server.security.ca.certificate;
      const lines: string[] = [];
      const running = watchMosquittoPasswd({
        api,
        passwdFile: path.join(dir, 'passwd'),
        secrets: new Map(),
        resyncMs: 3_600_000,
        logger: createLogger({ level: 'info', write: (l) => lines.push(l) }),
        signal: ctl.signal,
        now: () => Date.now() + offset,
        reloadCommand: `echo x >> ${path.join(dir, 'reloads')}`,
        // the real route, checked against the CAs this test says the broker trusts
        crl: { file: path.join(dir, 'crl.pem'), fetch: async () => (fetches++, coveringBundle(await crlFromServer(api, false), cas)), caPem: async () => cas },
      });
      try {
        await eventually(async () => ((await readFile(path.join(dir, 'crl.pem'), 'utf8').catch(() => '')).includes('BEGIN X509 CRL') ? true : undefined), 30_000, 'crl.pem written');
        await eventually(async () => ((await readFile(path.join(dir, 'reloads'), 'utf8').catch(() => '')).length > 0 ? true : undefined), 30_000, 'reloaded after the CRL was written');
        // a CA the server makes no CRL of, and a day on: the daily check finds no covering CRL
        cas = `${cas}${ts.server.security.ca.certificate === cas ? generateCaPem() : ''}`;
        offset = 86_400_000 + 1;
        await api.call('POST', '/api/v1/devices', { deviceId: 'crl-day-1' }); // a pass now
        await eventually(async () => (lines.some((l) => l.includes('no crl.pem can be made')) ? true : undefined), 30_000, 'the answer that does not cover said');
        const said = fetches;
        // until the review of bd0da82 the loop asked at every pass from then on (every 1.1 s, for
        // good): three passes, each seen done (its device in passwd), not a span of time, so a
        // slow machine cannot pass it without the fix
        for (const id of ['crl-day-2', 'crl-day-3', 'crl-day-4']) {
          await api.call('POST', '/api/v1/devices', { deviceId: id });
          await eventually(async () => ((await readFile(path.join(dir, 'passwd'), 'utf8')).includes(`\n${id}:`) ? true : undefined), 30_000, `${id} in passwd`);
        }
        assert.ok(fetches - said <= 1, `asked ${fetches - said} more times in three passes`);
      } finally {
        ctl.abort();
        await running;
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('a change whose event was missed is taken in by the periodic full read', async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-watch-'));
      const file = path.join(dir, 'passwd');
      const ctl = new AbortController();
      const running = watchMosquittoPasswd({ api, passwdFile: file, secrets: new Map(), resyncMs: 1_000, logger: silentLogger, signal: ctl.signal });
      try {
        await api.call('POST', '/api/v1/devices', { deviceId: 'quiet-1' });
        await eventually(async () => ((await readFile(file, 'utf8').catch(() => '')).includes('\nquiet-1:') ? true : undefined), 30_000, 'quiet-1 written');
        // revoked behind the registry's back: no event is emitted, only the store changes
        const d = (await ts.server.store.getDevice('quiet-1'))!;
        assert.ok(await ts.server.store.updateDevice({ ...d, revoked: true, version: d.version + 1, updatedAt: Date.now() }));
        await eventually(async () => (!(await readFile(file, 'utf8')).includes('\nquiet-1:') ? true : undefined), 30_000, 'quiet-1 left out after a full read');
      } finally {
        ctl.abort();
        await running;
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('a device whose id Mosquitto cannot name (it holds \':\') does not stop the password file being kept for the others', async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-watch-'));
      const file = path.join(dir, 'passwd');
      const ctl = new AbortController();
      // registered on this embedded server (which allows ':'), or before the fleet moved to Mosquitto
      await api.call('POST', '/api/v1/devices', { deviceId: 'gw:1' });
      const running = watchMosquittoPasswd({ api, passwdFile: file, secrets: new Map(), resyncMs: 600_000, logger: silentLogger, signal: ctl.signal });
      try {
        await api.call('POST', '/api/v1/devices', { deviceId: 'after-gw' });
        await eventually(async () => ((await readFile(file, 'utf8').catch(() => '')).includes('\nafter-gw:') ? true : undefined), 30_000, 'after-gw written');
        await api.call('POST', '/api/v1/devices/after-gw/revoke');
        await eventually(async () => (!(await readFile(file, 'utf8')).includes('\nafter-gw:') ? true : undefined), 30_000, 'after-gw left out once revoked');
        assert.doesNotMatch(await readFile(file, 'utf8'), /gw:1/);
      } finally {
        ctl.abort();
        await running;
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('refuses a bad ids query with 400', async () => {
      await assert.rejects(api.call('GET', '/api/v1/broker/credentials?ids=a,b%2Fc'), (err: Error & { status?: number }) => err.status === 400 && /not a device id/.test(err.message));
      const many = Array.from({ length: 101 }, (_, i) => `d-${i}`).join(',');
      await assert.rejects(api.call('GET', `/api/v1/broker/credentials?ids=${many}`), (err: Error & { status?: number }) => err.status === 400 && /1 to 100/.test(err.message));
      const { items } = await api.call<{ items: { deviceId: string }[] }>('GET', '/api/v1/broker/credentials?ids=w-2,nobody');
      assert.deepEqual(items.map((d) => d.deviceId), ['w-2'], 'an id not registered is left out');
    });

    it('ends with one readable line and a non-zero exit when the token is refused', async () => {
      const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-watch-'));
      try {
        const r = await runCli(['broker', 'mosquitto-config', '--watch', '--out', dir, '--server', ts.httpUrl, '--token', 'updr_wrong_token_0123456789abcdef']);
        assert.equal(r.code, 2, r.stderr);
        assert.match(r.stderr, /refused the operator token/);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });
}
