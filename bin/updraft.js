#!/usr/bin/env node
// Entry point of the `updraft` command: runs the TypeScript sources through tsx, so a clean
// checkout needs no build step (`npm ci` and go).
import { closeSync, writeSync } from 'node:fs';
import { register } from 'tsx/esm/api';

// The tests' hang guard (test/helpers/cli.ts) reruns a child that hung in module loading, and
// only one that never wrote a byte here: main.ts loaded, the command started. Taken out of the
// environment first: a child of this command (sim --processes forks with IPC on fd 3) must not
// write into its own fd 3. Closed after, so no grandchild inherits it; a bad fd never breaks us.
const loadedFd = process.env.UPDRAFT_LOADED_FD;
delete process.env.UPDRAFT_LOADED_FD;
register();
await import('../src/cli/main.ts');
if (loadedFd) {
  try {
    writeSync(Number(loadedFd), '.');
    closeSync(Number(loadedFd));
  } catch {
    // not the tests' pipe: nothing to report
  }
}
