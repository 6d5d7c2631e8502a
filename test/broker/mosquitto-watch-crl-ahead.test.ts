/**
 * `updraft broker mosquitto-config --watch` after a server clock more than a day ahead is set
 * right: the list the watch holds was issued ahead (thisUpdate in the future: OpenSSL calls it
 * "not yet valid" and refuses every certificate of its CA). The server issues a new list by
 * its corrected clock for the same revocations (pki/revocation-list.ts crlFile), but it
 * answers an If-None-Match of the same revocations with 304, so the watch kept the list from
 * ahead until the next revocation or its own restart. Now it sends no If-None-Match for a
 * list issued more than 23 hours ahead (crl-order.ts issuedAhead).
 *
 * A real `updraft server` process whose wall clock test/helpers/clock-step-preload.mjs steps,
 * a real watch process on the real clock, `openssl crl` reading what it wrote.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import { eventually, runCli, startCli } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';
import { Scratch } from '../helpers/scratch.ts';

const PRELOAD = fileURLToPath(new URL('../helpers/clock-step-preload.mjs', import.meta.url));
const HOUR = 3_600_000;
const run = promisify(execFile);

/** thisUpdate (ms) of the CRL in `file` (one CA: one list), as OpenSSL reads it, and how many lists the file holds. */
async function lastUpdate(file: string): Promise<{ at: number; lists: number }> {
  const { stdout } = await run('openssl', ['crl', '-in', file, '-noout', '-lastupdate']);
  return { at: Date.parse(stdout.trim().replace(/^lastUpdate=/, '')), lists: ((await readFile(file, 'utf8')).match(/BEGIN X509 CRL/g) ?? []).length };
}

describe('--watch: a CRL held from a server clock ahead, once the clock is set right', () => {
  const scratch = new Scratch();
  after(() => scratch.release());

  it('the watch asks for the list again without If-None-Match and writes one OpenSSL takes now', async () => {
    const dir = await scratch.tmp('updraft-crl-ahead-');
    const data = path.join(dir, 'data');
    const init = await runCli(['ca', 'init', '--data-dir', data]);
    assert.equal(init.code, 0, `ca init: ${init.stderr}`);
    const clockFile = path.join(dir, 'clock-step');
    await writeFile(clockFile, String(30 * HOUR)); // the server's clock 30 h ahead
    const port = await freePort();
    const server = startCli(
      ['server', '--data-dir', data, '--http-port', String(port), '--mqtt-port', String(await freePort()), '--mqtt-tls-port', '-1', '--http-host', '127.0.0.1', '--mqtt-host', '127.0.0.1'],
      { env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${PRELOAD}`, UPDRAFT_TEST_CLOCK_STEP_FILE: clockFile } },
    );
    scratch.onRelease(() => server.kill('SIGTERM'));
    const url = `http://127.0.0.1:${port}`;
    await eventually(async () => ((await fetch(`${url}/readyz`).then((r) => r.ok, () => false)) || undefined), 60_000, 'server ready');
    const token = (await readFile(path.join(data, 'operator-token'), 'utf8')).trim();
    const api = async (method: string, route: string, body?: unknown) => {
      const res = await fetch(url + route, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
      const text = await res.text();
      assert.ok(res.ok, `${method} ${route}: ${res.status} ${text}`);
    };
    for (const id of ['k-a', 'k-gone']) {
      await api('POST', '/api/v1/devices', { deviceId: id });
      await api('POST', `/api/v1/devices/${id}/certificate`);
    }
    await api('DELETE', '/api/v1/devices/k-gone'); // revoked: the list issued now is issued 30 h ahead

    const out = path.join(dir, 'out');
    const crl = path.join(out, 'crl.pem');
    // a full read every 3 s, each asking for the CRL
    const watch = startCli(['broker', 'mosquitto-config', '--watch', '--out', out, '--tls-cert', '/nonexistent/server.crt', '--tls-key', '/nonexistent/server.key', '--updraft-ca', '--data-dir', data, '--resync-minutes', '0.05', '--server', url, '--token', token]);
    scratch.onRelease(() => watch.kill('SIGTERM'));
    await watch.waitFor(/crlfile written/);
    const ahead = await lastUpdate(crl);
    assert.ok(ahead.lists === 1 && ahead.at > Date.now() + 5 * HOUR, `the list written is from the clock 30 h ahead (thisUpdate 6 h in the future): ${new Date(ahead.at).toISOString()}, ${ahead.lists} list(s)`);

    await writeFile(clockFile, '0'); // the server's clock set right, no restart
    const said = watch.output().length;
    try {
      await eventually(async () => {
        const t = await lastUpdate(crl);
        return t.lists === 1 && t.at <= Date.now() ? true : undefined;
      }, 45_000, 'crl.pem replaced by a list OpenSSL takes now');
    } catch (err) {
      throw new Error(`${(err as Error).message}; thisUpdate ${new Date((await lastUpdate(crl)).at).toISOString()}; the watch said: ${watch.output().slice(said)}`);
    }
    const { stdout } = await run('openssl', ['crl', '-in', crl, '-noout', '-text']);
    assert.equal((stdout.match(/Serial Number:/g) ?? []).length, 1, `the new list still revokes k-gone's certificate: ${stdout}`);
    assert.match(watch.output().slice(said), /crlfile written/, 'the watch wrote it');
    await watch.kill('SIGTERM');
  });
});
