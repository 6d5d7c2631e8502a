/**
 * `updraft broker mosquitto-config --watch`: the reload that takes a deleted device out of
 * passwd (which alone cuts its password login) does not wait for a CRL that is still
 * downloading. The CRL a deletion owes is fetched in the same pass, and joins that pass's
 * one reload only if it comes within a short bound (mosquitto-watch.ts CRL_WITH_PASSWD_MS);
 * a later one takes a reload of its own (review of 2efa5c0: a 60 MB list over a slow link
 * held the reload for minutes; the request timeout is an idle limit, and a list that keeps
 * coming is never cut). Nor does a second deletion wait for the first one's CRL: the fetch and
 * write run as a task of their own beside the passes. A real server and a real watch process; a proxy in this file holds
 * the CRL's answer in the middle of its body until the test lets it go, so nothing here
 * depends on how fast the machine is.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { eventually, startCli } from '../helpers/cli.ts';
import { Scratch } from '../helpers/scratch.ts';
import { apiJson, registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

/** A proxy to `target`: while `holding`, an answer to a path under `prefix` stops after its head and 10 bytes, until `release()`. */
async function startHoldingProxy(target: string, prefix: string) {
  const to = new URL(target);
  const waiting: (() => void)[] = [];
  const state = { holding: false, held: 0 };
  const server = http.createServer((req, res) => {
    const hold = state.holding && (req.url ?? '').startsWith(prefix);
    const up = http.request({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      if (!hold) {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
        return;
      }
      const chunks: Buffer[] = [];
      answer.on('data', (c: Buffer) => chunks.push(c));
      answer.on('end', () => {
        const body = Buffer.concat(chunks);
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        res.write(body.subarray(0, 10));
        state.held++;
        waiting.push(() => res.end(body.subarray(10)));
      });
    });
    up.on('error', () => res.destroy());
    res.once('close', () => up.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    state,
    release: () => waiting.splice(0).forEach((go) => go()),
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function enrol(ts: TestServer, deviceId: string): Promise<void> {
  await registerDevice(ts, deviceId);
  const r = await apiJson(ts, 'POST', `/api/v1/devices/${deviceId}/certificate`);
  assert.equal(r.status, 201, `certificate of ${deviceId}: ${JSON.stringify(r.body)}`);
}

describe('--watch: a deletion\'s passwd reload and a CRL still downloading', () => {
  const scratch = new Scratch();
  after(() => scratch.release());

  it('passwd is reloaded without the deleted device while its CRL is held; the CRL, once in, takes a reload of its own', async () => {
    const ts = await startTestServer();
    scratch.onRelease(() => ts.close());
    for (const d of ['b-a', 'b-gone']) await enrol(ts, d);
    const proxy = await startHoldingProxy(ts.httpUrl, '/api/v1/broker/crl');
    scratch.onRelease(() => proxy.close());
    const out = path.join(await scratch.tmp('updraft-crl-bound-'), 'out');
    const log = path.join(path.dirname(out), 'reloads.log');
    // each reload logs whether passwd still admits b-gone, and which crl.pem it read
    const reload = `echo "$(grep -c '^b-gone:' passwd) $(cksum < crl.pem | cut -d' ' -f1)" >> ${log}`;
    const ca = ['--tls-cert', '/nonexistent/server.crt', '--tls-key', '/nonexistent/server.key', '--updraft-ca', '--data-dir', ts.dataDir];
    // an idle limit far above the test's waits: the held answer is not given up
    const watch = startCli(['broker', 'mosquitto-config', '--watch', '--out', out, ...ca, '--reload-command', reload, '--request-timeout-seconds', '120', '--server', proxy.url, '--token', ts.token]);
    scratch.onRelease(() => watch.kill('SIGTERM'));
    await watch.waitFor(/broker reloaded/);
    const lines = async () => (await readFile(log, 'utf8')).trim().split('\n').map((l) => l.split(' '));
    const [firstCount, crlBefore] = (await lines())[0]!;
    assert.equal(firstCount, '1', 'b-gone admitted by passwd at the first reload');
    const said = watch.output().length;

    proxy.state.holding = true;
    const r = await apiJson(ts, 'DELETE', '/api/v1/devices/b-gone');
    assert.ok(r.status === 200 || r.status === 204, `delete b-gone: ${r.status}`);
    try {
      await eventually(async () => ((await lines()).some(([n]) => n === '0') ? true : undefined), 30_000, 'a reload with b-gone out of passwd while its CRL is held');
    } catch (err) {
      throw new Error(`${(err as Error).message}; CRL answers held: ${proxy.state.held}; the watch said: ${watch.output().slice(said)}`);
    }
    const cut = (await lines()).find(([n]) => n === '0')!;
    assert.ok(proxy.state.held >= 1, 'the CRL answer of the deletion\'s pass is held');
    assert.equal(cut[1], crlBefore, 'that reload read crl.pem as it was: the CRL had not come');

    proxy.state.holding = false;
    proxy.release();
    await eventually(async () => ((await lines()).some(([n, crl]) => n === '0' && crl !== crlBefore) ? true : undefined), 30_000, `a reload after the CRL came: ${watch.output().slice(said)}`);
    const after = watch.output().slice(said);
    assert.match(after, /crlfile written/, `the CRL written once it came: ${after}`);
    assert.equal((await lines()).filter(([n]) => n === '0').length, 2, `two reloads for the deletion (passwd, then the CRL): ${JSON.stringify(await lines())}`);
    await watch.kill('SIGTERM');
  });

  it('the early passwd reload fails (Mosquitto down) while the CRL is held: the CRL that then comes is still written to crl.pem', async () => {
    const ts = await startTestServer();
    scratch.onRelease(() => ts.close());
    for (const d of ['b-a', 'b-gone']) await enrol(ts, d);
    const proxy = await startHoldingProxy(ts.httpUrl, '/api/v1/broker/crl');
    scratch.onRelease(() => proxy.close());
    const out = path.join(await scratch.tmp('updraft-crl-rfail-'), 'out');
    const dir = path.dirname(out);
    const log = path.join(dir, 'reloads.log');
    // each reload is logged (b-gone's count in passwd), and fails while the file `fail` exists
    const reload = `echo "$(grep -c '^b-gone:' passwd)" >> ${log}; test ! -e ${dir}/fail || { echo broker down >&2; exit 1; }`;
    const ca = ['--tls-cert', '/nonexistent/server.crt', '--tls-key', '/nonexistent/server.key', '--updraft-ca', '--data-dir', ts.dataDir];
    const watch = startCli(['broker', 'mosquitto-config', '--watch', '--out', out, ...ca, '--reload-command', reload, '--request-timeout-seconds', '120', '--server', proxy.url, '--token', ts.token]);
    scratch.onRelease(() => watch.kill('SIGTERM'));
    await watch.waitFor(/broker reloaded/);
    const lines = async () => (await readFile(log, 'utf8')).trim().split('\n');
    const crlBefore = await readFile(path.join(out, 'crl.pem'), 'utf8');
    const said = watch.output().length;

    await writeFile(path.join(dir, 'fail'), '');
    proxy.state.holding = true;
    const r = await apiJson(ts, 'DELETE', '/api/v1/devices/b-gone');
    assert.ok(r.status === 200 || r.status === 204, `delete b-gone: ${r.status}`);
    // the early reload (for passwd, at the 2 s bound) ran and failed while the CRL is held
    await eventually(async () => ((await lines()).includes('0') ? true : undefined), 30_000, `a reload tried with b-gone out of passwd: ${watch.output().slice(said)}`);
    await eventually(async () => (watch.output().slice(said).includes('could not bring') ? true : undefined), 30_000, 'the pass failed for its reload');
    assert.match(watch.output().slice(said), /broker down/, `the pass's failure is the reload's: ${watch.output().slice(said)}`);
    assert.ok(proxy.state.held >= 1, 'the CRL answer of the deletion\'s pass is held');
    assert.equal(await readFile(path.join(out, 'crl.pem'), 'utf8'), crlBefore, 'crl.pem as it was while its answer is held');
    proxy.state.holding = false;
    proxy.release(); // the whole CRL comes now, the broker still down
    await eventually(async () => ((await readFile(path.join(out, 'crl.pem'), 'utf8')) !== crlBefore ? true : undefined), 30_000, `crl.pem written while the reloads fail: ${watch.output().slice(said)}`);
    assert.match(watch.output().slice(said), /crlfile written/, `the CRL that came is written though the reloads fail (a Mosquitto restarted from disk reads it): ${watch.output().slice(said)}`);
    assert.ok((await readFile(path.join(dir, 'fail'), 'utf8')) === '', 'the broker is still down when crl.pem is written');

    // Mosquitto back: the reload owed runs, with the CRL already on disk
    const tried = (await lines()).length;
    await rm(path.join(dir, 'fail'));
    await eventually(async () => (/broker reloaded/.test(watch.output().slice(said)) ? true : undefined), 60_000, `the owed reload once the broker is back: ${watch.output().slice(said)}`);
    assert.ok((await lines()).length > tried, 'a reload ran after the broker came back');
    await watch.kill('SIGTERM');
  });

  it('a second deletion while the first one\'s CRL is held: passwd without it is reloaded at once; a CRL listing both follows', async () => {
    const ts = await startTestServer();
    scratch.onRelease(() => ts.close());
    for (const d of ['b-a', 'b-one', 'b-two']) await enrol(ts, d);
    const proxy = await startHoldingProxy(ts.httpUrl, '/api/v1/broker/crl');
    scratch.onRelease(() => proxy.close());
    const out = path.join(await scratch.tmp('updraft-crl-second-'), 'out');
    const log = path.join(path.dirname(out), 'reloads.log');
    // each reload logs whether passwd admits b-one and b-two, and how many serials crl.pem lists
    const reload = `echo "$(grep -c '^b-one:' passwd) $(grep -c '^b-two:' passwd) $(openssl crl -in crl.pem -noout -text | grep -c 'Serial Number:')" >> ${log}`;
    const ca = ['--tls-cert', '/nonexistent/server.crt', '--tls-key', '/nonexistent/server.key', '--updraft-ca', '--data-dir', ts.dataDir];
    const watch = startCli(['broker', 'mosquitto-config', '--watch', '--out', out, ...ca, '--reload-command', reload, '--request-timeout-seconds', '120', '--server', proxy.url, '--token', ts.token]);
    scratch.onRelease(() => watch.kill('SIGTERM'));
    await watch.waitFor(/broker reloaded/);
    const lines = async () => (await readFile(log, 'utf8')).trim().split('\n').map((l) => l.split(' '));
    assert.deepEqual((await lines())[0], ['1', '1', '0'], 'both admitted and none listed at the first reload');
    const said = watch.output().length;

    proxy.state.holding = true;
    const one = await apiJson(ts, 'DELETE', '/api/v1/devices/b-one');
    assert.ok(one.status === 200 || one.status === 204, `delete b-one: ${one.status}`);
    await eventually(async () => ((await lines()).some(([a]) => a === '0') ? true : undefined), 30_000, `a reload with b-one out of passwd: ${watch.output().slice(said)}`);
    assert.equal(proxy.state.held, 1, 'b-one\'s CRL is held');
    const two = await apiJson(ts, 'DELETE', '/api/v1/devices/b-two');
    assert.ok(two.status === 200 || two.status === 204, `delete b-two: ${two.status}`);
    try {
      await eventually(async () => ((await lines()).some(([, b]) => b === '0') ? true : undefined), 30_000, 'a reload with b-two out of passwd while b-one\'s CRL is held');
    } catch (err) {
      throw new Error(`${(err as Error).message}; reloads ${JSON.stringify(await lines())}; the watch said: ${watch.output().slice(said)}`);
    }
    assert.deepEqual((await lines()).find(([, b]) => b === '0'), ['0', '0', '0'], 'that reload read crl.pem as it was, listing none: b-one\'s CRL is still held');
    assert.equal(proxy.state.held, 1, 'one CRL answer held, none asked for beside it');

    proxy.state.holding = false;
    proxy.release();
    // b-one's list, then one asked for after it for b-two: two serials, one per deleted device
    await eventually(async () => ((await lines()).some(([, , n]) => n === '2') ? true : undefined), 30_000, `a reload with a CRL listing both: ${JSON.stringify(await lines())} ${watch.output().slice(said)}`);
    await watch.kill('SIGTERM');
  });

  it('SIGTERM in a deletion\'s pass after passwd is written, while its CRL is held: the reload owed runs before the watch exits', async () => {
    const ts = await startTestServer();
    scratch.onRelease(() => ts.close());
    for (const d of ['b-a', 'b-gone']) await enrol(ts, d);
    const proxy = await startHoldingProxy(ts.httpUrl, '/api/v1/broker/crl');
    scratch.onRelease(() => proxy.close());
    const out = path.join(await scratch.tmp('updraft-crl-term-'), 'out');
    const log = path.join(path.dirname(out), 'reloads.log');
    const reload = `echo "$(grep -c '^b-gone:' passwd)" >> ${log}`;
    const ca = ['--tls-cert', '/nonexistent/server.crt', '--tls-key', '/nonexistent/server.key', '--updraft-ca', '--data-dir', ts.dataDir];
    const watch = startCli(['broker', 'mosquitto-config', '--watch', '--out', out, ...ca, '--reload-command', reload, '--request-timeout-seconds', '120', '--server', proxy.url, '--token', ts.token]);
    scratch.onRelease(() => watch.kill('SIGTERM'));
    await watch.waitFor(/broker reloaded/);
    const said = watch.output().length;
    proxy.state.holding = true;
    const r = await apiJson(ts, 'DELETE', '/api/v1/devices/b-gone');
    assert.ok(r.status === 200 || r.status === 204, `delete b-gone: ${r.status}`);
    await eventually(async () => (!(await readFile(path.join(out, 'passwd'), 'utf8')).includes('b-gone:') ? true : undefined), 30_000, 'passwd written without b-gone');
    const code = await watch.kill('SIGTERM');
    const reloads = (await readFile(log, 'utf8')).trim().split('\n');
    const after = watch.output().slice(said);
    assert.equal(code, 0, `the watch exits 0 on SIGTERM: ${after}`);
    assert.ok(reloads.includes('0'), `the broker was reloaded with b-gone out of passwd before the watch exited: reloads ${JSON.stringify(reloads)}; the watch said: ${after}`);
    assert.doesNotMatch(after, /crlfile written/, `the held CRL is not written after the stop: ${after}`);
  });
});
