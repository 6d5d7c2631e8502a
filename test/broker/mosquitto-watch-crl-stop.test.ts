/**
 * `mosquitto-config --watch`: a refused token (401) met by a pass while the CRL task is writing
 * crl.pem. The stop path of a refused token does not wait for the CRL task (a list still
 * downloading must not hold the exit: mosquitto-watch-crl-bound), but a write that had passed
 * its stop check went on after it: the watch ended (exit 2) with the write in flight, leaving
 * its temporary file, or a new crl.pem Mosquitto was never reloaded for. Now the stop waits for
 * that write (local, short) and reloads for it.
 *
 * The write is held by a real file system, not by timing: `--out` is a small ext4 image mounted
 * on a loop device, frozen (fsfreeze) once the CRL's answer is held by the proxy; the CRL then
 * comes, is read and checked (reads go on on a frozen file system), and its write waits in the
 * kernel (a thread of the watch in `percpu_rwsem_wait`) until the test thaws it. Needs root
 * (mount, a loop device, fsfreeze): elsewhere the test skips saying why, but under CI=true,
 * where it fails (as tmpfs.ts's full-disk tests do).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { eventually, startCli } from '../helpers/cli.ts';
import { enrolWithCertificate, startHoldingProxy } from '../helpers/holding-proxy.ts';
import { Scratch } from '../helpers/scratch.ts';
import { apiJson, startTestServer } from '../helpers/server.ts';

/** Runs `cmd`: undefined when it exits 0, else what it said. */
function run(cmd: string, args: string[]): string | undefined {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0 ? undefined : `${cmd} ${args.join(' ')}: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim()}`;
}

/** Mounts a 16 MB ext4 image (`image`) on `dir` and checks it can be frozen: undefined when done, else why not. */
async function mountFreezable(image: string, dir: string): Promise<string | undefined> {
  const h = await open(image, 'w');
  await h.truncate(16 * 1024 * 1024);
  await h.close();
  await mkdir(dir);
  const why = run('mkfs.ext4', ['-q', '-F', image]) ?? run('mount', ['-o', 'loop', image, dir]);
  if (why !== undefined) return why;
  const frozen = run('fsfreeze', ['-f', dir]);
  run('fsfreeze', ['-u', dir]);
  if (frozen !== undefined) {
    run('umount', [dir]);
    return frozen;
  }
  return undefined;
}

/** Whether a thread of `pid` waits for a frozen file system (sb_start_write: `percpu_rwsem_wait`). */
async function waitsOnFrozenDisk(pid: number): Promise<boolean> {
  for (const tid of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8').catch(() => '');
    const wchan = await readFile(`/proc/${pid}/task/${tid}/wchan`, 'utf8').catch(() => '');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('D') && /rwsem|sb_start_write/.test(wchan)) return true;
  }
  return false;
}

const md5 = (text: string) => createHash('md5').update(text).digest('hex');

describe('--watch: a refused token met while crl.pem is being written', () => {
  const scratch = new Scratch();
  after(() => scratch.release());

  it('the write in flight ends before the watch does, and Mosquitto is reloaded for it (exit 2)', async (t) => {
    const base = await scratch.tmp('updraft-crl-stop-');
    const out = path.join(base, 'out');
    const skip = await mountFreezable(path.join(base, 'out.img'), out);
    if (skip !== undefined) {
      if (process.env.CI === 'true') throw new Error(`CI=true: a frozen file system is needed (root, a loop device, fsfreeze): ${skip}`);
      t.skip(`a frozen file system is needed (root, a loop device, fsfreeze): ${skip}`);
      return;
    }
    scratch.onRelease(async () => run('umount', [out]));
    const ts = await startTestServer();
    scratch.onRelease(() => ts.close());
    for (const d of ['b-a', 'b-one', 'b-two']) await enrolWithCertificate(ts, d);
    const proxy = await startHoldingProxy(ts.httpUrl, '/api/v1/broker/crl', '/api/v1/broker/credentials');
    scratch.onRelease(() => proxy.close());
    // the log beside `out`, not on the frozen file system: each reload says whether passwd
    // admits b-one, and which crl.pem it read
    const log = path.join(base, 'reloads.log');
    const reload = `echo "$(grep -c '^b-one:' passwd) $(md5sum < crl.pem | cut -d' ' -f1)" >> ${log}`;
    const ca = ['--tls-cert', '/nonexistent/server.crt', '--tls-key', '/nonexistent/server.key', '--updraft-ca', '--data-dir', ts.dataDir];
    const watch = startCli(['broker', 'mosquitto-config', '--watch', '--out', out, ...ca, '--reload-command', reload, '--request-timeout-seconds', '120', '--server', proxy.url, '--token', ts.token]);
    scratch.onRelease(() => watch.kill('SIGKILL'));
    // released first (the latest first): a process waiting on a frozen file system cannot end
    scratch.onRelease(async () => run('fsfreeze', ['-u', out]));
    await watch.waitFor(/broker reloaded/);
    const lines = async () => (await readFile(log, 'utf8')).trim().split('\n').map((l) => l.split(' '));
    const crlBefore = await readFile(path.join(out, 'crl.pem'), 'utf8');

    // b-one's CRL held; passwd without it reloaded at the 2 s bound (nothing left to write but the CRL)
    proxy.state.holding = true;
    const one = await apiJson(ts, 'DELETE', '/api/v1/devices/b-one');
    assert.ok(one.status === 200 || one.status === 204, `delete b-one: ${one.status}`);
    await eventually(async () => ((await lines()).some(([n]) => n === '0') ? true : undefined), 30_000, `a reload with b-one out of passwd: ${watch.output()}`);
    assert.equal(proxy.state.held, 1, 'b-one\'s CRL answer is held');
    const said = watch.output().length;

    // the disk frozen, the CRL let go: it is read and checked, and its write waits in the kernel
    const frozen = run('fsfreeze', ['-f', out]);
    assert.equal(frozen, undefined, `out frozen: ${frozen}`);
    proxy.state.holding = false;
    proxy.release();
    await eventually(async () => ((await waitsOnFrozenDisk(watch.child.pid!)) ? true : undefined), 30_000, `the watch writing to the frozen out: ${watch.output().slice(said)}`);

    // the token refused from now on; b-two's pass meets it while the write waits
    proxy.state.refusing = true;
    const exited = new Promise<number | null>((resolve) => watch.child.once('close', (c) => resolve(c)));
    const two = await apiJson(ts, 'DELETE', '/api/v1/devices/b-two');
    assert.ok(two.status === 200 || two.status === 204, `delete b-two: ${two.status}`);
    await eventually(async () => (proxy.state.refused > 0 ? true : undefined), 30_000, 'b-two\'s pass asked and was refused');
    await eventually(async () => (proxy.state.streamClosed ? true : undefined), 30_000, `the watch took the refusal in (its event stream closed): ${watch.output().slice(said)}`);

    // the disk back: the write ends
    const thawed = run('fsfreeze', ['-u', out]);
    assert.equal(thawed, undefined, `out thawed: ${thawed}`);
    const code = await exited;
    const afterStop = watch.output().slice(said);
    assert.equal(code, 2, `exit 2 for the refused token: ${afterStop}`);
    assert.match(afterStop, /refused the operator token/, `the refusal said: ${afterStop}`);

    const crlNow = await readFile(path.join(out, 'crl.pem'), 'utf8');
    const left = (await readdir(out)).filter((f) => f.endsWith('.tmp'));
    assert.deepEqual(left, [], `no temporary file left in out by a write the watch ended in the middle of: ${afterStop}`);
    assert.notEqual(crlNow, crlBefore, `crl.pem holds b-one's list: its write, begun before the refusal, ended before the watch did: ${afterStop}`);
    const last = (await lines()).at(-1)!;
    assert.equal(last[1], md5(crlNow), `the last reload read crl.pem as the watch left it (Mosquitto told of the list written): reloads ${JSON.stringify(await lines())}; the watch said: ${afterStop}`);
  });
});
