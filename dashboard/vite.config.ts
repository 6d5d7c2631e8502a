/**
 * Builds the web dashboard (issue 8) into dashboard/dist, which the Updraft server serves at
 * `/` (src/http/dashboard-route.ts). Vite 8 transforms JSX with oxc, so Preact needs no
 * plugin: the automatic runtime imported from `preact/jsx-runtime`.
 */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const root = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root,
  base: '/',
  publicDir: false,
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // hashed names under /assets/ may be cached for a year; index.html never is
    assetsDir: 'assets',
    sourcemap: true,
    target: 'es2022',
  },
  server: {
    // `npx vite --config dashboard/vite.config.ts` against a running server on 8080
    proxy: { '/api': 'http://127.0.0.1:8080' },
  },
});
