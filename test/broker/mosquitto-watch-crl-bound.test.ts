/**
 * `updraft broker mosquitto-config --watch`: the reload that takes a deleted device out of
 * passwd (which alone cuts its password login) does not wait for a CRL that is still
 * downloading. The CRL a deletion owes is fetched in the same pass, and joins that pass's
 * one reload only if it comes within a short bound (mosquitto-watch.ts CRL_WITH_PASSWD_MS);
 * a later one takes a reload of its own (review of 2efa5c0: a 60 MB list over a slow link
 * held the reload for minutes; the request timeout is an idle limit, and a list that keeps
 * coming is never cut). Nor does a second deletion wait for the first one's CRL: the fetch and
 * write run as a task of their own beside the passes. A real server and a real watch process; a proxy (test/helpers/holding-proxy.ts) holds
 * the CRL's answer in the middle of its body until the test lets it go, so nothing here
 * depends on how fast the machine is.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { open, readFile, readdir, readlink, realpath, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { eventually, startCli } from '../helpers/cli.ts';
import { enrolWithCertificate, startHoldingProxy } from '../helpers/holding-proxy.ts';
import { Scratch } from '../helpers/scratch.ts';
import { apiJson, startTestServer } from '../helpers/server.ts';

/** Whether process `pid` has `file` open. */
async function hasOpen(pid: number, file: string): Promise<boolean> {
  const dir = `/proc/${pid}/fd`;
  for (const fd of await readdir(dir).catch(() => [] as string[])) {
    if ((await readlink(path.join(dir, fd)).catch(() => '')) === file) return true;
  }
  return false;
}

describe('--watch: a deletion\'s passwd reload and a CRL still downloading', () => {
  const scratch = new Scratch();
  after(() => scratch.release());

  it('passwd is reloaded without the deleted device while its CRL is held; the CRL, once in, takes a reload of its own', async () => {
    const ts = await startTestServer();
    scratch.onRelease(() => ts.close());
    for (const d of ['b-a', 'b-gone']) await enrolWithCertificate(ts, d);
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
    for (const d of ['b-a', 'b-gone']) await enrolWithCertificate(ts, d);
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
    for (const d of ['b-a', 'b-one', 'b-two']) await enrolWithCertificate(ts, d);
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
    for (const d of ['b-a', 'b-gone']) await enrolWithCertificate(ts, d);
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

  it('a restarted watch (mosquitto.conf on disk from its last run): a deletion during its first CRL download is reloaded out of passwd while the list is held', async () => {
    const ts = await startTestServer();
    scratch.onRelease(() => ts.close());
    for (const d of ['b-a', 'b-gone']) await enrolWithCertificate(ts, d);
    const proxy = await startHoldingProxy(ts.httpUrl, '/api/v1/broker/crl');
    scratch.onRelease(() => proxy.close());
    const out = path.join(await scratch.tmp('updraft-crl-restart-'), 'out');
    const log = path.join(path.dirname(out), 'reloads.log');
    const reload = `echo "$(grep -c '^b-gone:' passwd)" >> ${log}`;
    const ca = ['--tls-cert', '/nonexistent/server.crt', '--tls-key', '/nonexistent/server.key', '--updraft-ca', '--data-dir', ts.dataDir];
    const args = ['broker', 'mosquitto-config', '--watch', '--out', out, ...ca, '--reload-command', reload, '--request-timeout-seconds', '120', '--server', proxy.url, '--token', ts.token];
    // a first run: mosquitto.conf written, Mosquitto (the reload command) running on it
    const first = startCli(args);
    scratch.onRelease(() => first.kill('SIGKILL'));
    await first.waitFor(/broker reloaded/);
    assert.equal(await first.kill('SIGTERM'), 0, 'the first run stops');

    // the watch restarted (an upgrade) while the CRL is slow to come
    proxy.state.holding = true;
    const watch = startCli(args);
    scratch.onRelease(() => watch.kill('SIGKILL'));
    await watch.waitFor(/password file written/);
    await eventually(async () => (proxy.state.held >= 1 ? true : undefined), 30_000, 'the first CRL answer held');
    const r = await apiJson(ts, 'DELETE', '/api/v1/devices/b-gone');
    assert.ok(r.status === 200 || r.status === 204, `delete b-gone: ${r.status}`);
    try {
      await eventually(async () => ((await readFile(log, 'utf8')).trim().split('\n').includes('0') ? true : undefined), 30_000, 'a reload with b-gone out of passwd while the first CRL is held');
    } catch (err) {
      throw new Error(`${(err as Error).message}; reloads ${JSON.stringify((await readFile(log, 'utf8')).trim().split('\n'))}; the watch said: ${watch.output()}`);
    }
    assert.equal(proxy.state.held, 1, 'the first CRL answer is still held');
    proxy.state.holding = false;
    proxy.release();
    await watch.waitFor(/wrote mosquitto.conf/);
    await watch.kill('SIGTERM');
  });

  it('a refused token (401) met by a pass while a CRL downloads ends the watch at once, not when the download ends', async () => {
    const ts = await startTestServer();
    scratch.onRelease(() => ts.close());
    for (const d of ['b-a', 'b-one', 'b-two']) await enrolWithCertificate(ts, d);
    const proxy = await startHoldingProxy(ts.httpUrl, '/api/v1/broker/crl', '/api/v1/broker/credentials');
    scratch.onRelease(() => proxy.close());
    const out = path.join(await scratch.tmp('updraft-crl-401-'), 'out');
    const log = path.join(path.dirname(out), 'reloads.log');
    const reload = `echo "$(grep -c '^b-one:' passwd)" >> ${log}`;
    const ca = ['--tls-cert', '/nonexistent/server.crt', '--tls-key', '/nonexistent/server.key', '--updraft-ca', '--data-dir', ts.dataDir];
    const watch = startCli(['broker', 'mosquitto-config', '--watch', '--out', out, ...ca, '--reload-command', reload, '--request-timeout-seconds', '120', '--server', proxy.url, '--token', ts.token]);
    scratch.onRelease(() => watch.kill('SIGKILL'));
    await watch.waitFor(/broker reloaded/);
    const said = watch.output().length;

    // b-one's CRL held: the task downloads it beside the passes
    proxy.state.holding = true;
    const one = await apiJson(ts, 'DELETE', '/api/v1/devices/b-one');
    assert.ok(one.status === 200 || one.status === 204, `delete b-one: ${one.status}`);
    await eventually(async () => ((await readFile(log, 'utf8')).trim().split('\n').includes('0') ? true : undefined), 30_000, `a reload with b-one out of passwd: ${watch.output().slice(said)}`);
    assert.equal(proxy.state.held, 1, 'b-one\'s CRL answer is held');

    // the token is refused from now on; b-two's pass meets it
    proxy.state.refusing = true;
    const two = await apiJson(ts, 'DELETE', '/api/v1/devices/b-two');
    assert.ok(two.status === 200 || two.status === 204, `delete b-two: ${two.status}`);
    await eventually(async () => (proxy.state.refused > 0 ? true : undefined), 30_000, 'b-two\'s pass asked and was refused');
    // a hang guard well under the 120 s idle limit that would cut the held answer at last
    const code = await Promise.race([
      new Promise<number | null>((resolve) => {
        if (watch.child.exitCode !== null) resolve(watch.child.exitCode);
        else watch.child.once('close', (c) => resolve(c));
      }),
      new Promise<string>((resolve) => setTimeout(() => resolve('still running after 60 s'), 60_000).unref()),
    ]);
    assert.equal(code, 2, `exit 2 for the refused token while the CRL answer is held (until the review of 4cede31 the watch waited for the download): ${watch.output().slice(said)}`);
    assert.match(watch.output().slice(said), /refused the operator token/, 'the refusal said');
    proxy.release();
  });

  it('SIGTERM after the CRL came, before it is written: nothing is written after the stop', async () => {
    const ts = await startTestServer();
    scratch.onRelease(() => ts.close());
    for (const d of ['b-a', 'b-gone']) await enrolWithCertificate(ts, d);
    const proxy = await startHoldingProxy(ts.httpUrl, '/api/v1/broker/crl');
    scratch.onRelease(() => proxy.close());
    const out = path.join(await scratch.tmp('updraft-crl-stop-'), 'out');
    const log = path.join(path.dirname(out), 'reloads.log');
    // the reload reads passwd only (crl.pem is a FIFO below)
    const reload = `echo "$(grep -c '^b-gone:' passwd)" >> ${log}`;
    const ca = ['--tls-cert', '/nonexistent/server.crt', '--tls-key', '/nonexistent/server.key', '--updraft-ca', '--data-dir', ts.dataDir];
    const watch = startCli(['broker', 'mosquitto-config', '--watch', '--out', out, ...ca, '--reload-command', reload, '--server', proxy.url, '--token', ts.token]);
    scratch.onRelease(() => watch.kill('SIGKILL'));
    await watch.waitFor(/broker reloaded/);
    const crlFile = path.join(out, 'crl.pem');
    const crlBefore = await readFile(crlFile, 'utf8');

    // crl.pem made a FIFO the test holds open: the CRL task's read of the file on disk (after
    // its fetch, before its write) waits for the test, whatever the machine's speed
    await rm(crlFile);
    execFileSync('mkfifo', ['-m', '0644', crlFile]);
    const fifo = await open(crlFile, 'r+'); // O_RDWR: does not wait for a reader
    scratch.onRelease(() => fifo.close().catch(() => undefined));

    const r = await apiJson(ts, 'DELETE', '/api/v1/devices/b-gone');
    assert.ok(r.status === 200 || r.status === 204, `delete b-gone: ${r.status}`);
    const crlReal = await realpath(crlFile);
    await eventually(async () => ((await hasOpen(watch.child.pid!, crlReal)) ? true : undefined), 30_000, `the CRL task reading crl.pem: ${watch.output()}`);
    await eventually(async () => ((await readFile(log, 'utf8')).trim().split('\n').includes('0') ? true : undefined), 30_000, 'a reload with b-gone out of passwd (at the 2 s bound)');

    const said = watch.output().length;
    const exited = new Promise<number | null>((resolve) => watch.child.once('close', (c) => resolve(c)));
    watch.child.kill('SIGTERM');
    await eventually(async () => (proxy.state.streamClosed ? true : undefined), 30_000, 'the watch took in the stop (its event stream closed)');
    // the read lets go: the file as it was
    await fifo.write(crlBefore);
    await fifo.close();
    const code = await exited;
    const afterStop = watch.output().slice(said);
    assert.equal(code, 0, `exit 0: ${afterStop}`);
    assert.doesNotMatch(afterStop, /crlfile written|wrote mosquitto|names crl/, `nothing written after SIGTERM; the watch said after it: ${afterStop}`);
  });

  it('a first run (no mosquitto.conf yet) whose CRLs each come late, a deletion during each: mosquitto.conf and a reload follow the first CRL, not every CRL after it', async () => {
    const ts = await startTestServer();
    scratch.onRelease(() => ts.close());
    for (const d of ['s-a', 's-1', 's-2']) await enrolWithCertificate(ts, d);
    const proxy = await startHoldingProxy(ts.httpUrl, '/api/v1/broker/crl');
    scratch.onRelease(() => proxy.close());
    const out = path.join(await scratch.tmp('updraft-crl-firstrun-'), 'out');
    const log = path.join(path.dirname(out), 'reloads.log');
    const reload = `echo "$(grep -c '^s-1:' passwd)" >> ${log}`;
    const ca = ['--tls-cert', '/nonexistent/server.crt', '--tls-key', '/nonexistent/server.key', '--updraft-ca', '--data-dir', ts.dataDir];
    proxy.state.holding = true; // every CRL answer held until released
    const watch = startCli(['broker', 'mosquitto-config', '--watch', '--out', out, ...ca, '--reload-command', reload, '--request-timeout-seconds', '120', '--server', proxy.url, '--token', ts.token]);
    scratch.onRelease(() => watch.kill('SIGKILL'));
    await watch.waitFor(/password file written/);
    await eventually(async () => (proxy.state.held >= 1 ? true : undefined), 30_000, 'the first CRL answer held');
    const r = await apiJson(ts, 'DELETE', '/api/v1/devices/s-1');
    assert.ok(r.status === 200 || r.status === 204, `delete s-1: ${r.status}`);
    await eventually(async () => (!(await readFile(path.join(out, 'passwd'), 'utf8')).includes('s-1:') ? true : undefined), 30_000, 'passwd without s-1');
    proxy.release(); // the first CRL comes in; the one s-1's deletion owes is asked for next, and held
    await eventually(async () => (proxy.state.held >= 2 ? true : undefined), 30_000, 'the CRL s-1 owes asked for, and held');
    try {
      await eventually(async () => ((await readFile(log, 'utf8').catch(() => '')).trim().split('\n').includes('0') ? true : undefined), 30_000, 'a reload with s-1 out of passwd while the second CRL is held');
    } catch (err) {
      throw new Error(`${(err as Error).message}; the watch said: ${watch.output()}`);
    }
    assert.match(watch.output(), /wrote mosquitto.conf/, 'mosquitto.conf written once the first CRL came');
    assert.equal(proxy.state.held, 2, 'the second CRL answer is still held');
    proxy.state.holding = false;
    proxy.release();
    await watch.kill('SIGTERM');
  });
});
