/**
 * Preloaded into the server and the simulator by `npm run bench -- --alloc`
 * (`node --import <this file>`): samples what the process allocates between two SIGUSR2
 * signals, objects the garbage collector has since freed included, and writes the sampling
 * heap profile to `$UPDRAFT_ALLOC_DIR/Alloc.<pid>.<n>.heapprofile` (the same format as
 * `--heap-prof`, which Chrome DevTools opens).
 *
 * Why not `--heap-prof`: it reports only what is still alive when the process exits, which
 * says nothing about the churn the collector spends its time on (9% of a connected server,
 * 18% of a cycling one). Plain JavaScript, so it loads before tsx and needs no transform.
 */
import { writeFileSync, renameSync } from 'node:fs';
import { Session } from 'node:inspector';
import path from 'node:path';

const dir = process.env.UPDRAFT_ALLOC_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  let sampling = false;
  let written = 0;
  process.on('SIGUSR2', () => {
    if (!sampling) {
      sampling = true;
      session.post('HeapProfiler.enable');
      // one sample per 16 KiB allocated on average (V8's default is 32 KiB)
      session.post('HeapProfiler.startSampling', { samplingInterval: 16384, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
      return;
    }
    sampling = false;
    session.post('HeapProfiler.stopSampling', (err, result) => {
      if (err) {
        process.stderr.write(`alloc-sampler: ${err.message}\n`);
        return;
      }
      // written whole, then renamed: the bench waits for the final name
      const file = path.join(dir, `Alloc.${process.pid}.${++written}.heapprofile`);
      writeFileSync(`${file}.tmp`, JSON.stringify(result.profile));
      renameSync(`${file}.tmp`, file);
    });
  });
}
