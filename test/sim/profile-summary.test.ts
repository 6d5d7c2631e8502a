/**
 * The bench's profile summary (`npm run bench -- --profile`): a profile cut to a window, its
 * busy samples sorted into the system's parts. On a small profile written as V8 writes them.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { profileOf, summarizeProfile } from '../../bench/profile-summary.ts';

const frame = (id: number, functionName: string, url: string, children: number[] = []) => ({ id, callFrame: { functionName, scriptId: '0', url, lineNumber: 0, columnNumber: 0 }, hitCount: 0, children });

// root ─ (idle)
//      ├ (garbage collector)
//      ├ putShadow (src/store) ─ run (native: the store's)
//      ├ publish (aedes) ─ writev (native: a system call)
//      └ handle (src/shadow)
const profile = {
  nodes: [
    frame(1, '(root)', '', [2, 3, 4, 6, 8]),
    frame(2, '(idle)', ''),
    frame(3, '(garbage collector)', ''),
    frame(4, 'putShadow', 'file:///app/src/store/sqlite-store.ts', [5]),
    frame(5, 'run', ''),
    frame(6, 'publish', 'file:///app/node_modules/aedes/lib/client.js', [7]),
    frame(7, 'writev', ''),
    frame(8, 'handle', 'file:///app/src/shadow/replica.ts'),
  ],
  startTime: 1_000_000,
  endTime: 1_000_000 + 12_000,
  // one sample per ms; a sample stands for the time until the next one
  samples: [8, 5, 5, 4, 7, 2, 2, 3, 8, 5, 5, 8],
  timeDeltas: [0, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000],
};

describe('bench profile summary', () => {
  let dir: string;
  let file: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-profile-'));
    file = path.join(dir, 'CPU.20261202.070000.4242.0.001.cpuprofile');
    await writeFile(file, JSON.stringify(profile));
    await writeFile(path.join(dir, 'CPU.20261202.070000.4242.1.002.cpuprofile'), '{}'); // a smaller worker thread's
    await writeFile(path.join(dir, 'CPU.20261202.070000.4343.0.001.cpuprofile'), '{}'); // another process's
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('finds a process\'s main profile by its pid', () => {
    assert.equal(profileOf(dir, 4242), file);
    assert.equal(profileOf(dir, 99), undefined);
  });

  it('sorts the busy samples of a window into parts, natives with their caller or their own part', () => {
    // samples at 1,000,000 + 0..11 ms; the window keeps those at 1..10 ms: 5 5 4 7 2 2 3 8 5 5
    const s = summarizeProfile(file, 1_001_000, 1_010_000, 2);
    assert.equal(s.busySeconds, 0.01, 'eight busy samples of 1 ms (the two idle ones left out), in seconds to two decimals');
    assert.deepEqual(
      s.parts.map((x) => [x.part, x.share, x.usPerUpdate]),
      [
        ['store', 62.5, 2500], // run (native) counts for putShadow's part: 5 5 4 5 5
        ['socket writes (system calls)', 12.5, 500],
        ['garbage collection', 12.5, 500],
        ['replica (shadows)', 12.5, 500],
      ],
    );
  });
});
