// `npm ci` / `npm install` run this (the `prepare` script): build the dashboard so that
// `npm ci && npm start` is the whole set-up. An install without dev dependencies
// (`npm ci --omit=dev`) has no Vite: say so and go on (the server then explains at `/` how to
// build it) instead of failing the whole install. A failing build still fails.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let vite;
try {
  vite = path.join(path.dirname(createRequire(import.meta.url).resolve('vite/package.json')), 'bin/vite.js');
} catch {
  console.warn('updraft: Vite is not installed (dev dependencies omitted): the web dashboard is not built; run npm run build:dashboard after installing them');
  process.exit(0);
}
const r = spawnSync(process.execPath, [vite, 'build', '--config', 'dashboard/vite.config.ts'], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
