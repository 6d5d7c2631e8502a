/**
 * The bench's allocation summary (`npm run bench -- --alloc`): the sampler preloaded into a
 * real Node process, started and stopped by signals, and its profile sorted into parts and
 * sites, freed objects included.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ALLOC_SAMPLER, startAllocSampling, stopAllocSampling, summarizeAllocations } from '../../bench/alloc-summary.ts';

const frame = (functionName: string, url: string, selfSize: number, children: unknown[] = []) => ({ callFrame: { functionName, scriptId: '0', url, lineNumber: 9, columnNumber: 0 }, selfSize, id: 0, children });

describe('bench allocation summary', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-alloc-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('sorts a profile into parts and sites; a builtin counts for its JavaScript caller, and is named with it', async () => {
    // (root) ─ applyUpdate (src/shadow) 3000 ─ split (builtin) 1000
    //        └ debug (node_modules/debug) 2000
    //        └ (V8 API) 400: no caller
    const profile = {
      head: frame('(root)', '', 0, [
        frame('applyUpdate', 'file:///app/src/shadow/replica.ts', 3000, [frame('split', '', 1000)]),
        frame('debug', 'file:///app/node_modules/debug/src/common.js', 2000),
        frame('(V8 API)', '', 400),
      ]),
      samples: [],
    };
    const file = path.join(dir, 'Alloc.1.1.heapprofile');
    await writeFile(file, JSON.stringify(profile));
    const s = summarizeAllocations(file, 2);
    assert.equal(s.bytesPerUpdate, 3200, '6,400 bytes over 2 updates');
    assert.deepEqual(
      s.parts.map((p) => [p.part, p.share, p.bytesPerUpdate]),
      [
        ['replica (shadows)', 62.5, 2000],
        ['library: debug', 31.3, 1000],
        ['V8, unattributed', 6.3, 200],
      ],
    );
    assert.deepEqual(
      s.top.map((x) => [x.site, x.part, x.bytesPerUpdate]),
      [
        ['applyUpdate src/shadow/replica.ts:10', 'replica (shadows)', 1500],
        ['debug node_modules/debug/src/common.js:10', 'library: debug', 1000],
        ['split ← applyUpdate src/shadow/replica.ts:10', 'replica (shadows)', 500],
        ['(V8 API)', 'V8, unattributed', 200],
      ],
    );
  });

  it('samples a real process between two signals, what it freed included', async () => {
    // a process that allocates 1 KiB strings and keeps none of them, once the sampler is on
    const script = `
      function churn() { let keep = 0; for (let i = 0; i < 2000; i++) keep += ('x'.repeat(1024) + i).length; return keep; }
      process.stdout.write('ready\\n');
      setInterval(churn, 5);
    `;
    const child = spawn(process.execPath, ['--import', ALLOC_SAMPLER, '-e', script], { env: { ...process.env, UPDRAFT_ALLOC_DIR: dir }, stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
      startAllocSampling([child.pid!]);
      // let it run a few turns of its interval (what it allocates, not how fast, is checked)
      await new Promise((resolve) => setTimeout(resolve, 300));
      const files = await stopAllocSampling([child.pid!], dir);
      const file = files.get(child.pid!);
      assert.ok(file, 'the process wrote its profile');
      assert.match(path.basename(file), new RegExp(`^Alloc\\.${child.pid}\\.1\\.heapprofile$`));
      const s = summarizeAllocations(file, 1);
      const churn = s.top.find((x) => x.site.includes('churn'));
      assert.ok(churn, `churn's strings are sampled though none survives: ${JSON.stringify(s.top.slice(0, 5))}`);
      assert.ok(churn.bytesPerUpdate > 100_000, `churn allocated ${churn.bytesPerUpdate} bytes`);
    } finally {
      child.kill();
    }
  });
});
