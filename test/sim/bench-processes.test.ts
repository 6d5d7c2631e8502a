/** The bench's child processes (bench/processes.ts): a child that exits on its own is never taken for one that finished. */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ChildExited, spawnUpdraft } from '../../bench/processes.ts';
import { freePort } from '../helpers/free-port.ts';

describe('bench processes', () => {
  it('a child that exited on its own: died() and stop() both report it, with the end of its output', async () => {
    const child = spawnUpdraft(['--no-such-option']);
    const isExit = (err: unknown) => err instanceof ChildExited && err.message === 'updraft --no-such-option exited unexpectedly (code 2)' && err.code === 2 && /unknown option/.test(err.tail);
    await assert.rejects(child.died(), isExit);
    await assert.rejects(child.stop(), isExit, 'stop() after the fact says so: the figures taken meanwhile are not to be trusted');
    await assert.rejects(child.stop(), isExit, 'every time');
  });

  it('a child the bench stops: stop() resolves and died() never rejects', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-bench-processes-'));
    const child = spawnUpdraft(['server', '--data-dir', dir, '--mqtt-port', String(await freePort()), '--http-port', String(await freePort()), '--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1', '--mqtt-tls-port', '-1', '--log-level', 'warn']);
    try {
      await child.waitFor(/HTTP API and downloads on/);
      let died = false;
      child.died().catch(() => (died = true));
      await child.stop();
      await new Promise((r) => setImmediate(r));
      assert.equal(died, false);
      await child.stop(); // again: nothing to report
    } finally {
      child.proc.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});
