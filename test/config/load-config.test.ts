import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig, redactedConfig } from '../../src/config/load-config.ts';
import { CLIENT_ENVIRONMENT, unknownEnvironment } from '../../src/config/environment.ts';
import { SETTINGS } from '../../src/config/schema.ts';
import { runCli, startCli } from '../helpers/cli.ts';

describe('configuration', () => {
  it('has documented defaults', () => {
    const c = loadConfig();
    assert.equal(c.mqtt.port, 1883);
    assert.equal(c.http.port, 8080);
    assert.equal(c.shadow.maxDocumentBytes, 8192);
    assert.equal(c.dataDir, './data');
  });

  it('applies file, then environment, then flags', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'updraft-cfg-'));
    const file = path.join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ mqtt: { port: 1000 }, http: { port: 2000 }, logLevel: 'debug' }));
    const c = loadConfig({ file, env: { UPDRAFT_HTTP_PORT: '3000', UPDRAFT_LOG_LEVEL: 'warn' }, flags: { 'log-level': 'error' } });
    assert.equal(c.mqtt.port, 1000);
    assert.equal(c.http.port, 3000);
    assert.equal(c.logLevel, 'error');
  });

  it('reports every error at once', () => {
    assert.throws(
      () => loadConfig({ env: { UPDRAFT_MQTT_PORT: 'abc', UPDRAFT_LOG_LEVEL: 'loud' }, flags: { 'http-port': 70000 } }),
      (err: any) =>
        err.code === 'CONFIG' &&
        /mqtt\.port \(env UPDRAFT_MQTT_PORT\) must be an integer/.test(err.message) &&
        /http\.port \(flag --http-port\) must be at most 65535/.test(err.message) &&
        /logLevel \(env UPDRAFT_LOG_LEVEL\) must be one of/.test(err.message),
    );
  });

  it('prints no secret: secret settings as ***, a URL\'s password as ***; and does not echo a malformed secret URL', () => {
    const config = loadConfig({ env: { UPDRAFT_DB: 'postgres://updraft:hunter2@db:5432/updraft', UPDRAFT_WEBHOOK_URL: 'https://hooks.example/T000/B000/XXXXSECRET', UPDRAFT_WEBHOOK_SECRET: 's3cr3t', UPDRAFT_WEBHOOK_PREVIOUS_SECRET: 'old-s3cr3t' } });
    assert.equal(config.webhook.secret, 's3cr3t');
    const shown = redactedConfig(config) as { db: string; webhook: { url: string; secret: string }; mqtt: { port: number } };
    assert.equal(shown.db, 'postgres://updraft:***@db:5432/updraft');
    assert.deepEqual(shown.webhook, { url: '***', secret: '***', previousSecret: '***' });
    assert.equal(shown.mqtt.port, 1883);
    assert.ok(!JSON.stringify(shown).includes('hunter2') && !JSON.stringify(shown).includes('XXXXSECRET') && !JSON.stringify(shown).includes('s3cr3t'));
    assert.equal(config.db, 'postgres://updraft:hunter2@db:5432/updraft', 'the configuration itself is untouched');
    // node-postgres also takes the password as a query parameter
    const inQuery = redactedConfig(loadConfig({ env: { UPDRAFT_DB: 'postgres://updraft@db/updraft?password=hunter2&sslmode=require' } })) as { db: string };
    assert.equal(inQuery.db, 'postgres://updraft@db/updraft?password=***&sslmode=require');
    assert.throws(() => loadConfig({ env: { UPDRAFT_WEBHOOK_URL: 'not a url/XXXXSECRET' } }), (e: Error) => /webhook\.url \(env UPDRAFT_WEBHOOK_URL\) must be a URL like http:\/\/\.\.\., got something else \(not shown: it is a secret\)/.test(e.message) && !e.message.includes('XXXXSECRET'));
  });

  it('refuses unknown keys of the file by name, suggesting the setting meant, and wrong shapes, all at once', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'updraft-cfg-'));
    const file = path.join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ mqtt: { prot: 1884 }, http: 8080, loglevel: 'debug', 'mqtt.port': 1, colour: 'blue', shadow: { maxDepth: 3 } }));
    assert.throws(
      () => loadConfig({ file }),
      (err: any) => {
        assert.equal(err.code, 'CONFIG');
        assert.equal(err.status, 400, 'a usage error');
        assert.equal(
          err.message,
          `invalid configuration: config file ${file}: unknown setting mqtt.prot (did you mean mqtt.port?); ` +
            `config file ${file}: http must be an object of settings (http.host, http.port, http.tls, http.tlsCert, http.tlsKey, http.publicUrl), got 8080; ` +
            `config file ${file}: unknown setting loglevel (did you mean logLevel?); ` +
            `config file ${file}: mqtt.port must be written nested, as {"mqtt": {"port": ...}}; ` +
            `config file ${file}: unknown setting colour`,
        );
        return true;
      },
    );
    writeFileSync(file, '[1884]');
    assert.throws(() => loadConfig({ file }), /config file .*c\.json: must hold a JSON object of settings, e\.g\. \{"mqtt": \{"port": 1884\}\}; got an array/);
    writeFileSync(file, JSON.stringify({ mqtt: { port: 1884, url: '' }, tls: { hosts: 'a' } }));
    assert.equal(loadConfig({ file }).mqtt.port, 1884, 'a file of known keys only is taken');
  });

  it('updraft server exits with code 2 and one line on a config file with a typo (a usage error)', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'updraft-cfg-'));
    const file = path.join(dir, 'updraft.json');
    writeFileSync(file, JSON.stringify({ mqtt: { prot: 1884 } }));
    const r = await runCli(['server', '--config', file, '--data-dir', path.join(dir, 'data')]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, `updraft: error: invalid configuration: config file ${file}: unknown setting mqtt.prot (did you mean mqtt.port?)\n`);
    const bad = await runCli(['server', '--data-dir', path.join(dir, 'data')], { env: { UPDRAFT_LOG_LEVEL: 'loud' } });
    assert.equal(bad.code, 2, bad.stderr);
  });

  it('names an unreadable config file', () => {
    assert.throws(() => loadConfig({ file: '/nonexistent/updraft.json' }), /config file \/nonexistent\/updraft\.json/);
  });

  it('updraft config --config prints the configuration a file gives, the environment over it, secrets hidden', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'updraft-cfg-'));
    const file = path.join(dir, 'updraft.json');
    writeFileSync(file, JSON.stringify({ logLevel: 'debug', http: { port: 9999 }, webhook: { url: 'https://hooks.example/x', secret: 's3cret' } }));
    const r = await runCli(['config', '--config', file], { env: { UPDRAFT_HTTP_PORT: '9000' } });
    assert.equal(r.code, 0, r.stderr);
    const shown = JSON.parse(r.stdout) as { logLevel: string; http: { port: number }; webhook: { secret: string } };
    assert.deepEqual([shown.logLevel, shown.http.port, shown.webhook.secret], ['debug', 9000, '***']);
    assert.ok(!r.stdout.includes('s3cret'));
  });

  it('warns of an UPDRAFT_* environment variable nothing reads, naming the one meant; the ones Updraft reads pass', () => {
    assert.deepEqual(
      unknownEnvironment({ UPDRAFT_MQTT_PROT: '1884', UPDRAFT_DATADIR: '/srv', UPDRAFT_STORE: 'pg', UPDRAFT_HTTP_PORT: '80', UPDRAFT_TOKEN: 't', UPDRAFT_TEST_LOG: '1', HOME: '/root' }),
      [
        'environment variable UPDRAFT_DATADIR is not an Updraft setting and is ignored (did you mean UPDRAFT_DATA_DIR?)',
        'environment variable UPDRAFT_MQTT_PROT is not an Updraft setting and is ignored (did you mean UPDRAFT_MQTT_PORT?)',
        'environment variable UPDRAFT_STORE is not an Updraft setting and is ignored',
      ],
    );
  });

  it('knows every UPDRAFT_* variable the source reads or documents in an option', () => {
    const root = path.resolve(import.meta.dirname, '../../src');
    const known = new Set([...SETTINGS.map((s) => s.env), ...CLIENT_ENVIRONMENT]);
    const named = new Set<string>();
    for (const f of readdirSync(root, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(path.join(root, f), 'utf8');
      for (const m of text.matchAll(/process\.env\.(UPDRAFT_[A-Z_]+)|\benv (UPDRAFT_[A-Z_]+)|\b(UPDRAFT_[A-Z_]+): /g)) named.add((m[1] ?? m[2] ?? m[3])!);
    }
    assert.ok(named.has('UPDRAFT_BROKER') && named.has('UPDRAFT_SLOT'), 'the scan finds what the agent reads and gives its hooks');
    assert.deepEqual([...named].filter((n) => !known.has(n)), [], 'read but warned about as unknown');
  });

  it('updraft server and updraft config warn of a misspelt UPDRAFT_* variable and go on', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'updraft-cfg-'));
    const env = { UPDRAFT_MQTT_PROT: '1884' };
    const shown = await runCli(['config'], { env });
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal(shown.stderr, 'updraft: warning: environment variable UPDRAFT_MQTT_PROT is not an Updraft setting and is ignored (did you mean UPDRAFT_MQTT_PORT?)\n');
    const server = startCli(['server', '--data-dir', path.join(dir, 'data'), '--mqtt-port', '0', '--mqtt-tls-port', '-1', '--http-port', '0', '--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1'], { env });
    try {
      await server.waitFor(/updraft: data in /);
      assert.match(server.output(), /WARN +environment variable UPDRAFT_MQTT_PROT is not an Updraft setting and is ignored \(did you mean UPDRAFT_MQTT_PORT\?\)/);
    } finally {
      await server.kill('SIGTERM');
    }
  });

  it("checks the blob URL's parameters with every other setting: a typo in one is a usage error reported with the rest", () => {
    assert.throws(
      () => loadConfig({ flags: { blob: 's3://firmware?endpoint=http://127.0.0.1:9000&pathStyel=true', 'mqtt-port': 70000 } }),
      (err: Error & { status?: number }) => {
        assert.equal(err.status, 400, 'a usage error');
        assert.equal(
          err.message,
          'invalid configuration: mqtt.port (flag --mqtt-port) must be at most 65535, got 70000; ' +
            'blob (flag --blob): blob URL has unknown parameters pathStyel; known: endpoint, region, pathStyle, create',
        );
        return true;
      },
    );
    assert.throws(() => loadConfig({ env: { UPDRAFT_BLOB: 's3://firmware?create=yes' } }), /blob \(env UPDRAFT_BLOB\): blob URL parameter create must be true or false, got yes/);
    assert.equal(loadConfig({ flags: { blob: 's3://firmware/p?endpoint=http://127.0.0.1:9000&pathStyle=true&create=true' } }).blob, 's3://firmware/p?endpoint=http://127.0.0.1:9000&pathStyle=true&create=true');
  });
});
