/**
 * The tests' runCli/runNode (test/helpers/cli.ts) kill a run that hangs and fail naming it,
 * instead of holding the whole test file until the runner's own limit; a run that ends is
 * returned as before.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { runCli, runNode } from '../helpers/cli.ts';
import { Scratch } from '../helpers/scratch.ts';

const BIN = path.resolve(import.meta.dirname, '../../bin/updraft.js');

describe('test helper: runCli and runNode give up on a run that hangs', () => {
  const scratch = new Scratch();
  after(() => scratch.release());

  it('a run past its timeout is killed and rejects with the command and its output so far', async () => {
    const script = "process.stdout.write('started\\n'); setInterval(() => {}, 1000);";
    await assert.rejects(runNode(['-e', script], { timeoutMs: 1_000 }), (err: Error) => {
      assert.match(err.message, /^node -e .*setInterval.* did not end within 1000 ms \(killed\); stdout: started\n; stderr: ; threads: \d+\/node [RS] /, err.message);
      return true;
    });
  });

  it('a run whose grandchild holds its output open is given up at its timeout too', { timeout: 60_000 }, async () => {
    // the grandchild inherits the pipes and never ends: 'close' alone waited for it for ever
    const script = "const g = require('node:child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'inherit' }); process.stdout.write('grandchild=' + g.pid + '\\n'); setInterval(() => {}, 1000);";
    let message = '';
    try {
      await assert.rejects(runNode(['-e', script], { timeoutMs: 1_000 }), (err: Error) => {
        message = err.message;
        return /did not end within 1000 ms \(killed\); stdout: grandchild=\d+\n/.test(err.message);
      });
    } finally {
      const pid = Number(/grandchild=(\d+)/.exec(message)?.[1]);
      if (pid > 0) process.kill(pid, 'SIGKILL');
    }
  });

  it('a run that exited by itself while its grandchild holds its output is given up at its timeout, and the grandchild killed', { timeout: 60_000 }, async () => {
    const script = "const g = require('node:child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'inherit' }); process.stdout.write('grandchild=' + g.pid + '\\n'); g.unref(); process.exit(0);";
    let message = '';
    await assert.rejects(runNode(['-e', script], { timeoutMs: 1_000 }), (err: Error) => {
      message = err.message;
      return /did not end within 1000 ms \(killed\); stdout: grandchild=\d+\n/.test(err.message);
    });
    const pid = Number(/grandchild=(\d+)/.exec(message)?.[1]);
    assert.ok(pid > 0, message);
    const alive = () => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    for (let i = 0; i < 50 && alive(); i++) await new Promise((r) => setTimeout(r, 100));
    const left = alive();
    if (left) process.kill(pid, 'SIGKILL');
    assert.equal(left, false, 'the grandchild was killed with its group');
  });

  it('a run that ends is returned with its exit code and output', async () => {
    const r = await runCli(['--help'], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage: updraft /, r.stdout);
    const failed = await runCli(['--no-such-option'], { timeoutMs: 60_000 });
    assert.notEqual(failed.code, 0, 'a failing command still resolves with its code');
    assert.match(failed.stderr, /unknown option '--no-such-option'/);
  });

  it('bin/updraft.js reports the end of loading on UPDRAFT_LOADED_FD, so a real command is never taken for a start hang', { timeout: 60_000 }, async () => {
    // a command whose action awaits (its request fails: fetch refuses port 9); --help ends
    // inside the import, before any report, and ended runs are never taken for a hang
    const args = [BIN, 'device', 'list', '--server', 'http://127.0.0.1:9', '--token', 'x'];
    const child = spawn(process.execPath, args, { env: { ...process.env, UPDRAFT_LOADED_FD: '3' }, stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    let report = '';
    let stderr = '';
    child.stdio[3]!.on('data', (d) => (report += d));
    child.stderr!.on('data', (d) => (stderr += d));
    const code = await new Promise((resolve) => child.on('close', resolve));
    assert.equal(code, 1, stderr);
    assert.match(stderr, /cannot reach the Updraft server/, 'the command ran');
    assert.equal(report, '.', 'one byte on fd 3 once main.ts is loaded');
  });

  // a child parked for ever on a futex before any output, as Node 20's main thread waiting for
  // its module loader thread's answer: Atomics.wait on a buffer no one notifies
  const parkOnce = (runs: string) =>
    `const fs = require('node:fs'); fs.appendFileSync(${JSON.stringify(runs)}, 'run\\n'); ` +
    `if (fs.readFileSync(${JSON.stringify(runs)}, 'utf8') === 'run\\n') Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); ` +
    `process.stdout.write('ran\\n');`;

  it('a silent run parked on a futex (a start hang in the module loader) is killed and run once more', { timeout: 60_000 }, async () => {
    const runs = path.join(await scratch.tmp('cli-helper-'), 'runs');
    const r = await runNode(['-e', parkOnce(runs)], { timeoutMs: 30_000, startHangMs: 2_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'ran\n', 'the second run ended with its output');
    assert.equal(readFileSync(runs, 'utf8'), 'run\nrun\n', 'run twice: the parked first run was killed');
  });

  it('a silent run that reported the end of loading and then parked is not run again: it fails at the timeout', { timeout: 60_000 }, async () => {
    // the review's repro: the work done, loading reported on fd 3 as bin/updraft.js does, then a
    // hang at exit on the first run only; rerunning it did the work twice and hid the hang
    const work = path.join(await scratch.tmp('cli-helper-'), 'work');
    const script =
      `const fs = require('node:fs'); fs.appendFileSync(${JSON.stringify(work)}, 'work\\n'); try { fs.writeSync(3, '.'); } catch {} ` +
      `if (fs.readFileSync(${JSON.stringify(work)}, 'utf8') === 'work\\n') Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);`;
    await assert.rejects(runNode(['-e', script], { timeoutMs: 6_000, startHangMs: 2_000 }), (err: Error) => {
      assert.match(err.message, /did not end within 6000 ms \(killed\); stdout: ; stderr: ; threads: \d+\/node S futex/, err.message);
      return true;
    });
    assert.equal(readFileSync(work, 'utf8'), 'work\n', 'run once: a run past loading is never run again');
  });

  it('a second start hang is not run again: it fails at the timeout', { timeout: 60_000 }, async () => {
    const script = "Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);";
    await assert.rejects(runNode(['-e', script], { timeoutMs: 6_000, startHangMs: 2_000 }), (err: Error) => {
      assert.match(err.message, /did not end within 6000 ms \(killed\); stdout: ; stderr: ; threads: \d+\/node S futex/, err.message);
      return true;
    });
  });

  it('a silent run waiting in its event loop, or one that printed first, is not taken for a start hang', { timeout: 60_000 }, async () => {
    const dir = await scratch.tmp('cli-helper-');
    const idle = path.join(dir, 'idle');
    const script = `require('node:fs').appendFileSync(${JSON.stringify(idle)}, 'run\\n'); setTimeout(() => {}, 4_000);`;
    const r = await runNode(['-e', script], { timeoutMs: 30_000, startHangMs: 1_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(idle, 'utf8'), 'run\n', 'a silent run idle in epoll past the start-hang time ran once');
    const printed = path.join(dir, 'printed');
    const parkAfterOutput = `require('node:fs').appendFileSync(${JSON.stringify(printed)}, 'run\\n'); process.stdout.write('hello\\n'); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);`;
    await assert.rejects(runNode(['-e', parkAfterOutput], { timeoutMs: 5_000, startHangMs: 1_000 }), /did not end within 5000 ms \(killed\); stdout: hello\n/);
    assert.equal(readFileSync(printed, 'utf8'), 'run\n', 'a run that had printed is never run again');
  });
});
