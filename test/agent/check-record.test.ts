/** The record of a running health check: its group is killed later only while it is the same process. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { killLeftoverCheck, recordCheck } from '../../src/agent/check-record.ts';
import { createLogger } from '../../src/util/logger.ts';

/** Whether process `pid` still runs (a killed orphan may stay a zombie where nothing reaps it). */
async function runs(pid: number): Promise<boolean> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return text !== '' && text.slice(text.lastIndexOf(')') + 2)[0] !== 'Z';
}

describe('check record', { skip: process.platform !== 'linux' && 'reads /proc' }, () => {
  let dir: string;
  let file: string;
  const groups: number[] = [];
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-check-record-'));
    file = path.join(dir, '.health-check.json');
  });
  afterEach(async () => {
    for (const g of groups.splice(0)) {
      try {
        process.kill(-g, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await rm(dir, { recursive: true, force: true });
  });

  const group = () => {
    const child = spawn('/bin/sh', ['-c', 'sleep 30'], { detached: true, stdio: 'ignore' });
    child.unref();
    groups.push(child.pid!);
    return child.pid!;
  };
  const lines: string[] = [];
  const log = createLogger({ level: 'info', write: (l) => lines.push(l) });

  it('kills the recorded group while its leader is the recorded process, then forgets it', async () => {
    const pgid = group();
    await recordCheck(file, pgid);
    assert.equal(JSON.parse(await readFile(file, 'utf8')).pgid, pgid);
    await killLeftoverCheck(file, log);
    for (let i = 0; i < 100 && (await runs(pgid)); i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(await runs(pgid), false);
    assert.equal(await stat(file).then(() => true, () => false), false);
    assert.ok(lines.some((l) => l.includes('killed the health check the interrupted install left running')));
  });

  it('leaves a group alone that is not the recorded process (another boot, another start), or that it cannot tell', async () => {
    const pgid = group();
    await recordCheck(file, pgid);
    const record = JSON.parse(await readFile(file, 'utf8'));
    for (const other of [{ ...record, startTime: String(Number(record.startTime) - 1) }, { ...record, bootId: 'another-boot' }, { pgid }]) {
      await writeFile(file, JSON.stringify(other));
      await killLeftoverCheck(file, log);
      assert.equal(await runs(pgid), true, JSON.stringify(other));
      assert.equal(await stat(file).then(() => true, () => false), false, 'forgotten');
    }
    assert.ok(lines.some((l) => l.includes('may still run')));
    // no record at all: nothing happens
    await killLeftoverCheck(file, log);
    assert.equal(await runs(pgid), true);
  });
});
