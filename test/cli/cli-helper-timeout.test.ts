/**
 * The tests' runCli/runNode (test/helpers/cli.ts) kill a run that hangs and fail naming it,
 * instead of holding the whole test file until the runner's own limit; a run that ends is
 * returned as before.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runCli, runNode } from '../helpers/cli.ts';

describe('test helper: runCli and runNode give up on a run that hangs', () => {
  it('a run past its timeout is killed and rejects with the command and its output so far', async () => {
    const script = "process.stdout.write('started\\n'); setInterval(() => {}, 1000);";
    await assert.rejects(runNode(['-e', script], { timeoutMs: 1_000 }), (err: Error) => {
      assert.match(err.message, /^node -e .*setInterval.* did not end within 1000 ms \(killed\); stdout: started\n; stderr: $/, err.message);
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
});
