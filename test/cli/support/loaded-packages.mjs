// Preloaded (`node --import`) into a CLI run by cli-startup.test.ts: at exit, writes the npm
// packages the process loaded (CommonJS ones: those in require's cache) to UPDRAFT_LOADED_OUT.
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
process.on('exit', () => {
  const packages = new Set();
  for (const file of Object.keys(require.cache)) {
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(file);
    if (m) packages.add(m[1]);
  }
  writeFileSync(process.env.UPDRAFT_LOADED_OUT, JSON.stringify([...packages].sort()));
});
