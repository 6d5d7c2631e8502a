/**
 * `updraft broker mosquitto-config --watch` and lists issued by a server clock far ahead.
 * - More than a day ahead, then set right: the list the watch holds has its thisUpdate in the
 *   future (OpenSSL: "not yet valid", every certificate of its CA refused). The server issues a
 *   new list by its corrected clock for the same revocations (pki/revocation-list.ts crlFile),
 *   but answered an If-None-Match of the same revocations with 304, so the watch kept the list
 *   from ahead until the next revocation or its own restart. Now it sends no If-None-Match for
 *   a list OpenSSL does not take yet (crl-order.ts notYetValid), and writes the one that comes.
 * - 23.5 h ahead (review of 0675827): the list is in force (thisUpdate half an hour ago), and
 *   the watch goes on asking with If-None-Match (304s, one write): the first version of the
 *   fix asked without it for every list issued over 23 h ahead, and downloaded the whole list
 *   at every fetch.
 *
 * A real `updraft server` process whose wall clock test/helpers/clock-step-preload.mjs steps,
 * a real watch process on the real clock, `openssl crl` reading what it wrote, and a proxy
 * counting the CRL route's answers.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
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

/** A CA, a real server whose clock is `aheadMs` ahead, two devices with certificates and one of them deleted (its certificate revoked). */
async function steppedServer(scratch: Scratch, aheadMs: number) {
  const dir = await scratch.tmp('updraft-crl-ahead-');
  const data = path.join(dir, 'data');
  const init = await runCli(['ca', 'init', '--data-dir', data]);
  assert.equal(init.code, 0, `ca init: ${init.stderr}`);
  const clockFile = path.join(dir, 'clock-step');
  await writeFile(clockFile, String(aheadMs));
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
  await api('DELETE', '/api/v1/devices/k-gone'); // revoked: the list issued now is issued ahead
  return { dir, data, url, token, clockFile };
}

/** A watch of `server` (through `via`, or directly) reading the registry in full every 3 s, each full read asking for the CRL. */
function startWatch(scratch: Scratch, s: { dir: string; data: string; url: string; token: string }, via = s.url) {
  const out = path.join(s.dir, 'out');
  const watch = startCli(['broker', 'mosquitto-config', '--watch', '--out', out, '--tls-cert', '/nonexistent/server.crt', '--tls-key', '/nonexistent/server.key', '--updraft-ca', '--data-dir', s.data, '--resync-minutes', '0.05', '--server', via, '--token', s.token]);
  scratch.onRelease(() => watch.kill('SIGTERM'));
  return { watch, crl: path.join(out, 'crl.pem') };
}

describe('--watch: CRLs issued by a server clock far ahead', () => {
  const scratch = new Scratch();
  after(() => scratch.release());

  it('a list more than a day ahead, once the clock is set right: asked for again without If-None-Match, and one OpenSSL takes now written', async () => {
    const s = await steppedServer(scratch, 30 * HOUR);
    const { watch, crl } = startWatch(scratch, s);
    await watch.waitFor(/crlfile written/);
    const ahead = await lastUpdate(crl);
    assert.ok(ahead.lists === 1 && ahead.at > Date.now() + 5 * HOUR, `the list written is from the clock 30 h ahead (thisUpdate 6 h in the future): ${new Date(ahead.at).toISOString()}, ${ahead.lists} list(s)`);

    await writeFile(s.clockFile, '0'); // the server's clock set right, no restart
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

  it('a list 23.5 h ahead, in force: the watch goes on asking with If-None-Match, gets 304s and writes it once', async () => {
    const s = await steppedServer(scratch, 23.5 * HOUR);
    // a proxy that notes each CRL answer's status and whether the request carried If-None-Match
    const answers: { status: number; tagged: boolean }[] = [];
    const to = new URL(s.url);
    const proxy = http.createServer((req, res) => {
      const up = http.request({ host: to.hostname, port: to.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
        if ((req.url ?? '').startsWith('/api/v1/broker/crl')) answers.push({ status: r.statusCode ?? 0, tagged: req.headers['if-none-match'] !== undefined });
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', () => resolve()));
    scratch.onRelease(() => new Promise<void>((resolve) => {
      proxy.closeAllConnections();
      proxy.close(() => resolve());
    }));
    const { watch, crl } = startWatch(scratch, s, `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`);
    await watch.waitFor(/crlfile written/);
    const held = await lastUpdate(crl);
    assert.ok(held.at < Date.now() && held.at > Date.now() - HOUR, `the list is from the clock 23.5 h ahead, in force (thisUpdate half an hour ago): ${new Date(held.at).toISOString()}`);
    // four more full reads, each asking for the CRL
    await eventually(async () => (answers.length >= 5 ? true : undefined), 60_000, `five CRL answers: ${JSON.stringify(answers)}`);
    await watch.kill('SIGTERM');
    assert.deepEqual(answers.slice(1, 5), Array(4).fill({ status: 304, tagged: true }), `after the first, the same list asked for with If-None-Match and not sent again: ${JSON.stringify(answers)}`);
    assert.equal((watch.output().match(/crlfile (re)?written/g) ?? []).length, 1, `crl.pem written once: ${watch.output()}`);
  });
});
