/**
 * http.publicUrl is the base of every download URL (`<publicUrl>/v1/download/...?sig=...`):
 * anything but an absolute http(s) URL with a host and a valid port is refused at start and by
 * `updraft config` (one line, exit 2), where it once started fine and every download failed.
 * A path prefix (a reverse proxy that strips it) is kept.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { UrlSigner } from '../../src/artifacts/url-signer.ts';
import { loadConfig } from '../../src/config/load-config.ts';
import { UpdraftError } from '../../src/errors.ts';
import { runCli, startCli } from '../helpers/cli.ts';

const exitCode = (child: ChildProcess): Promise<number | null> =>
  child.exitCode !== null || child.signalCode !== null ? Promise.resolve(child.exitCode) : once(child, 'exit').then(([code]) => code as number | null);

const refusal = (value: string): string => {
  try {
    loadConfig({ flags: { 'public-url': value } });
  } catch (err) {
    assert.ok(err instanceof UpdraftError && err.code === 'CONFIG' && err.status === 400);
    return err.message;
  }
  assert.fail(`${value} was taken`);
};

describe('http.publicUrl', () => {
  it('refuses what no device can download from, saying why', () => {
    const cases: [string, RegExp][] = [
      ['notaurl', /does not start with http:\/\/ or https:\/\/ and a host: got "notaurl"/],
      ['http://updates.example.com:80800', /port 80800 is not from 1 to 65535/],
      ['http://updates.example.com:0', /port 0 is not from 1 to 65535/],
      ['ftp://updates.example.com', /does not start with http:\/\/ or https:\/\//],
      ['updates.example.com:8080', /does not start with http:\/\/ or https:\/\//],
      ['http:updates.example.com', /does not start with http:\/\/ or https:\/\//],
      ['https://updates.example.com/?x=1', /has a query/],
      ['https://updates.example.com/fw?', /has a query/],
      ['https://updates.example.com/#top', /has a fragment/],
      ['https://ops:hunter2@updates.example.com', /user info/],
      ['https://updates.example.com /fw', /white space/],
    ];
    for (const [value, why] of cases) {
      const message = refusal(value);
      assert.match(message, /^invalid configuration: http\.publicUrl \(flag --public-url\) must be an absolute http:\/\/ or https:\/\/ URL/, value);
      assert.match(message, why, value);
      assert.ok(!message.includes('hunter2'), message);
    }
  });

  it('is reported with every other error at once, from the environment too', () => {
    assert.throws(
      () => loadConfig({ env: { UPDRAFT_PUBLIC_URL: 'http://updates.example.com:80800', UPDRAFT_LOG_LEVEL: 'loud' } }),
      (err: unknown) => {
        assert.match((err as Error).message, /http\.publicUrl \(env UPDRAFT_PUBLIC_URL\) .*port 80800/);
        assert.match((err as Error).message, /logLevel \(env UPDRAFT_LOG_LEVEL\)/);
        return true;
      },
    );
  });

  it('takes http and https URLs with a port and a path prefix, and download URLs keep the prefix', () => {
    for (const value of ['', 'http://updates.example.com', 'http://10.0.0.5:8080', 'https://[2001:db8::1]:8443', 'https://cdn.example.com/updraft/', 'HTTPS://CDN.example.com/a/b']) {
      assert.equal(loadConfig({ flags: { 'public-url': value } }).http.publicUrl, value);
    }
    const base = loadConfig({ flags: { 'public-url': 'https://cdn.example.com/updraft/' } }).http.publicUrl;
    const signer = new UrlSigner({ keys: [{ kid: 'k1', secret: Buffer.alloc(32, 1) }], baseUrl: base });
    const url = new URL(signer.sign({ deviceId: 'dev-1', name: 'fw', version: '1.0.0', sha256: 'a'.repeat(64), expiresAt: 2_000_000_000 }));
    assert.equal(`${url.origin}${url.pathname}`, 'https://cdn.example.com/updraft/v1/download/fw/1.0.0');
    assert.equal(url.searchParams.get('device'), 'dev-1');
  });

  it('updraft server and updraft config refuse it in one line with exit code 2', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'updraft-public-url-'));
    // started in the background: a server that takes the setting serves until it is stopped
    const server = startCli(['server', '--public-url', 'notaurl', '--data-dir', path.join(dir, 'data'), '--http-host', '127.0.0.1', '--http-port', '0', '--mqtt-host', '127.0.0.1', '--mqtt-port', '0', '--mqtt-tls-port', '-1']);
    await server.waitFor(/invalid configuration|HTTP API and downloads on/);
    // refused: it ends by itself; taken: it is stopped, and the assertions below say so
    const code = server.output().includes('invalid configuration') ? await exitCode(server.child) : await server.kill();
    assert.match(server.output(), /^updraft: error: invalid configuration: http\.publicUrl \(flag --public-url\) must be an absolute http:\/\/ or https:\/\/ URL .*: got "notaurl"\n$/);
    assert.equal(code, 2, server.output());
    const config = await runCli(['config'], { env: { UPDRAFT_PUBLIC_URL: 'http://updates.example.com:80800' } });
    assert.equal(config.code, 2, config.stderr);
    assert.match(config.stderr, /^updraft: error: invalid configuration: http\.publicUrl \(env UPDRAFT_PUBLIC_URL\) .*port 80800 is not from 1 to 65535.*\n$/);
    assert.equal(config.stdout, '');
  });
});
