/**
 * What the configuration loader takes and what its errors show (QA): no password of a URL
 * that does not parse, no secret of the wrong type, no text of a file that is no JSON; an
 * empty environment variable is one not set; integers are decimal digits; a text setting
 * that cannot be empty is refused empty.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { jsonSyntaxError, loadConfig, redactedConfig } from '../../src/config/load-config.ts';
import { SETTINGS } from '../../src/config/schema.ts';
import { runCli } from '../helpers/cli.ts';

/** The message loadConfig throws (it must throw). */
function configError(sources: Parameters<typeof loadConfig>[0]): string {
  try {
    loadConfig(sources);
  } catch (err) {
    return (err as Error).message;
  }
  assert.fail('the configuration was taken');
}

function file(content: string): string {
  const f = path.join(mkdtempSync(path.join(os.tmpdir(), 'updraft-cfg-')), 'updraft.json');
  writeFileSync(f, content);
  return f;
}

describe('configuration input', () => {
  it("never shows the password of a URL that does not parse, whatever the password holds ('/', '?', '#', '@')", () => {
    const db = configError({ env: { UPDRAFT_DB: 'postgres://u:pa/ss@host/db' } });
    assert.equal(db, 'invalid configuration: db (env UPDRAFT_DB) must be a URL like postgres://..., got "postgres://u:***@host/db"');
    const mqtt = configError({ env: { UPDRAFT_MQTT_URL: 'mqtt://operator:tok/en@host' } });
    assert.equal(mqtt, 'invalid configuration: mqtt.url (env UPDRAFT_MQTT_URL) must be a URL like mqtt://..., got "mqtt://operator:***@host"');
    // refused (the URL does not parse) or taken (it parses, the authority ended inside the
    // password: 'x@y/z' as password x and host y, '123/ss' as port 123), never shown
    for (const password of ['a/b?c#d', 'p/9', 'x@y/z', '123/ss']) {
      const flags = { db: `postgres://app:${password}@db:5432/updraft`, 'mqtt-url': `mqtt://operator:${password}@broker` };
      let text: string;
      try {
        text = JSON.stringify(redactedConfig(loadConfig({ flags })));
      } catch (err) {
        text = (err as Error).message;
      }
      assert.ok(!text.includes(password) && !text.includes(password.slice(0, 3)), text);
      assert.ok(text.includes('postgres://app:***@db:5432/updraft') && text.includes('mqtt://operator:***@broker'), text);
    }
  });

  it('never shows the value of a secret setting of the wrong type: says what kind of value it is', () => {
    for (const [value, kind] of [[123456789, 'a number'], [['s3cr3t-value'], 'an array'], [{ key: 's3cr3t-value' }, 'an object'], [true, 'a boolean']] as const) {
      const f = file(JSON.stringify({ webhook: { secret: value } }));
      assert.equal(configError({ file: f }), `invalid configuration: webhook.secret (file ${f}) must be a string, got ${kind} (not shown: it is a secret)`);
    }
    const flag = configError({ flags: { 'webhook-secret': 987654321 } });
    assert.equal(flag, 'invalid configuration: webhook.secret (flag --webhook-secret) must be a string, got a number (not shown: it is a secret)');
    // nor one written in place of its group
    const group = file(JSON.stringify({ webhook: 's3cr3t-value' }));
    const m = configError({ file: group });
    assert.ok(m.includes('webhook must be an object of settings (webhook.url, webhook.secret, webhook.previousSecret), got a string (not shown: it may be a secret)') && !m.includes('s3cr3t'), m);
  });

  it("reports a file that is no JSON by line and column, never quoting it (Node 20's JSON.parse quotes the text)", () => {
    const secret = 's3cr3t-hmac-key-0123456789';
    const f = file(`{"webhook": {"url": "",\n  "secret": ${secret}}}`);
    assert.equal(configError({ file: f }), `invalid configuration: config file ${f} is not valid JSON: a value is expected (text is written in double quotes) at line 2, column 13`);
    // the forms where Node gives a position: taken from it
    const comma = file('{\n  "http": {"port": 8080,}\n}');
    assert.equal(configError({ file: comma }), `invalid configuration: config file ${comma} is not valid JSON: a property name in double quotes is expected at line 2, column 25`);
    const cut = file('{"webhook": {"secret": "s3cr3t');
    assert.equal(configError({ file: cut }), `invalid configuration: config file ${cut} is not valid JSON: a string is not closed at line 1, column 31`);
  });

  it('finds the offset JSON.parse reports, for every fault it gives one for', () => {
    const cases = ['{"a":1,}', '{"a":1} x', '{"a":"b\u0001"}', '{a:1}', '{"a":"\\q"}', '{"a": 01}', '{"a": -}', '{"a": 1.}', '[1 2]', '{"a" 1}', '{"a": 1e}', '{"a":"\\u12G4"}'];
    for (const text of cases) {
      const node = /at position (\d+)/.exec((() => { try { JSON.parse(text); } catch (e) { return (e as Error).message; } return ''; })())?.[1];
      assert.ok(node !== undefined, `Node gives a position for ${text}`);
      assert.equal(jsonSyntaxError(text)?.offset, Number(node), text);
    }
    for (const text of ['{}', '[]', ' {"a": [1, -2.5e3, true, false, null, "x\\n\\u00e9"], "b": {}} ', '"x"', '0']) assert.equal(jsonSyntaxError(text), undefined, text);
    assert.deepEqual(jsonSyntaxError('{"a": tru}'), { offset: 6, reason: 'a value is expected (text is written in double quotes)' });
    assert.equal(jsonSyntaxError('\ufeff{}')?.reason, 'a byte order mark (save the file as UTF-8 without one)');
  });

  it('takes an empty environment variable as one not set, for every setting: the file or the default applies', () => {
    const empty = Object.fromEntries(SETTINGS.map((s) => [s.env, '']));
    assert.deepEqual(loadConfig({ env: empty }), loadConfig({}));
    const c = loadConfig({ env: { UPDRAFT_DATA_DIR: '', UPDRAFT_HTTP_HOST: '', UPDRAFT_MQTT_SHARE_GROUP: '', UPDRAFT_HTTP_PORT: '', UPDRAFT_LOG_LEVEL: '' } });
    assert.deepEqual([c.dataDir, c.http.host, c.mqtt.shareGroup, c.http.port, c.logLevel], ['./data', '0.0.0.0', 'updraft', 8080, 'info']);
    const f = file(JSON.stringify({ dataDir: '/srv/updraft', http: { port: 9090 } }));
    const fromFile = loadConfig({ file: f, env: { UPDRAFT_DATA_DIR: '', UPDRAFT_HTTP_PORT: '' } });
    assert.deepEqual([fromFile.dataDir, fromFile.http.port], ['/srv/updraft', 9090]);
  });

  it('refuses a flag or a file value that is empty for a setting that cannot be (data dir, hosts, share group), in one line each', () => {
    assert.equal(
      configError({ flags: { 'data-dir': '', 'mqtt-share-group': '' } }),
      'invalid configuration: dataDir (flag --data-dir) must not be empty: it would put the store, the keys and the operator token in the working directory; name a directory; ' +
        'mqtt.shareGroup (flag --mqtt-share-group) must not be empty: it names the group in $share/<group>/...; leave it out for the default, updraft',
    );
    const f = file(JSON.stringify({ mqtt: { host: '' }, http: { host: ' ' }, tls: { hosts: '' } }));
    const m = configError({ file: f });
    for (const p of ['mqtt.host', 'http.host', 'tls.hosts']) assert.ok(m.includes(`${p} (file ${f}) must not be empty`), m);
    // a setting that may be empty still may: '' is the embedded store
    assert.equal(loadConfig({ file: file(JSON.stringify({ db: 'postgres://u@h/d' })), flags: { db: '' } }).db, '');
  });

  it("refuses tls.hosts entries that are neither an IP address nor a host name, and a share group MQTT cannot name, in one line each", async () => {
    // they went into the server certificate as DNS names no device matches / split $share/<group>/ elsewhere
    for (const bad of ['bad host!', '1.2.3.999', 'a.b..', '-x-.example.com', 'a..b', 'host name', '[::1]', `${'a'.repeat(64)}.com`]) {
      assert.equal(
        configError({ flags: { 'tls-hosts': `localhost, ${bad}` } }),
        `invalid configuration: tls.hosts (flag --tls-hosts) has ${JSON.stringify(bad)}, which is neither an IP address nor a host name (letters, digits and hyphens in dot-separated labels, a leading *. allowed); separate entries with commas`,
        bad,
      );
    }
    const good = 'localhost, 127.0.0.1,::1,fe80::1,updates.example.com,*.fleet.example.com,10-0-0-1.nip.io,x1,updraft_server,updates.example.com.';
    assert.equal(loadConfig({ flags: { 'tls-hosts': good } }).tls.hosts, good);
    for (const bad of ['a/b', 'grp+', '#']) {
      assert.equal(configError({ env: { UPDRAFT_MQTT_SHARE_GROUP: bad } }), `invalid configuration: mqtt.shareGroup (env UPDRAFT_MQTT_SHARE_GROUP) must not hold /, + or # (an MQTT share name cannot: $share/<group>/<filter>), got ${JSON.stringify(bad)}`);
    }
    assert.equal(loadConfig({ flags: { 'mqtt-url': 'mqtt://broker:1883', 'mqtt-share-group': 'updraft-eu_1' } }).mqtt.shareGroup, 'updraft-eu_1');
    // the server refuses to start, in that one line, before it writes anything
    const dir = mkdtempSync(path.join(os.tmpdir(), 'updraft-tls-hosts-'));
    const r = await runCli(['server', '--data-dir', path.join(dir, 'data'), '--tls-hosts', 'updates.example.com,bad host!']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^updraft: error: invalid configuration: tls\.hosts \(flag --tls-hosts\) has "bad host!", which is neither an IP address nor a host name [^\n]*\n$/);
    assert.equal(existsSync(path.join(dir, 'data')), false, 'nothing written');
  });

  it('reads integers as decimal digits only, a minus sign only where the setting allows negatives', () => {
    for (const raw of ['0x1F90', '1e3', '8080.0', '0b11', ' 5', '+80', '', '80 ']) {
      assert.equal(configError({ flags: { 'http-port': raw } }), `invalid configuration: http.port (flag --http-port) must be an integer written in decimal digits, got ${JSON.stringify(raw)}`, raw);
    }
    assert.equal(configError({ env: { UPDRAFT_HTTP_PORT: '-1' } }), 'invalid configuration: http.port (env UPDRAFT_HTTP_PORT) must be at least 0, got -1');
    assert.equal(configError({ flags: { 'max-artifact-bytes': '99999999999999999999' } }), 'invalid configuration: downloads.maxArtifactBytes (flag --max-artifact-bytes) must be at most 9007199254740991, got 99999999999999999999');
    const c = loadConfig({ flags: { 'mqtt-tls-port': '-1', 'http-port': '08080' }, env: { UPDRAFT_MQTT_PORT: '1884' } });
    assert.deepEqual([c.mqtt.tlsPort, c.http.port, c.mqtt.port], [-1, 8080, 1884]);
    assert.equal(loadConfig({ flags: { 'http-port': 0 } }).http.port, 0, 'a number given by a caller (updraft demo) is taken');
    assert.equal(configError({ flags: { 'http-port': 80.5 } }), 'invalid configuration: http.port (flag --http-port) must be an integer, got 80.5');
  });

  it('refuses an integer written as a string in the file, saying so', () => {
    const f = file(JSON.stringify({ http: { port: '4444' } }));
    assert.equal(configError({ file: f }), `invalid configuration: http.port (file ${f}) must be an integer, written as a JSON number without quotes; the file holds the string "4444"`);
  });

  it("refuses --config '' instead of ignoring it", () => {
    assert.equal(configError({ file: '' }), "invalid configuration: config file: the name given is empty: name a JSON file, or leave --config out");
  });

  it('updraft config: a password with / and a secret of the wrong type are not printed; exit 2 and one line', async () => {
    const url = await runCli(['config'], { env: { UPDRAFT_DB: 'postgres://u:pa/ss@host/db', UPDRAFT_MQTT_URL: 'mqtt://operator:tok/en@host' } });
    assert.equal(url.code, 2, url.stderr);
    assert.equal(
      url.stderr,
      'updraft: error: invalid configuration: mqtt.url (env UPDRAFT_MQTT_URL) must be a URL like mqtt://..., got "mqtt://operator:***@host"; db (env UPDRAFT_DB) must be a URL like postgres://..., got "postgres://u:***@host/db"\n',
    );
    for (const text of ['pa/ss', 'tok/en']) assert.ok(!url.stdout.includes(text) && !url.stderr.includes(text), text);

    const f = file(JSON.stringify({ webhook: { secret: 123456789 } }));
    const secret = await runCli(['config', '--config', f]);
    assert.equal(secret.code, 2, secret.stderr);
    assert.equal(secret.stderr, `updraft: error: invalid configuration: webhook.secret (file ${f}) must be a string, got a number (not shown: it is a secret)\n`);
    assert.ok(!secret.stdout.includes('123456789') && !secret.stderr.includes('123456789'));

    const broken = file('{"webhook": {"url": "", "secret": s3cr3t-hmac-key-0123456789}}');
    const json = await runCli(['config', '--config', broken]);
    assert.equal(json.code, 2, json.stderr);
    assert.ok(!json.stdout.includes('s3cr3t') && !json.stderr.includes('s3cr3t'), json.stderr);

    const noName = await runCli(['config', '--config', '']);
    assert.deepEqual([noName.code, noName.stderr], [2, "updraft: error: invalid configuration: config file: the name given is empty: name a JSON file, or leave --config out\n"]);

    const empty = await runCli(['config'], { env: { UPDRAFT_DATA_DIR: '', UPDRAFT_HTTP_PORT: '' } });
    assert.equal(empty.code, 0, empty.stderr);
    const shown = JSON.parse(empty.stdout) as { dataDir: string; http: { port: number } };
    assert.deepEqual([shown.dataDir, shown.http.port], ['./data', 8080]);
  });
});
