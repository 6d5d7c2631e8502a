/**
 * `updraft broker mosquitto-config --watch --request-timeout-seconds`: a server (or a proxy in
 * front of it) that takes a request of a pass and never answers, or stops in the middle of
 * the answer, no longer holds the watch up for undici's 300 s: the request is given up after
 * the timeout, said in one WARN line naming its path and the timeout, and the pass is tried
 * again; once the server answers, the change (a deletion) reaches the files. A large answer
 * that keeps coming, slower than the timeout in all, is not cut (the body's limit is an idle
 * one, with a floor on its rate far below it). SIGTERM while a request is held ends the watch
 * at once, writing and reloading nothing after it (review of 090236f). A real server and a
 * real watch process; the shared holding proxy (test/helpers/holding-proxy.ts) does the stalling.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { eventually, runCli, startCli, type CliProcess } from '../helpers/cli.ts';
import { enrolWithCertificate, startHoldingProxy, type HoldingProxy } from '../helpers/holding-proxy.ts';
import { Scratch } from '../helpers/scratch.ts';
import { apiJson, startTestServer, type TestServer } from '../helpers/server.ts';

async function remove(ts: TestServer, deviceId: string): Promise<void> {
  const r = await apiJson(ts, 'DELETE', `/api/v1/devices/${deviceId}`);
  assert.ok(r.status === 200 || r.status === 204, `delete ${deviceId}: ${r.status} ${JSON.stringify(r.body)}`);
}

/** `eventually`, its failure saying what the watch logged until then (not only when the wait began). */
async function until(watch: CliProcess, from: number, what: string, fn: () => Promise<true | undefined>): Promise<void> {
  try {
    await eventually(fn, 30_000, what);
  } catch (err) {
    throw new Error(`${(err as Error).message}; the watch said: ${watch.output().slice(from)}`);
  }
}

/** The first match of `re` in what the watch said after `from` (not an earlier line of the same kind), waiting for it. */
async function saidAfter(watch: CliProcess, from: number, re: RegExp, what: string): Promise<RegExpMatchArray> {
  let m: RegExpMatchArray | null = null;
  await until(watch, from, what, async () => ((m = watch.output().slice(from).match(re)) ? true : undefined));
  return m!;
}

/** The timeout the watches here are given, in seconds: short, so that a hang is seen quickly. */
const TIMEOUT_S = 2;

describe('mosquitto-config --watch --request-timeout-seconds: a request of a pass without an answer is given up and the pass tried again', () => {
  const scratch = new Scratch();
  after(() => scratch.release());

  /** A watch of a fresh server through a proxy stalling requests to `prefix`, its first pass done. */
  async function setup(prefix: string, devices: string[], updraftCa: boolean): Promise<{ ts: TestServer; proxy: HoldingProxy; watch: CliProcess; out: string }> {
    const ts = await startTestServer();
    scratch.onRelease(() => ts.close());
    for (const d of devices) await enrolWithCertificate(ts, d);
    const proxy = await startHoldingProxy(ts.httpUrl, prefix);
    scratch.onRelease(() => proxy.close());
    const out = path.join(await scratch.tmp('updraft-watch-timeout-'), 'out');
    const ca = updraftCa ? ['--tls-cert', '/nonexistent/server.crt', '--tls-key', '/nonexistent/server.key', '--updraft-ca', '--data-dir', ts.dataDir] : [];
    const watch = startCli(['broker', 'mosquitto-config', '--watch', '--out', out, ...ca, '--reload-command', 'true', '--request-timeout-seconds', String(TIMEOUT_S), '--server', proxy.url, '--token', ts.token]);
    scratch.onRelease(() => watch.kill('SIGTERM'));
    await watch.waitFor(/broker reloaded/);
    return { ts, proxy, watch, out };
  }

  it('a device page that never answers: WARN naming the path and the timeout, the pass tried again, the deletion reaches passwd once the server answers', async () => {
    const { ts, proxy, watch, out } = await setup('/api/v1/broker/credentials?ids=', ['t-a', 't-b'], false);
    const passwd = () => readFile(path.join(out, 'passwd'), 'utf8');
    assert.match(await passwd(), /^t-b:/m, 't-b admitted before its deletion');
    const said = watch.output().length;
    proxy.state.hanging = true;
    await remove(ts, 't-b');
    // the event's read of t-b hangs: given up after the timeout, said in one line
    const [line] = await saidAfter(watch, said, /^.*WARN.*could not bring the password file up to date.*$/m, 'the WARN of the held read');
    assert.match(line, /GET \/api\/v1\/broker\/credentials: no answer from http:\/\/127\.0\.0\.1:\d+ within the request timeout of 2 s/, `the WARN line names the path and the timeout: ${line}`);
    assert.doesNotMatch(line, /ids=|t-b/, `the path without its query: ${line}`);
    assert.ok(proxy.state.hung >= 1, 'the read was held by the proxy');
    assert.match(await passwd(), /^t-b:/m, 'passwd as it was while the read cannot be made');
    // the stall lifted: the pass tried again (its backoff) reads t-b gone
    proxy.state.hanging = false;
    await until(watch, said, 't-b out of passwd once the server answers', async () => (!/^t-b:/m.test(await passwd()) ? true : undefined));
    assert.match(await passwd(), /^t-a:/m, 't-a still admitted');
    assert.ok(!watch.output().includes(ts.token), 'the token is in no line of the log');
    assert.equal(await watch.kill('SIGTERM'), 0, `the watch stops on SIGTERM with exit code 0: ${watch.output().slice(said)}`);
  });

  it('a CRL whose answer stops in the middle: WARN naming the path and the timeout, fetched again, crl.pem revokes the deleted device once the server answers', async () => {
    const { ts, proxy, watch, out } = await setup('/api/v1/broker/crl', ['c-a', 'c-b'], true);
    const crl = () => readFile(path.join(out, 'crl.pem'), 'utf8');
    const before = await crl();
    const said = watch.output().length;
    proxy.state.holding = true; // and never released: the answer stops in the middle
    await remove(ts, 'c-b');
    const [line] = await saidAfter(watch, said, /^.*WARN.*could not fetch the CRL.*$/m, 'the WARN of the stalled CRL');
    assert.match(line, /GET \/api\/v1\/broker\/crl: the answer from http:\/\/127\.0\.0\.1:\d+ stopped coming for the request timeout of 2 s/, `the WARN line names the path and the timeout: ${line}`);
    assert.ok(proxy.state.held >= 1, "the CRL's answer was stalled by the proxy");
    assert.equal(await crl(), before, 'crl.pem as it was while the CRL cannot be read');
    // the passwd side of the deletion did not wait for the CRL
    assert.doesNotMatch(await readFile(path.join(out, 'passwd'), 'utf8'), /^c-b:/m, 'c-b out of passwd');
    proxy.state.holding = false;
    await until(watch, said, 'crl.pem written with c-b revoked once the server answers', async () => (/crlfile written [^\n]*revoked=1 /.test(watch.output().slice(said)) ? true : undefined));
    assert.notEqual(await crl(), before, 'crl.pem rewritten');
    assert.ok(!watch.output().includes(ts.token), 'the token is in no line of the log');
    assert.equal(await watch.kill('SIGTERM'), 0, `the watch stops on SIGTERM with exit code 0: ${watch.output().slice(said)}`);
  });

  it('a CRL answer that keeps coming, longer in all than the timeout, is read to the end (an idle limit and a floor on the rate far below it, no total one)', async () => {
    const { ts, proxy, watch, out } = await setup('/api/v1/broker/crl', ['s-a', 's-b'], true);
    const said = watch.output().length;
    // four pieces of 64 KiB at least (well above the floor on the body's rate, 8 KiB/s,
    // request-deadline.ts), 0.6 of the timeout apart: 1.8 times the timeout from the first to the last
    proxy.state.gapMs = TIMEOUT_S * 600;
    proxy.state.trickling = true;
    await remove(ts, 's-b');
    await until(watch, said, 'crl.pem written from the slow answer', async () => (/crlfile written [^\n]*revoked=1 /.test(watch.output().slice(said)) ? true : undefined));
    assert.ok(proxy.state.trickled >= 1, 'the CRL came in pieces');
    assert.doesNotMatch(watch.output().slice(said), /could not fetch the CRL|request timeout/, `the slow answer was not cut: ${watch.output().slice(said)}`);
    assert.match(await readFile(path.join(out, 'crl.pem'), 'utf8'), /-----BEGIN X509 CRL-----/, 'crl.pem holds a CRL');
    assert.equal(await watch.kill('SIGTERM'), 0, `the watch stops on SIGTERM with exit code 0: ${watch.output().slice(said)}`);
  });

  it('SIGTERM while a CRL fetch is held: the watch ends at once, writing, reloading and retrying nothing after it', async () => {
    // a limit far above the guard below: a watch that waited for it fails the test, and no speed is measured
    const LIMIT_S = 120;
    const ts = await startTestServer();
    scratch.onRelease(() => ts.close());
    for (const d of ['k-a', 'k-b']) await enrolWithCertificate(ts, d);
    const proxy = await startHoldingProxy(ts.httpUrl, '/api/v1/broker/crl');
    scratch.onRelease(() => proxy.close());
    const out = path.join(await scratch.tmp('updraft-watch-sigterm-'), 'out');
    const watch = startCli(['broker', 'mosquitto-config', '--watch', '--out', out, '--tls-cert', '/nonexistent/server.crt', '--tls-key', '/nonexistent/server.key', '--updraft-ca', '--data-dir', ts.dataDir, '--reload-command', 'true', '--request-timeout-seconds', String(LIMIT_S), '--server', proxy.url, '--token', ts.token]);
    scratch.onRelease(() => watch.kill('SIGKILL'));
    await watch.waitFor(/broker reloaded/);
    const ready = watch.output().length;
    const files = async () => Object.fromEntries(await Promise.all(['passwd', 'acl', 'mosquitto.conf', 'crl.pem', 'client-ca.crt'].map(async (f) => [f, await readFile(path.join(out, f), 'utf8').catch(() => 'missing')])));
    proxy.state.hanging = true;
    const hungBefore = proxy.state.hung;
    await remove(ts, 'k-b');
    await eventually(async () => (proxy.state.hung > hungBefore ? true : undefined), 30_000, 'the CRL fetch held by the proxy');
    // the pass wrote passwd before its CRL fetch, and reloaded for it when the fetch took longer
    // than 2 s (mosquitto-watch.ts CRL_WITH_PASSWD_MS); what is on disk now must stay as it is
    await saidAfter(watch, ready, /password file written[\s\S]*broker reloaded/, 'passwd of the deletion written and reloaded');
    const before = await files();
    const said = watch.output().length;
    const exited = watch.kill('SIGTERM');
    // a hang guard (the request's limit is 120 s), not a speed check
    const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running 20 s after SIGTERM'), 20_000))]);
    const after = watch.output().slice(said);
    assert.equal(code, 0, `the watch ends on SIGTERM with exit code 0 while its CRL fetch is held: ${code}; it said after SIGTERM: ${after}`);
    assert.match(after, /stopped/, `it says it stopped: ${after}`);
    assert.doesNotMatch(after, /WARN|retrying|broker reloaded|written|wrote|names/, `nothing written, reloaded, retried or warned after SIGTERM: ${after}`);
    assert.deepEqual(await files(), before, 'the files as they were at SIGTERM');
  });

  it('--request-timeout-seconds is a decimal number of seconds from 1 to 300, and goes with --watch', async () => {
    const base = ['broker', 'mosquitto-config', '--out', path.join(await scratch.tmp('updraft-watch-timeout-opt-'), 'out'), '--server', 'http://127.0.0.1:9', '--token', 't'];
    const bad = (v: string) => `updraft: error: --request-timeout-seconds must be a number of seconds from 1 to 300, got ${JSON.stringify(v)}\n`;
    for (const [extra, message] of [
      ...['0', 'soon', '0.5', '1e-9', '0x1e', ' 5 ', '-5', '300.5', '301', '5s', ''].map((v) => [['--watch', '--request-timeout-seconds', v], bad(v)] as const),
      [['--request-timeout-seconds', '5'], 'updraft: error: --request-timeout-seconds goes with --watch\n'],
    ] as const) {
      const r = await runCli([...base, ...extra]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, message, `${extra.join(' ')}`);
    }
  });
});
