/**
 * Serves the built web dashboard (`dashboard/dist`, made by `npm run build:dashboard`, which
 * `npm ci` runs through `prepare`) as the router's fallback: `/assets/...` are Vite's
 * content-hashed files (cached for a year), every other GET outside `/api/` and `/v1/` that names
 * no file of the build is a client-side route and gets index.html (never cached, so a new build
 * shows at once), but for a missing asset or top-level file (`isFileRequest`).
 * The files are public; every data call the page makes carries the operator token.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UpdraftError } from '../errors.ts';
import type { Handler } from './router.ts';

/** Where `npm run build:dashboard` writes the bundle, relative to this file. */
export const DEFAULT_DASHBOARD_DIR = fileURLToPath(new URL('../../dashboard/dist', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

// the page talks only to its own origin; no inline script, no framing (clickjacking)
const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
};

const NOT_BUILT = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Updraft: dashboard not built</title></head>
<body><h1>The dashboard is not built</h1><p>The Updraft API runs, but the web dashboard's files are missing.
Build them with <code>npm run build:dashboard</code> (<code>npm ci</code> does it too), then reload this page.</p></body></html>`;

/** The file under `dir` a URL path names, or undefined when it would leave `dir`. */
export function resolveInside(dir: string, pathname: string): string | undefined {
  let decoded: string;
  try {
    decoded = decodeURIComponent(pathname);
  } catch {
    return undefined;
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return undefined;
  const file = path.resolve(dir, '.' + path.posix.normalize('/' + decoded));
  return file.startsWith(dir + path.sep) ? file : undefined;
}

async function isFile(file: string): Promise<number | undefined> {
  try {
    const s = await stat(file);
    return s.isFile() ? s.size : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether a path that names no file of the build asks for a file (404) rather than a client
 * route (index.html): everything under `/assets/` (Vite's hashed files), and a name with an
 * extension at the top level. No client route is one of those; deeper segments are ids, which
 * may hold dots (`/devices/evil.dev-1`, device ids allow `_ . : -`), so their extension says nothing.
 */
function isFileRequest(pathname: string): boolean {
  if (pathname.startsWith('/assets/')) return true;
  const segments = pathname.split('/').filter(Boolean);
  return segments.length === 1 && path.posix.extname(segments[0]!) !== '';
}

/** The fallback handler serving the dashboard from `dir`. */
export function dashboardRoute(options: { dir?: string } = {}): Handler {
  const dir = path.resolve(options.dir ?? DEFAULT_DASHBOARD_DIR);
  return async ({ req, res, url }) => {
    const p = url.pathname;
    // API and download paths keep their JSON 404s: a typo there must not return a web page
    if (p === '/api' || p.startsWith('/api/') || p === '/v1' || p.startsWith('/v1/')) throw new UpdraftError('NOT_FOUND', `no route for ${req.method} ${p}`);
    const isAsset = p.startsWith('/assets/');
    let file = resolveInside(dir, p);
    let size = file && p !== '/' ? await isFile(file) : undefined;
    if (size === undefined) {
      // a missing hashed file is a stale page asking for an old build, and a missing file
      // named at the top (/favicon.ico, /robots.txt) no page: 404, not index.html
      if (isFileRequest(p)) throw new UpdraftError('NOT_FOUND', `no file ${p} in the dashboard build`);
      file = path.join(dir, 'index.html');
      size = await isFile(file);
      if (size === undefined) {
        res.writeHead(503, { ...SECURITY_HEADERS, 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(NOT_BUILT) });
        res.end(req.method === 'HEAD' ? undefined : NOT_BUILT);
        return;
      }
    }
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': TYPES[path.extname(file!)] ?? 'application/octet-stream',
      'content-length': size,
      'cache-control': isAsset ? 'public, max-age=31536000, immutable' : 'no-cache',
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    await new Promise<void>((resolve) => {
      const stream = createReadStream(file!);
      stream.on('error', (err) => {
        res.destroy(err);
        resolve();
      });
      res.on('close', () => {
        stream.destroy();
        resolve();
      });
      stream.pipe(res);
    });
  };
}
